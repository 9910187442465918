package hostnet_test

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
)

// checkKernelAnswers walks the calls hostnet makes through nl and sys, on
// a link called name that must not exist yet, and checks the answers
// hostnet relies on. It runs against the fakes here and against the
// kernel in the VM (kernel_test.go), so the fakes answer as the kernel
// does.
func checkKernelAnswers(t *testing.T, nl hostnet.Netlink, sys hostnet.Sysctl, name string) {
	t.Helper()
	conf := "net/ipv4/conf/" + name + "/arp_ignore"
	if _, err := nl.LinkByName(name); !errors.As(err, &netlink.LinkNotFoundError{}) {
		t.Fatalf("LinkByName of a missing link: %v, want a LinkNotFoundError", err)
	}
	if _, err := sys.Get(conf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sysctl %s before the link: %v, want fs.ErrNotExist", conf, err)
	}
	if err := sys.Set("net/ipv4/conf/all/no_such_key", "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("set a key that is not there: %v, want fs.ErrNotExist", err)
	}
	mk := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := nl.LinkAdd(mk); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkAdd(mk); !errors.Is(err, unix.EEXIST) {
		t.Errorf("LinkAdd again: %v, want EEXIST", err)
	}
	link, err := nl.LinkByName(name)
	if err != nil || link.Type() != "dummy" || link.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("a new link: %v %v, want a dummy that is down", link, err)
	}
	def, err := sys.Get("net/ipv4/conf/default/arp_ignore")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sys.Get(conf); err != nil || v != def {
		t.Errorf("sysctl %s of a new link: %q, %v; want default's %q", conf, v, err, def)
	}
	if err := nl.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if link, err = nl.LinkByName(name); err != nil || link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("after LinkSetUp: %v %v, want it up", link, err)
	}
	v4 := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.40.0.1").To4(), Mask: net.CIDRMask(32, 32)}}
	v6 := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("2001:db8::40"), Mask: net.CIDRMask(128, 128)}, Flags: unix.IFA_F_NODAD}
	for _, a := range []*netlink.Addr{v4, v6} {
		if err := nl.AddrAdd(link, a); err != nil {
			t.Fatalf("AddrAdd %s: %v", a, err)
		}
		if err := nl.AddrAdd(link, a); !errors.Is(err, unix.EEXIST) {
			t.Errorf("AddrAdd %s again: %v, want EEXIST", a, err)
		}
	}
	list, err := nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var host []string
	for _, a := range list {
		if ones, bits := a.Mask.Size(); ones == bits {
			ip, _ := netip.AddrFromSlice(a.IP)
			host = append(host, ip.Unmap().String())
		}
		if a.IP.Equal(v6.IP) && a.Flags&unix.IFA_F_NODAD == 0 {
			t.Errorf("%s listed without IFA_F_NODAD (flags %#x)", a, a.Flags)
		}
	}
	slices.Sort(host)
	if !slices.Equal(host, []string{"10.40.0.1", "2001:db8::40"}) {
		t.Errorf("host addresses listed: %v", host)
	}
	gone := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.40.0.2").To4(), Mask: net.CIDRMask(32, 32)}}
	if err := nl.AddrDel(link, gone); !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Errorf("AddrDel of an address not there: %v, want EADDRNOTAVAIL", err)
	}
	for _, a := range []*netlink.Addr{v4, v6} {
		if err := nl.AddrDel(link, a); err != nil {
			t.Errorf("AddrDel %s: %v", a, err)
		}
		if err := nl.AddrDel(link, a); !errors.Is(err, unix.EADDRNOTAVAIL) {
			t.Errorf("AddrDel %s again: %v, want EADDRNOTAVAIL", a, err)
		}
	}
}

func TestFakesAnswerAsTheKernel(t *testing.T) {
	nl := hostnettest.NewNetlink()
	checkKernelAnswers(t, nl, hostnettest.NewSysctl(nl, map[string]string{"net/ipv4/conf/default/arp_ignore": "0"}), "lvsk0")
}

// checkFallbackTunnel: a tunnel module's fallback device (ip6tnl0, made
// when ip6_tunnel loads) is listed with its type, and making one of its
// name again is EEXIST, which RealServer takes for "there already".
func checkFallbackTunnel(t *testing.T, nl hostnet.Netlink) {
	t.Helper()
	link, err := nl.LinkByName("ip6tnl0")
	if err != nil || link.Type() != "ip6tnl" {
		t.Fatalf("ip6tnl0: %v %v, want an ip6tnl", link, err)
	}
	if err := nl.LinkAdd(&netlink.Ip6tnl{LinkAttrs: netlink.LinkAttrs{Name: "ip6tnl0"}}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("LinkAdd of ip6tnl0 again: %v, want EEXIST", err)
	}
}

func TestFakeFallbackTunnel(t *testing.T) {
	nl := hostnettest.NewNetlink()
	nl.AddLink("ip6tnl0", hostnettest.Link{Type: "ip6tnl"}) // as the module makes it
	checkFallbackTunnel(t, nl)
}
