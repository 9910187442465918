package consul_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// next waits for a snapshot in which cond holds for the named service.
func next(t *testing.T, snaps <-chan catalog.Snapshot, what string, cond func([]*catalog.Instance) bool) catalog.Snapshot {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s, ok := <-snaps:
			if !ok {
				t.Fatalf("%s: watcher stopped", what)
			}
			if cond(s.Instances("web")) {
				return s
			}
		case <-timeout:
			t.Fatalf("%s: no such snapshot in 10s", what)
		}
	}
}

func byID(ins []*catalog.Instance) map[string]*catalog.Instance {
	m := map[string]*catalog.Instance{}
	for _, in := range ins {
		m[in.ID] = in
	}
	return m
}

// TestWatchAgainstRealConsul registers instances with TTL checks on a
// real agent, flips them, and checks what the source sees.
func TestWatchAgainstRealConsul(t *testing.T) {
	agent := testconsul.Start(t)
	agent.Register(t, &api.AgentServiceRegistration{
		ID: "web1", Name: "web", Address: "10.1.0.11", Port: 8080, Tags: []string{"prod"},
		Meta: map[string]string{"version": "1"}, Weights: &api.AgentWeights{Passing: 5, Warning: 2},
	}, api.HealthPassing)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web2", Name: "web", Port: 8081}, api.HealthWarning)

	src := consul.NewSource(agent.Client, consul.Options{WaitTime: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := src.Watch(ctx, []string{"web", "ghost"}, nil)

	s := next(t, snaps, "both registered", func(ins []*catalog.Instance) bool { return len(ins) == 2 })
	got := byID(s.Instances("web"))
	web1, web2 := got["web1"], got["web2"]
	if web1 == nil || web2 == nil {
		t.Fatalf("instances %+v", got)
	}
	if web1.Address != "10.1.0.11" || web1.Port != 8080 || web1.Status != catalog.Passing ||
		web1.Weights != (catalog.Weights{Passing: 5, Warning: 2}) || web1.Meta["version"] != "1" ||
		len(web1.Tags) != 1 || web1.Node != agent.NodeName {
		t.Errorf("web1 = %+v", web1)
	}
	// No service address: the node's address, 127.0.0.1 for the dev agent.
	if web2.Address != "127.0.0.1" || web2.Status != catalog.Warning || web2.Weights != (catalog.Weights{Passing: 1, Warning: 1}) {
		t.Errorf("web2 = %+v", web2)
	}
	// serfHealth (node) and the TTL check (service) are both behind it.
	if len(web1.Checks) != 2 {
		t.Errorf("web1 checks = %+v", web1.Checks)
	}
	// A service Consul does not know is an empty list, not an error.
	if svc := s.Services["ghost"]; svc == nil || len(svc.Instances) != 0 || svc.Index == 0 {
		t.Errorf("ghost = %+v", svc)
	}

	start := time.Now()
	agent.SetStatus(t, "web1", api.HealthCritical, "connection refused")
	s = next(t, snaps, "web1 critical", func(ins []*catalog.Instance) bool {
		return byID(ins)["web1"] != nil && byID(ins)["web1"].Status == catalog.Critical
	})
	t.Logf("check failure seen %v after the update", time.Since(start))
	for _, c := range byID(s.Instances("web"))["web1"].Checks {
		if c.CheckID == "web1-ttl" && c.Output != "connection refused" {
			t.Errorf("check output %q", c.Output)
		}
	}

	agent.SetStatus(t, "web1", api.HealthPassing, "")
	next(t, snaps, "web1 passing again", func(ins []*catalog.Instance) bool {
		return byID(ins)["web1"] != nil && byID(ins)["web1"].Status == catalog.Passing
	})

	if err := agent.Client.Agent().EnableServiceMaintenance("web2", "upgrade"); err != nil {
		t.Fatal(err)
	}
	next(t, snaps, "web2 in maintenance", func(ins []*catalog.Instance) bool {
		return byID(ins)["web2"] != nil && byID(ins)["web2"].ServiceMaintenance
	})
	if err := agent.Client.Agent().DisableServiceMaintenance("web2"); err != nil {
		t.Fatal(err)
	}
	if err := agent.Client.Agent().EnableNodeMaintenance("reboot"); err != nil {
		t.Fatal(err)
	}
	next(t, snaps, "node in maintenance", func(ins []*catalog.Instance) bool {
		m := byID(ins)
		return len(m) == 2 && m["web1"].NodeMaintenance && m["web2"].NodeMaintenance && !m["web2"].ServiceMaintenance
	})
	if err := agent.Client.Agent().DisableNodeMaintenance(); err != nil {
		t.Fatal(err)
	}

	if err := agent.Client.Agent().ServiceDeregister("web1"); err != nil {
		t.Fatal(err)
	}
	next(t, snaps, "web1 gone", func(ins []*catalog.Instance) bool { return len(ins) == 1 && ins[0].ID == "web2" })
	if err := agent.Client.Agent().ServiceDeregister("web2"); err != nil {
		t.Fatal(err)
	}
	// The whole service disappears: an empty list.
	next(t, snaps, "web gone", func(ins []*catalog.Instance) bool { return len(ins) == 0 })
}

// TestFetchAgainstRealConsul reads each service once, without blocking, as
// `lvs-sync render` does.
func TestFetchAgainstRealConsul(t *testing.T) {
	agent := testconsul.Start(t)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthCritical)
	snap, err := consul.NewSource(agent.Client, consul.Options{}).Fetch(context.Background(), []string{"web", "web", "none"})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Services) != 2 || len(snap.Instances("web")) != 1 || snap.Instances("web")[0].Status != catalog.Critical {
		t.Errorf("snapshot %+v", snap.Services)
	}
}

