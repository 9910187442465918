//go:build vmguest

package ipvs_test

import (
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/ipvs/genl"
)

// TestGenlSyncContract runs the sync daemon contract against the kernel
// through ipvs/genl, in a network namespace of its own (sync daemons are
// per namespace) with a veth to multicast on.
func TestGenlSyncContract(t *testing.T) {
	const ns = "ipvssync"
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "sync0", "type", "veth", "peer", "name", "sync1"},
		{"-n", ns, "addr", "add", "10.77.0.1/24", "dev", "sync0"},
		{"-n", ns, "addr", "add", "10.77.0.2/24", "dev", "sync1"},
		{"-n", ns, "link", "set", "sync0", "up"},
		{"-n", ns, "link", "set", "sync1", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	k, err := genl.Open(10*time.Second, nil)
	// The client's sockets stay in the namespace.
	if serr := netns.Set(orig); serr != nil {
		panic(serr)
	}
	runtime.UnlockOSThread()
	h.Close()
	orig.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	ipvs.SyncContract(t, k, "sync0")
}
