package status

import (
	"net/netip"
	"testing"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// A firewall-mark service is shown as protocol fwm at fwmark:N, found in
// the config by its key, next to an address service.
func TestServicesShowAFirewallMark(t *testing.T) {
	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  fwmark     = 1
  vips       = ["10.0.0.1"]
  forwarding = "gate"
}
virtual_service "api" {
  address    = "10.0.0.1:8080"
  forwarding = "masq"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	mark := lvs.ServiceKey{FWMark: 1, Addr: netip.IPv4Unspecified()}
	api := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 8080}
	real := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.11")}
	kernel := ipvs.State{
		mark: {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{real: {Weight: 1, Forward: lvs.Route}}},
		api:  {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{}},
	}
	views := Services(kernel, Input{Config: cfg, Owns: func(lvs.ServiceKey) bool { return true }})
	if len(views) != 2 {
		t.Fatalf("%d views, want 2: %+v", len(views), views)
	}
	a, m := views[0], views[1] // marks last, as ipvsadm lists them
	if m.Protocol != "fwm" || m.Address != "fwmark:1" || m.Key != "fwmark:1" || m.Name != "web" || m.Forwarding != "gate" {
		t.Errorf("the mark's view %+v", m)
	}
	if len(m.Reals) != 1 || m.Reals[0].Address != "10.1.0.11:0" {
		t.Errorf("the mark's reals %+v, want 10.1.0.11:0", m.Reals)
	}
	if a.Protocol != "tcp" || a.Address != "10.0.0.1:8080" || a.Name != "api" {
		t.Errorf("the address service's view %+v", a)
	}
}
