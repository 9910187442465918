package render

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/lvs"
)

func oneService(t *testing.T, attrs string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
`+attrs+`
}`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// weightOf renders and returns the weight of 10.1.0.11:80, -1 if absent.
func weightOf(t *testing.T, cfg *config.Config, in *catalog.Instance, h History) (int, Result) {
	t.Helper()
	res := RenderAt(cfg, snapshot(map[string][]*catalog.Instance{"web": {in}}), h)
	r, ok := res.State[cfg.VirtualServices[0].Key()].Reals[realKey("10.1.0.11:80")]
	if !ok {
		return -1, res
	}
	return r.Weight, res
}

func realKey(s string) lvs.RealKey {
	ap := netip.MustParseAddrPort(s)
	return lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()}
}

func TestOnWarning(t *testing.T) {
	warn := inst("n1", "10.1.0.11", 80, "warning", "w=5/2")
	for policy, want := range map[string]int{"serve": 2, "quiesce": 0, "remove": -1} {
		got, _ := weightOf(t, oneService(t, `on_warning = "`+policy+`"`), warn, History{})
		if got != want {
			t.Errorf("on_warning = %s: weight %d, want %d", policy, got, want)
		}
	}
}

func TestHoldKeepsAFlappingInstanceOut(t *testing.T) {
	cfg := oneService(t, `hold = "20s"`)
	t0 := time.Unix(1_700_000_000, 0)
	in := inst("n1", "10.1.0.11", 80, "passing", "w=5/1")
	key := InstanceKey{Node: "n1", ID: in.ID}
	hist := func(now time.Time) History {
		return History{Now: now, LastCritical: map[InstanceKey]time.Time{key: t0.Add(-time.Second)}, Recovered: map[InstanceKey]time.Time{key: t0}}
	}
	got, res := weightOf(t, cfg, in, hist(t0.Add(5*time.Second)))
	if got != -1 || !res.NextChange.Equal(t0.Add(20*time.Second)) {
		t.Errorf("5s after a failure: weight %d, next change %v; want held out until t0+20s", got, res.NextChange)
	}
	if got, _ := weightOf(t, cfg, in, hist(t0.Add(20*time.Second))); got != 5 {
		t.Errorf("after the hold: weight %d, want 5", got)
	}
	// No hold configured: back at once.
	if got, _ := weightOf(t, oneService(t, ""), in, hist(t0.Add(time.Second))); got != 5 {
		t.Errorf("without hold: weight %d, want 5", got)
	}
}

func TestSlowStartRamps(t *testing.T) {
	cfg := oneService(t, `slow_start = "10s"`)
	t0 := time.Unix(1_700_000_000, 0)
	in := inst("n1", "10.1.0.11", 80, "passing", "w=10/1")
	key := InstanceKey{Node: "n1", ID: in.ID}
	var weights []int
	for s := 0; s <= 11; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		got, res := weightOf(t, cfg, in, History{Now: now, ServingSince: map[InstanceKey]time.Time{key: t0}})
		weights = append(weights, got)
		// The weight is 1 until 2s (it never drops below 1), then steps each second.
		if next := max(s+1, 2); s < 10 && !res.NextChange.Equal(t0.Add(time.Duration(next)*time.Second)) {
			t.Errorf("at %ds the next change is %v, want %ds", s, res.NextChange.Sub(t0), next)
		}
	}
	want := []int{1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10}
	for i := range want {
		if weights[i] != want[i] {
			t.Fatalf("weights each second %v, want %v", weights, want)
		}
	}
	// Serving since before lvs-sync started (the zero time): full weight.
	if got, _ := weightOf(t, cfg, in, History{Now: t0, ServingSince: map[InstanceKey]time.Time{key: {}}}); got != 10 {
		t.Errorf("an instance serving at startup ramps: weight %d", got)
	}
}

func TestTracker(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	snap := func(status string) catalog.Snapshot {
		return snapshot(map[string][]*catalog.Instance{"web": {inst("n1", "10.1.0.11", 80, status)}})
	}
	key := InstanceKey{Node: "n1", ID: "n1-80"}
	var tr Tracker
	h := tr.Observe(snap("passing"), t0)
	if since, ok := h.ServingSince[key]; !ok || !since.IsZero() {
		t.Errorf("serving at the first snapshot: since %v, %v; want the zero time", since, ok)
	}
	h = tr.Observe(snap("critical"), t0.Add(time.Second))
	if _, ok := h.ServingSince[key]; ok || !h.LastCritical[key].Equal(t0.Add(time.Second)) {
		t.Errorf("after critical: %+v", h)
	}
	h = tr.Observe(snap("passing"), t0.Add(3*time.Second))
	if !h.ServingSince[key].Equal(t0.Add(3*time.Second)) || !h.Recovered[key].Equal(t0.Add(3*time.Second)) {
		t.Errorf("recovered: serving since %v, recovered %v; want both t0+3s", h.ServingSince[key], h.Recovered[key])
	}
	// Still passing: the recovery is not moved.
	h = tr.Observe(snap("passing"), t0.Add(3500*time.Millisecond))
	if !h.Recovered[key].Equal(t0.Add(3 * time.Second)) {
		t.Errorf("a second passing snapshot moved the recovery to %v", h.Recovered[key])
	}
	h = tr.Observe(snapshot(nil), t0.Add(4*time.Second))
	if len(h.ServingSince)+len(h.LastCritical)+len(h.Recovered) != 0 || len(tr.critical) != 0 {
		t.Errorf("deregistered instance still tracked: %+v", h)
	}

	// A snapshot that names what changed, among them a service no longer
	// watched (a reload dropped it): that one is forgotten too.
	tr = Tracker{}
	tr.Observe(snap("passing"), t0)
	gone := snapshot(nil)
	gone.Changed = map[string]bool{"web": true}
	h = tr.Observe(gone, t0.Add(time.Second))
	if _, ok := h.ServingSince[key]; ok || len(tr.byService) != 0 {
		t.Errorf("a service named changed and no longer watched is still tracked: %+v", h)
	}
}

// TestHoldCountsFromThePass: fail, pass, fail, pass one second apart with
// hold = "4s" keeps the instance out until it has passed for 4s since the
// last pass, not 4s after the last failure (issue: back 3.0s after the
// last pass, measured in the VM).
func TestHoldCountsFromThePass(t *testing.T) {
	cfg := oneService(t, `hold = "4s"`)
	t0 := time.Unix(1_700_000_000, 0)
	var tr Tracker
	tr.Observe(snapshot(map[string][]*catalog.Instance{"web": {inst("n1", "10.1.0.11", 80, "passing")}}), t0)
	var in *catalog.Instance
	for i, status := range []string{"critical", "passing", "critical", "passing"} {
		in = inst("n1", "10.1.0.11", 80, status)
		tr.Observe(snapshot(map[string][]*catalog.Instance{"web": {in}}), t0.Add(time.Duration(i+1)*time.Second))
	}
	lastPass := t0.Add(4 * time.Second)
	for _, tt := range []struct {
		after time.Duration
		want  int
	}{{time.Second, -1}, {3 * time.Second, -1}, {3999 * time.Millisecond, -1}, {4 * time.Second, 1}} {
		got, res := weightOf(t, cfg, in, tr.At(lastPass.Add(tt.after)))
		if got != tt.want {
			t.Errorf("%s after the last pass: weight %d, want %d", tt.after, got, tt.want)
		}
		if tt.want == -1 && !res.NextChange.Equal(lastPass.Add(4*time.Second)) {
			t.Errorf("%s after the last pass: next change %v, want the hold's end", tt.after, res.NextChange.Sub(lastPass))
		}
	}
}

// TestMassRemovalGuard: three of four instances vanish from the catalog at
// once (over max_removal 50%): their reals are held as they were for
// removal_hold, then go; one of four vanishing goes at once; failing
// health is never held; instances that come back are simply back.
func TestMassRemovalGuard(t *testing.T) {
	cfg := oneService(t, `removal_hold = "10s"`)
	vs := cfg.VirtualServices[0]
	t0 := time.Unix(1_700_000_000, 0)
	four := func(status ...string) []*catalog.Instance {
		var ins []*catalog.Instance
		for i := range 4 {
			st := "passing"
			if i < len(status) {
				st = status[i]
			}
			ins = append(ins, inst(fmt.Sprintf("n%d", i+1), fmt.Sprintf("10.1.0.%d", 11+i), 80, st))
		}
		return ins
	}
	reals := func(res Result) int { return len(res.State[vs.Key()].Reals) }
	observe := func(tr *Tracker, ins []*catalog.Instance, at time.Time) Result {
		snap := snapshot(map[string][]*catalog.Instance{"web": ins})
		return RenderAt(cfg, snap, tr.Observe(snap, at))
	}
	newTracker := func() *Tracker {
		tr := &Tracker{VanishedFor: vs.RemovalHold}
		observe(tr, four(), t0)
		return tr
	}

	tr := newTracker()
	t1 := t0.Add(time.Minute)
	res := observe(tr, four()[:1], t1)
	if reals(res) != 4 || len(res.Holds) != 1 || res.Holds[0].Vanished != 3 || res.Holds[0].Of != 4 {
		t.Fatalf("3 of 4 vanished: %d reals, holds %+v; want all 4 held", reals(res), res.Holds)
	}
	if !res.NextChange.Equal(t1.Add(10 * time.Second)) {
		t.Errorf("next change %v, want the hold's end", res.NextChange.Sub(t1))
	}
	for _, d := range res.Decisions["web"] {
		if d.Instance.Node != "n1" && (d.Rule.Kind != RuleRemovalHold || d.Source() != SourceHeld || !d.In) {
			t.Errorf("%s: %s, want held", d.Instance.Node, d.Rule)
		}
	}
	if res := RenderAt(cfg, snapshot(map[string][]*catalog.Instance{"web": four()[:1]}), tr.At(t1.Add(10*time.Second))); reals(res) != 1 {
		t.Errorf("after removal_hold: %d reals, want 1", reals(res))
	}
	// They come back within the hold: simply back, nothing held.
	if res := observe(tr, four(), t1.Add(5*time.Second)); reals(res) != 4 || len(res.Holds) != 0 {
		t.Errorf("back: %d reals, holds %v", reals(res), res.Holds)
	}

	// One of four is no mass removal: it goes at once.
	tr = newTracker()
	if res := observe(tr, four()[:3], t1); reals(res) != 3 || len(res.Holds) != 0 {
		t.Errorf("1 of 4 vanished: %d reals, holds %v; want 3, none held", reals(res), res.Holds)
	}
	// Nor later: when the rest then fail their checks, the one that
	// vanished alone is not brought back (the hold is decided by the
	// update it vanished in).
	if res := observe(tr, four("critical", "critical", "critical")[:3], t1.Add(time.Second)); reals(res) != 0 || len(res.Holds) != 0 {
		t.Errorf("then 3 critical: %d reals, holds %v; want none", reals(res), res.Holds)
	}
	// Health is never held: three critical go at once (that is how a
	// service reaches its fallback).
	tr = newTracker()
	if res := observe(tr, four("critical", "critical", "critical"), t1); reals(res) != 1 || len(res.Holds) != 0 {
		t.Errorf("3 of 4 critical: %d reals, holds %v; want 1, none held", reals(res), res.Holds)
	}
	// removal_hold = "0s" turns the guard off.
	off := oneService(t, `removal_hold = "0s"`)
	tr = &Tracker{}
	snap := snapshot(map[string][]*catalog.Instance{"web": four()})
	tr.Observe(snap, t0)
	snap = snapshot(map[string][]*catalog.Instance{"web": four()[:1]})
	if res := RenderAt(off, snap, tr.Observe(snap, t1)); len(res.State[off.VirtualServices[0].Key()].Reals) != 1 {
		t.Error("with removal_hold 0s vanished reals were held")
	}
}

// TestHeldRealIsTheRenderedOne: a real the mass removal guard holds is
// built as render built it while its instance was there: a negative
// weight raised to 0, one above the kernel's bound clamped, the same
// thresholds.
func TestHeldRealIsTheRenderedOne(t *testing.T) {
	cfg := oneService(t, `removal_hold = "10s"`)
	vs := cfg.VirtualServices[0]
	t0 := time.Unix(1_700_000_000, 0)
	four := []*catalog.Instance{
		inst("n1", "10.1.0.11", 80), inst("n2", "10.1.0.12", 80), inst("n3", "10.1.0.13", 80), inst("n4", "10.1.0.14", 80),
	}
	four[1].Weights.Passing = -3
	four[2].Weights.Passing = MaxWeight + 10
	four[3].Meta = map[string]string{lvs.MetaUpperThreshold: "100"}
	tr := &Tracker{VanishedFor: vs.RemovalHold}
	snap := snapshot(map[string][]*catalog.Instance{"web": four})
	rendered := RenderAt(cfg, snap, tr.Observe(snap, t0)).State[vs.Key()].Reals
	snap = snapshot(map[string][]*catalog.Instance{"web": four[:1]})
	held := RenderAt(cfg, snap, tr.Observe(snap, t0.Add(time.Second))).State[vs.Key()].Reals
	if len(held) != 4 {
		t.Fatalf("%d reals after 3 of 4 vanished, want 4 held", len(held))
	}
	for rk, r := range rendered {
		if held[rk] != r {
			t.Errorf("%s held as %+v, rendered as %+v", rk, held[rk], r)
		}
	}
}

// TestMassRemovalGuardLetsARollingDeployThrough: a rolling deploy, one
// instance at a time, a new one registered and passing before an old one
// is deregistered, a second apart, all within removal_hold: what vanished
// is replaced, nothing is held, each old real goes at once.
func TestMassRemovalGuardLetsARollingDeployThrough(t *testing.T) {
	cfg := oneService(t, `removal_hold = "10s"`)
	vs := cfg.VirtualServices[0]
	t0 := time.Unix(1_700_000_000, 0)
	var live []*catalog.Instance
	for i := range 4 {
		live = append(live, inst(fmt.Sprintf("old%d", i), fmt.Sprintf("10.1.0.%d", 11+i), 80))
	}
	tr := &Tracker{VanishedFor: vs.RemovalHold}
	at := t0
	observe := func() Result {
		snap := snapshot(map[string][]*catalog.Instance{"web": live})
		at = at.Add(500 * time.Millisecond)
		return RenderAt(cfg, snap, tr.Observe(snap, at))
	}
	observe()
	for i := range 4 {
		live = append(live, inst(fmt.Sprintf("new%d", i), fmt.Sprintf("10.1.1.%d", 11+i), 80))
		observe()
		live = live[1:] // the oldest goes
		res := observe()
		if n := len(res.State[vs.Key()].Reals); n != 4 || len(res.Holds) != 0 {
			t.Fatalf("step %d: %d reals, holds %+v; want 4, nothing held", i+1, n, res.Holds)
		}
	}
}
