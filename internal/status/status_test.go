package status

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
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

// TestServicesShowTheOptions: the kernel's persistence netmask, ops and
// thresholds are in the view, as ipvsadm shows them; a host mask and no
// thresholds show nothing.
func TestServicesShowTheOptions(t *testing.T) {
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	dns := lvs.ServiceKey{Protocol: lvs.UDP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 53}
	web6 := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 80}
	rk := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80}
	kernel := ipvs.State{
		web: {Scheduler: "wlc", Flags: ipvs.FlagPersistent, Timeout: 300, Netmask: lvs.PrefixMask(web.Addr, 24),
			Reals: map[lvs.RealKey]ipvs.Real{rk: {Weight: 1, UpperThreshold: 100, LowerThreshold: 50}}},
		dns:  {Scheduler: "rr", Flags: ipvs.FlagOnePacket, Netmask: lvs.HostMask(dns.Addr), Reals: map[lvs.RealKey]ipvs.Real{rk: {Weight: 1}}},
		web6: {Scheduler: "sh", Flags: ipvs.FlagPersistent, Timeout: 60, Netmask: 128},
	}
	views := map[string]ServiceView{}
	for _, v := range Services(kernel, Input{}) {
		views[v.Key] = v
	}
	for _, c := range []struct {
		key                 lvs.ServiceKey
		netmask             string
		ops                 bool
		upper, lower        uint32
		persistence, nreals int
	}{
		{web, "255.255.255.0", false, 100, 50, 300, 1},
		{dns, "", true, 0, 0, 0, 1},
		{web6, "", false, 0, 0, 60, 0},
	} {
		v, ok := views[c.key.String()]
		if !ok {
			t.Fatalf("no view of %s", c.key)
		}
		if v.Netmask != c.netmask || v.OnePacket != c.ops || int(v.Persistence) != c.persistence || len(v.Reals) != c.nreals {
			t.Errorf("%s: netmask %q ops %v persistence %d reals %d, want %q %v %d %d",
				c.key, v.Netmask, v.OnePacket, v.Persistence, len(v.Reals), c.netmask, c.ops, c.persistence, c.nreals)
		}
		if c.nreals > 0 && (v.Reals[0].UpperThreshold != c.upper || v.Reals[0].LowerThreshold != c.lower) {
			t.Errorf("%s: thresholds %d/%d, want %d/%d", c.key, v.Reals[0].UpperThreshold, v.Reals[0].LowerThreshold, c.upper, c.lower)
		}
	}
}

// TestServicesShowTheFingerprint: the view carries each service's
// fingerprint and each real's place in the kernel's list; for mh the
// kernel's order changes the fingerprint, for wlc it does not.
func TestServicesShowTheFingerprint(t *testing.T) {
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	a, b := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80}, lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.2"), Port: 80}
	in := Input{Owns: func(lvs.ServiceKey) bool { return false }}
	view := func(sched string, headA bool) ServiceView {
		posA, posB := 2, 1
		if headA {
			posA, posB = 1, 2
		}
		kernel := ipvs.State{web: {Scheduler: sched, Reals: map[lvs.RealKey]ipvs.Real{
			a: {Weight: 1, Forward: lvs.Route, Position: posA}, b: {Weight: 1, Forward: lvs.Route, Position: posB}}}}
		return Services(kernel, in)[0]
	}
	canonical := view("mh", false)
	if len(canonical.Fingerprint) != 12 || canonical.Fingerprint != (&ipvs.Service{Scheduler: "mh", Reals: map[lvs.RealKey]ipvs.Real{a: {Weight: 1}, b: {Weight: 1}}}).Fingerprint().String() {
		t.Errorf("fingerprint %q, want the desired service's", canonical.Fingerprint)
	}
	if canonical.Reals[0].Address != a.String() || canonical.Reals[0].Position != 2 || canonical.Reals[1].Position != 1 {
		t.Errorf("reals %+v, want 10.1.0.1:80 at 2, 10.1.0.2:80 at 1", canonical.Reals)
	}
	if other := view("mh", true); other.Fingerprint == canonical.Fingerprint {
		t.Errorf("mh: another order in the kernel, the same fingerprint %s", other.Fingerprint)
	}
	if x, y := view("wlc", true), view("wlc", false); x.Fingerprint != y.Fingerprint {
		t.Errorf("wlc: the kernel's order changed the fingerprint: %s, %s", x.Fingerprint, y.Fingerprint)
	}
}

// TestServicesShowTheDrainDeadline: a draining real's view carries when
// the planner deletes it, drain_timeout after it began to drain, so the
// dashboard can say how long it has left.
func TestServicesShowTheDrainDeadline(t *testing.T) {
	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  address       = "10.0.0.1:80"
  forwarding    = "gate"
  drain_timeout = "45s"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	k := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	rk := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80}
	kernel := ipvs.State{k: {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{rk: {Forward: lvs.Route, ActiveConns: 3}}}}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := Input{Config: cfg, Owns: func(lvs.ServiceKey) bool { return true },
		Desired:  &render.Result{State: ipvs.State{k: {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{}}}},
		Draining: map[lvs.ServiceKey]map[lvs.RealKey]time.Time{k: {rk: since}}}
	r := Services(kernel, in)[0].Reals[0]
	if r.Source != render.SourceDraining || !r.DrainingSince.Equal(since) || !r.DrainDeadline.Equal(since.Add(45*time.Second)) {
		t.Errorf("source %q since %s deadline %s, want draining since %s until %s", r.Source, r.DrainingSince, r.DrainDeadline, since, since.Add(45*time.Second))
	}
}
