package consul_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// watcherAddr is the loopback address the source under test connects
// from, so that its connections can be told from the test's own (and the
// agent's per-address limit applies to it alone). No other test uses it:
// bgp's speaker has 127.0.0.2, and go test runs packages side by side.
const watcherAddr = "127.0.0.82"

// budgetClient is a client capped at budget connections, dialing from
// watcherAddr.
func budgetClient(t *testing.T, agent *testconsul.Agent, budget int) *api.Client {
	return budgetClientCounted(t, agent, budget, nil)
}

// budgetClientCounted is budgetClient whose service reads reads counts
// (nil: none).
func budgetClientCounted(t *testing.T, agent *testconsul.Agent, budget int, reads *readCounter) *api.Client {
	t.Helper()
	conf := api.DefaultConfig()
	conf.Address = agent.HTTPAddr
	conf.Token, conf.TokenFile = "", ""
	consul.LimitConnections(conf, budget)
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(watcherAddr)}, Timeout: 5 * time.Second}
	conf.Transport.DialContext = dialer.DialContext
	if reads != nil {
		conf.HttpClient = &http.Client{Transport: reads.counting(conf.Transport)}
	}
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// openConns lists the TCP connections from watcherAddr to addr (the
// agent's host:port) in /proc/net/tcp, by their other end and state
// (hex, as the kernel writes it): every state but TIME_WAIT, CLOSE and
// LISTEN.
func openConns(t testing.TB, addr string) []string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	local := procAddr(t, watcherAddr) + ":"
	remote := procAddr(t, addr)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[1], local) || fields[2] != remote {
			continue
		}
		switch fields[3] {
		case "06", "07", "0A":
		default:
			out = append(out, fields[1]+" state "+fields[3])
		}
	}
	return out
}

// procAddr writes an IPv4 host[:port] as /proc/net/tcp does: the address
// as a little-endian hex word, the port as 4 hex digits.
func procAddr(t testing.TB, hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		t.Fatalf("%q: not an IPv4 address", hostport)
	}
	s := fmt.Sprintf("%02X%02X%02X%02X", ip[3], ip[2], ip[1], ip[0])
	if port != "" {
		p, _ := strconv.Atoi(port)
		s += fmt.Sprintf(":%04X", p)
	}
	return s
}

// connSampler samples openConns every few milliseconds until stopped and
// returns the most it saw; it logs the connections of that moment when
// they are more than the budget, so that a failure says what they were.
func connSampler(t testing.TB, agent *testconsul.Agent, budget int) (stop func() int) {
	var most atomic.Int64
	var worst []string
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if conns := openConns(t, agent.HTTPAddr); int64(len(conns)) > most.Load() {
				most.Store(int64(len(conns)))
				worst = conns
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		if len(worst) > budget {
			t.Logf("the %d connections from the watcher at their most (local end, state):\n%s", len(worst), strings.Join(worst, "\n"))
		}
		return int(most.Load())
	}
}

// queryErrors is an Observer that counts failed queries and 429s.
type queryErrors struct {
	mu            sync.Mutex
	errs, tooMany int
	first         error
}

func (q *queryErrors) ObserveQuery(_ string, _ uint64, err error) {
	if err == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.errs++
	var st api.StatusError
	if errors.As(err, &st) && st.Code == http.StatusTooManyRequests {
		q.tooMany++
	}
	if q.first == nil {
		q.first = err
	}
}

