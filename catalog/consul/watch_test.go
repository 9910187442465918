package consul

import (
	"bytes"
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/catalog"
)

func clockworkFake() *clockwork.FakeClock { return clockwork.NewFakeClock() }

// fakeConsul is a stateful catalog with one index for everything but
// /v1/catalog/services, which only writes of services move, as in Consul.
type fakeConsul struct {
	mu         sync.Mutex
	index      uint64
	svcIndex   uint64
	wake       chan struct{}
	nodes      map[string]string              // node → address
	nodeChecks map[string][]*api.HealthCheck  // node → its node checks
	entries    map[string][]*api.ServiceEntry // service → instances with their service checks
	hold       map[string]chan struct{}       // a read of the service waits on it, its answer already taken
	gate       map[string]chan struct{}       // a health-state query of the status waits on it, its answer not taken yet
	taken      map[string]int                 // answers taken, by service
	onState    func(state string, waitIndex uint64)
	err        error // every query fails with it
	filtered   bool
	nodeErr    error         // node reads fail with it
	nodeReads  int           // node reads taken, probes included
	nodeHold   chan struct{} // a node read waits on it, its answer already taken
}

func newFakeConsul() *fakeConsul {
	return &fakeConsul{index: 1, svcIndex: 1, wake: make(chan struct{}), nodes: map[string]string{},
		nodeChecks: map[string][]*api.HealthCheck{}, entries: map[string][]*api.ServiceEntry{}, hold: map[string]chan struct{}{},
		gate: map[string]chan struct{}{}, taken: map[string]int{}}
}

// write changes services and moves every index; writeHealth changes
// checks or nodes only; silently changes the catalog without moving any
// index, as a change no feed sees.
func (f *fakeConsul) write(change func()) {
	f.writeHealth(func() {
		change()
		f.svcIndex = f.index + 1
		// Every instance counts as edited: a node sweep re-reads every
		// service, as a per-service sweep would.
		for _, entries := range f.entries {
			for _, e := range entries {
				e.Service.ModifyIndex = f.index + 1
			}
		}
	})
}

func (f *fakeConsul) writeHealth(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
	f.index++
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeConsul) silently(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

// block waits like a blocking query on the index and returns with f.mu
// held.
func (f *fakeConsul) block(q *api.QueryOptions) (*api.QueryMeta, error) {
	return f.blockOn(q, &f.index)
}

func (f *fakeConsul) blockOn(q *api.QueryOptions, index *uint64) (*api.QueryMeta, error) {
	f.mu.Lock()
	for q.WaitIndex != 0 && *index <= q.WaitIndex && f.err == nil {
		w := f.wake
		f.mu.Unlock()
		select {
		case <-w:
		case <-q.Context().Done():
			f.mu.Lock()
			return nil, q.Context().Err()
		}
		f.mu.Lock()
	}
	return &api.QueryMeta{LastIndex: *index}, f.err
}

func (f *fakeConsul) Service(name string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	meta, err := f.block(q)
	if err != nil {
		f.mu.Unlock()
		return nil, nil, err
	}
	var out []*api.ServiceEntry
	for _, e := range f.entries[name] {
		svc := *e.Service
		svc.Tags = slices.Clone(svc.Tags)
		out = append(out, &api.ServiceEntry{
			Node:    &api.Node{Node: e.Node.Node, Address: f.nodes[e.Node.Node]},
			Service: &svc,
			Checks:  copyChecks(append(slices.Clone(f.nodeChecks[e.Node.Node]), e.Checks...)),
		})
	}
	meta.ResultsFilteredByACLs = f.filtered
	f.taken[name]++
	hold := f.hold[name]
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-q.Context().Done():
			return nil, nil, q.Context().Err()
		}
	}
	return out, meta, nil
}

