package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// The loop's tests drive it event by event on a fake clock: a snapshot
// arrives, time moves, the due trigger fires. No sleeps, no wall clock.

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

// harness is a daemon's loop under test, with the reports of its syncs.
type harness struct {
	t       testing.TB
	clock   *clockwork.FakeClock
	kernel  *ipvstest.Kernel
	d       *Daemon
	l       *loop
	src     *watches
	reports []Report
}

func newHarness(t testing.TB, cfg string, kernel *ipvstest.Kernel) *harness {
	t.Helper()
	return newHarnessLogged(t, cfg, kernel, testLogger(t))
}

// newHarnessLogged is newHarness with the daemon logging to log.
func newHarnessLogged(t testing.TB, cfg string, kernel *ipvstest.Kernel, log hclog.Logger) *harness {
	t.Helper()
	h := &harness{t: t, clock: clockwork.NewFakeClockAt(t0), kernel: kernel, src: &watches{}}
	d, err := New(Options{Config: mustConfig(t, cfg), Source: h.src, Kernel: kernel, Clock: h.clock,
		Logger: log, OnSync: func(r Report) { h.reports = append(h.reports, r) }})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	h.l = &loop{d: d, cur: d.startWatch(context.Background(), d.cfg, d.opts.Source)}
	return h
}

// snapshot hands the loop a snapshot of the web service now.
func (h *harness) snapshot(instances ...*catalog.Instance) {
	h.l.snapshot(catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: instances}}}, h.clock.Now())
}

// snapshot2 hands the loop a whole snapshot now.
func (h *harness) snapshot2(s catalog.Snapshot) { h.l.snapshot(s, h.clock.Now()) }

// advance moves the clock and fires what is due.
func (h *harness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.l.fire(h.clock.Now())
}

// due is when the trigger is next due; zero if it is not.
func (h *harness) due(t Trigger) time.Time { return h.l.sched.due[t] }

// untilNext moves the clock to the next due trigger and fires it.
func (h *harness) untilNext() Trigger {
	h.t.Helper()
	t, at, ok := h.l.sched.next()
	if !ok {
		h.t.Fatal("nothing is due")
	}
	h.advance(at.Sub(h.clock.Now()))
	return t
}

func (h *harness) web() map[string]int { return reals(h.kernel.State(), "10.10.10.60:80") }

func instance(id, addr string, status catalog.Health, weight int) *catalog.Instance {
	return &catalog.Instance{ID: id, Node: "node-" + id, Address: addr, Port: 8080, Status: status,
		Weights: catalog.Weights{Passing: weight, Warning: 1}}
}

var (
	web1 = func(s catalog.Health) *catalog.Instance { return instance("web1", "10.1.0.11", s, 5) }
	web2 = func(s catalog.Health) *catalog.Instance { return instance("web2", "10.1.0.12", s, 1) }
)

func TestLoopWaitsForQuietThenSyncs(t *testing.T) {
	h := newHarness(t, gateConfig(""), ipvstest.New(ipvs.State{}))
	h.snapshot(web1(catalog.Passing))
	if got := h.due(TriggerCatalog); !got.Equal(t0.Add(50 * time.Millisecond)) {
		t.Fatalf("catalog sync due at %s, want after MinWait (50ms)", got.Sub(t0))
	}
	h.advance(49 * time.Millisecond)
	if len(h.reports) != 0 || h.kernel.Calls() != 0 {
		t.Fatalf("synced before the burst settled: %d syncs, %d kernel calls", len(h.reports), h.kernel.Calls())
	}
	h.advance(time.Millisecond)
	if len(h.reports) != 1 || h.reports[0].Trigger != TriggerCatalog {
		t.Fatalf("reports %+v, want one catalog sync", h.reports)
	}
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Errorf("kernel has %v", h.web())
	}
	// After a sync, only the periodic reconcile is due: 1m plus up to 10%.
	if r := h.due(TriggerReconcile).Sub(h.clock.Now()); r < time.Minute || r > 66*time.Second {
		t.Errorf("reconcile due in %s, want 60s-66s", r)
	}
	if !h.due(TriggerCatalog).IsZero() || !h.due(TriggerRetry).IsZero() {
		t.Errorf("after a sync: %+v still due", h.l.sched.due)
	}
}