// TestSetTokenAsksAgainAtOnce, against an agent with ACLs on: a source
// whose token cannot read gets answers filtered by ACLs; SetToken ends the
// blocking queries in flight, which ask again with the new token at once,
// not after their wait time.
func TestSetTokenAsksAgainAtOnce(t *testing.T) {
	agent := testconsul.StartWithACLs(t)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthPassing)
	weak, _ := agent.Token(t, "weak", `service_prefix "" { policy = "read" }`)
	strong, _ := agent.Token(t, "strong", `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`)
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, "", ""
	queries := &inFlight{base: http.DefaultTransport}
	conf.HttpClient = &http.Client{Transport: queries}
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	const waitTime = 5 * time.Minute
	src := consul.NewSource(client, consul.Options{MinInterval: 10 * time.Millisecond, WaitTime: waitTime})
	src.SetToken(weak)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := src.Watch(ctx, []string{"web"}, nil)
	s := <-snaps
	if svc := s.Services["web"]; svc == nil || !svc.FilteredByACLs || len(svc.Instances) != 0 {
		t.Fatalf("with a token without node read: %+v, want an empty answer filtered by acls", svc)
	}
	// Every feed is out on a blocking query with the weak token, which
	// Consul holds for waitTime: only SetToken can end them sooner.
	feeds := []string{"/v1/catalog/services", "/v1/catalog/nodes", "/v1/health/state/critical", "/v1/health/state/warning"}
	blocked := func(tok string) func() bool {
		return func() bool {
			for _, f := range feeds {
				if !queries.blocking(f, tok) {
					return false
				}
			}
			return true
		}
	}
	testenv.WaitFor(t, "every feed blocked with the weak token", 30*time.Second, blocked(weak))
	src.SetToken(strong)
	// A feed asks again only once its query in flight returned: every feed
	// blocking with the new token well within the wait time means SetToken
	// ended the old ones.
	took := testenv.WaitFor(t, "every feed blocked again with the new token", waitTime/10, blocked(strong))
	t.Logf("the feeds asked again with the new token after %v", took)
	s = next(t, snaps, "the instance, read with the new token", func(ins []*catalog.Instance) bool { return len(ins) == 1 })
	if s.Services["web"].FilteredByACLs {
		t.Error("the answer read with the new token is still filtered")
	}
}

// inFlight is a transport that keeps track of the queries out: path, ACL
// token and the index a blocking query waits on.
type inFlight struct {
	base http.RoundTripper
	mu   sync.Mutex
	out  map[*http.Request]bool
}

func (f *inFlight) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	if f.out == nil {
		f.out = map[*http.Request]bool{}
	}
	f.out[r] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.out, r)
		f.mu.Unlock()
	}()
	// A blocking query's answer is its headers: it is over when they came.
	return f.base.RoundTrip(r)
}