func (f *fakeConsul) State(state string, q *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error) {
	f.mu.Lock()
	cb := f.onState
	f.mu.Unlock()
	if cb != nil {
		cb(state, q.WaitIndex) // before blocking: the feed handed on its last answer
	}
	meta, err := f.block(q)
	if gate := f.gate[state]; gate != nil && err == nil {
		f.mu.Unlock()
		select {
		case <-gate:
		case <-q.Context().Done():
			return nil, nil, q.Context().Err()
		}
		f.mu.Lock()
		meta.LastIndex = f.index
	}
	var out api.HealthChecks
	for _, checks := range f.nodeChecks {
		out = append(out, checks...)
	}
	for _, entries := range f.entries {
		for _, e := range entries {
			out = append(out, e.Checks...)
		}
	}
	out = copyChecks(slices.DeleteFunc(out, func(c *api.HealthCheck) bool { return c.Status != state }))
	f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	return out, meta, nil
}

func (f *fakeConsul) Services(q *api.QueryOptions) (map[string][]string, *api.QueryMeta, error) {
	meta, err := f.blockOn(q, &f.svcIndex)
	defer f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]string{}
	for name, entries := range f.entries {
		for _, e := range entries {
			out[name] = append(out[name], e.Service.Tags...)
		}
	}
	return out, meta, nil
}

func (f *fakeConsul) Nodes(q *api.QueryOptions) ([]*api.Node, *api.QueryMeta, error) {
	meta, err := f.block(q)
	defer f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	var out []*api.Node
	for n, addr := range f.nodes {
		out = append(out, &api.Node{Node: n, Address: addr})
	}
	return out, meta, nil
}

func (f *fakeConsul) NodeServices(node string, q *api.QueryOptions) ([]nodeService, *api.QueryMeta, error) {
	meta, err := f.block(q)
	defer f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	meta.ResultsFilteredByACLs = f.filtered
	f.nodeReads++
	if f.nodeErr != nil {
		return nil, nil, f.nodeErr
	}
	var out []nodeService
	for name, entries := range f.entries {
		for _, e := range entries {
			if e.Node.Node == node && q.Filter != probeFilter {
				out = append(out, nodeService{ID: e.Service.ID, Service: name, ModifyIndex: e.Service.ModifyIndex})
			}
		}
	}
	f.holdNode(q)
	return out, meta, nil
}

// holdNode keeps a node read, f.mu held, until nodeHold closes (when
// set) or the read's context ends.
func (f *fakeConsul) holdNode(q *api.QueryOptions) {
	if hold := f.nodeHold; hold != nil {
		f.mu.Unlock()
		select {
		case <-hold:
		case <-q.Context().Done():
		}
		f.mu.Lock()
	}
}

// NodeInstances is the first sync's node read: counted and held as
// NodeServices' are.
func (f *fakeConsul) NodeInstances(node string, q *api.QueryOptions) (*api.Node, []nodeInstance, *api.QueryMeta, error) {
	meta, err := f.block(q)
	defer f.mu.Unlock()
	if err != nil {
		return nil, nil, nil, err
	}
	meta.ResultsFilteredByACLs = f.filtered
	f.nodeReads++
	if f.nodeErr != nil {
		return nil, nil, nil, f.nodeErr
	}
	var out []nodeInstance
	for name, entries := range f.entries {
		for _, e := range entries {
			if e.Node.Node == node {
				s := e.Service
				out = append(out, nodeInstance{ID: s.ID, Service: name, Address: s.Address, Port: s.Port,
					Tags: slices.Clone(s.Tags), Weights: s.Weights, Meta: maps.Clone(s.Meta), ModifyIndex: s.ModifyIndex})
			}
		}
	}
	n := &api.Node{Node: node, Address: f.nodes[node]}
	f.holdNode(q)
	return n, out, meta, nil
}

// NodeChecks is /v1/health/node/:node: the node's checks and its
// instances'.
func (f *fakeConsul) NodeChecks(node string, q *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error) {
	meta, err := f.block(q)
	defer f.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	f.nodeReads++
	if f.nodeErr != nil {
		return nil, nil, f.nodeErr
	}
	out := copyChecks(f.nodeChecks[node])
	for _, entries := range f.entries {
		for _, e := range entries {
			if e.Node.Node == node {
				out = append(out, copyChecks(e.Checks)...)
			}
		}
	}
	return out, meta, nil
}

// copyChecks copies checks, so that answers never share what a later
// write changes.
func copyChecks(checks api.HealthChecks) api.HealthChecks {
	out := make(api.HealthChecks, len(checks))
	for i, c := range checks {
		cc := *c
		out[i] = &cc
	}
	return out
}