func TestLoopCoalescesABurstForAtMostMaxWait(t *testing.T) {
	h := newHarness(t, gateConfig(""), ipvstest.New(ipvs.State{}))
	// A change every 40ms never leaves 50ms of quiet: the burst is synced
	// 500ms after its first change, once.
	for i := 0; len(h.reports) == 0; i++ {
		if i > 20 {
			t.Fatal("a burst of changes was never synced")
		}
		status := catalog.Passing
		if i%2 == 1 {
			status = catalog.Warning
		}
		h.snapshot(web1(status))
		if due := h.due(TriggerCatalog); due.After(t0.Add(500 * time.Millisecond)) {
			t.Fatalf("change %d: sync due at %s, past MaxWait after the first", i, due.Sub(t0))
		}
		h.advance(40 * time.Millisecond)
	}
	if n, at := len(h.reports), h.reports[0].At.Sub(t0); n != 1 || at != 520*time.Millisecond {
		t.Errorf("%d syncs, the first at %s; want one, at the first tick past 500ms (520ms)", n, at)
	}
}

func TestLoopAppliesNothingBeforeTheFirstSnapshot(t *testing.T) {
	h := newHarness(t, gateConfig(""), ipvstest.New(foreignState()))
	if _, _, ok := h.l.sched.next(); ok {
		t.Fatalf("something is due before any snapshot: %+v", h.l.sched.due)
	}
	h.advance(time.Hour)
	if h.kernel.Calls() != 0 || len(h.reports) != 0 {
		t.Errorf("before any snapshot: %d kernel calls, %d syncs", h.kernel.Calls(), len(h.reports))
	}
}

// TestReloadKeepsTheKernelAttended: during a reload the running config
// goes on syncing until the new config's services have all answered;
// then the new config is applied as a diff. A reload whose services do
// not answer in time is given up, and the running config stays.
func TestReloadKeepsTheKernelAttended(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(""), kernel)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()

	shop := `virtual_service "shop" {
  address    = "10.10.10.70:80"
  forwarding = "gate"
}`
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, shop), trigger: "test"}, h.clock.Now())
	if got := h.src.services(1); !slices.Equal(got, []string{"shop"}) {
		t.Fatalf("the reload watches %v, want shop", got)
	}
	// The old config still follows its catalog while the new one waits.
	h.snapshot(web1(catalog.Critical), web2(catalog.Passing))
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.12:80": 1}) {
		t.Fatalf("during the reload web has %v, want web1 gone", h.web())
	}
	// The new config's first complete snapshot: it takes over.
	h.l.switchTo(catalog.Snapshot{Services: map[string]*catalog.Service{"shop": {Name: "shop", Instances: []*catalog.Instance{
		instance("shop1", "10.1.0.21", catalog.Passing, 3)}}}}, h.clock.Now())
	if h.d.cfg.VirtualService("shop") == nil || h.l.next != nil {
		t.Fatal("the new config did not take over")
	}
	h.untilNext()
	st := kernel.State()
	if len(st) != 1 || !testenv.SameWeights(reals(st, "10.10.10.70:80"), map[string]int{"10.1.0.21:80": 3}) {
		t.Errorf("after the reload the kernel has:\n%s", st)
	}

	// A reload whose services never answer: given up after the timeout.
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), trigger: "test"}, h.clock.Now())
	at, _ := h.l.nextEvent()
	if want := h.clock.Now().Add(30 * time.Second); at.After(want) {
		t.Fatalf("next event at %s, want the reload deadline at the latest", at.Sub(t0))
	}
	h.advance(30 * time.Second)
	if h.l.next != nil || h.d.cfg.VirtualService("shop") == nil {
		t.Fatal("a reload that timed out was not given up, or replaced the running config")
	}
	if !h.src.stopped(2) {
		t.Error("the given-up reload's watch was not stopped")
	}
}

func TestLoopRetriesWithBackoffAndResets(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(""), kernel)
	kernel.FailService(gateKey, errors.New("injected failure"))
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	// 250ms, 500ms, 1s: doubling from RetryBase, less up to a quarter.
	for i, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		last := h.reports[len(h.reports)-1]
		if last.Err == nil {
			t.Fatalf("sync %d succeeded against a failing kernel", i)
		}
		retry := h.due(TriggerRetry).Sub(h.clock.Now())
		if retry > want || retry < want*3/4 {
			t.Fatalf("after failure %d, retry in %s; want in [%s, %s]", i+1, retry, want*3/4, want)
		}
		if got := h.untilNext(); got != TriggerRetry {
			t.Fatalf("fired %s, want a retry", got)
		}
	}
	kernel.FailService(gateKey, nil)
	h.untilNext()
	if last := h.reports[len(h.reports)-1]; last.Err != nil || last.Trigger != TriggerRetry {
		t.Fatalf("last sync %s: %v, want a retry that succeeds", last.Trigger, last.Err)
	}
	if !h.due(TriggerRetry).IsZero() || h.l.failures != 0 {
		t.Errorf("after a success a retry is still due, or failures (%d) not reset", h.l.failures)
	}
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Errorf("kernel has %v", h.web())
	}
}

