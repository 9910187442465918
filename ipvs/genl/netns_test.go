//go:build vmguest

package genl

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netns"
)

// These tests run in the VM (e2e.TestInKernel runs /bin/genl.test), as
// root against the kernel's real IPVS, each in a network namespace of its
// own: an empty IPVS table, lo up (before that, the kernel refuses new
// reals with EINVAL).

var netnsCount atomic.Int32

// freshNetns makes a network namespace for tb and returns its name.
func freshNetns(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("genl%d", netnsCount.Add(1))
	run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(tb, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// openIn opens a client in the namespace: its sockets stay there.
func openIn(tb testing.TB, name string, timeout time.Duration) *Client {
	tb.Helper()
	var c *Client
	inNetns(tb, name, func() {
		var err error
		if c, err = Open(timeout, nil); err != nil {
			tb.Fatal(err)
		}
	})
	tb.Cleanup(c.Close)
	return c
}

// inNetns runs fn on a thread in the namespace.
func inNetns(tb testing.TB, name string, fn func()) {
	tb.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		tb.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // this thread must not go back to the pool elsewhere
		}
	}()
	fn()
}

// moby is the independent reader: moby/ipvs in the namespace.
func moby(tb testing.TB, name string) *mobyipvs.Handle {
	tb.Helper()
	h, err := mobyipvs.New("/run/netns/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// ipvsadm runs ipvsadm in the namespace, stdin as given.
func ipvsadm(tb testing.TB, name, stdin string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", name, "ipvsadm"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("ipvsadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
