package consul_test

import (
	"context"
	"net/http"
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
// times beside the first, answers each time.
func TestWatchesShareTheFeeds(t *testing.T) {
	agent := testconsul.Start(t)
	const services, instances, nodes, budget = 300, 3, 10, 8
	_, names := registerSpread(t, agent.Client, services, instances, nodes)

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
	running := src.Watch(ctx, names, nil)
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
		first(src.Watch(rctx, names, nil), "the reload's watch")
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
}