func TestLoopReconcileRepairsDrift(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(""), kernel)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	// ipvsadm -d by hand: the catalog is quiet, a catalog-scoped sync would
	// not look; the periodic reconcile reads everything and repairs it.
	st, err := h.d.Status()
	if err != nil || len(st.Pending) != 0 {
		t.Fatalf("in step, status has pending changes %v (%v)", st.Pending, err)
	}
	if err := kernel.DelReal(gateKey, real1); err != nil {
		t.Fatal(err)
	}
	// status plans as run does: the next sync adds it back (status sees
	// the kernel as it was at most statusMaxAge ago).
	h.clock.Advance(statusMaxAge)
	st, _ = h.d.Status()
	if want := []string{"ipvsadm -a -t 10.10.10.60:80 -r 10.1.0.11:80 -g -w 5"}; !slices.Equal(st.Pending, want) {
		t.Errorf("status pending %v, want %v", st.Pending, want)
	}
	if got := h.untilNext(); got != TriggerReconcile {
		t.Fatalf("fired %s, want the reconcile", got)
	}
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1}) {
		t.Errorf("after the reconcile the kernel has %v", h.web())
	}
}

func TestLoopOnlyLooksAtChangedServices(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, webConfig, kernel) // web and api, both on Consul's web
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	calls := kernel.Calls()
	// The same content again: render changes nothing, the kernel is not
	// even read.
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	if kernel.Calls() != calls {
		t.Errorf("an unchanged render made %d kernel calls, want 0", kernel.Calls()-calls)
	}
}

func TestLoopTimerEndsAHoldAndStepsASlowStart(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(`
  hold       = "4s"
  slow_start = "10s"`), kernel)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	h.snapshot(web1(catalog.Critical), web2(catalog.Passing))
	h.untilNext()
	h.advance(time.Second)
	passedAt := h.clock.Now() // the hold counts from the pass
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	if _, in := h.web()["10.1.0.11:80"]; in {
		t.Fatal("web1 back before its hold ended")
	}
	if due := h.due(TriggerTimer); !due.Equal(passedAt.Add(4 * time.Second)) {
		t.Fatalf("timer due at %s, want the end of the hold (%s)", due.Sub(t0), passedAt.Add(4*time.Second).Sub(t0))
	}
	// The hold ends: back at weight 1, then a step every 2s (weight 5 over 10s).
	var weights []int
	for range 10 {
		if got := h.untilNext(); got != TriggerTimer {
			t.Fatalf("fired %s, want the timer", got)
		}
		w := h.web()["10.1.0.11:80"]
		weights = append(weights, w)
		if w == 5 {
			break
		}
	}
	if want := []int{1, 2, 3, 4, 5}; !slices.Equal(weights, want) {
		t.Errorf("weights at each timer %v, want %v", weights, want)
	}
	if !h.due(TriggerTimer).IsZero() {
		t.Errorf("a timer is still due at full weight: %s", h.due(TriggerTimer).Sub(t0))
	}
}

func TestLoopDrainsALeavingReal(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(`drain_timeout = "30s"`), kernel)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()

	// web2 has a connection and is deregistered: weight 0, kept, polled
	// every second.
	if err := kernel.SetConns(gateKey, real2, 1, 0); err != nil {
		t.Fatal(err)
	}
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 0}) {
		t.Fatalf("after deregistration the kernel has %v, want web2 at weight 0", h.web())
	}
	for range 3 {
		if got := h.untilNext(); got != TriggerTimer {
			t.Fatalf("fired %s, want the drain poll", got)
		}
		if len(h.web()) != 2 {
			t.Fatal("web2 deleted with a connection open")
		}
	}
	// Its connection ends: deleted at the next poll.
	if err := kernel.SetConns(gateKey, real2, 0, 1); err != nil {
		t.Fatal(err)
	}
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Fatalf("after its connection ended the kernel has %v", h.web())
	}

	// Maintenance drains too, and coming back restores the weight with
	// one update, not a delete and an add.
	if err := kernel.SetConns(gateKey, real1, 3, 0); err != nil {
		t.Fatal(err)
	}
	maint := web1(catalog.Passing)
	maint.ServiceMaintenance = true
	h.snapshot(maint)
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 0}) {
		t.Fatalf("in maintenance the kernel has %v, want web1 draining at 0", h.web())
	}
	writes := kernel.Writes()
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) || kernel.Writes()-writes != 1 {
		t.Errorf("back from maintenance: %v in %d writes, want weight 5 in 1", h.web(), kernel.Writes()-writes)
	}
}