// blocking reports whether a blocking query (index > 0) of path with tok
// is out.
func (f *inFlight) blocking(path, tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for r := range f.out {
		if r.URL.Path == path && r.Header.Get("X-Consul-Token") == tok && index(r) > 0 {
			return true
		}
	}
	return false
}

// blockingOut is how many blocking queries are out.
func (f *inFlight) blockingOut() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for r := range f.out {
		if index(r) > 0 {
			n++
		}
	}
	return n
}

func index(r *http.Request) uint64 {
	i, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	return i
}

// TestWithTokenLeavesTheSourceAlone, against an agent with ACLs on: a
// source with a new token (a reload's, after re-reading token_file) reads
// with it from its first query, and the source it came from (the running
// config's) still reads with its own.
func TestWithTokenLeavesTheSourceAlone(t *testing.T) {
	agent := testconsul.StartWithACLs(t)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthPassing)
	weak, _ := agent.Token(t, "weak", `service_prefix "" { policy = "read" }`)
	strong, _ := agent.Token(t, "strong", `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`)
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, "", ""
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	running := consul.NewSource(client, consul.Options{MinInterval: 10 * time.Millisecond})
	running.SetToken(weak)
	reloaded := running.WithToken(strong)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := <-reloaded.Watch(ctx, []string{"web"}, nil)
	if svc := s.Services["web"]; svc == nil || svc.FilteredByACLs || len(svc.Instances) != 1 {
		t.Fatalf("read with the new token: %+v, want the instance", svc)
	}
	s, err = running.Fetch(ctx, []string{"web"})
	if err != nil {
		t.Fatal(err)
	}
	if svc := s.Services["web"]; svc == nil || !svc.FilteredByACLs {
		t.Errorf("the running source read %+v, want it still on its own token (filtered by acls)", svc)
	}
}

// TestNodeTaggedAddressChangeSeen: a node's tagged addresses change (its
// lan_ipv6, on and off), the node's address does not: a service at its
// node's address is read again at once, not at the backstop resync (an
// hour away here).
func TestNodeTaggedAddressChangeSeen(t *testing.T) {
	agent := testconsul.Start(t)
	node := func(lanIPv6 string) {
		t.Helper()
		reg := &api.CatalogRegistration{Node: "n6", Address: "10.1.0.16", TaggedAddresses: map[string]string{"lan_ipv4": "10.1.0.16"}}
		if lanIPv6 != "" {
			reg.TaggedAddresses["lan_ipv6"] = lanIPv6
		}
		if _, err := agent.Client.Catalog().Register(reg, nil); err != nil {
			t.Fatal(err)
		}
	}
	node("fd00:1::16")
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: "n6", Address: "10.1.0.16", SkipNodeUpdate: true,
		Service: &api.AgentService{ID: "web6", Service: "web", Port: 8086}}, nil); err != nil {
		t.Fatal(err)
	}
	src := consul.NewSource(agent.Client, consul.Options{MinInterval: 10 * time.Millisecond, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := src.Watch(ctx, []string{"web"}, nil)
	lanIPv6 := func(want string) func([]*catalog.Instance) bool {
		return func(ins []*catalog.Instance) bool {
			return len(ins) == 1 && ins[0].TaggedAddresses[catalog.LANIPv6].Address == want
		}
	}
	next(t, snaps, "the node's lan_ipv6", lanIPv6("fd00:1::16"))
	for _, addr := range []string{"fd00:1::26", "", "fd00:1::36"} {
		node(addr)
		next(t, snaps, fmt.Sprintf("the node's lan_ipv6 changed to %q", addr), lanIPv6(addr))
	}
}

// TestTaggedAddressesFromRealConsul: what a real agent keeps of tagged
// addresses, and what the source makes of them: the service's own, and the
// node's for a service at its node's address.
func TestTaggedAddressesFromRealConsul(t *testing.T) {
	agent := testconsul.Start(t)
	agent.Register(t, &api.AgentServiceRegistration{
		ID: "web1", Name: "web", Address: "10.1.0.11", Port: 8081,
		TaggedAddresses: map[string]api.ServiceAddress{"lan_ipv6": {Address: "fd00:1::11", Port: 8443}},
	}, api.HealthPassing)
	// A node of its own, with an IPv6 node address tagged, and a service at
	// its node's address.
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{
		Node: "n6", Address: "10.1.0.16",
		TaggedAddresses: map[string]string{"lan_ipv4": "10.1.0.16", "lan_ipv6": "fd00:1::16"},
		Service:         &api.AgentService{ID: "web6", Service: "web", Port: 8086},
	}, nil); err != nil {
		t.Fatal(err)
	}
	snap, err := consul.NewSource(agent.Client, consul.Options{}).Fetch(context.Background(), []string{"web"})
	if err != nil {
		t.Fatal(err)
	}
	got := byID(snap.Instances("web"))
	if got["web1"] == nil || got["web6"] == nil {
		t.Fatalf("instances %v", got)
	}
	if ta := got["web1"].TaggedAddresses[catalog.LANIPv6]; ta != (catalog.TaggedAddress{Address: "fd00:1::11", Port: 8443}) {
		t.Errorf("web1 lan_ipv6 %+v (all: %v)", ta, got["web1"].TaggedAddresses)
	}
	if want := map[string]catalog.TaggedAddress{"lan_ipv6": {Address: "fd00:1::16"}}; !reflect.DeepEqual(got["web6"].TaggedAddresses, want) {
		t.Errorf("web6 tagged addresses %v, want the node's %v", got["web6"].TaggedAddresses, want)
	}
	t.Logf("web1's: %v", got["web1"].TaggedAddresses)
}