// add registers an instance (no lock: call it inside write or silently).
func (f *fakeConsul) add(service, node, id string, port int, checks ...*api.HealthCheck) {
	for _, c := range checks {
		c.Node, c.ServiceID, c.ServiceName = node, id, service
	}
	f.entries[service] = append(f.entries[service], &api.ServiceEntry{
		Node:    &api.Node{Node: node},
		Service: &api.AgentService{ID: id, Service: service, Port: port, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
		Checks:  checks,
	})
}

func (f *fakeConsul) instance(service, id string) *api.ServiceEntry {
	for _, e := range f.entries[service] {
		if e.Service.ID == id {
			return e
		}
	}
	panic("no instance " + id)
}

// quick is a source over f with a real clock and short waits.
func quick(f *fakeConsul, log hclog.Logger) *Source {
	return newSource(f, Options{MinInterval: time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond, Logger: log})
}

func next(t *testing.T, snaps <-chan catalog.Snapshot, what string) catalog.Snapshot {
	t.Helper()
	select {
	case s, ok := <-snaps:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no snapshot in 5s", what)
		return catalog.Snapshot{}
	}
}

func changed(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// TestWatchNamesWhatChanged: each kind of change reaches a snapshot that
// names only the service it touched; an output-only change makes none.
func TestWatchNamesWhatChanged(t *testing.T) {
	f := newFakeConsul()
	f.silently(func() {
		f.nodes["n1"], f.nodes["n2"] = "192.0.2.1", "192.0.2.2"
		f.nodeChecks["n2"] = []*api.HealthCheck{{Node: "n2", CheckID: "serfHealth", Status: api.HealthPassing}}
		f.add("web", "n1", "web1", 80, &api.HealthCheck{CheckID: "web1-http", Status: api.HealthPassing, Output: "200"})
		f.add("api", "n2", "api1", 8080)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := quick(f, nil).Watch(ctx, []string{"web", "api", "ghost", "web"}, nil)

	s := next(t, snaps, "first")
	if len(s.Services) != 3 || s.Changed != nil || len(s.Instances("web")) != 1 || len(s.Instances("ghost")) != 0 {
		t.Fatalf("first snapshot: %+v changed %v", s.Services, s.Changed)
	}
	steps := []struct {
		name    string
		health  bool // moves no /v1/catalog/services index: no sweep
		change  func()
		changed map[string]bool
		check   func(catalog.Snapshot) bool
	}{
		{"service check flips", true, func() { f.instance("web", "web1").Checks[0].Status = api.HealthCritical },
			changed("web"), func(s catalog.Snapshot) bool { return s.Instances("web")[0].Status == catalog.Critical }},
		{"web's output and api's weight", false, func() {
			f.instance("web", "web1").Checks[0].Output = "503"
			f.instance("api", "api1").Service.Weights.Passing = 7
		}, changed("api"), func(s catalog.Snapshot) bool { return s.Instances("api")[0].Weights.Passing == 7 }},
		{"node check of the node under api", true, func() { f.nodeChecks["n2"][0].Status = api.HealthCritical },
			changed("api"), func(s catalog.Snapshot) bool { return s.Instances("api")[0].Status == catalog.Critical }},
		{"node address under web", true, func() { f.nodes["n1"] = "192.0.2.11" },
			changed("web"), func(s catalog.Snapshot) bool { return s.Instances("web")[0].Address == "192.0.2.11" }},
		{"healthy instance registered", false, func() { f.add("ghost", "n1", "ghost1", 81) },
			changed("ghost"), func(s catalog.Snapshot) bool { return len(s.Instances("ghost")) == 1 }},
		{"instance deregistered", false, func() { delete(f.entries, "api") },
			changed("api"), func(s catalog.Snapshot) bool { return len(s.Instances("api")) == 0 }},
	}
	for _, st := range steps {
		if st.health {
			f.writeHealth(st.change)
		} else {
			f.write(st.change)
		}
		s := next(t, snaps, st.name)
		if !reflect.DeepEqual(s.Changed, st.changed) || !st.check(s) {
			t.Errorf("%s: changed %v (want %v), services %v", st.name, s.Changed, st.changed, describeAll(s))
		}
	}
}

func describeAll(s catalog.Snapshot) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(s.Services)) {
		for _, in := range s.Services[name].Instances {
			b.WriteString(name + ":" + in.ID + "@" + in.Address + " " + string(in.Status) + " ")
		}
	}
	return b.String()
}

// TestWatchResyncsEveryInterval: a change no feed sees is found by the
// backstop resync, on the injected clock's schedule.
func TestWatchResyncsEveryInterval(t *testing.T) {
	f := newFakeConsul()
	f.silently(func() { f.nodes["n1"] = "192.0.2.1"; f.add("web", "n1", "web1", 80) })
	clock := clockwork.NewFakeClock()
	src := newSource(f, Options{ResyncInterval: time.Minute, Clock: clock})
	src.jitter = func(d time.Duration) time.Duration { return d / 2 }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := src.Watch(ctx, []string{"web"}, nil)
	next(t, snaps, "first")

	f.silently(func() { f.instance("web", "web1").Service.Port = 81 })
	// The four feeds sleep out their rate limit; the resync timer waits.
	if err := clock.BlockUntilContext(ctx, feeds+1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute + 2*time.Second) // the interval and half of its 10% of jitter, less a little
	select {
	case s := <-snaps:
		t.Fatalf("resync before its time: %v", describeAll(s))
	case <-time.After(50 * time.Millisecond):
	}
	clock.Advance(time.Second)
	if s := next(t, snaps, "resync"); s.Instances("web")[0].Port != 81 || !reflect.DeepEqual(s.Changed, changed("web")) {
		t.Errorf("after the resync: port %d, changed %v", s.Instances("web")[0].Port, s.Changed)
	}
}

// TestWatchRereadsAfterANodeEventDuringARead: a read already out when a
// node check of a node it did not know the service on flips is done again.
func TestWatchRereadsAfterANodeEventDuringARead(t *testing.T) {
	f := newFakeConsul()
	f.silently(func() {
		f.nodes["n1"] = "192.0.2.1"
		f.nodeChecks["n1"] = []*api.HealthCheck{{Node: "n1", CheckID: "serfHealth", Status: api.HealthPassing}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := quick(f, nil).Watch(ctx, []string{"web"}, nil)
	next(t, snaps, "first")

	// web's next read takes its answer, then waits until the critical feed
	// has handed on the node check's flip and asks again.
	release := make(chan struct{})
	var once sync.Once
	f.silently(func() { f.hold["web"] = release })
	f.write(func() { f.add("web", "n1", "web1", 80) })
	waitFor(t, "web's second read", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.taken["web"] >= 2
	})
	var flipped uint64
	f.writeHealth(func() {
		f.nodeChecks["n1"][0].Status = api.HealthCritical
		flipped = f.index + 1
		f.onState = func(state string, waitIndex uint64) {
			if state == api.HealthCritical && waitIndex >= flipped {
				once.Do(func() {
					f.silently(func() { delete(f.hold, "web") })
					close(release)
				})
			}
		}
	})
	for {
		s := next(t, snaps, "web critical")
		if ins := s.Instances("web"); len(ins) == 1 && ins[0].Status == catalog.Critical {
			return
		}
	}
}

// TestWatchLogsTroubleOnce: a 429 in a loop of retries is one warning,
// saying what to do; the recovery one info.
func TestWatchLogsTroubleOnce(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, Level: hclog.Info})
	f := newFakeConsul()
	f.silently(func() { f.err = api.StatusError{Code: 429, Body: "Your IP is issuing too many concurrent connections"} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failures := &counting{}
	snaps := quick(f, log).Watch(ctx, []string{"web"}, failures)
	waitFor(t, "50 failed queries", func() bool { return failures.failed() >= 50 })
	f.write(func() { f.err = nil })
	next(t, snaps, "first after recovery")
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if n := strings.Count(out, "[WARN]"); n != 1 || !strings.Contains(out, "http_max_conns_per_client") {
		t.Errorf("%d warnings, want 1 with the advice:\n%s", n, out)
	}
	if !strings.Contains(out, "consul answers again") {
		t.Errorf("no recovery logged:\n%s", out)
	}
}

// TestWatchLogsACLFilteredAnswersLoudly: once, not on every read.
func TestWatchLogsACLFilteredAnswersLoudly(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, Level: hclog.Info})
	f := newFakeConsul()
	f.silently(func() { f.filtered = true; f.nodes["n1"] = "192.0.2.1"; f.add("web", "n1", "web1", 80) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := quick(f, log).Watch(ctx, []string{"web"}, nil)
	if s := next(t, snaps, "first"); !s.Services["web"].FilteredByACLs {
		t.Error("FilteredByACLs not set")
	}
	f.write(func() { f.instance("web", "web1").Service.Port = 81 })
	next(t, snaps, "edit")
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "filtered the answer by acls"); n != 1 {
		t.Errorf("%d acl warnings, want 1:\n%s", n, buf.String())
	}
}

type counting struct {
	mu sync.Mutex
	n  int
}

func (c *counting) ObserveQuery(_ string, _ uint64, err error) {
	if err != nil {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
}

func (c *counting) failed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestWatchRereadsAChangeUndoneBeforeTheFeedShowsIt: a read that saw a node
// check flip the critical feed had not shown yet, flipped back before that
// feed answered again, leaves the feed's two answers alike: the read is
// done again at that answer, or at once if the answer came while the read
// was out. (What TestNoChangeMissed found on a real agent: node
// maintenance, a node check or a service check on and off again within
// one rate-limit interval of the critical feed.)
func TestWatchRereadsAChangeUndoneBeforeTheFeedShowsIt(t *testing.T) {
	for _, tt := range []struct {
		name string
		// out: the read that sees the flip is still out when the critical
		// feed answers; else its answer is in before.
		out bool
	}{
		{"read in before the feed answers", false},
		{"read out while the feed answers", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConsul()
			f.silently(func() {
				f.nodes["n1"] = "192.0.2.1"
				f.nodeChecks["n1"] = []*api.HealthCheck{{Node: "n1", CheckID: "serfHealth", Status: api.HealthPassing}}
				f.add("web", "n1", "web1", 80, &api.HealthCheck{CheckID: "web1-http", Status: api.HealthPassing})
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			snaps := quick(f, nil).Watch(ctx, []string{"web"}, nil)
			next(t, snaps, "first")

			// The critical feed answers only when let; web's read, when held,
			// takes its answer and then waits.
			gate, release := make(chan struct{}), make(chan struct{})
			f.silently(func() {
				f.gate[api.HealthCritical] = gate
				if tt.out {
					f.hold["web"] = release
				}
			})
			// serfHealth goes critical as web1's check goes warning: the
			// warning feed has web read, and the read sees serfHealth too.
			f.writeHealth(func() {
				f.nodeChecks["n1"][0].Status = api.HealthCritical
				f.instance("web", "web1").Checks[0].Status = api.HealthWarning
			})
			waitFor(t, "web's read of the flip", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.taken["web"] >= 2
			})
			if !tt.out {
				if s := next(t, snaps, "the flip"); s.Instances("web")[0].Status != catalog.Critical {
					t.Fatalf("after the flip: %s", describeAll(s))
				}
			}
			// serfHealth back to passing: the critical feed's answer is as
			// empty as its last.
			var flippedBack uint64
			answered := make(chan struct{})
			var once sync.Once
			f.writeHealth(func() {
				f.nodeChecks["n1"][0].Status = api.HealthPassing
				flippedBack = f.index + 1
				f.onState = func(state string, waitIndex uint64) {
					if state == api.HealthCritical && waitIndex >= flippedBack {
						once.Do(func() { close(answered) }) // handed on its answer
					}
				}
				delete(f.gate, api.HealthCritical)
			})
			close(gate)
			select {
			case <-answered:
			case <-time.After(5 * time.Second):
				t.Fatal("the critical feed did not answer")
			}
			if tt.out {
				f.silently(func() { delete(f.hold, "web") })
				close(release)
			}
			for {
				s := next(t, snaps, "web warning")
				if in := s.Instances("web")[0]; in.Status == catalog.Warning {
					break
				}
			}
		})
	}
}

// TestWatchSweepsPerServiceWithoutNodeReads: a Consul that 404s node
// reads (before 1.7) turns node sweeps off once, logged once; an edit is
// still found, by reading every service; and the nodes are never asked
// again.
func TestWatchSweepsPerServiceWithoutNodeReads(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, Level: hclog.Info})
	f := newFakeConsul()
	f.silently(func() {
		f.nodes["n1"] = "192.0.2.1"
		f.add("web", "n1", "web1", 80)
		f.add("api", "n1", "api1", 8080)
		f.nodeErr = api.StatusError{Code: 404, Body: "Invalid URL path"}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := quick(f, log).Watch(ctx, []string{"web", "api"}, nil)
	next(t, snaps, "first")
	for i, weight := range []int{5, 6} {
		f.write(func() { f.instance("api", "api1").Service.Weights.Passing = weight })
		s := next(t, snaps, "weight edit")
		if !reflect.DeepEqual(s.Changed, changed("api")) || s.Instances("api")[0].Weights.Passing != weight {
			t.Errorf("edit %d: changed %v, %s", i, s.Changed, describeAll(s))
		}
	}
	waitFor(t, "web swept twice", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.taken["web"] >= 3 })
	f.mu.Lock()
	nodeReads := f.nodeReads
	f.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "node sweeps off"); n != 1 || nodeReads != 1 {
		t.Errorf("%d node reads and %d warnings, want 1 each:\n%s", nodeReads, n, buf.String())
	}
}

// TestWatchReadsNodesBeforeAnyService: with node sweeps, the first sync
// reads each node (its checks, then its instances) and no service until
// all have answered; then every service's first answer is built from
// them, equal to what a read of each gives (Fetch): a critical instance,
// one warning, a node in maintenance, an instance in maintenance. A
// service with an instance changed after its node's checks were read
// (its ModifyIndex above the checks read's index) is read per service,
// and only it.
func TestWatchReadsNodesBeforeAnyService(t *testing.T) {
	f := newFakeConsul()
	hold := make(chan struct{})
	f.silently(func() {
		f.nodes["n1"], f.nodes["n2"], f.nodes["n3"] = "192.0.2.1", "192.0.2.2", "192.0.2.3"
		f.add("web", "n1", "web1", 80, check("web1-c", api.HealthCritical))
		f.add("web", "n2", "web2", 80)
		f.add("web", "n3", "web3", 80, check("web3-c", api.HealthWarning))
		f.add("api", "n2", "api1", 8080)
		f.add("api", "n3", "api2", 8080, check(api.ServiceMaintPrefix+"api2", api.HealthCritical))
		f.add("db", "n1", "db1", 5432)
		f.add("db", "n3", "db2", 5432)
		f.add("cache", "n1", "cache1", 6379)
		f.add("late", "n3", "late1", 1)
		f.instance("late", "late1").Service.ModifyIndex = 1000 // edited after any read of the checks
		f.nodeChecks["n2"] = []*api.HealthCheck{{Node: "n2", CheckID: api.NodeMaint, Status: api.HealthCritical}}
		f.nodeHold = hold
	})
	names := []string{"web", "api", "db", "cache", "late", "none"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := quick(f, nil)
	snaps := src.Watch(ctx, names, nil)
	waitFor(t, "the three nodes' reads out", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.nodeReads == 6 })
	f.mu.Lock()
	taken := maps.Clone(f.taken)
	f.mu.Unlock()
	if len(taken) != 0 {
		t.Errorf("services read before the nodes answered: %v", taken)
	}
	close(hold)
	got := next(t, snaps, "first")
	f.mu.Lock()
	taken = maps.Clone(f.taken)
	f.mu.Unlock()
	if !reflect.DeepEqual(taken, map[string]int{"late": 1}) {
		t.Errorf("first sync read %v per service, want late alone, once", taken)
	}
	want, err := src.Fetch(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if g, w := got.Services[name], want.Services[name]; g == nil || !g.SameContent(w) {
			t.Errorf("%s: synthesized %s\nread %s", name, describeAll(got), describeAll(want))
		}
	}
	if in := got.Instances("web"); len(in) != 3 || in[0].Status != catalog.Critical || in[1].Status != catalog.Passing || !in[1].NodeMaintenance || in[2].Status != catalog.Warning {
		t.Errorf("web: %s", describeAll(got))
	}
}