func TestLoopDrainTimeoutZeroDeletesAtOnce(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(`drain_timeout = "0s"`), kernel)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	if err := kernel.SetConns(gateKey, real2, 5, 0); err != nil {
		t.Fatal(err)
	}
	h.snapshot(web1(catalog.Passing), web2(catalog.Critical))
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Errorf("kernel has %v, want web2 deleted at once", h.web())
	}
}

// TestRunOnTheFakeClock runs the whole loop, as run does, with the fake
// clock: a snapshot is applied once MinWait has passed on it, not before.
func TestRunOnTheFakeClock(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	kernel := ipvstest.New(ipvs.State{})
	src := chanSource{snaps: make(chan catalog.Snapshot)}
	synced := make(chan Report, 10)
	d, err := New(Options{Config: mustConfig(t, gateConfig("")), Source: src, Kernel: kernel, Clock: clock,
		Logger: testLogger(t), OnSync: func(r Report) { synced <- r }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	src.snaps <- catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{web1(catalog.Passing)}}}}
	// The loop arms its one timer for the quiet wait.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(49 * time.Millisecond)
	select {
	case r := <-synced:
		t.Fatalf("synced (%s) before MinWait", r.Trigger)
	default:
	}
	clock.Advance(time.Millisecond)
	r := <-synced
	if r.Trigger != TriggerCatalog || r.Err != nil || !r.At.Equal(t0.Add(50*time.Millisecond)) {
		t.Fatalf("sync %s at %s: %v; want a catalog sync at 50ms", r.Trigger, r.At.Sub(t0), r.Err)
	}
	if !testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 5}) {
		t.Errorf("kernel has %v", reals(kernel.State(), "10.10.10.60:80"))
	}
}

// watches is a catalog source that records each watch: its services and
// whether it was stopped. Tests hand the loop snapshots themselves.
type watches struct {
	mu   sync.Mutex
	list []struct {
		services []string
		ctx      context.Context
	}
}

func (w *watches) Watch(ctx context.Context, services []string, _ catalog.Observer) <-chan catalog.Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, struct {
		services []string
		ctx      context.Context
	}{services, ctx})
	return make(chan catalog.Snapshot)
}

func (w *watches) services(i int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.list[i].services
}

func (w *watches) stopped(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.list[i].ctx.Err() != nil
}

// chanSource is a catalog source whose snapshots the test sends.
type chanSource struct{ snaps chan catalog.Snapshot }

func (s chanSource) Watch(ctx context.Context, _ []string, _ catalog.Observer) <-chan catalog.Snapshot {
	return s.snaps
}

// TestLoopLeavesAConflictAlone: a virtual service the kernel already has
// from someone else is left untouched, and not recorded as lvs-sync's,
// unless the config adopts it.
func TestLoopLeavesAConflictAlone(t *testing.T) {
	theirs := ipvs.State{gateKey: &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{
		{Addr: netip.MustParseAddr("10.99.1.1"), Port: 80}: {Weight: 7, Forward: lvs.Route},
	}}}
	kernel := ipvstest.New(theirs)
	h := newHarness(t, gateConfig(""), kernel)
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if got := kernel.State().String(); got != theirs.String() {
		t.Errorf("a conflicting service was changed:\n%s", got)
	}
	if h.d.opts.Ownership.Owns(gateKey) {
		t.Error("a conflicting service is recorded as lvs-sync's")
	}
	st, err := h.d.Status()
	if err != nil || len(st.Services) != 1 || !st.Services[0].Conflict {
		t.Errorf("status %+v (%v): want the service shown as a conflict", st.Services, err)
	}

	h = newHarness(t, gateConfig(`adopt = true`), kernel)
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) || !h.d.opts.Ownership.Owns(gateKey) {
		t.Errorf("with adopt = true: kernel %v, owned %v; want it taken over", h.web(), h.d.opts.Ownership.Owns(gateKey))
	}
}