// register writes instances through the catalog API, a few at a time.
func register(t *testing.T, c *api.Client, regs []*api.CatalogRegistration) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(regs))
	next := make(chan *api.CatalogRegistration)
	for range 8 {
		wg.Go(func() {
			for r := range next {
				if _, err := c.Catalog().Register(r, nil); err != nil {
					errs <- fmt.Errorf("registering %s on %s: %w", r.Service.ID, r.Node, err)
				}
			}
		})
	}
	for _, r := range regs {
		next <- r
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%02d", i) }

// latestOf drains snaps in the background and keeps the last one.
type latestOf struct {
	mu    sync.Mutex
	snap  catalog.Snapshot
	count int
	ch    chan catalog.Snapshot
}

func follow(snaps <-chan catalog.Snapshot) *latestOf {
	l := &latestOf{ch: make(chan catalog.Snapshot, 1000)}
	go func() {
		for s := range snaps {
			l.mu.Lock()
			l.snap, l.count = s, l.count+1
			l.mu.Unlock()
			select {
			case l.ch <- s:
			default:
			}
		}
	}()
	return l
}

func (l *latestOf) get() (catalog.Snapshot, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap, l.count
}

// TestWatchWithinTheBudget: 300 services of 3 instances on a default
// agent, a budget of 8: the first snapshot completes, there are never more
// than 8 connections, no query fails; a flip names only its service; an
// output-only change emits nothing.
func TestWatchWithinTheBudget(t *testing.T) {
	agent := testconsul.Start(t)
	const services, instances, nodes, budget = 300, 3, 10, 8
	regs, names := registerSpread(t, agent.Client, services, instances, nodes)

	stop := connSampler(t, agent, budget)
	obs := &queryErrors{}
	src := consul.NewSource(budgetClient(t, agent, budget), consul.Options{MaxConnections: budget})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	snaps := src.Watch(ctx, names, obs)
	var first catalog.Snapshot
	select {
	case first = <-snaps:
	case <-time.After(30 * time.Second):
		t.Fatalf("no first snapshot in 30s (connections at most %d, errors %d: %v)", stop(), obs.errs, obs.first)
	}
	t.Logf("first snapshot of %d services after %v", len(first.Services), time.Since(start))
	total := 0
	for _, name := range names {
		total += len(first.Instances(name))
	}
	if len(first.Services) != services || total != services*instances || first.Changed != nil {
		t.Errorf("first snapshot: %d services, %d instances, changed %v", len(first.Services), total, first.Changed)
	}

	// One flip: a snapshot naming only that service.
	flip := regs[4] // svc001-1
	check := *flip.Check
	check.Status = api.HealthCritical
	check.Output = "connection refused"
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: flip.Node, SkipNodeUpdate: true, Check: &check}, nil); err != nil {
		t.Fatal(err)
	}
	flipped := time.Now()
	select {
	case s := <-snaps:
		t.Logf("flip seen after %v", time.Since(flipped))
		if !reflect.DeepEqual(s.Changed, map[string]bool{"svc001": true}) {
			t.Errorf("changed %v, want only svc001", s.Changed)
		}
		for _, in := range s.Instances("svc001") {
			if want := map[bool]catalog.Health{true: catalog.Critical, false: catalog.Passing}[in.ID == flip.Service.ID]; in.Status != want {
				t.Errorf("%s is %s, want %s", in.ID, in.Status, want)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot after a flip")
	}

	// Only the output changes: no snapshot.
	check.Output = "connection refused again"
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: flip.Node, SkipNodeUpdate: true, Check: &check}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-snaps:
		t.Errorf("snapshot for an output-only change: changed %v", s.Changed)
	case <-time.After(time.Second):
	}

	most := stop()
	t.Logf("connections from the watcher: at most %d (budget %d)", most, budget)
	if most > budget || most == 0 {
		t.Errorf("at most %d connections to the agent, budget %d", most, budget)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.errs != 0 || obs.tooMany != 0 {
		t.Errorf("%d failed queries, %d of them 429; first: %v", obs.errs, obs.tooMany, obs.first)
	}
}

// catalogModel is the test's idea of what it registered, to pick changes
// that make sense; the agent, read by Fetch, is the truth compared with.
type catalogModel struct {
	rng       *rand.Rand
	nodes     []string
	nodeAddr  map[string]string
	nodeMaint map[string]bool
	instances map[string]*modelInstance // by service ID
	serial    int
}

type modelInstance struct {
	reg     *api.CatalogRegistration
	check   *api.AgentCheck // nil: no check
	maint   bool
	service string
}

func (m *catalogModel) pick() *modelInstance {
	if len(m.instances) == 0 {
		return nil
	}
	// Sorted, not in map order, so that a seed replays the same changes.
	ids := slices.Sorted(maps.Keys(m.instances))
	return m.instances[ids[m.rng.IntN(len(ids))]]
}

