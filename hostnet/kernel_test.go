//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's rtnetlink and /proc/sys.
package hostnet_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
)

// kernelLink returns a handle on the VM's namespace, and deletes the link
// called name when the test ends, whatever happened.
func kernelLink(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := h.LinkByName(name); err == nil {
			_ = h.LinkDel(l)
		}
		h.Close()
	})
	return h
}

// TestKernelAnswers: the kernel answers as the fakes do.
func TestKernelAnswers(t *testing.T) {
	checkKernelAnswers(t, kernelLink(t, "lvsk0"), hostnet.ProcSys{}, "lvsk0")
}

func TestVIPLink(t *testing.T) {
	h := kernelLink(t, "lvstest0")
	v := hostnet.NewVIPLink("lvstest0", nil, nil) // the Default handle
	a, b, c := netip.MustParseAddr("10.30.0.1"), netip.MustParseAddr("10.30.0.2"), netip.MustParseAddr("2001:db8::30")
	added, _, err := v.Sync([]netip.Addr{a, b, c}, nil)
	if err != nil || len(added) != 3 {
		t.Fatalf("first sync: added %v, %v", added, err)
	}
	l, err := h.LinkByName("lvstest0")
	if err != nil || l.Type() != "dummy" {
		t.Fatalf("link: %v %v", l, err)
	}
	// An address added by hand is never lvs-sync's.
	hand, _ := netlink.ParseAddr("192.0.2.7/32")
	if err := h.AddrAdd(l, hand); err != nil {
		t.Fatal(err)
	}
	ours := map[netip.Addr]bool{a: true, b: true, c: true}
	added, removed, err := v.Sync([]netip.Addr{a}, func(x netip.Addr) bool { return ours[x] })
	if err != nil || len(added) != 0 || fmt.Sprint(removed) != "[10.30.0.2 2001:db8::30]" {
		t.Errorf("second sync: added %v removed %v, %v", added, removed, err)
	}
	addrs, err := v.Addrs()
	if err != nil || fmt.Sprint(addrs) != "[10.30.0.1 192.0.2.7]" {
		t.Errorf("addresses %v, %v", addrs, err)
	}
}

// TestKernelFallbackTunnel: ip6_tunnel (loaded at the VM's boot) made
// ip6tnl0, and the kernel answers about it as the fake does.
func TestKernelFallbackTunnel(t *testing.T) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	checkFallbackTunnel(t, h)
}

// TestAddrLifetimeLapses: an address given a lifetime and refreshed stays;
// left alone, the kernel removes it itself within about its lifetime —
// what takes a dead active director's VIP off its interface.
func TestAddrLifetimeLapses(t *testing.T) {
	h := kernelLink(t, "lvslft0")
	if err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "lvslft0"}}); err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName("lvslft0")
	if err != nil || h.LinkSetUp(l) != nil {
		t.Fatalf("link: %v", err)
	}
	set := hostnet.NewAddrSet("lvslft0", nil, nil).WithLifetime(time.Second)
	want := []netip.Addr{netip.MustParseAddr("10.30.0.9"), netip.MustParseAddr("2001:db8::39")}
	has := func() int {
		got, err := set.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	// Refreshed every 250 ms for 3 s: both stay throughout.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if _, _, err := set.Sync(want, nil); err != nil {
			t.Fatal(err)
		}
		if n := has(); n != 2 {
			t.Fatalf("a refreshed address lapsed: %d of 2 left", n)
		}
	}
	left := time.Now()
	for has() > 0 {
		if time.Since(left) > 5*time.Second {
			t.Fatalf("addresses with a 1 s lifetime still there 5 s after the last refresh")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("both lapsed %v after the last refresh (lifetime 1s)", time.Since(left).Round(10*time.Millisecond))
}

// TestKernelSchedulersAndSloppy: the VM's Debian kernel has ip_vs_mh, the
// all-active tier's scheduler, as Modules reads it, and no module by a
// name that is none; and sloppy_tcp and sloppy_sctp, which an all-active
// director sets, are read and written where DirectorSettings says.
func TestKernelSchedulersAndSloppy(t *testing.T) {
	m, err := hostnet.HostModules()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"ip_vs_mh": true, "ip_vs_sh": true, "ip_vs_nosuch": false} {
		if got, err := m.Has(name); err != nil || got != want {
			t.Errorf("kernel %s: Has(%s) = %v, %v; want %v", m.Release, name, got, err, want)
		}
	}
	n := hostnet.DirectorNeeds{AllActive: true}
	n.Serve(netip.IPv4Unspecified(), 0, 0, false) // a firewall-mark service: both protocols
	var sys hostnet.ProcSys
	for _, f := range hostnet.CheckSettings(sys, hostnet.DirectorSettings(n), true) {
		if !f.OK() {
			t.Errorf("%s: %+v", f.Name(), f)
		}
	}
	for _, key := range []string{"net/ipv4/vs/sloppy_tcp", "net/ipv4/vs/sloppy_sctp"} {
		v, err := sys.Get(key)
		if err != nil || v != "1" {
			t.Errorf("%s = %q, %v after tuning; want 1", key, v, err)
		}
		if err := sys.Set(key, "0"); err != nil { // as the VM's other tests expect it
			t.Error(err)
		}
	}
}