// TestLoopDrainsARemovedService: a virtual service that leaves the config
// keeps its service, its reals at weight 0, until their connections end;
// then it is deleted.
func TestLoopDrainsARemovedService(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, webConfig, kernel) // web (gate) and api (masq)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	apiKey := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.61"), Port: 8080}
	apiReal := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.11"), Port: 8080}
	if err := kernel.SetConns(apiKey, apiReal, 1, 0); err != nil {
		t.Fatal(err)
	}
	// A reload drops api.
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), trigger: "test"}, h.clock.Now())
	h.l.switchTo(catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{
		web1(catalog.Passing), web2(catalog.Passing)}}}}, h.clock.Now())
	h.untilNext()
	if got := reals(kernel.State(), "10.10.10.61:8080"); !testenv.SameWeights(got, map[string]int{"10.1.0.11:8080": 0}) {
		t.Fatalf("the removed service has %v, want only its live real, at weight 0", got)
	}
	if !h.d.opts.Ownership.Owns(apiKey) {
		t.Fatal("a draining service is no longer recorded as lvs-sync's")
	}
	if err := kernel.SetConns(apiKey, apiReal, 0, 0); err != nil {
		t.Fatal(err)
	}
	h.untilNext() // the drain poll
	if _, still := kernel.State()[apiKey]; still || h.d.opts.Ownership.Owns(apiKey) {
		t.Errorf("after its connections ended the service is still there (%v) or owned", still)
	}
}

// filtered is a snapshot of web answered as `200 []` with
// X-Consul-Results-Filtered-By-ACLs.
func filtered() catalog.Snapshot {
	return catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", FilteredByACLs: true}},
		Changed: map[string]bool{"web": true}}
}

// TestLoopKeepsTheLastGoodStateOfAFilteredAnswer: an answer filtered by
// ACLs is no answer: the last good one is kept; after a restart, with
// none, the service is left as the kernel has it. Health says so.
func TestLoopKeepsTheLastGoodStateOfAFilteredAnswer(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(""), kernel)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	want := map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1}
	h.snapshot2(filtered())
	h.untilNext()
	if !testenv.SameWeights(h.web(), want) {
		t.Fatalf("after a filtered answer the kernel has %v, want %v kept", h.web(), want)
	}
	if ok, why := h.d.Health(); ok || !strings.Contains(why, "acls") {
		t.Errorf("health %v %q, want unhealthy, naming the acls", ok, why)
	}
	// A real change still applies once Consul answers in full again.
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Fatalf("after a full answer the kernel has %v", h.web())
	}
	if ok, why := h.d.Health(); !ok {
		t.Errorf("health %q after a full answer, want healthy", why)
	}

	// A restart whose first answer is filtered: frozen, untouched.
	before := kernel.State().String()
	h = newHarness(t, gateConfig(""), kernel)
	h.d.opts.Ownership.Set(map[lvs.ServiceKey]bool{gateKey: true})
	h.snapshot2(filtered())
	h.untilNext()
	h.advance(2 * time.Minute) // and a reconcile
	if got := kernel.State().String(); got != before {
		t.Errorf("a filtered first answer changed the kernel:\n%s\nwant:\n%s", got, before)
	}
	if !h.d.opts.Ownership.Owns(gateKey) {
		t.Error("a frozen service is no longer recorded as lvs-sync's")
	}
}

// TestHealthAfterFailedSyncs: one failed sync is retried, and lvs-sync
// stays healthy; three in a row make it unhealthy; a success heals it.
func TestHealthAfterFailedSyncs(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(""), kernel)
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	kernel.FailService(gateKey, errors.New("injected failure"))
	h.snapshot(web1(catalog.Warning))
	for i := 1; i <= 3; i++ {
		h.untilNext()
		ok, why := h.d.Health()
		if want := i < 3; ok != want {
			t.Errorf("after %d failed syncs healthy = %v (%s), want %v", i, ok, why, want)
		}
	}
	kernel.FailService(gateKey, nil)
	h.untilNext()
	if ok, why := h.d.Health(); !ok {
		t.Errorf("after a successful sync: %s", why)
	}
	// Errors of a query a reload made obsolete are forgotten.
	h.d.ObserveQuery("/v1/health/service/gone", 0, errors.New("connection refused"))
	h.clock.Advance(time.Minute)
	if ok, _ := h.d.Health(); ok {
		t.Fatal("consul unreachable for a minute, yet healthy")
	}
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), trigger: "test"}, h.clock.Now())
	h.l.switchTo(catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{web1(catalog.Passing)}}}}, h.clock.Now())
	h.untilNext()
	if ok, why := h.d.Health(); !ok {
		t.Errorf("after a reload that dropped the failing query: %s", why)
	}
}

