//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's real IPVS.
package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"

	"github.com/lvs-sync/lvs-sync/lvs"
)

func openKernel(t *testing.T) *Netlink {
	t.Helper()
	k, err := OpenNetlink(5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// TestNetlinkContract runs the kernel contract (contract_test.go) against
// the kernel: what MemKernel answers, the kernel answers.
func TestNetlinkContract(t *testing.T) {
	testKernelContract(t, func(t *testing.T) Kernel {
		k := openKernel(t)
		st, err := k.Services()
		if err != nil || len(st) != 0 {
			t.Fatalf("the kernel's table is not empty to start with: %v %v", st, err)
		}
		t.Cleanup(func() {
			st, _ := k.Services()
			for key := range st {
				_ = k.DelService(key)
			}
		})
		return k
	}, func(t *testing.T, _ Kernel, svc lvs.ServiceKey) {
		// The guest's own connection goes through IPVS (its LOCAL_OUT
		// hook); the real is not there, so the handshake never ends, but
		// the kernel has counted it.
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(svc.Addr, svc.Port).String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
	})
}

func TestVIPLink(t *testing.T) {
	v := &VIPLink{Name: "lvstest0"}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName("lvstest0"); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	a, b, c := netip.MustParseAddr("10.30.0.1"), netip.MustParseAddr("10.30.0.2"), netip.MustParseAddr("2001:db8::30")
	added, _, err := v.Sync([]netip.Addr{a, b, c}, nil)
	if err != nil || len(added) != 3 {
		t.Fatalf("first sync: added %v, %v", added, err)
	}
	l, err := netlink.LinkByName("lvstest0")
	if err != nil || l.Type() != "dummy" {
		t.Fatalf("link: %v %v", l, err)
	}
	// An address added by hand is never lvs-sync's.
	hand := netip.MustParseAddr("192.0.2.7")
	if _, err := addHostAddr(l, hand); err != nil {
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

// TestNetlinkDeadline: a call that does not come back in time fails with
// ErrTimeout, and the next call gets a fresh socket.
func TestNetlinkDeadline(t *testing.T) {
	k, err := OpenNetlink(200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	start := time.Now()
	err = k.do("a call that hangs", func(h *mobyipvs.Handle) error {
		time.Sleep(2 * time.Second) // as a lost reply would
		return nil
	})
	if !errors.Is(err, ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v, want ErrTimeout after 200ms", err, time.Since(start))
	}
	if _, err := k.Services(); err != nil {
		t.Errorf("the call after a timeout: %v", err)
	}
}
