//go:build vmguest

package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestBusyCatalogDoesNotStarveTheReconcile: while one service changes in
// Consul every 300 ms (each change a sync of that service alone), drift
// in a quiet one — a real deleted with ipvsadm -d, then the whole table
// flushed with ipvsadm -C — is still repaired by the periodic reconcile
// (reconcile_interval 2s): within twice the interval plus its jitter.
// Before, every sync pushed the reconcile another interval away, and the
// drift stayed for as long as anything else changed.
func TestBusyCatalogDoesNotStarveTheReconcile(t *testing.T) {
	registerReals(t, 1, 1, 1)
	registerPassing(t, &api.AgentServiceRegistration{ID: "busy1", Name: "busy", Address: reals[0].addr, Port: 80,
		Weights: &api.AgentWeights{Passing: 2, Warning: 1}})
	l := startLVS(t, writeServicesConfig(t, `virtual_service "web-gate" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  scheduler  = "rr"
  service    = "web"
}
virtual_service "busy" {
  address    = "10.10.10.65:80"
  forwarding = "gate"
  scheduler  = "wrr"
  service    = "busy"
}
`))
	t.Cleanup(func() { _, _ = sh("/sbin/ipvsadm", "-D", "-t", "10.10.10.65:80") })
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool {
		return len(realsOf(t, vipGate)) == 3 && len(realsOf(t, "10.10.10.65")) == 1
	})

	// busy flips between passing (weight 2) and warning (weight 1).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		status := []string{api.HealthWarning, api.HealthPassing}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			_ = consul(t).Agent().UpdateTTL("busy1-ttl", "flip", status[i%2])
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	flips := strings.Count(l.logText(), "reason=catalog")
	waitFor(t, "the busy service syncing", 5*time.Second, func() bool {
		return strings.Count(l.logText(), "reason=catalog") >= flips+3
	})

	ipvsadm(t, "-d", "-t", vipGate+":80", "-r", "10.1.0.12:80")
	took := waitFor(t, "the real deleted by hand back while busy changes every 300 ms", 2*(2200*time.Millisecond), func() bool {
		return len(realsOf(t, vipGate)) == 3
	})
	t.Logf("real deleted by hand restored after %v while busy changed every 300 ms", took)

	ipvsadm(t, "-C")
	took = waitFor(t, "the flushed table rebuilt while busy changes every 300 ms", 2*(2200*time.Millisecond), func() bool {
		return len(realsOf(t, vipGate)) == 3 && len(realsOf(t, "10.10.10.65")) == 1
	})
	t.Logf("flushed table rebuilt after %v", took)
}
