package daemon

import (
	"net/netip"
	"slices"
	"testing"

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
