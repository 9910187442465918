package metrics

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// TestSawTable: the per-service gauges count each real as the status view
// classifies it, a draining one apart from the desired ones, and a nil
// *Metrics records nothing.
func TestSawTable(t *testing.T) {
	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  address    = "10.0.0.1:80"
  forwarding = "gate"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	serving, quiesced, leaving := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80},
		lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.2"), Port: 80}, lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.3"), Port: 80}
	desired := ipvs.State{web: {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{serving: {Weight: 3}, quiesced: {Weight: 0}}}}
	res := render.Result{State: desired, Origins: map[lvs.ServiceKey]map[lvs.RealKey]render.Origin{web: {
		serving: {Source: render.SourcePassing, Node: "n1", InstanceID: "a"}, quiesced: {Source: render.SourceQuiesced, Node: "n2", InstanceID: "b"},
	}}}
	table := ipvs.State{web: {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{serving: {Weight: 3}, quiesced: {Weight: 0}, leaving: {Weight: 0}}}}
	in := status.Input{Config: cfg, Owns: func(lvs.ServiceKey) bool { return true }, Desired: &res,
		Draining: map[lvs.ServiceKey]map[lvs.RealKey]time.Time{web: {leaving: time.Unix(1, 0)}}}

	var none *Metrics
	none.SawTable(table, in, true, true) // records nothing, and does not panic

	reg := prometheus.NewRegistry()
	m := New(reg, "test")
	m.SawTable(table, in, true, true)
	for state, want := range map[string]float64{"serving": 1, "quiesced": 1, "draining": 1, "fallback": 0, "held": 0} {
		if got, ok := gauge(t, reg, "lvs_sync_reals", "virtual_service", "web", "state", state); !ok || got != want {
			t.Errorf("lvs_sync_reals{state=%q} = %v (there: %v), want %v", state, got, ok, want)
		}
	}
	for name, want := range map[string]float64{"desired": 2, "applied": 3} {
		if got, ok := gauge(t, reg, "lvs_sync_reals_"+name, "virtual_service", "web"); !ok || got != want {
			t.Errorf("lvs_sync_reals_%s = %v (there: %v), want %v", name, got, ok, want)
		}
	}
	if got := testutil.ToFloat64(m.draining); got != 1 {
		t.Errorf("lvs_sync_reals_draining = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.lastSyncSuccess); got != 1 {
		t.Errorf("lvs_sync_last_sync_success = %v, want 1", got)
	}
	// A full sync that failed drops the counts of a service gone from the
	// table, and keeps what was applied; one that succeeded drops both.
	m.SawTable(ipvs.State{}, in, true, false)
	if _, ok := gauge(t, reg, "lvs_sync_reals", "virtual_service", "web", "state", "serving"); ok {
		t.Errorf("lvs_sync_reals of web still there after a full sync without it")
	}
	if got, ok := gauge(t, reg, "lvs_sync_reals_applied", "virtual_service", "web"); !ok || got != 3 {
		t.Errorf("lvs_sync_reals_applied = %v (there: %v) after a failed sync, want 3 kept", got, ok)
	}
	m.SawTable(ipvs.State{}, in, true, true)
	if _, ok := gauge(t, reg, "lvs_sync_reals_applied", "virtual_service", "web"); ok {
		t.Errorf("lvs_sync_reals_applied of web still there after a successful full sync without it")
	}
}

// TestFingerprint: lvs_sync_table_fingerprint is the fingerprint that
// /v1/status shows of the kernel's table once the sync is applied, exact
// in the gauge, so an alert can compare it across directors; a failed
// sync leaves the last applied one.
func TestFingerprint(t *testing.T) {
	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  address         = "10.0.0.1:80"
  forwarding      = "gate"
  scheduler       = "mh"
  scheduler_flags = ["mh-port"]
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	reals := map[lvs.RealKey]ipvs.Real{}
	for i := range 5 {
		reals[lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 1, 0, byte(9 - i)}), Port: 80}] = ipvs.Real{Weight: 1 + i%2, Forward: lvs.Route}
	}
	desired := ipvs.State{web: {Scheduler: "mh", Flags: uint32(lvs.SchedFlag2), Netmask: 0xffffffff, Reals: reals}}
	in := status.Input{Config: cfg, Owns: func(lvs.ServiceKey) bool { return true }, Desired: &render.Result{State: desired}}

	// The kernel after the sync, as /v1/status reads it.
	kernel := ipvs.NewMemKernel(ipvs.State{})
	if res := ipvs.Apply(kernel, ipvs.Diff(desired, ipvs.State{}, nil), nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	current, err := ipvs.Read(kernel, nil)
	if err != nil {
		t.Fatal(err)
	}
	shown := status.Services(current, in)[0].Fingerprint

	reg := prometheus.NewRegistry()
	m := New(reg, "test")
	fingerprint := func() uint64 {
		f, _ := gauge(t, reg, "lvs_sync_table_fingerprint", "virtual_service", "web")
		return uint64(f)
	}
	m.SawTable(desired, in, true, true)
	got := fingerprint()
	if fmt.Sprintf("%012x", got) != shown || got == 0 {
		t.Errorf("lvs_sync_table_fingerprint = %012x, /v1/status shows %s", got, shown)
	}

	changed := desired.Clone()
	changed[web].Reals[lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.5"), Port: 80}] = ipvs.Real{Weight: 7, Forward: lvs.Route}
	m.SawTable(changed, in, true, false)
	if again := fingerprint(); again != got {
		t.Errorf("a failed sync changed the gauge from %012x to %012x", got, again)
	}
	m.SawTable(changed, in, true, true)
	if again := fingerprint(); again == got {
		t.Errorf("another weight, the same fingerprint %012x", got)
	}
}

// gauge is the value of the gauge name with the labels given as name,
// value pairs, as reg exposes it, and whether it is there.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, want) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