// TestNodeSweepsUnderALeastPrivilegeToken: a token that may read the
// watched services and every node, but not the other services on those
// nodes, has every node read filtered by ACLs; node sweeps still find an
// edit, at a node sweep's cost, not a read of every watched service.
func TestNodeSweepsUnderALeastPrivilegeToken(t *testing.T) {
	agent := testconsul.StartWithACLs(t)
	const services = 10
	var names []string
	for s := range services {
		name := fmt.Sprintf("web%d", s)
		names = append(names, name)
		for i, node := range []string{"n1", "n2"} {
			if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: node, Address: "10.0.0." + strconv.Itoa(i+1),
				Service: &api.AgentService{ID: fmt.Sprintf("%s-%d", name, i), Service: name, Port: 80,
					Weights: api.AgentWeights{Passing: 1, Warning: 1}}}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: "n1", Address: "10.0.0.1",
		Service: &api.AgentService{ID: "secret1", Service: "secret", Port: 81}}, nil); err != nil {
		t.Fatal(err)
	}
	token, _ := agent.Token(t, "web", `service_prefix "web" { policy = "read" }
node_prefix "" { policy = "read" }`)
	_, meta, err := agent.Client.Catalog().NodeServiceList("n1", &api.QueryOptions{Token: token})
	if err != nil || !meta.ResultsFilteredByACLs {
		t.Fatalf("a node read with the token: filtered %v, %v; want it filtered by acls", meta != nil && meta.ResultsFilteredByACLs, err)
	}

	reads := &readCounter{}
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, "", ""
	conf.HttpClient = &http.Client{Transport: reads.counting(http.DefaultTransport)}
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	src := consul.NewSource(client, consul.Options{ResyncInterval: time.Hour})
	src.SetToken(token)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := src.Watch(ctx, names, reads)
	s := next(t, snaps, "first", func([]*catalog.Instance) bool { return true })
	if len(s.Instances("web3")) != 2 || s.Services["web3"].FilteredByACLs {
		t.Fatalf("first snapshot of web3: %+v", s.Services["web3"])
	}
	reads.settle(t, 300*time.Millisecond)

	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: "n2", SkipNodeUpdate: true,
		Service: &api.AgentService{ID: "web3-1", Service: "web3", Port: 80, Weights: api.AgentWeights{Passing: 6, Warning: 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		s = next(t, snaps, "the weight edit", func([]*catalog.Instance) bool { return true })
		if ins := s.Instances("web3"); len(ins) == 2 && ins[1].Weights.Passing == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the weight edit not seen in 10s: %+v", s.Services["web3"])
		}
	}
	svcReads, nodeReads := reads.settle(t, 300*time.Millisecond)
	t.Logf("weight edit under a least-privilege token: %d service reads, %d node reads", svcReads, nodeReads)
	if svcReads > 2 || nodeReads == 0 {
		t.Errorf("the edit cost %d service reads and %d node reads; want 1 or 2 service reads, found by node reads", svcReads, nodeReads)
	}
}
