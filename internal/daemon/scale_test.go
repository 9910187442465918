package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// flipAllocs is what one flip's sync allocates among n services × 10
// instances whose port is not the virtual port (a note each, as in the
// bench): snapshot in, sync done, in the in-memory kernel.
func flipAllocs(t *testing.T, n int) float64 {
	h := newHarnessLogged(t, scaleConfig(n), ipvstest.New(ipvs.State{}), hclog.NewNullLogger())
	h.snapshot2(scaleSnapshot(n, false, nil))
	h.untilNext()
	snaps := [2]catalog.Snapshot{
		scaleSnapshot(n, true, map[string]bool{"svc00000": true}),
		scaleSnapshot(n, false, map[string]bool{"svc00000": true}),
	}
	i := 0
	allocs := testing.AllocsPerRun(20, func() {
		h.snapshot2(snaps[i%2])
		h.untilNext()
		i++
	})
	last := h.reports[len(h.reports)-1]
	if !slices.Equal(last.Desired.Rendered, []string{"vs00000"}) || len(last.Plan) != 1 {
		t.Fatalf("at %d services a flip rendered %d virtual services and planned %v; want vs00000 alone, one change",
			n, len(last.Desired.Rendered), last.Plan)
	}
	return allocs
}

// TestFlipSyncDoesNotGrowWithServices: the sync after one instance's
// flip does the work of the one virtual service it changed, not of every
// service: it renders and plans that one, and at 10,000 services it
// allocates about what it does at 1,000. Render's notes gathered and
// keyed for the log each sync made it 10× (a note an instance: 100,172
// allocations at 1,000, 1,000,546 at 10,000); what is left growing is
// render's copy of the previous result, a few tables per thousand
// services (129 and 241 allocations), so 3× catches anything done per
// service, instance or note.
func TestFlipSyncDoesNotGrowWithServices(t *testing.T) {
	small, large := flipAllocs(t, 1000), flipAllocs(t, 10000)
	t.Logf("allocations per flip: %.0f at 1,000 services, %.0f at 10,000", small, large)
	if large > 3*small {
		t.Errorf("a flip at 10,000 services allocates %.0f times, %.1f× what it does at 1,000 (%.0f); want at most 3×",
			large, large/small, small)
	}
}

// TestReconcileRendersOnlyWhatChanged: the periodic reconcile of a quiet
// catalog renders no virtual service anew (it reads and compares the
// whole kernel table, which is what may have drifted), and one whose
// catalog service changed in the meantime alone. Rendering every service
// at each reconcile was, at 10,000 services × 10 instances, a third of an
// idle daemon's CPU (and its garbage another half).
func TestReconcileRendersOnlyWhatChanged(t *testing.T) {
	const n = 100
	h := newHarnessLogged(t, scaleConfig(n), ipvstest.New(ipvs.State{}), hclog.NewNullLogger())
	h.snapshot2(scaleSnapshot(n, false, nil))
	h.untilNext()
	if got := len(h.reports[len(h.reports)-1].Desired.Rendered); got != n {
		t.Fatalf("the first sync rendered %d virtual services, want %d", got, n)
	}
	if got := h.untilNext(); got != TriggerReconcile {
		t.Fatalf("fired %s, want the reconcile", got)
	}
	if r := h.reports[len(h.reports)-1]; len(r.Desired.Rendered) != 0 || len(r.Desired.State) != n {
		t.Errorf("a quiet reconcile rendered %d virtual services anew, its state %d services; want none anew, all %d kept",
			len(r.Desired.Rendered), len(r.Desired.State), n)
	}
	// A change the loop has not synced yet when the reconcile comes: the
	// reconcile's sync covers it, and renders that one.
	h.l.snapshot(scaleSnapshot(n, true, map[string]bool{"svc00000": true}), h.clock.Now())
	h.l.sched.cancel(TriggerCatalog)
	if got := h.untilNext(); got != TriggerReconcile {
		t.Fatalf("fired %s, want the reconcile", got)
	}
	if r := h.reports[len(h.reports)-1]; !slices.Equal(r.Desired.Rendered, []string{"vs00000"}) || len(r.Plan) != 1 {
		t.Errorf("a reconcile after svc00000 changed rendered %d virtual services and planned %v; want vs00000 alone, one change",
			len(r.Desired.Rendered), r.Plan)
	}
}