// TestLoopHoldsAMassDeregistration: three of four instances deregistered
// at once keep their reals for removal_hold; the timer then applies the
// removal; status shows the hold.
func TestLoopHoldsAMassDeregistration(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(`removal_hold = "10s"`), kernel)
	web3, web4 := instance("web3", "10.1.0.13", catalog.Passing, 1), instance("web4", "10.1.0.14", catalog.Passing, 1)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing), web3, web4)
	h.untilNext()
	all := map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1, "10.1.0.13:80": 1, "10.1.0.14:80": 1}
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	if !testenv.SameWeights(h.web(), all) {
		t.Fatalf("right after 3 of 4 vanished the kernel has %v, want all held", h.web())
	}
	st, err := h.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, r := range st.Services[0].Reals {
		if r.Source == render.SourceHeld {
			held++
		}
	}
	if held != 3 {
		t.Errorf("status shows %d reals held, want 3: %+v", held, st.Services[0].Reals)
	}
	start := h.clock.Now()
	if got := h.untilNext(); got != TriggerTimer || h.clock.Since(start) > 10*time.Second {
		t.Fatalf("fired %s after %s, want the timer at the hold's end", got, h.clock.Since(start))
	}
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Errorf("after the hold the kernel has %v, want only web1", h.web())
	}
}

// pageServer is a maintenance page server whose binds the test decides.
type pageServer struct {
	mu   sync.Mutex
	fail bool
	up   map[netip.AddrPort]bool
}

func (p *pageServer) Update(pages []fallback.Page) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = map[netip.AddrPort]bool{}
	if p.fail {
		return errors.New("listen tcp 10.10.10.60:80: bind: address already in use")
	}
	for _, pg := range pages {
		p.up[pg.Addr] = true
	}
	return nil
}

func (p *pageServer) Serving(a netip.AddrPort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up[a]
}

// TestLoopLeavesOutALocalFallbackThatCannotBeServed: a maintenance page
// whose address will not bind is no fallback: render leaves its real out
// (it would answer nothing), status says why, and once the page can be
// served the fallback comes back.
func TestLoopLeavesOutALocalFallbackThatCannotBeServed(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(`fallback = "local"`), kernel)
	pages := &pageServer{fail: true}
	h.d.opts.Pages = pages
	h.d.servePages(h.d.cfg)
	h.snapshot(web1(catalog.Critical))
	h.untilNext()
	if got := h.web(); len(got) != 0 {
		t.Fatalf("with the page down the kernel has %v, want no fallback real", got)
	}
	st, _ := h.d.Status()
	if len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "maintenance page") {
		t.Errorf("status warnings %v, want the page named", st.Warnings)
	}
	pages.mu.Lock()
	pages.fail = false
	pages.mu.Unlock()
	h.advance(time.Minute + 7*time.Second) // the next sync tries again
	if got := h.web(); !testenv.SameWeights(got, map[string]int{"10.10.10.60:80": 1}) {
		t.Errorf("with the page up the kernel has %v, want the VIP as the fallback real", got)
	}
}

// TestPortWarningLoggedOncePerInstance: a gate instance at another port
// than the virtual port is warned about once while it stays so, however
// many syncs and status changes follow; once per instance, and again if
// it comes back to a wrong port after a right one.
func TestPortWarningLoggedOncePerInstance(t *testing.T) {
	var buf syncBuffer
	h := newHarnessLogged(t, gateConfig(""), ipvstest.New(ipvs.State{}),
		hclog.New(&hclog.LoggerOptions{Name: "lvs-sync", Level: hclog.Warn, Output: &buf}))
	at := func(in *catalog.Instance, port int) *catalog.Instance { in.Port = port; return in }
	warnings := func(id string) int {
		return strings.Count(buf.String(), "[WARN]  lvs-sync.render: real server port not the instance's: virtual_service=web node=node-"+id+" instance="+id+" ")
	}
	h.snapshot(at(web1(catalog.Passing), 8080), at(web2(catalog.Passing), 80))
	h.advance(time.Second)
	h.snapshot(at(web1(catalog.Warning), 8080), at(web2(catalog.Passing), 80))
	h.advance(time.Second)
	h.advance(2 * time.Minute) // a periodic reconcile
	if len(h.reports) < 3 {
		t.Fatalf("%d syncs, want 3", len(h.reports))
	}
	if n1, n2 := warnings("web1"), warnings("web2"); n1 != 1 || n2 != 0 {
		t.Errorf("web1 warned %d times, web2 %d; want 1 and 0:\n%s", n1, n2, buf.String())
	}
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 1, "10.1.0.12:80": 1}) {
		t.Errorf("kernel has %v: a warned instance is a real all the same", h.web())
	}
	h.snapshot(at(web1(catalog.Passing), 80), at(web2(catalog.Passing), 80))
	h.advance(time.Second)
	h.snapshot(at(web1(catalog.Passing), 8081), at(web2(catalog.Passing), 80))
	h.advance(time.Second)
	if n := warnings("web1"); n != 2 {
		t.Errorf("web1 warned %d times after going back to a wrong port, want 2:\n%s", n, buf.String())
	}
}

