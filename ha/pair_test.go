package ha

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// TestJoinPair: two directors joined as run joins them (the heartbeat key
// from Consul, registered, peers followed) settle with one active; one
// that stops has stepped down and is no longer registered.
func TestJoinPair(t *testing.T) {
	agent := testconsul.Start(t)
	const key = "lvs-sync/ha/test-join"
	w := &world{active: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pairs []*Pair
	var dones []chan struct{}
	var stops []context.CancelFunc
	for _, name := range []string{"a", "b"} {
		log := hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn})
		p, err := JoinPair(NewConsulLease(agent.Client, key, log.Named("lease")), freePort(t), "",
			Options{Name: name, Roles: &fakeRoles{w: w, name: name}, Carrier: func() (bool, error) { return true, nil }, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); p.Run(pctx) }()
		pairs, dones, stops = append(pairs, p), append(dones, done), append(stops, stop)
	}
	defer func() {
		for i := range stops {
			stops[i]()
			<-dones[i]
		}
	}()
	if !waitFor(10*time.Second, func() bool {
		return pairs[0].Runner.State().Role == "active" && pairs[1].Runner.State().Peer == "a" ||
			pairs[1].Runner.State().Role == "active" && pairs[0].Runner.State().Peer == "b"
	}) {
		t.Fatalf("the pair did not settle: %+v %+v", pairs[0].Runner.State(), pairs[1].Runner.State())
	}
	w.check(t)
	stops[0]()
	<-dones[0]
	if role := pairs[0].Runner.State().Role; role != "standby" {
		t.Errorf("a stopped pair's role is %s, want standby", role)
	}
	svcs, err := agent.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range svcs {
		if s.Service == ServiceName && s.Meta["director"] == "a" {
			t.Errorf("a stopped director is still registered: %s", id)
		}
	}
}
