package daemon

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// A firewall mark's key has no address: its VIPs are the config's vips,
// kept after a reload removed the service so that they leave with it.
func TestVIPsOfFirewallMarks(t *testing.T) {
	var st syncState
	st.init()
	st.setConfig(mustConfig(t, `
virtual_service "web" {
  fwmark     = 1
  vips       = ["10.10.10.62", "10.10.10.60"]
  forwarding = "gate"
}
virtual_service "api" {
  address    = "10.10.10.60:8080"
  forwarding = "masq"
}
`))
	mark := lvs.ServiceKey{FWMark: 1, Addr: netip.IPv4Unspecified()}
	api := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.60"), Port: 8080}
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	if got, want := st.vipsOf([]lvs.ServiceKey{mark, api}), addrs("10.10.10.60", "10.10.10.62"); !slices.Equal(got, want) {
		t.Errorf("VIPs %v, want %v (sorted, each once)", got, want)
	}
	st.setConfig(mustConfig(t, `
virtual_service "api" {
  address    = "10.10.10.60:8080"
  forwarding = "masq"
}
`))
	if got, want := st.vipsOf([]lvs.ServiceKey{mark}), addrs("10.10.10.60", "10.10.10.62"); !slices.Equal(got, want) {
		t.Errorf("a removed mark's VIPs %v, want %v", got, want)
	}
	other := lvs.ServiceKey{FWMark: 1, Addr: netip.IPv6Unspecified()}
	if got := st.vipsOf([]lvs.ServiceKey{other}); len(got) != 0 {
		t.Errorf("a mark no config named has VIPs %v", got)
	}
}

// A reload that gives a mark other vips takes the old ones off: the key
// names no address, so they are known from the last VIP sync.
func TestAMarksOldVIPsLeaveOnReload(t *testing.T) {
	link := hostnet.NewVIPLink("lvs0", hostnettest.NewNetlink(), nil)
	d := &Daemon{opts: Options{VIPs: link}}
	d.state.init()
	mark := lvs.ServiceKey{FWMark: 1, Addr: netip.IPv4Unspecified()}
	withVIPs := func(vips string) {
		t.Helper()
		d.state.setConfig(mustConfig(t, "virtual_service \"web\" {\n  fwmark = 1\n  vips = ["+vips+"]\n  forwarding = \"gate\"\n}\n"))
		if err := d.syncVIPs([]lvs.ServiceKey{mark}, []lvs.ServiceKey{mark}); err != nil {
			t.Fatal(err)
		}
	}
	withVIPs(`"10.10.10.60", "10.10.10.61"`)
	withVIPs(`"10.10.10.61", "10.10.10.62"`)
	got, err := link.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{netip.MustParseAddr("10.10.10.61"), netip.MustParseAddr("10.10.10.62")}; !slices.Equal(got, want) {
		t.Errorf("VIPs on lvs0 after the reload: %v, want %v", got, want)
	}
}