// syncBuffer is a log output safe to read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoopHoldsAMassDeregistrationSplitOverUpdates: three of four instances
// deregistered one after another, each in its own update and sync, a few
// milliseconds apart, are held like one mass removal: all four reals stay
// for removal_hold (the default, 10s) from the first, then the three go.
func TestLoopHoldsAMassDeregistrationSplitOverUpdates(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, gateConfig(""), kernel) // max_removal 50%, removal_hold 10s
	web3, web4 := instance("web3", "10.1.0.13", catalog.Passing, 1), instance("web4", "10.1.0.14", catalog.Passing, 1)
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing), web3, web4)
	h.untilNext()
	all := map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1, "10.1.0.13:80": 1, "10.1.0.14:80": 1}
	first := h.clock.Now()
	for i, left := range [][]*catalog.Instance{
		{web1(catalog.Passing), web2(catalog.Passing), web3},
		{web1(catalog.Passing), web2(catalog.Passing)},
		{web1(catalog.Passing)},
	} {
		h.snapshot(left...)
		if got := h.untilNext(); got != TriggerCatalog {
			t.Fatalf("update %d: fired %s, want its catalog sync", i+1, got)
		}
	}
	if !testenv.SameWeights(h.web(), all) {
		t.Fatalf("after 3 of 4 vanished one per update the kernel has %v, want all 4 held", h.web())
	}
	if len(h.d.state.logged.holds) != 1 {
		t.Errorf("holds %v, want one", h.d.state.logged.holds)
	}
	for h.clock.Since(first) < 10*time.Second {
		h.untilNext()
		if h.clock.Since(first) < 10*time.Second && !testenv.SameWeights(h.web(), all) {
			t.Fatalf("%s after the first vanished the kernel has %v, want all 4 held", h.clock.Since(first), h.web())
		}
	}
	if !testenv.SameWeights(h.web(), map[string]int{"10.1.0.11:80": 5}) {
		t.Errorf("after the hold (%s) the kernel has %v, want only web1", h.clock.Since(first), h.web())
	}
}

func (w *watches) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.list)
}

// TestReloadSourceGoesWithTheConfig: a reload with its own source (a new
// token) watches through it; given up, the running source stays the
// running config's, and the next reload without one watches through it;
// taken over, the reload's source becomes the running one.
func TestReloadSourceGoesWithTheConfig(t *testing.T) {
	h := newHarness(t, gateConfig(""), ipvstest.New(ipvs.State{}))
	running := h.src
	h.snapshot(web1(catalog.Passing))
	h.untilNext()

	withNewToken := &watches{}
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), src: withNewToken, trigger: "test"}, h.clock.Now())
	if withNewToken.count() != 1 || running.count() != 1 {
		t.Fatalf("the reload watches through the new source %d times, the running one %d; want 1 and 1 (its first)", withNewToken.count(), running.count())
	}
	h.advance(30 * time.Second) // never answers: given up
	if h.l.next != nil {
		t.Fatal("the reload was not given up")
	}
	if h.l.cur.src != Source(running) {
		t.Fatal("a reload given up left its source running")
	}
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), trigger: "test"}, h.clock.Now())
	if withNewToken.count() != 1 || running.count() != 2 {
		t.Fatalf("after a given-up reload, the next watches through the given-up source (%d watches) and the running one (%d); want 1 and 2",
			withNewToken.count(), running.count())
	}

	// Taken over: the reload's source runs from now on.
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), src: withNewToken, trigger: "test"}, h.clock.Now())
	h.l.switchTo(catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{web1(catalog.Passing)}}}}, h.clock.Now())
	if h.l.cur.src != Source(withNewToken) {
		t.Fatal("the reload's source did not take over with its config")
	}
	h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, gateConfig("")), trigger: "test"}, h.clock.Now())
	if withNewToken.count() != 3 || running.count() != 2 {
		t.Errorf("after the switch a reload watches through the new source %d times, the old %d; want 3 and 2", withNewToken.count(), running.count())
	}
}

