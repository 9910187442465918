package main

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ha"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

type noObserver struct{}

func (noObserver) ObserveQuery(string, uint64, error) {}

// TestHARenewalsBesideASweep: max_connections = 5, the pair's lease and
// peer watches and renewals running as run wires them, and the catalog
// starting beside them on 300 services (its four feeds, its first sweep):
// every renewal answers within its 300ms budget.
func TestHARenewalsBesideASweep(t *testing.T) {
	agent := testconsul.Start(t)
	cc := config.Consul{Address: agent.HTTPAddr, MaxConnections: 5}
	names := make([]string, 300)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%03d", i)
		agent.Register(t, &api.AgentServiceRegistration{ID: names[i], Name: names[i], Port: 1000 + i, Address: "10.1.0.1"}, api.HealthPassing)
	}
	client, err := newConsulClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	src := consul.NewSource(client, consul.Options{MaxConnections: cc.MaxConnections, Logger: hclog.NewNullLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	pc, err := newHAConsulClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	lease := ha.NewConsulLease(pc, "lvs-sync/ha/test-sweep", hclog.NewNullLogger())
	if err := lease.Register("a", netip.MustParseAddrPort("127.0.0.1:7947")); err != nil {
		t.Fatal(err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); lease.Watch(ctx, func(ha.Observation, error) {}) }()
	go func() { defer wg.Done(); lease.Peers(ctx, "a", func([]ha.Peer) {}) }()
	// The catalog starts beside the pair: its feeds, then its first sweep.
	snaps := src.Watch(ctx, names, noObserver{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range snaps {
		}
	}()

	var took []time.Duration
	var late int
	index := uint64(0)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		r := lease.Write(wctx, ha.Write{Kind: ha.Renew, Lease: ha.Lease{Holder: "a", Epoch: 1, Renewed: start}, Index: index})
		d := time.Since(start)
		wcancel()
		took = append(took, d)
		if r.OK {
			index = r.Index
		} else if r.Current != nil {
			index = r.Current.Index
		}
		if r.Err != nil || d > 300*time.Millisecond {
			late++
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%d renewals: median %s, slowest %s", len(took), took[len(took)/2], took[len(took)-1])
	if late > 0 {
		t.Fatalf("%d of %d renewals missed their 300ms budget beside the catalog's sweeps (slowest %s)", late, len(took), took[len(took)-1])
	}
}
