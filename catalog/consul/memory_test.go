package consul_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// TestRollingDeploysLeaveStateFlat: 100 rolling deploys of a 10-instance
// service (new IDs, ports and nodes each time, the old nodes leaving; two
// instances critical) beside a steady one. A watch stopped after the first
// deploy and one stopped after the hundredth hold state of the same sizes,
// map by map: what went away was pruned.
func TestRollingDeploysLeaveStateFlat(t *testing.T) {
	agent := testconsul.Start(t)
	const deploys, instances, critical = 100, 10, 2
	steady := agent.NewRoll("steady", instances, 1, 20)
	steady.Next(t)
	roll := agent.NewRoll("roll", instances, critical, 0) // new nodes each time
	roll.Next(t)                                          // the first generation, before the watches start

	opts := consul.Options{MinInterval: 5 * time.Millisecond, ResyncInterval: time.Hour}
	names := []string{"roll", "steady", "absent"}
	type watching struct {
		cancel context.CancelFunc
		latest atomic.Pointer[catalog.Snapshot]
		done   chan struct{} // closed with the snapshots channel
		sizes  func() map[string]int
	}
	watch := func() *watching {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		snaps, sizes := consul.NewSource(agent.Client, opts).WatchSizes(ctx, names, nil)
		w := &watching{cancel: cancel, done: make(chan struct{}), sizes: sizes}
		go func() {
			defer close(w.done)
			for s := range snaps {
				w.latest.Store(&s)
			}
		}()
		return w
	}
	// stop ends a watch and returns its sizes, once its goroutine is done.
	stop := func(w *watching) map[string]int {
		w.cancel()
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not stop")
		}
		return w.sizes()
	}
	first, hundredth := watch(), watch()
	// sees waits until both running watches show exactly ids for roll.
	sees := func(what string, ids []string, ws ...*watching) {
		t.Helper()
		slices.Sort(ids)
		deadline := time.Now().Add(5 * time.Second)
		for _, w := range ws {
			for {
				var got []string
				if snap := w.latest.Load(); snap != nil {
					got = instanceIDs(*snap, "roll")
				}
				if slices.Equal(got, ids) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: roll has %v, want %v", what, got, ids)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	sees("first snapshot", roll.IDs(), first, hundredth)
	var after1, after100 map[string]int
	for d := 1; d <= deploys; d++ {
		ws := []*watching{hundredth}
		if d == 1 {
			ws = append(ws, first)
		}
		roll.Next(t)
		sees("new generation registered", append(roll.IDs(), roll.Prev()...), ws...)
		roll.Retire(t)
		sees("old generation retired", roll.IDs(), ws...)
		if d == 1 {
			caughtUp(t, agent, d, first.latest.Load)
			after1 = stop(first)
		}
	}
	caughtUp(t, agent, deploys, hundredth.latest.Load)
	after100 = stop(hundredth)
	t.Logf("watch state after 1 deploy: %v", after1)
	// nodeSeq stamps live nodes that had an event: the agent's own node
	// gets one whenever anti-entropy first writes its tagged addresses,
	// which may fall before or after the first deploy. What must hold is
	// that no retired node stays: at most one stamp per live node.
	// The same holds of nodeSt (a node read may be out as the watch
	// stops, its node retired).
	seq1, seq100 := after1["nodeSeq"], after100["nodeSeq"]
	st1, st100 := after1["nodeSt"], after100["nodeSt"]
	for _, m := range []map[string]int{after1, after100} {
		delete(m, "nodeSeq")
		delete(m, "nodeSt")
	}
	if !maps.Equal(after1, after100) {
		t.Errorf("watch state after %d deploys differs from after 1:\n  1:   %v\n  %d: %v", deploys, after1, deploys, after100)
	}
	if seq100 > after100["nodes"] || seq1 > after1["nodes"] {
		t.Errorf("nodeSeq holds %d (after 1: %d) node stamps for %d live nodes: retired nodes stay", seq100, seq1, after100["nodes"])
	}
	if st100 > after100["nodes"]+1 || st1 > after1["nodes"]+1 {
		t.Errorf("nodeSt holds %d (after 1: %d) nodes for %d live nodes: retired nodes stay", st100, st1, after100["nodes"])
	}
	// Within the live catalog: 2 services of 10 instances, on 20 nodes at
	// most, two critical checks per service.
	if after100["instances"] != 2*instances || after100["byNode services"] > 2*instances || after100["checks"] != critical+1 {
		t.Errorf("watch state after %d deploys is not that of the live catalog: %v", deploys, after100)
	}
}

// caughtUp moves the address of steady's first node and waits for the
// watch (its latest snapshot) to show it: the node feed has then answered
// after every write before, the retired nodes' deregistrations included.
func caughtUp(t *testing.T, agent *testconsul.Agent, k int, latest func() *catalog.Snapshot) {
	t.Helper()
	node := latest().Instances("steady")[0].Node
	addr := fmt.Sprintf("10.78.%d.%d", k/250, 1+k%250)
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: node, Address: addr}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, in := range latest().Instances("steady") {
			if in.Node == node && in.Address == addr {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch never saw %s move to %s", node, addr)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// instanceIDs are the IDs of service's instances in snap, sorted.
func instanceIDs(snap catalog.Snapshot, service string) []string {
	var ids []string
	for _, in := range snap.Instances(service) {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}