func (m *catalogModel) newInstance(services int) *modelInstance {
	m.serial++
	svc := fmt.Sprintf("rnd%02d", m.rng.IntN(services))
	id := fmt.Sprintf("%s-%d", svc, m.serial)
	node := m.nodes[m.rng.IntN(len(m.nodes))]
	s := &api.AgentService{ID: id, Service: svc, Port: 9000 + m.rng.IntN(100),
		Tags:    []string{"prod", "canary"}[:m.rng.IntN(3)%2+1],
		Weights: api.AgentWeights{Passing: 1 + m.rng.IntN(5), Warning: 1}}
	if m.rng.IntN(2) == 0 {
		s.Address = fmt.Sprintf("10.1.%d.%d", m.rng.IntN(250), 1+m.rng.IntN(250)) // else the node's address
	}
	in := &modelInstance{service: svc, reg: &api.CatalogRegistration{Node: node, Address: m.nodeAddr[node], Service: s}}
	if m.rng.IntN(4) != 0 { // a quarter without any check
		in.check = &api.AgentCheck{CheckID: id + "-check", Name: id, ServiceID: id,
			Status: []string{api.HealthPassing, api.HealthWarning, api.HealthCritical}[m.rng.IntN(3)]}
		in.reg.Check = in.check
	}
	m.instances[id] = in
	return in
}