// TestFilteredAnswerLoggedOnce: an answer filtered by ACLs is warned about
// once while it lasts, however many filtered answers follow, and its end
// is told once; a new filtering warns again.
func TestFilteredAnswerLoggedOnce(t *testing.T) {
	var buf syncBuffer
	h := newHarnessLogged(t, gateConfig(""), ipvstest.New(ipvs.State{}),
		hclog.New(&hclog.LoggerOptions{Name: "lvs-sync", Level: hclog.Info, Output: &buf}))
	count := func() (warned, ended int) {
		return strings.Count(buf.String(), "[WARN]  lvs-sync.catalog: consul filtered the answer by acls: the token cannot read every instance (it needs service and node read); its last good answer is kept: service=web"),
			strings.Count(buf.String(), "[INFO]  lvs-sync.catalog: consul answers the service in full again: service=web")
	}
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	for range 3 {
		h.snapshot2(filtered())
		h.untilNext()
	}
	if w, e := count(); w != 1 || e != 0 {
		t.Fatalf("warned %d times, told the end %d; want 1 and 0:\n%s", w, e, buf.String())
	}
	h.snapshot(web1(catalog.Passing))
	h.untilNext()
	h.snapshot(web1(catalog.Passing), web2(catalog.Passing))
	h.untilNext()
	if w, e := count(); w != 1 || e != 1 {
		t.Fatalf("warned %d times, told the end %d; want 1 and 1:\n%s", w, e, buf.String())
	}
	h.snapshot2(filtered())
	h.untilNext()
	if w, e := count(); w != 2 || e != 1 {
		t.Fatalf("warned %d times, told the end %d; want 2 and 1:\n%s", w, e, buf.String())
	}
}

// TestWarningsOfServicesNotRenderedStay: a sync that renders one virtual
// service anew (its catalog service changed) ends only that service's
// warnings: another's, rendered before and not now, is not warned about
// again, neither then nor at a later full sync; the one that changed is
// warned about again when its caveat comes back.
func TestWarningsOfServicesNotRenderedStay(t *testing.T) {
	var buf syncBuffer
	h := newHarnessLogged(t, gateConfig("")+`
virtual_service "shop" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
}`, ipvstest.New(ipvs.State{}), hclog.New(&hclog.LoggerOptions{Name: "lvs-sync", Level: hclog.Warn, Output: &buf}))
	warnings := func(vs, id string) int {
		return strings.Count(buf.String(), "[WARN]  lvs-sync.render: real server port not the instance's: virtual_service="+vs+" node=node-"+id+" instance="+id+" ")
	}
	shop := instance("shop1", "10.2.0.11", catalog.Passing, 1) // on 8080: a caveat
	snap := func(webPort int, changed map[string]bool) catalog.Snapshot {
		web := web1(catalog.Passing)
		web.Port = webPort
		return catalog.Snapshot{Services: map[string]*catalog.Service{
			"web": {Name: "web", Instances: []*catalog.Instance{web}}, "shop": {Name: "shop", Instances: []*catalog.Instance{shop}},
		}, Changed: changed}
	}
	h.snapshot2(snap(8080, nil))
	h.advance(time.Second)
	h.snapshot2(snap(80, map[string]bool{"web": true}))
	h.advance(time.Second)
	h.snapshot2(snap(8081, map[string]bool{"web": true}))
	h.advance(time.Second)
	h.advance(2 * time.Minute) // a periodic reconcile
	if len(h.reports) < 4 {
		t.Fatalf("%d syncs, want 4", len(h.reports))
	}
	if n := warnings("shop", "shop1"); n != 1 {
		t.Errorf("shop1 warned %d times, want 1:\n%s", n, buf.String())
	}
	if n := warnings("web", "web1"); n != 2 {
		t.Errorf("web1 warned %d times, want 2 (its caveat ended and came back):\n%s", n, buf.String())
	}

	// A reload: web's caveat, held, is not warned about
	// again; shop, gone from the config, is forgotten, and warned about
	// again when a later reload brings it back.
	reload := func(cfg string, services map[string]*catalog.Service) {
		t.Helper()
		h.l.reload(context.Background(), reloadRequest{cfg: mustConfig(t, cfg), trigger: "test"}, h.clock.Now())
		h.l.switchTo(catalog.Snapshot{Services: services}, h.clock.Now())
		if h.l.next != nil {
			t.Fatal("the new config did not take over")
		}
		h.untilNext()
	}
	web := web1(catalog.Passing)
	web.Port = 8081
	reload(gateConfig(""), map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{web}}})
	if n := warnings("web", "web1"); n != 2 {
		t.Errorf("after a reload web1 warned %d times, want still 2:\n%s", n, buf.String())
	}
	if len(h.d.state.logged.notes) != 1 {
		t.Errorf("after a reload without shop, notes held for %d services, want 1", len(h.d.state.logged.notes))
	}
	reload(gateConfig("")+`
virtual_service "shop" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
}`, snap(8081, nil).Services)
	if n1, n2 := warnings("web", "web1"), warnings("shop", "shop1"); n1 != 2 || n2 != 2 {
		t.Errorf("after shop came back web1 warned %d times, shop1 %d; want 2 and 2:\n%s", n1, n2, buf.String())
	}
}
