package metrics

import (
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

	m := New(prometheus.NewRegistry(), "test")
	m.SawTable(table, in, true, true)
	for state, want := range map[string]float64{"serving": 1, "quiesced": 1, "draining": 1, "fallback": 0, "held": 0} {
		if got := testutil.ToFloat64(m.realsByState.WithLabelValues("web", state)); got != want {
			t.Errorf("lvs_sync_reals{state=%q} = %v, want %v", state, got, want)
		}
	}
	for name, c := range map[string]prometheus.Collector{"desired": m.realsDesired.WithLabelValues("web"),
		"applied": m.realsApplied.WithLabelValues("web")} {
		want := map[string]float64{"desired": 2, "applied": 3}[name]
		if got := testutil.ToFloat64(c); got != want {
			t.Errorf("lvs_sync_reals_%s = %v, want %v", name, got, want)
		}
	}
	if got := testutil.ToFloat64(m.draining); got != 1 {
		t.Errorf("lvs_sync_reals_draining = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.lastSyncSuccess); got != 1 {
		t.Errorf("lvs_sync_last_sync_success = %v, want 1", got)
	}
}