// TestQuietReconcileCost: the periodic reconcile of an idle daemon, at
// 1,000 services × 10 instances with the metrics fed, reads and compares
// the whole kernel table but renders nothing anew and recomputes no
// service's gauges: the gauges stay as the first sync set them, and the
// reconcile allocates less than allocsPerReal for each real.
func TestQuietReconcileCost(t *testing.T) {
	const n, allocsPerReal = 1000, 3
	reg := prometheus.NewRegistry()
	h := newHarnessLogged(t, scaleConfig(n), ipvstest.New(ipvs.State{}), hclog.NewNullLogger())
	h.d.opts.Metrics = metrics.New(reg, "test")
	h.snapshot2(scaleSnapshot(n, false, nil))
	h.untilNext()
	gauges := func() string {
		var b strings.Builder
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "lvs_sync_reals") || strings.HasPrefix(mf.GetName(), "lvs_sync_table") {
				fmt.Fprintln(&b, mf.String())
			}
		}
		return b.String()
	}
	before := gauges()
	allocs := testing.AllocsPerRun(3, func() {
		if got := h.untilNext(); got != TriggerReconcile {
			t.Fatalf("fired %s, want the reconcile", got)
		}
	})
	t.Logf("a quiet reconcile at %d services × 10 allocates %.0f times, %.2f a real", n, allocs, allocs/(10*n))
	if allocs > allocsPerReal*10*n {
		t.Errorf("a quiet reconcile allocates %.0f times, over %d a real", allocs, allocsPerReal)
	}
	if after := gauges(); after != before {
		t.Errorf("the table's gauges moved in a quiet reconcile:\nbefore %.500s\nafter  %.500s", before, after)
	}
}

// TestReloadRendersOnlyWhatChanged: a reload's first sync renders the
// virtual services the new config defines anew and those whose catalog
// service the new watch answers differently, not every one; it still
// compares the whole kernel table, and the kernel ends as a full render
// of the new config has it. Rendering all of them held the loop about a
// second at 10,000 services, flips waiting behind it.
func TestReloadRendersOnlyWhatChanged(t *testing.T) {
	const n = 100
	kernel := ipvstest.New(ipvs.State{})
	h := newHarnessLogged(t, scaleConfig(n), kernel, hclog.NewNullLogger())
	h.snapshot2(scaleSnapshot(n, false, nil))
	h.untilNext()

	// vs00001 gets another scheduler; vs00099 goes.
	src := strings.Replace(scaleConfig(n-1), "forwarding = \"gate\"\n  service    = \"svc00001\"",
		"forwarding = \"gate\"\n  scheduler  = \"rr\"\n  service    = \"svc00001\"", 1)
	cfg := mustConfig(t, src)
	h.l.reload(t.Context(), reloadRequest{cfg: cfg, trigger: "test"}, h.clock.Now())
	// The new watch answers svc00000 with instance 0 critical.
	first := scaleSnapshot(n-1, true, nil)
	h.l.switchTo(first, h.clock.Now())
	h.untilNext()
	r := h.reports[len(h.reports)-1]
	if !r.Trigger.Full() && r.Trigger != TriggerCatalog {
		t.Fatalf("the reload's sync was %s", r.Trigger)
	}
	if !slices.Equal(r.Desired.Rendered, []string{"vs00000", "vs00001"}) {
		t.Errorf("the reload's sync rendered %d virtual services (%v); want vs00000 (its answer changed) and vs00001 (its definition)",
			len(r.Desired.Rendered), r.Desired.Rendered[:min(5, len(r.Desired.Rendered))])
	}
	// What is held by virtual service forgets the one the reload removed.
	if _, held := h.d.state.logged.notes["vs00099"]; held {
		t.Error("the notes of vs00099, which the reload removed, are still held")
	}
	if _, held := h.d.shared.decided["vs00099"]; held {
		t.Error("the decisions of vs00099, which the reload removed, are still held")
	}
	want := render.RenderAt(cfg, first, render.History{Now: h.clock.Now()}).State
	if plan := ipvs.Diff(want, kernel.State(), func(lvs.ServiceKey) bool { return true }); len(plan) != 0 {
		t.Errorf("after the reload the kernel is %d changes away from a full render of the new config: %v", len(plan), plan)
	}
}
