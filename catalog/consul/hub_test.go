package consul_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// TestWatchesShareTheFeeds: a reload watches the new config's services
// beside the running config's (internal/daemon), through the same
// source. Each watch with feeds of its own held eight blocking queries,
// the whole default budget, and the new watch's reads then waited for a
// feed to answer: `lvs-sync run` at 1,000 services gave up its third
// SIGHUP in a row after 30 s on a quiet catalog. Two watches now hold
// four blocking queries between them, and a second watch, started three
// times beside the first, answers each time. Their Observers are no
// comparable values, as the daemon's are (catalog.Combined's wrapper, a
// map in it): the hub once compared them, and a reload crashed lvs-sync.
func TestWatchesShareTheFeeds(t *testing.T) {
	agent := testconsul.Start(t)
	const services, instances, nodes, budget = 300, 3, 10, 8
	regs, names := registerSpread(t, agent.Client, services, instances, nodes)

	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, "", ""
	consul.LimitConnections(conf, budget)
	queries := &inFlight{base: conf.Transport}
	conf.HttpClient = &http.Client{Transport: queries}
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	src := consul.NewSource(client, consul.Options{MaxConnections: budget})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each watch's Observer is a value with a map in it, as the daemon's
	// (catalog.Combined's keyedObserver): no comparable value.
	runningObs := mapObserver{heard: map[string]int{}, mu: &sync.Mutex{}}
	running := src.Watch(ctx, names, runningObs)
	first := func(snaps <-chan catalog.Snapshot, what string) {
		t.Helper()
		select {
		case s := <-snaps:
			if len(s.Services) != services {
				t.Fatalf("%s: first snapshot of %d services, want %d", what, len(s.Services), services)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no first snapshot in 20s; blocking queries out: %d", what, queries.blockingOut())
		}
	}
	first(running, "the running watch")

	var most atomic.Int64
	sampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(queries.blockingOut()); n > most.Load() {
				most.Store(n)
			}
			select {
			case <-sampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	for i := range 3 {
		rctx, rcancel := context.WithCancel(ctx)
		reloadObs := mapObserver{heard: map[string]int{}, mu: &sync.Mutex{}}
		reload := src.Watch(rctx, names, reloadObs)
		first(reload, "the reload's watch")
		// A flip while both watch: the feeds answer with two watches on.
		flip := regs[i]
		check := *flip.Check
		check.Status = api.HealthCritical
		if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: flip.Node, SkipNodeUpdate: true, Check: &check}, nil); err != nil {
			t.Fatal(err)
		}
		for seen := false; !seen; {
			select {
			case s := <-reload:
				for _, in := range s.Instances(flip.Service.Service) {
					seen = seen || (in.ID == flip.Service.ID && in.Status == catalog.Critical)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("reload %d: the flip of %s not seen in 10s", i+1, flip.Service.ID)
			}
		}
		// Its feeds, were they its own, would be parked by now.
		time.Sleep(300 * time.Millisecond)
		rcancel()
		t.Logf("reload %d: most blocking queries out so far: %d", i+1, most.Load())
	}
	close(sampling)
	<-sampled
	if n := most.Load(); n > 4 {
		t.Errorf("%d blocking queries out at once with two watches, want the four feeds'", n)
	}
	if runningObs.count("/v1/catalog/nodes") == 0 {
		t.Errorf("the running watch's Observer heard no feed: %v", runningObs.heard)
	}
}

// mapObserver counts the queries it hears, by name.
type mapObserver struct {
	heard map[string]int
	mu    *sync.Mutex
}

func (o mapObserver) ObserveQuery(query string, _ uint64, _ error) {
	o.mu.Lock()
	o.heard[query]++
	o.mu.Unlock()
}

func (o mapObserver) count(query string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.heard[query]
}
