package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// busyConfig has a quiet service (web) beside a busy one (shop), with the
// default reconcile_interval (60s).
const busyConfig = `
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  service    = "web"
}
virtual_service "shop" {
  address    = "10.10.10.70:80"
  forwarding = "gate"
  service    = "shop"
}
`

var shopKey = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.70"), Port: 80}

// busySnapshot is web quiet and shop with one instance whose weight is w.
func busySnapshot(w int) catalog.Snapshot {
	return catalog.Snapshot{Services: map[string]*catalog.Service{
		"web":  {Name: "web", Instances: []*catalog.Instance{web1(catalog.Passing), web2(catalog.Passing)}},
		"shop": {Name: "shop", Instances: []*catalog.Instance{instance("shop1", "10.1.0.21", catalog.Passing, w)}},
	}}
}

// busyUntil changes shop every 20s until cond holds or within has passed,
// firing whatever falls due in between; it returns how long it took.
func busyUntil(h *harness, within time.Duration, cond func() bool) (time.Duration, bool) {
	start := h.clock.Now()
	for i := 0; h.clock.Since(start) <= within; i++ {
		if cond() {
			return h.clock.Since(start), true
		}
		h.snapshot2(busySnapshot(1 + i%2))
		next := h.clock.Now().Add(20 * time.Second)
		for {
			at, ok := h.l.nextEvent()
			if !ok || at.After(next) {
				break
			}
			h.advance(at.Sub(h.clock.Now()))
			if cond() {
				return h.clock.Since(start), true
			}
		}
		h.advance(next.Sub(h.clock.Now()))
	}
	return h.clock.Since(start), cond()
}

// TestLoopReconcileIsNotStarvedByABusyService: the periodic reconcile
// runs every reconcile_interval (plus jitter) whatever else syncs in
// between, so drift in a quiet service is repaired while another service
// changes every 20s: a real deleted by hand, then the whole table flushed
// (ipvsadm -C), each back within twice the interval.
func TestLoopReconcileIsNotStarvedByABusyService(t *testing.T) {
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(t, busyConfig, kernel)
	h.snapshot2(busySnapshot(1))
	h.untilNext()
	both := map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1}
	if !testenv.SameWeights(h.web(), both) {
		t.Fatalf("after the first sync web has %v", h.web())
	}
	interval := h.d.cfg.Director.ReconcileInterval

	// ipvsadm -d in the quiet service.
	if err := kernel.DelReal(gateKey, real1); err != nil {
		t.Fatal(err)
	}
	took, ok := busyUntil(h, 2*interval, func() bool { return testenv.SameWeights(h.web(), both) })
	if !ok {
		t.Fatalf("a real deleted by hand was not back %s later, with shop changing every 20s: web has %v", took, h.web())
	}
	t.Logf("the deleted real was back after %s", took)

	// ipvsadm -C: every service gone.
	for k := range kernel.State() {
		if err := kernel.DelService(k); err != nil {
			t.Fatal(err)
		}
	}
	took, ok = busyUntil(h, 2*interval, func() bool {
		st := kernel.State()
		return st[gateKey] != nil && st[shopKey] != nil && testenv.SameWeights(h.web(), both)
	})
	if !ok {
		t.Fatalf("a flushed table was not rebuilt %s later, with shop changing every 20s:\n%s", took, kernel.State())
	}
	t.Logf("the flushed table was rebuilt after %s", took)
}
