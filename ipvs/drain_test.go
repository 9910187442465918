package ipvs_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// drainStep runs one sync through the drainer against the fake kernel, as
// the daemon does, and returns the plan.
func drainStep(t *testing.T, k *ipvstest.Kernel, d *ipvs.Drainer, desired ipvs.State, now time.Time) (string, time.Time) {
	t.Helper()
	mine := func(lvs.ServiceKey) bool { return true }
	planned, res, err := ipvs.Reconcile(k, ipvs.Input{Desired: desired, Owned: mine, Drains: d, Now: now}, ipvs.All, nil)
	plan, next := planned.Plan, planned.Next
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	return ipvs.PlanStrings(plan), next
}

func TestDrain(t *testing.T) {
	web := ipvs.SvcKey("10.0.0.1:80")
	dns := lvs.ServiceKey{Protocol: lvs.UDP, Addr: netip.MustParseAddr("10.0.0.2"), Port: 53}
	b := ipvs.RealKeyOf("10.1.0.12:80")
	both := func() ipvs.State {
		return ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(5), "10.1.0.12:80": ipvs.Gate(5)})}
	}
	onlyA := func() ipvs.State {
		return ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(5)})}
	}
	k := ipvstest.New(both())
	d := &ipvs.Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }, Settle: 2 * time.Second}
	t0 := time.Unix(1_700_000_000, 0)

	// b leaves with a connection open: weight 0, not deleted.
	if err := k.SetConns(web, b, 1, 0); err != nil {
		t.Fatal(err)
	}
	plan, next := drainStep(t, k, d, onlyA(), t0)
	if plan != "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 0" || !next.Equal(t0.Add(30*time.Second)) {
		t.Errorf("leaving with a connection: plan %q, next %v", plan, next)
	}
	// Still busy 10s later: nothing to do.
	if plan, _ := drainStep(t, k, d, onlyA(), t0.Add(10*time.Second)); plan != "" {
		t.Errorf("still draining: plan %q", plan)
	}
	// It comes back while draining: restored, not re-added.
	if plan, _ := drainStep(t, k, d, both(), t0.Add(11*time.Second)); plan != "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 5" {
		t.Errorf("back while draining: plan %q", plan)
	}
	if len(d.Draining()) != 0 {
		t.Errorf("still draining after coming back: %v", d.Draining())
	}
	// Leaves again; its connection ends at once, but a connection in its
	// handshake counts as inactive: the real settles at weight 0 (Settle 2s
	// here) before "no active connection" deletes it.
	if plan, next := drainStep(t, k, d, onlyA(), t0.Add(12*time.Second)); plan == "" || !next.Equal(t0.Add(42*time.Second)) {
		t.Errorf("leaving again: plan %q, next %v (want the timeout)", plan, next.Sub(t0))
	}
	if err := k.SetConns(web, b, 0, 3); err != nil {
		t.Fatal(err)
	}
	if plan, next := drainStep(t, k, d, onlyA(), t0.Add(13*time.Second)); plan != "" || !next.Equal(t0.Add(14*time.Second)) {
		t.Errorf("deleted before settling: plan %q, next %v (want the settle time)", plan, next.Sub(t0))
	}
	if plan, _ := drainStep(t, k, d, onlyA(), t0.Add(14*time.Second)); plan != "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.12:80" {
		t.Errorf("settled and inactive: plan %q", plan)
	}

	// The timeout passes with the connection still open: deleted.
	k = ipvstest.New(both())
	d = &ipvs.Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }}
	if err := k.SetConns(web, b, 1, 0); err != nil {
		t.Fatal(err)
	}
	drainStep(t, k, d, onlyA(), t0)
	if plan, _ := drainStep(t, k, d, onlyA(), t0.Add(30*time.Second)); plan != "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.12:80" {
		t.Errorf("timed out: plan %q", plan)
	}

	// No connection at all, drain_timeout = 0, or UDP: deleted at once.
	for name, c := range map[string]struct {
		key     lvs.ServiceKey
		timeout time.Duration
		conns   int
	}{
		"no connection": {web, 30 * time.Second, 0},
		"timeout 0":     {web, 0, 1},
		"udp":           {dns, 30 * time.Second, 1},
	} {
		st := ipvs.State{c.key: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(5), "10.1.0.12:80": ipvs.Gate(5)})}
		k := ipvstest.New(st)
		if err := k.SetConns(c.key, b, c.conns, 0); err != nil {
			t.Fatal(err)
		}
		d := &ipvs.Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return c.timeout }}
		want := ipvs.State{c.key: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(5)})}
		plan, _ := drainStep(t, k, d, want, t0)
		if plan != "ipvsadm -d "+c.key.Ipvsadm()+" -r 10.1.0.12:80" {
			t.Errorf("%s: plan %q", name, plan)
		}
	}

	// After a restart: a real at weight 0 that is no longer desired, with
	// connections, is draining again, from now.
	k = ipvstest.New(ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(5), "10.1.0.12:80": ipvs.Gate(0)})})
	if err := k.SetConns(web, b, 2, 0); err != nil {
		t.Fatal(err)
	}
	d = &ipvs.Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }}
	if plan, next := drainStep(t, k, d, onlyA(), t0); plan != "" || !next.Equal(t0.Add(30*time.Second)) {
		t.Errorf("after restart: plan %q, next %v", plan, next)
	}
}
