package daemon

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

var (
	gateKey = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.60"), Port: 80}
	real1   = lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.11"), Port: 80}
	real2   = lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.12"), Port: 80}
)

func gateConfig(extra string) string {
	return `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  service    = "web"
` + extra + `
}`
}

// TestLeavingRealsDrain: deregistration and maintenance both take a real
// to weight 0 first; it goes when its connections end, or at once if it
// has none; a real that comes back while draining is restored.
func TestLeavingRealsDrain(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent)
	kernel := ipvstest.New(ipvs.State{})
	d := start(t, Options{Config: mustConfig(t, gateConfig(`drain_timeout = "30s"`)), Health: agent.Client.Health(), Kernel: kernel})
	defer d.stop(t)
	waitFor(t, "converged", 10*time.Second, func() bool { return len(reals(kernel.State(), "10.10.10.60:80")) == 2 })

	// web2 has a connection open and is deregistered: weight 0, kept.
	if err := kernel.SetConns(gateKey, real2, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := agent.Client.Agent().ServiceDeregister("web2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web2 at weight 0", 5*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 0})
	})
	time.Sleep(1500 * time.Millisecond) // more than a drain poll
	if len(reals(kernel.State(), "10.10.10.60:80")) != 2 {
		t.Fatal("web2 deleted with a connection open")
	}
	// Its connection ends: deleted at the next poll.
	if err := kernel.SetConns(gateKey, real2, 0, 1); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "web2 deleted once idle", 5*time.Second, func() bool { return len(reals(kernel.State(), "10.10.10.60:80")) == 1 })
	t.Logf("idle draining real deleted %v after its connection ended", took)

	// Maintenance drains too, and coming back restores the weight.
	if err := kernel.SetConns(gateKey, real1, 3, 0); err != nil {
		t.Fatal(err)
	}
	if err := agent.Client.Agent().EnableServiceMaintenance("web1", "deploy"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web1 draining", 5*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 0})
	})
	writes := kernel.Writes()
	if err := agent.Client.Agent().DisableServiceMaintenance("web1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web1 restored", 5*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 5})
	})
	if kernel.Writes()-writes != 1 {
		t.Errorf("restoring a draining real took %d writes, want 1 (an update, not delete and add)", kernel.Writes()-writes)
	}
}

// TestDrainTimeoutZeroDeletesAtOnce: drain_timeout = "0s".
func TestDrainTimeoutZeroDeletesAtOnce(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent)
	kernel := ipvstest.New(ipvs.State{})
	d := start(t, Options{Config: mustConfig(t, gateConfig(`drain_timeout = "0s"`)), Health: agent.Client.Health(), Kernel: kernel})
	defer d.stop(t)
	waitFor(t, "converged", 10*time.Second, func() bool { return len(reals(kernel.State(), "10.10.10.60:80")) == 2 })
	if err := kernel.SetConns(gateKey, real2, 5, 0); err != nil {
		t.Fatal(err)
	}
	agent.SetStatus(t, "web2", api.HealthCritical, "down")
	waitFor(t, "web2 deleted", 5*time.Second, func() bool { return len(reals(kernel.State(), "10.10.10.60:80")) == 1 })
}

// TestHoldAndSlowStart: a flapping instance stays out for hold after its
// last failure; an instance that starts serving ramps up its weight.
func TestHoldAndSlowStart(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent) // web1 weight 5, web2 weight 1
	kernel := ipvstest.New(ipvs.State{})
	d := start(t, Options{Config: mustConfig(t, gateConfig(`
  hold       = "1500ms"
  slow_start = "2s"`)), Health: agent.Client.Health(), Kernel: kernel})
	defer d.stop(t)
	// Serving when lvs-sync started: no ramp.
	waitFor(t, "converged at full weight", 10*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1})
	})

	// web1 flaps: critical, passing, critical, passing.
	var lastFail time.Time // lvs-sync cannot see a failure before it is sent
	for _, s := range []string{api.HealthCritical, api.HealthPassing, api.HealthCritical, api.HealthPassing} {
		if s == api.HealthCritical {
			lastFail = time.Now()
		}
		agent.SetStatus(t, "web1", s, "flap")
		time.Sleep(150 * time.Millisecond)
	}
	waitFor(t, "web1 out", 2*time.Second, func() bool { return len(reals(kernel.State(), "10.10.10.60:80")) == 1 })
	time.Sleep(700 * time.Millisecond)
	if len(reals(kernel.State(), "10.10.10.60:80")) != 1 {
		t.Fatal("web1 back before its hold passed")
	}

	// Then back, ramping 1 → 5 over 2s.
	var seen []int
	var back time.Duration
	waitFor(t, "web1 back at full weight", 6*time.Second, func() bool {
		w, ok := reals(kernel.State(), "10.10.10.60:80")["10.1.0.11:80"]
		if ok && len(seen) == 0 {
			back = time.Since(lastFail)
		}
		if ok && (len(seen) == 0 || seen[len(seen)-1] != w) {
			seen = append(seen, w)
		}
		return w == 5
	})
	t.Logf("web1 weights after the hold: %v; back %v after its last failure", seen, back.Round(10*time.Millisecond))
	if back < 1500*time.Millisecond {
		t.Errorf("web1 was back %v after its last failure, before the 1.5s hold", back)
	}
	if len(seen) < 3 || seen[0] != 1 {
		t.Errorf("weights %v: want a ramp from 1 in several steps", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Errorf("weights %v do not increase", seen)
		}
	}
}
