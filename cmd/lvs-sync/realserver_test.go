package main

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// fakeHost makes `lvs-sync realserver` drive fakes instead of this host.
func fakeHost(t *testing.T) (*hostnettest.Netlink, *hostnettest.Sysctl) {
	t.Helper()
	nl := hostnettest.NewNetlink()
	sys := hostnettest.NewSysctl(nl, map[string]string{
		"net/ipv4/conf/all/arp_ignore": "0", "net/ipv4/conf/all/arp_announce": "0", "net/ipv4/conf/all/rp_filter": "2",
	})
	orig := newRealServer
	newRealServer = func(log hclog.Logger) *hostnet.RealServer { return hostnet.NewRealServer(nl, sys, log) }
	t.Cleanup(func() { newRealServer = orig })
	return nl, sys
}

const fakeLo = "lo device up [127.0.0.1/8 ::1/128]\n"

func TestRealServerCommand(t *testing.T) {
	nl, sys := fakeHost(t)
	for _, step := range []struct {
		args   []string
		code   int
		stderr string // a line it must hold; "" for nothing at all
		after  string
	}{{
		args:  []string{"-vip", "10.10.10.60, 10.10.10.62", "-mode", "gate", "-log-level", "warn"},
		after: "lo device up [127.0.0.1/8 ::1/128 10.10.10.60/32 10.10.10.62/32]\n",
	}, {
		args:  []string{"-vip", "10.10.10.61", "-mode", "ipip", "-log-level", "warn"},
		after: "lo device up [127.0.0.1/8 ::1/128 10.10.10.60/32 10.10.10.62/32]\ntunl0 ipip up [10.10.10.61/32]\n",
	}, {
		args:   []string{"-vip", "10.10.10.61,2001:db8::61", "-mode", "ipip"},
		stderr: "added vip: link=ip6tnl0 vip=2001:db8::61",
		after:  "ip6tnl0 ip6tnl up [2001:db8::61/128 nodad]\nlo device up [127.0.0.1/8 ::1/128 10.10.10.60/32 10.10.10.62/32]\ntunl0 ipip up [10.10.10.61/32]\n",
	}, {
		args:   []string{"-vip", "2001:db8::61", "-mode", "ipip", "-remove"},
		stderr: "removed vip: link=ip6tnl0 vip=2001:db8::61",
		after:  "ip6tnl0 ip6tnl up []\nlo device up [127.0.0.1/8 ::1/128 10.10.10.60/32 10.10.10.62/32]\ntunl0 ipip up [10.10.10.61/32]\n",
	}, {
		args: []string{"-vip", "10.10.10.63", "-mode", "masq"}, code: 1,
		stderr: "real servers need gate or ipip, not masq",
		after:  "ip6tnl0 ip6tnl up []\nlo device up [127.0.0.1/8 ::1/128 10.10.10.60/32 10.10.10.62/32]\ntunl0 ipip up [10.10.10.61/32]\n",
	}, {
		args:   []string{"-vip", "10.10.10.60", "-mode", "gate", "-remove"},
		stderr: "removed vip: link=lo vip=10.10.10.60",
		after:  "ip6tnl0 ip6tnl up []\nlo device up [127.0.0.1/8 ::1/128 10.10.10.62/32]\ntunl0 ipip up [10.10.10.61/32]\n",
	}, {
		args: []string{"-mode", "gate"}, code: 1, stderr: "-vip is required",
		after: "ip6tnl0 ip6tnl up []\nlo device up [127.0.0.1/8 ::1/128 10.10.10.62/32]\ntunl0 ipip up [10.10.10.61/32]\n",
	}} {
		code, _, stderr := cli(append([]string{"realserver"}, step.args...)...)
		if code != step.code || step.stderr == "" && stderr != "" || !strings.Contains(stderr, step.stderr) {
			t.Errorf("realserver %q: exit %d, stderr:\n%s\nwant exit %d with %q", step.args, code, stderr, step.code, step.stderr)
		}
		if got := nl.String(); got != step.after {
			t.Errorf("after realserver %q:\n%swant:\n%s", step.args, got, step.after)
		}
	}
	if got := sys.Value("net/ipv4/conf/lo/arp_ignore") + sys.Value("net/ipv4/conf/tunl0/rp_filter"); got != "10" {
		t.Errorf("lo arp_ignore + tunl0 rp_filter: %q after remove, want the sysctls kept (10)", got)
	}
}

// syncWriter is a log sink the command's goroutine and the test share.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRealServerHoldKeepsVIPsOnSignal: `realserver -hold` applies again
// while it runs, and on SIGTERM (a job update stopping it) exits 0 and
// leaves the VIPs on lo, where the application still serves them.
func TestRealServerHoldKeepsVIPsOnSignal(t *testing.T) {
	nl, _ := fakeHost(t)
	var stderr syncWriter
	done := make(chan int, 1)
	go func() {
		done <- runRealServer([]string{"-vip", "10.10.10.60", "-mode", "gate", "-hold", "-interval", "10ms"}, &strings.Builder{}, &stderr)
	}()
	withVIP := "lo device up [127.0.0.1/8 ::1/128 10.10.10.60/32]\n"
	waitUntil(t, "the vip on lo", func() bool { return nl.String() == withVIP })
	// Taken off by someone else, it comes back with the next apply; that
	// also shows the command is past its signal.Notify.
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	vip, _ := netlink.ParseAddr("10.10.10.60/32")
	if err := nl.AddrDel(lo, vip); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the vip back on lo", func() bool { return nl.String() == withVIP })
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d on SIGTERM, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM; stderr:\n%s", stderr.String())
	}
	if got := nl.String(); got != withVIP {
		t.Errorf("after SIGTERM:\n%swant the vip kept:\n%s", got, withVIP)
	}
	if !strings.Contains(stderr.String(), "stopping; the vips stay") {
		t.Errorf("no word of the vips staying:\n%s", stderr.String())
	}
}

// TestHoldRealServer drives the -hold loop tick by tick: a failure is
// logged once however often it repeats, a new one again, the recovery
// once; the end of the context takes nothing off.
func TestHoldRealServer(t *testing.T) {
	nl, _ := fakeHost(t)
	var logs syncWriter
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	rs := newRealServer(log)
	vips := []netip.Addr{netip.MustParseAddr("10.10.10.60")}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { holdRealServer(ctx, tick, func() error { return rs.Setup(vips, lvs.Route) }, log); close(done) }()
	// An unbuffered send returns once the loop has taken the tick; the
	// next send, once it has finished applying that one.
	ticks := func(n int) {
		for range n {
			tick <- time.Time{}
		}
	}
	count := func(s string) int { return strings.Count(logs.String(), s) }

	ticks(2)
	nl.Fail("AddrAdd", "lo", unix.EPERM)
	ticks(4)
	nl.Fail("AddrAdd", "lo", unix.ENOBUFS)
	ticks(3)
	nl.Fail("AddrAdd", "lo", nil)
	ticks(3)
	cancel()
	<-done

	for s, want := range map[string]int{
		"added vip: link=lo vip=10.10.10.60":                 1,
		"operation not permitted":                            1,
		"no buffer space available":                          1,
		"[INFO]  real server configured again: reapply=true": 1,
		"stopping; the vips stay":                            1,
	} {
		if got := count(s); got != want {
			t.Errorf("%q logged %d times, want %d; log:\n%s", s, got, want, logs.String())
		}
	}
	if got, want := nl.String(), "lo device up [127.0.0.1/8 ::1/128 10.10.10.60/32]\n"; got != want {
		t.Errorf("after the loop ended:\n%swant the vip kept:\n%s", got, want)
	}
}
