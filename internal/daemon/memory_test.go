package daemon

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestRollingDeploysLeaveDecisionsFlat: 100 rolling deploys of a
// 10-instance service (new IDs, ports and nodes each time, the old nodes
// leaving; two critical) beside a steady one, through the real agent. A daemon stopped after the
// first deploy and one stopped after the hundredth keep the same number of
// instance histories and decisions noted (with their change times): those
// of the instances that left were pruned.
func TestRollingDeploysLeaveDecisionsFlat(t *testing.T) {
	agent := testconsul.Start(t)
	const deploys, instances, critical = 100, 10, 2
	steady := agent.NewRoll("steady", instances, 1, 20)
	steady.Next(t)
	roll := agent.NewRoll("roll", instances, critical, 0) // new nodes each time
	roll.Next(t)                                          // the first generation, before the daemons start
	cfg := mustConfig(t, `
virtual_service "roll" {
  address    = "10.10.10.70:80"
  forwarding = "masq"
}
virtual_service "steady" {
  address    = "10.10.10.71:80"
  forwarding = "masq"
}
`)
	rollKey := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.70"), Port: 80}

	type daemon struct {
		d      *Daemon
		kernel *ipvstest.Kernel
		cancel context.CancelFunc
		done   chan error
	}
	start := func() *daemon {
		kernel := ipvstest.New(ipvs.State{})
		d, err := New(Options{Config: cfg, Source: source(agent.Client), Kernel: kernel,
			Logger: hclog.NewNullLogger(), MinWait: time.Millisecond, MaxWait: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		r := &daemon{d: d, kernel: kernel, cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- d.Run(ctx) }()
		return r
	}
	// sizes stops a daemon and counts what it keeps, once Run returned.
	sizes := func(r *daemon) map[string]int {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("daemon did not stop")
		}
		d := r.d
		m := map[string]int{"tracker": d.state.tracker.Len(), "decided services": len(d.shared.decided),
			"draining": len(d.state.drainer.Draining()), "logged": len(d.state.logged.notes),
			"conflicts": len(d.state.logged.conflicts)}
		for vs, ds := range d.shared.decided {
			m["decided "+vs] = len(ds)
		}
		for vs, ds := range d.state.lastResult.Decisions {
			m["decisions "+vs] = len(ds)
		}
		return m
	}
	// serves waits until the daemons' kernels have exactly the passing
	// instances of the given generations of roll (their ports).
	serves := func(what string, ports []int, rs ...*daemon) {
		t.Helper()
		for _, r := range rs {
			waitFor(t, what, 5*time.Second, func() bool {
				reals := reals(r.kernel.State(), rollKey.String()[len("tcp://"):])
				if len(reals) != len(ports)*(instances-critical) {
					return false
				}
				for rk := range reals {
					if !strings.HasSuffix(rk, fmt.Sprintf(":%d", ports[0])) && !strings.HasSuffix(rk, fmt.Sprintf(":%d", ports[len(ports)-1])) {
						return false
					}
				}
				return true
			})
		}
	}
	first, hundredth := start(), start()
	serves("first sync", []int{roll.Port()}, first, hundredth)
	var after1 map[string]int
	for d := 1; d <= deploys; d++ {
		rs := []*daemon{hundredth}
		if d == 1 {
			rs = append(rs, first)
		}
		prev := roll.Port()
		roll.Next(t)
		serves("new generation in", []int{prev, roll.Port()}, rs...)
		roll.Retire(t)
		serves("old generation out", []int{roll.Port()}, rs...)
		if d == 1 {
			after1 = sizes(first)
		}
	}
	after100 := sizes(hundredth)
	t.Logf("daemon state after 1 deploy: %v", after1)
	if !maps.Equal(after1, after100) {
		t.Errorf("daemon state after %d deploys differs from after 1:\n  1:   %v\n  %d: %v", deploys, after1, deploys, after100)
	}
	// Within the live catalog: 10 instances of each service.
	if after100["decided roll"] != instances || after100["tracker"] > 4*instances {
		t.Errorf("daemon state after %d deploys is not that of the live catalog: %v", deploys, after100)
	}
	// What the mass removal guard remembers of instances that left is
	// bounded by removal_hold and a few vanishings per service.
	if v := hundredth.d.state.tracker.VanishedLen(); v > 8*3*instances {
		t.Errorf("the tracker remembers %d instances that left, want at most %d", v, 8*3*instances)
	}
}
