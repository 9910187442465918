package hostnet_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
)

// TestAddrSetSync: addresses come and go on an existing link as wanted;
// the link's own address and one added by hand stay; the link is never
// created, nor set up.
func TestAddrSetSync(t *testing.T) {
	nl := hostnettest.NewNetlink()
	nl.AddLink("eth0", hostnettest.Link{Type: "veth", Up: true, Addrs: []hostnettest.Addr{addr("10.4.0.2/24")}})
	set := hostnet.NewAddrSet("eth0", nl, nil)
	ours := map[netip.Addr]bool{}
	for _, a := range addrs("10.4.0.50", "10.4.0.51", "2001:db8::50") {
		ours[a] = true
	}
	owned := func(a netip.Addr) bool { return ours[a] }

	for _, c := range []struct {
		want           []string
		added, removed string
		link           string // the link's line in the namespace after
		addrs          string // Addrs after
	}{
		{[]string{"10.4.0.50", "10.4.0.51", "2001:db8::50"}, "[10.4.0.50 10.4.0.51 2001:db8::50]", "[]",
			"eth0 veth up [10.4.0.2/24 10.4.0.50/32 10.4.0.51/32 2001:db8::50/128 nodad]\n", "[10.4.0.50 10.4.0.51 2001:db8::50]"},
		{[]string{"10.4.0.50", "10.4.0.51", "2001:db8::50"}, "[]", "[]",
			"eth0 veth up [10.4.0.2/24 10.4.0.50/32 10.4.0.51/32 2001:db8::50/128 nodad]\n", "[10.4.0.50 10.4.0.51 2001:db8::50]"},
		{[]string{"10.4.0.51"}, "[]", "[10.4.0.50 2001:db8::50]",
			"eth0 veth up [10.4.0.2/24 10.4.0.51/32]\n", "[10.4.0.51]"},
		{nil, "[]", "[10.4.0.51]", "eth0 veth up [10.4.0.2/24]\n", "[]"},
	} {
		added, removed, err := set.Sync(addrs(c.want...), owned)
		if err != nil || fmt.Sprint(added) != c.added || fmt.Sprint(removed) != c.removed {
			t.Errorf("sync %v: added %v removed %v, %v; want %s %s", c.want, added, removed, err, c.added, c.removed)
		}
		if got := nl.String(); got != c.link+loLine && got != loLine+c.link {
			t.Errorf("sync %v: namespace\n%s", c.want, got)
		}
		if got, err := set.Addrs(); err != nil || fmt.Sprint(got) != c.addrs {
			t.Errorf("sync %v: Addrs %v, %v", c.want, got, err)
		}
	}
}

// TestAddrSetNeverCreatesTheLink: a missing link is an error naming it,
// and is still missing after; a link that is down stays down.
func TestAddrSetNeverCreatesTheLink(t *testing.T) {
	nl := hostnettest.NewNetlink()
	_, _, err := hostnet.NewAddrSet("eth0", nl, nil).Sync(addrs("10.4.0.50"), nil)
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "eth0") || nl.Has("eth0") {
		t.Errorf("sync on a missing link: %v; namespace\n%s", err, nl)
	}
	nl.AddLink("eth1", hostnettest.Link{Type: "veth"})
	if _, _, err := hostnet.NewAddrSet("eth1", nl, nil).Sync(addrs("10.4.0.50"), nil); err != nil {
		t.Fatal(err)
	}
	if l, _ := nl.Link("eth1"); l.Up || len(l.Addrs) != 1 {
		t.Errorf("a down link after sync: %+v", l)
	}
	nl.Fail("AddrAdd", "eth1", unix.EPERM)
	if _, _, err := hostnet.NewAddrSet("eth1", nl, nil).Sync(addrs("10.4.0.51"), nil); !errors.Is(err, unix.EPERM) ||
		!strings.Contains(err.Error(), "10.4.0.51") || !strings.Contains(err.Error(), "eth1") {
		t.Errorf("a refused add: %v", err)
	}
}

// TestCarrier: up with carrier, up without (a cut cable, a veth's peer
// down), down, missing.
func TestCarrier(t *testing.T) {
	nl := hostnettest.NewNetlink()
	nl.AddLink("eth0", hostnettest.Link{Type: "veth", Up: true})
	nl.AddLink("eth1", hostnettest.Link{Type: "veth"})
	check := func(link string, want bool, wantErr bool) {
		t.Helper()
		got, err := hostnet.CarrierOn(nl, link)
		if got != want || (err != nil) != wantErr || wantErr && !strings.Contains(err.Error(), link) {
			t.Errorf("carrier of %s: %v, %v; want %v", link, got, err, want)
		}
	}
	check("eth0", true, false)
	nl.SetCarrier("eth0", false)
	check("eth0", false, false)
	nl.SetCarrier("eth0", true)
	check("eth0", true, false)
	check("eth1", false, false)
	check("eth9", false, true)
}

// TestAddrSetLifetime: with a lifetime, every Sync sets the wanted
// addresses to expire that long from now (whole seconds, rounded up): new
// ones, and ones already there, permanent or not; addresses it does not
// want keep theirs.
func TestAddrSetLifetime(t *testing.T) {
	nl := hostnettest.NewNetlink()
	nl.AddLink("eth0", hostnettest.Link{Type: "veth", Up: true, Addrs: []hostnettest.Addr{addr("10.4.0.2/24"), addr("10.4.0.51/32")}})
	set := hostnet.NewAddrSet("eth0", nl, nil).WithLifetime(1500 * time.Millisecond)
	added, _, err := set.Sync(addrs("10.4.0.50", "10.4.0.51", "2001:db8::50"), nil)
	if err != nil || fmt.Sprint(added) != "[10.4.0.50 2001:db8::50]" {
		t.Fatalf("added %v, %v; want the two that were not there", added, err)
	}
	want := "eth0 veth up [10.4.0.2/24 10.4.0.51/32 valid_lft 2s 10.4.0.50/32 valid_lft 2s 2001:db8::50/128 nodad valid_lft 2s]\n"
	if got := nl.String(); got != want+loLine && got != loLine+want {
		t.Fatalf("namespace\n%s\nwant\n%s", got, want)
	}
	// A refresh adds nothing, and says so.
	if added, removed, err := set.Sync(addrs("10.4.0.50", "10.4.0.51", "2001:db8::50"), nil); err != nil || len(added)+len(removed) != 0 {
		t.Fatalf("refresh: added %v removed %v, %v", added, removed, err)
	}
}