// TestNoChangeMissed makes a few hundred random changes of every kind on a
// real agent, as fast as it takes them, then requires the watcher's last
// snapshot to equal a fresh Fetch. The backstop resync is an hour away: the
// feeds alone must see everything.
func TestNoChangeMissed(t *testing.T) {
	agent := testconsul.Start(t)
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("LVS_SYNC_SEED"); env != "" {
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("LVS_SYNC_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay the same changes with LVS_SYNC_SEED)", seed)
	m := &catalogModel{rng: rand.New(rand.NewPCG(seed, 1)), nodeAddr: map[string]string{},
		nodeMaint: map[string]bool{}, instances: map[string]*modelInstance{}}
	const services, nodes, changes, burstLen = 40, 8, 400, 20
	cat := agent.Client.Catalog()
	write := func(what string, r *api.CatalogRegistration) {
		t.Helper()
		if _, err := cat.Register(r, nil); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for i := range nodes {
		n := nodeName(i)
		m.nodes = append(m.nodes, n)
		m.nodeAddr[n] = fmt.Sprintf("10.0.0.%d", i+1)
		write("node", &api.CatalogRegistration{Node: n, Address: m.nodeAddr[n],
			Check: &api.AgentCheck{CheckID: "nodehealth", Name: "node health", Status: api.HealthPassing}})
	}
	var regs []*api.CatalogRegistration
	for range services * 3 {
		regs = append(regs, m.newInstance(services).reg)
	}
	register(t, agent.Client, regs)
	names := []string{"absent"} // one that never exists
	for s := range services {
		names = append(names, fmt.Sprintf("rnd%02d", s))
	}

	src := consul.NewSource(budgetClient(t, agent, 8), consul.Options{MaxConnections: 8, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(src.Watch(ctx, names, nil))
	select {
	case <-latest.ch:
	case <-time.After(20 * time.Second):
		t.Fatal("no first snapshot in 20s")
	}

	fetcher := consul.NewSource(agent.Client, consul.Options{})
	converge := func(what string) {
		t.Helper()
		want, err := fetcher.Fetch(context.Background(), names)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, n := latest.get()
			diffs := compare(got, want)
			if len(diffs) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 5s the last of %d snapshots differs from a fresh fetch:\n%s", what, n, strings.Join(diffs, "\n"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Bursts: odd ones of every kind of change; even ones only of changes
	// that do not move /v1/catalog/services (and so start no sweep), so
	// that the health and node feeds must see them alone.
	kinds := map[string]int{}
	for c := range changes {
		burst := c / burstLen
		in := m.pick()
		k := m.rng.IntN(11)
		if burst%2 == 0 {
			k = 2 + m.rng.IntN(5) // flip, maintenance, node check, address or tagged address
		}
		switch {
		case k == 0 || in == nil:
			kinds["register"]++
			r := m.newInstance(services).reg
			if m.rng.IntN(4) == 0 && len(m.nodes) < 30 {
				// A node and its first instance in one write: a sweep by
				// node started by it may not know of the node yet.
				kinds["register on a new node"]++
				n := nodeName(len(m.nodes))
				m.nodes = append(m.nodes, n)
				m.nodeAddr[n] = fmt.Sprintf("10.0.0.%d", len(m.nodes))
				r.Node, r.Address = n, m.nodeAddr[n]
				// With its node check, as the first nodes have theirs: a
				// passing check added later to a node without one moves
				// no feed (a hole doc.go lists, closed by the backstop
				// sweep alone), which this test would take for a miss.
				r.Checks = append(r.Checks, &api.HealthCheck{Node: n, CheckID: "nodehealth", Name: "node health", Status: api.HealthPassing})
			}
			write("register", r)
		case k == 1:
			kinds["deregister"]++
			if _, err := cat.Deregister(&api.CatalogDeregistration{Node: in.reg.Node, ServiceID: in.reg.Service.ID}, nil); err != nil {
				t.Fatal(err)
			}
			delete(m.instances, in.reg.Service.ID)
		case k == 2 && in.check == nil:
			kinds["flip (none: node check)"]++
			write("node check", &api.CatalogRegistration{Node: in.reg.Node, SkipNodeUpdate: true,
				Check: &api.AgentCheck{CheckID: "nodehealth", Name: "node health",
					Status: []string{api.HealthPassing, api.HealthWarning, api.HealthCritical}[m.rng.IntN(3)]}})
		case k == 2:
			kinds["flip"]++
			c := *in.check
			c.Status = map[string]string{api.HealthPassing: api.HealthCritical, api.HealthCritical: api.HealthWarning, api.HealthWarning: api.HealthPassing}[c.Status]
			c.Output = fmt.Sprintf("flip %d", m.rng.Int())
			in.check = &c
			write("flip", &api.CatalogRegistration{Node: in.reg.Node, SkipNodeUpdate: true, Check: &c})
		case k == 3:
			kinds["service maintenance"]++
			id := api.ServiceMaintPrefix + in.reg.Service.ID
			if in.maint {
				if _, err := cat.Deregister(&api.CatalogDeregistration{Node: in.reg.Node, CheckID: id}, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				write("service maintenance", &api.CatalogRegistration{Node: in.reg.Node, SkipNodeUpdate: true,
					Check: &api.AgentCheck{CheckID: id, Name: "maintenance", Status: api.HealthCritical, ServiceID: in.reg.Service.ID}})
			}
			in.maint = !in.maint
		case k == 4:
			n := m.nodes[m.rng.IntN(len(m.nodes))]
			if m.rng.IntN(2) == 0 {
				kinds["node maintenance"]++
				if m.nodeMaint[n] {
					if _, err := cat.Deregister(&api.CatalogDeregistration{Node: n, CheckID: api.NodeMaint}, nil); err != nil {
						t.Fatal(err)
					}
				} else {
					write("node maintenance", &api.CatalogRegistration{Node: n, SkipNodeUpdate: true,
						Check: &api.AgentCheck{CheckID: api.NodeMaint, Name: "maintenance", Status: api.HealthCritical}})
				}
				m.nodeMaint[n] = !m.nodeMaint[n]
			} else {
				kinds["node check"]++
				write("node check", &api.CatalogRegistration{Node: n, SkipNodeUpdate: true,
					Check: &api.AgentCheck{CheckID: "nodehealth", Name: "node health",
						Status: []string{api.HealthPassing, api.HealthWarning, api.HealthCritical}[m.rng.IntN(3)]}})
			}
		case k == 5:
			kinds["node address"]++
			n := m.nodes[m.rng.IntN(len(m.nodes))]
			m.nodeAddr[n] = fmt.Sprintf("10.0.%d.%d", 1+m.rng.IntN(250), 1+m.rng.IntN(250))
			write("node address", &api.CatalogRegistration{Node: n, Address: m.nodeAddr[n]})
		case k == 6:
			kinds["node tagged address"]++
			n := m.nodes[m.rng.IntN(len(m.nodes))]
			tagged := map[string]string{}
			if m.rng.IntN(3) != 0 { // else none
				tagged["lan_ipv6"] = fmt.Sprintf("fd00:%x::%x", 1+m.rng.IntN(250), 1+m.rng.IntN(250))
			}
			write("node tagged address", &api.CatalogRegistration{Node: n, Address: m.nodeAddr[n], TaggedAddresses: tagged})
		default:
			field := []string{"address", "port", "weights", "tags", "meta"}[m.rng.IntN(5)]
			kinds["edit "+field]++
			s := *in.reg.Service
			switch field {
			case "address":
				s.Address = fmt.Sprintf("10.2.%d.%d", m.rng.IntN(250), 1+m.rng.IntN(250))
			case "port":
				s.Port++
			case "weights":
				s.Weights.Passing = 1 + (s.Weights.Passing+1)%10
			case "tags":
				s.Tags = append(s.Tags[:len(s.Tags):len(s.Tags)], fmt.Sprintf("t%d", m.rng.IntN(100)))
			case "meta":
				s.Meta = map[string]string{"version": strconv.Itoa(m.rng.IntN(1000))}
			}
			in.reg = &api.CatalogRegistration{Node: in.reg.Node, Address: m.nodeAddr[in.reg.Node], Service: &s}
			write("edit", in.reg)
		}
		if m.rng.IntN(20) == 0 {
			time.Sleep(time.Duration(m.rng.IntN(30)) * time.Millisecond) // let some reads be out mid-change
		}
		if c%burstLen == burstLen-1 {
			converge(fmt.Sprintf("burst %d", burst))
		}
	}
	_, n := latest.get()
	t.Logf("changes: %v; %d snapshots, each burst's last equal to a fresh fetch", kinds, n)
}

// compare lists how got differs from want, service by service, check
// outputs and indexes aside.
func compare(got, want catalog.Snapshot) []string {
	var diffs []string
	for name, w := range want.Services {
		g := got.Services[name]
		switch {
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%s: missing", name))
		case !g.SameContent(w):
			diffs = append(diffs, fmt.Sprintf("%s:\n  got  %s\n  want %s", name, describe(g), describe(w)))
		}
	}
	if len(got.Services) != len(want.Services) {
		diffs = append(diffs, fmt.Sprintf("%d services, want %d", len(got.Services), len(want.Services)))
	}
	return diffs
}

func describe(s *catalog.Service) string {
	var parts []string
	for _, in := range s.Instances {
		var checks []string
		for _, c := range in.Checks {
			checks = append(checks, c.CheckID+"="+c.Status)
		}
		parts = append(parts, fmt.Sprintf("%s@%s %s:%d %v %v w=%v %s nm=%v sm=%v checks=%v tagged=%v",
			in.ID, in.Node, in.Address, in.Port, in.Tags, in.Meta, in.Weights, in.Status, in.NodeMaintenance, in.ServiceMaintenance, checks, in.TaggedAddresses))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// readCounter counts successful reads of services, as requests of
// /v1/health/service/ through the client's transport (counting), and of
// nodes, as the Observer hears them (the feeds aside). The Observer also
// hears a service's first answer built from node reads, which is no read.
type readCounter struct {
	mu              sync.Mutex
	services, nodes int
	last            time.Time
}

func (c *readCounter) ObserveQuery(query string, _ uint64, err error) {
	if err != nil || query != "/v1/catalog/node-services" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes++
	c.last = time.Now()
}

// counting wraps base to count the service reads it makes.
func (c *readCounter) counting(base http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if err == nil && resp.StatusCode == http.StatusOK && strings.HasPrefix(r.URL.Path, "/v1/health/service/") {
			c.mu.Lock()
			c.services++
			c.last = time.Now()
			c.mu.Unlock()
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// settle waits until no read was made for quiet, and returns the counts
// since the last settle.
func (c *readCounter) settle(t *testing.T, quiet time.Duration) (services, nodes int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c.mu.Lock()
		idle := time.Since(c.last) >= quiet
		services, nodes = c.services, c.nodes
		if idle {
			c.services, c.nodes = 0, 0
		}
		c.mu.Unlock()
		if idle {
			return services, nodes
		}
	}
	t.Fatalf("reads never stopped for %v", quiet)
	return 0, 0
}

// TestEditCostsNodeReadsNotASweep: 200 services of 3 instances on 5
// nodes. A weight edit in place, a registration and a deregistration of
// a passing instance each move only /v1/catalog/services; each must cost
// a read of every node (6, the agent's own included) plus the one changed
// in full, and a read of the one service it changed, not a read of all
// 200.
func TestEditCostsNodeReadsNotASweep(t *testing.T) {
	agent := testconsul.Start(t)
	const services, instances, nodes = 200, 3, 5
	regs, names := registerSpread(t, agent.Client, services, instances, nodes)
	allNodes, _, err := agent.Client.Catalog().Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}

	reads := &readCounter{}
	src := consul.NewSource(budgetClientCounted(t, agent, 8, reads), consul.Options{MaxConnections: 8, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(src.Watch(ctx, names, reads))
	select {
	case <-latest.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no first snapshot in 30s")
	}
	reads.settle(t, 500*time.Millisecond) // the first sync's (TestFirstSyncReadsNodes)

	// waitFor waits for a snapshot in which svc's instances satisfy ok.
	waitFor := func(what, svc string, ok func([]*catalog.Instance) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if snap, _ := latest.get(); ok(snap.Instances(svc)) {
				return
			}
		}
		t.Fatalf("%s: not seen in 10s", what)
	}
	find := func(ins []*catalog.Instance, id string) *catalog.Instance {
		for _, in := range ins {
			if in.ID == id {
				return in
			}
		}
		return nil
	}
	edit := *regs[3*17+1] // svc017-1
	edit.SkipNodeUpdate = true
	edit.Check = nil
	svc := *edit.Service
	svc.Weights.Passing = 7
	edit.Service = &svc
	fresh := &api.CatalogRegistration{Node: nodeName(2), SkipNodeUpdate: true,
		Service: &api.AgentService{ID: "svc123-new", Service: "svc123", Port: 9000, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
		Check:   &api.AgentCheck{CheckID: "svc123-new-check", Name: "new", Status: api.HealthPassing, ServiceID: "svc123-new"}}
	gone := regs[3*42+2] // svc042-2
	for _, c := range []struct {
		what, svc string
		write     func() error
		seen      func([]*catalog.Instance) bool
	}{
		{"weight edit", "svc017", func() error { _, err := agent.Client.Catalog().Register(&edit, nil); return err },
			func(ins []*catalog.Instance) bool {
				in := find(ins, "svc017-1")
				return in != nil && in.Weights.Passing == 7
			}},
		{"registration", "svc123", func() error { _, err := agent.Client.Catalog().Register(fresh, nil); return err },
			func(ins []*catalog.Instance) bool { return find(ins, "svc123-new") != nil }},
		{"deregistration", "svc042", func() error {
			_, err := agent.Client.Catalog().Deregister(&api.CatalogDeregistration{Node: gone.Node, ServiceID: gone.Service.ID}, nil)
			return err
		}, func(ins []*catalog.Instance) bool {
			return len(ins) == instances-1 && find(ins, gone.Service.ID) == nil
		}},
	} {
		if err := c.write(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		waitFor(c.what, c.svc, c.seen)
		s, n := reads.settle(t, 500*time.Millisecond)
		t.Logf("%s: %d service reads, %d node reads (%d services watched, %d nodes)", c.what, s, n, services, len(allNodes))
		// One node sweep: a probe of each node and the changed one in
		// full; a second when the nodes feed woke too (it does: Consul
		// moves its index with every instance written).
		if s > 2 || n > 2*(len(allNodes)+1) || s == 0 {
			t.Errorf("%s cost %d service reads and %d node reads; want 1 or 2 service reads and at most %d node reads",
				c.what, s, n, 2*(len(allNodes)+1))
		}
	}
}

// TestFirstSyncReadsNodes: 200 services of 3 instances on 5 nodes (and
// the agent's own): the first sync reads each node, not each service,
// and its snapshot equals what a read of each service gives (Fetch): a
// critical instance, a warning one, a node in maintenance, an instance in
// maintenance, tags, meta, a tagged address of the service's and one of
// its node's. An instance edited after the last check write (so after
// any read of its node's checks) is read per service: one service read.
func TestFirstSyncReadsNodes(t *testing.T) {
	agent := testconsul.Start(t)
	const services, instances, nodes = 200, 3, 5
	regs, names := registerSpread(t, agent.Client, services, instances, nodes)
	allNodes, _, err := agent.Client.Catalog().Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	cat := agent.Client.Catalog()
	write := func(what string, r *api.CatalogRegistration) {
		t.Helper()
		if _, err := cat.Register(r, nil); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	withCheck := func(i int, status string) *api.CatalogRegistration {
		r := *regs[i]
		c := *r.Check
		c.Status, c.Output = status, "set by the test"
		r.SkipNodeUpdate, r.Check = true, &c
		return &r
	}
	write("node tagged address", &api.CatalogRegistration{Node: nodeName(4), Address: "10.0.0.5",
		TaggedAddresses: map[string]string{"lan_ipv6": "2001:db8::5"}})
	tagged := withCheck(3*5, api.HealthPassing) // svc005-0
	svc := *tagged.Service
	svc.Tags, svc.Meta = []string{"b", "a"}, map[string]string{"zone": "z1"}
	svc.TaggedAddresses = map[string]api.ServiceAddress{"lan_ipv6": {Address: "2001:db8::55", Port: 8443}}
	tagged.Service = &svc
	write("tags, meta and a tagged address", tagged)
	write("critical", withCheck(3*1, api.HealthCritical)) // svc001-0
	write("warning", withCheck(3*2+1, api.HealthWarning)) // svc002-1
	write("node maintenance", &api.CatalogRegistration{Node: nodeName(3), SkipNodeUpdate: true,
		Check: &api.AgentCheck{CheckID: api.NodeMaint, Name: "node maintenance", Status: api.HealthCritical}})
	write("service maintenance", &api.CatalogRegistration{Node: regs[3*4].Node, SkipNodeUpdate: true, // svc004-0
		Check: &api.AgentCheck{CheckID: api.ServiceMaintPrefix + "svc004-0", Name: "service maintenance",
			Status: api.HealthCritical, ServiceID: "svc004-0"}})
	edit := *regs[3*6+2] // svc006-2, last: no check write after it
	edit.SkipNodeUpdate, edit.Check = true, nil
	esvc := *edit.Service
	esvc.Weights.Passing = 7
	edit.Service = &esvc
	write("weight edit", &edit)

	reads := &readCounter{}
	src := consul.NewSource(budgetClientCounted(t, agent, 8, reads), consul.Options{MaxConnections: 8, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(src.Watch(ctx, names, reads))
	var got catalog.Snapshot
	select {
	case got = <-latest.ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no first snapshot in 30s")
	}
	s, n := reads.settle(t, 500*time.Millisecond)
	t.Logf("first sync: %d service reads, %d node reads (%d services watched, %d nodes)", s, n, services, len(allNodes))
	if s < 1 || s > 3 || n != len(allNodes) {
		t.Errorf("first sync read %d services and %d nodes; want 1 to 3 services (the one edited) and each of %d nodes once",
			s, n, len(allNodes))
	}
	want, err := consul.NewSource(agent.Client, consul.Options{}).Fetch(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := compare(got, want); len(diffs) > 0 {
		t.Errorf("the first snapshot differs from a read of each service:\n%s", strings.Join(diffs, "\n"))
	}
	for _, c := range []struct {
		svc, id string
		ok      func(*catalog.Instance) bool
	}{
		{"svc001", "svc001-0", func(in *catalog.Instance) bool { return in.Status == catalog.Critical }},
		{"svc002", "svc002-1", func(in *catalog.Instance) bool { return in.Status == catalog.Warning }},
		{"svc004", "svc004-0", func(in *catalog.Instance) bool { return in.ServiceMaintenance }},
		{"svc005", "svc005-0", func(in *catalog.Instance) bool { return in.Meta["zone"] == "z1" && len(in.TaggedAddresses) == 1 }},
		{"svc006", "svc006-2", func(in *catalog.Instance) bool { return in.Weights.Passing == 7 }},
	} {
		in := byID(got.Instances(c.svc))[c.id]
		if in == nil || !c.ok(in) {
			t.Errorf("%s in the first snapshot: %s", c.id, describe(got.Services[c.svc]))
		}
	}
	maint := 0
	for _, svc := range got.Services {
		for _, in := range svc.Instances {
			if in.NodeMaintenance {
				maint++
			}
		}
	}
	if maint != services*instances/nodes {
		t.Errorf("%d instances in node maintenance, want %d", maint, services*instances/nodes)
	}
}

// registerSpread registers services svcNNN of instances each, passing,
// spread round-robin over nodes node-N at 10.0.0.N+1, and returns the
// registrations and the services' names.
func registerSpread(t *testing.T, c *api.Client, services, instances, nodes int) ([]*api.CatalogRegistration, []string) {
	t.Helper()
	var regs []*api.CatalogRegistration
	for s := range services {
		for i := range instances {
			id := fmt.Sprintf("svc%03d-%d", s, i)
			n := (s*instances + i) % nodes
			regs = append(regs, &api.CatalogRegistration{
				Node: nodeName(n), Address: fmt.Sprintf("10.0.0.%d", n+1),
				Service: &api.AgentService{ID: id, Service: fmt.Sprintf("svc%03d", s), Port: 8000 + i,
					Weights: api.AgentWeights{Passing: 1, Warning: 1}},
				Check: &api.AgentCheck{CheckID: id + "-check", Name: id, Status: api.HealthPassing, ServiceID: id},
			})
		}
	}
	register(t, c, regs)
	names := make([]string, services)
	for s := range names {
		names[s] = fmt.Sprintf("svc%03d", s)
	}
	return regs, names
}
