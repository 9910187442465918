//go:build vmguest

package hostnet_test

import (
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
)

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs fn on a thread in the named namespace.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // this thread must not go back to the pool elsewhere
		}
	}()
	fn()
}

// TestAnnounceUpdatesTheNeighbour: two namespaces on one bridge; the
// second has stale neighbour entries for the VIPs at a MAC nobody has;
// the first takes the VIPs (AddrSet, on its existing eth0) and announces
// them; the second's entries then name the first's MAC — gratuitous ARP
// for IPv4, an unsolicited neighbour advertisement for IPv6. And a link
// whose bridge side goes down has no carrier.
func TestAnnounceUpdatesTheNeighbour(t *testing.T) {
	ipCmd(t, "netns", "add", "annbr")
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", "annbr").Run() })
	ipCmd(t, "-n", "annbr", "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", "annbr", "link", "set", "br0", "up")
	for i, ns := range []string{"anna", "annb"} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", "annbr", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", "annbr", "link", "set", ns, "master", "br0", "up")
		n := string(rune('1' + i))
		ipCmd(t, "-n", ns, "addr", "add", "10.44.0."+n+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "addr", "add", "fd44::"+n+"/64", "dev", "eth0", "nodad")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	}
	vip4, vip6 := netip.MustParseAddr("10.44.0.50"), netip.MustParseAddr("fd44::50")
	const bogus = "02:00:00:00:00:99"
	for _, v := range []string{vip4.String(), vip6.String()} {
		ipCmd(t, "-n", "annb", "neigh", "replace", v, "lladdr", bogus, "dev", "eth0", "nud", "stale")
	}

	h, err := netns.GetFromName("anna")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	set := hostnet.NewAddrSet("eth0", nl, nil)
	if added, _, err := set.Sync([]netip.Addr{vip4, vip6}, nil); err != nil || len(added) != 2 {
		t.Fatalf("adding the vips: %v, %v", added, err)
	}
	var mac string
	inNetns(t, "anna", func() {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		mac = ifi.HardwareAddr.String()
		if err := hostnet.NewAnnouncer(nil).Announce("eth0", []netip.Addr{vip4, vip6}); err != nil {
			t.Fatal(err)
		}
	})
	for _, v := range []string{vip4.String(), vip6.String()} {
		out := ipCmd(t, "-n", "annb", "neigh", "show", v, "dev", "eth0")
		if !strings.Contains(out, mac) {
			t.Errorf("the neighbour entry of %s after the announcement: %q, want %s", v, out, mac)
		}
	}

	for _, c := range []struct {
		state string
		want  bool
	}{{"down", false}, {"up", true}} {
		ipCmd(t, "-n", "annbr", "link", "set", "anna", c.state)
		// The peer's carrier follows at once: no wait in the kernel.
		if got, err := hostnet.CarrierOn(nl, "eth0"); err != nil || got != c.want {
			t.Errorf("carrier with the bridge side %s: %v, %v", c.state, got, err)
		}
	}
}
