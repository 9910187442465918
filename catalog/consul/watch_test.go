package consul

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// answer is one reply of the fake health endpoint.
type answer struct {
	index    uint64
	entries  []*api.ServiceEntry
	err      error
	filtered bool
}

// fakeHealth serves answers fed to it per service, blocking like a
// blocking query until one is fed or the query's context ends. It records
// the index each query waited on.
type fakeHealth struct {
	mu     sync.Mutex
	feeds  map[string]chan answer
	waited map[string][]uint64
}

func newFakeHealth() *fakeHealth {
	return &fakeHealth{feeds: map[string]chan answer{}, waited: map[string][]uint64{}}
}

func (f *fakeHealth) feed(service string) chan answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.feeds[service]
	if !ok {
		ch = make(chan answer, 100)
		f.feeds[service] = ch
	}
	return ch
}

func (f *fakeHealth) waitedOn(service string) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.waited[service]...)
}

func (f *fakeHealth) Service(service, tag string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	f.mu.Lock()
	f.waited[service] = append(f.waited[service], q.WaitIndex)
	f.mu.Unlock()
	select {
	case a := <-f.feed(service):
		if a.err != nil {
			return nil, nil, a.err
		}
		return a.entries, &api.QueryMeta{LastIndex: a.index, ResultsFilteredByACLs: a.filtered}, nil
	case <-q.Context().Done():
		return nil, nil, q.Context().Err()
	}
}

func entry(node, id, addr string, port int, checks ...*api.HealthCheck) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: "192.0.2.1"},
		Service: &api.AgentService{ID: id, Service: "web", Address: addr, Port: port, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
		Checks:  checks,
	}
}

func check(id, status string) *api.HealthCheck {
	return &api.HealthCheck{CheckID: id, Name: id, Status: status}
}

// testSource has no real sleeps: it records them, and jitter is half of
// the range asked for.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func testSource(h Health, log hclog.Logger) (*Source, *sleeps) {
	w := newSource(h, Options{
		MinInterval: 100 * time.Millisecond, BackoffBase: time.Second, BackoffMax: 30 * time.Second, Logger: log,
	})
	s := &sleeps{}
	w.sleep = s.sleep
	w.jitter = func(d time.Duration) time.Duration { return d / 2 }
	fixed := time.Unix(1_700_000_000, 0)
	w.now = func() time.Time { return fixed }
	return w, s
}

func receive(t *testing.T, ch <-chan update) *catalog.Service {
	t.Helper()
	select {
	case u := <-ch:
		return u.svc
	case <-time.After(5 * time.Second):
		t.Fatal("no update in 5s")
		return nil
	}
}

func expectNothing(t *testing.T, ch <-chan update) {
	t.Helper()
	select {
	case u := <-ch:
		t.Fatalf("unexpected update at index %d: %+v", u.svc.Index, u.svc.Instances)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestWatchFollowsIndexRules(t *testing.T) {
	h := newFakeHealth()
	a := []*api.ServiceEntry{entry("n1", "web1", "10.1.0.11", 80)}
	b := []*api.ServiceEntry{entry("n1", "web1", "10.1.0.11", 80), entry("n2", "web2", "10.1.0.12", 80)}
	c := []*api.ServiceEntry{entry("n2", "web2", "10.1.0.12", 80)}
	feed := h.feed("web")
	for _, ans := range []answer{
		{index: 5, entries: a}, // first answer: emitted
		{index: 5, entries: a}, // same index: nothing, ask again with 5
		{index: 6, entries: a}, // index moved, same content: nothing
		{index: 7, entries: b}, // new content: emitted
		{index: 3, entries: b}, // went backwards: start over from 0
		{index: 0, entries: c}, // index 0: start over from 0, content emitted
		{index: 8, entries: c}, // same content: nothing
	} {
		feed <- ans
	}
	w, sl := testSource(h, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan update)
	done := make(chan struct{})
	go func() { w.watch(ctx, "web", nil, updates); close(done) }()

	if got := receive(t, updates); got.Index != 5 || len(got.Instances) != 1 {
		t.Errorf("first update: index %d with %d instances", got.Index, len(got.Instances))
	}
	if got := receive(t, updates); got.Index != 7 || len(got.Instances) != 2 {
		t.Errorf("second update: index %d with %d instances", got.Index, len(got.Instances))
	}
	if got := receive(t, updates); got.Index != 0 || len(got.Instances) != 1 || got.Instances[0].ID != "web2" {
		t.Errorf("third update: index %d with %+v", got.Index, got.Instances)
	}
	expectNothing(t, updates)
	// Wait until the watcher blocks on its 8th query.
	for deadline := time.Now().Add(5 * time.Second); len(h.waitedOn("web")) < 8; {
		if time.Now().After(deadline) {
			t.Fatalf("watcher made %d queries, want 8", len(h.waitedOn("web")))
		}
		time.Sleep(time.Millisecond)
	}
	if got, want := h.waitedOn("web"), []uint64{0, 5, 5, 6, 7, 0, 0, 8}; !reflect.DeepEqual(got, want) {
		t.Errorf("waited on indexes %v, want %v", got, want)
	}
	// Every query after a success is rate limited: MinInterval + jitter.
	for i, d := range sl.all() {
		if d != 150*time.Millisecond {
			t.Errorf("sleep %d = %v, want 150ms", i, d)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop on cancel")
	}
}

func TestWatchBacksOffAndResets(t *testing.T) {
	h := newFakeHealth()
	feed := h.feed("web")
	boom := errors.New("connection refused")
	for range 8 {
		feed <- answer{err: boom}
	}
	feed <- answer{index: 2, entries: nil}
	feed <- answer{err: boom}
	w, sl := testSource(h, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan update, 10)
	go w.watch(ctx, "web", nil, updates)
	got := receive(t, updates)
	if got.Index != 2 || len(got.Instances) != 0 {
		t.Errorf("update after errors: %+v", got)
	}
	for deadline := time.Now().Add(5 * time.Second); len(sl.all()) < 10; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d sleeps: %v", len(sl.all()), sl.all())
		}
		time.Sleep(time.Millisecond)
	}
	// Backoff doubles from 1s to the 30s cap, less a quarter of jitter
	// (the test's jitter takes half of that quarter); a success resets it.
	less := func(d time.Duration) time.Duration { return d - d/8 }
	want := []time.Duration{
		less(1 * time.Second), less(2 * time.Second), less(4 * time.Second), less(8 * time.Second),
		less(16 * time.Second), less(30 * time.Second), less(30 * time.Second), less(30 * time.Second),
		150 * time.Millisecond, // rate limit after the success
		less(1 * time.Second),  // reset
	}
	if got := sl.all()[:10]; !reflect.DeepEqual(got, want) {
		t.Errorf("sleeps\n got %v\nwant %v", got, want)
	}
}

func TestWatchEmitsOnlyCompleteSnapshots(t *testing.T) {
	h := newFakeHealth()
	w, _ := testSource(h, nil)
	ctx, cancel := context.WithCancel(context.Background())
	snaps := w.Watch(ctx, []string{"web", "api", "web"}, nil)

	h.feed("web") <- answer{index: 10, entries: []*api.ServiceEntry{entry("n1", "web1", "10.1.0.11", 80)}}
	select {
	case s := <-snaps:
		t.Fatalf("snapshot before api answered: %+v", s)
	case <-time.After(100 * time.Millisecond):
	}
	h.feed("api") <- answer{index: 11}
	select {
	case s := <-snaps:
		if len(s.Services) != 2 || len(s.Instances("web")) != 1 || s.Instances("api") != nil || s.Services["api"].Index != 11 {
			t.Errorf("first snapshot: %+v", s.Services)
		}
		if s.Changed != nil || !s.ChangedService("web") || !s.ChangedService("api") {
			t.Errorf("first snapshot changed %v: want nil, everything", s.Changed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot after both answered")
	}
	// Later changes come one service at a time, the others carried over.
	h.feed("api") <- answer{index: 12, entries: []*api.ServiceEntry{entry("n2", "api1", "10.1.0.21", 8080)}}
	select {
	case s := <-snaps:
		if len(s.Instances("web")) != 1 || len(s.Instances("api")) != 1 {
			t.Errorf("second snapshot: %+v", s.Services)
		}
		if !reflect.DeepEqual(s.Changed, map[string]bool{"api": true}) || s.ChangedService("web") {
			t.Errorf("second snapshot changed %v, want only api", s.Changed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot after api changed")
	}
	if got := h.waitedOn("web"); len(got) == 0 || got[0] != 0 {
		t.Errorf("web queried with %v", got)
	}
	cancel()
	select {
	case _, open := <-snaps:
		if open {
			// a pending snapshot may still be delivered once
			if _, open = <-snaps; open {
				t.Error("channel still open after cancel")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

// TestWatchIgnoresOutputOnlyChanges: a check whose output changes but not
// its status makes no snapshot, yet the next snapshot carries its output.
func TestWatchIgnoresOutputOnlyChanges(t *testing.T) {
	h := newFakeHealth()
	w, _ := testSource(h, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := w.Watch(ctx, []string{"web", "api"}, nil)
	withOutput := func(out string) []*api.ServiceEntry {
		c := check("web1-http", "passing")
		c.Output = out
		return []*api.ServiceEntry{entry("n1", "web1", "10.1.0.11", 80, c)}
	}
	h.feed("web") <- answer{index: 1, entries: withOutput("200 OK")}
	h.feed("api") <- answer{index: 1}
	first := <-snaps
	if got := first.Instances("web")[0].Checks[0].Output; got != "200 OK" {
		t.Fatalf("first output %q", got)
	}
	h.feed("web") <- answer{index: 2, entries: withOutput("200 OK in 3ms")}
	select {
	case s := <-snaps:
		t.Fatalf("snapshot for an output-only change: changed %v", s.Changed)
	case <-time.After(100 * time.Millisecond):
	}
	h.feed("api") <- answer{index: 2, entries: []*api.ServiceEntry{entry("n2", "api1", "10.1.0.21", 8080)}}
	select {
	case s := <-snaps:
		if !reflect.DeepEqual(s.Changed, map[string]bool{"api": true}) {
			t.Errorf("changed %v, want only api", s.Changed)
		}
		if got := s.Instances("web")[0].Checks[0].Output; got != "200 OK in 3ms" {
			t.Errorf("web output %q, want the latest", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot after api changed")
	}
}

func TestWatchDeliversTheLatestToASlowReader(t *testing.T) {
	h := newFakeHealth()
	w, _ := testSource(h, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := w.Watch(ctx, []string{"web"}, nil)
	feed := h.feed("web")
	for i := uint64(1); i <= 5; i++ {
		feed <- answer{index: i, entries: []*api.ServiceEntry{entry("n1", "web1", "10.1.0.11", int(i))}}
	}
	// Let the watcher consume all five before reading.
	for deadline := time.Now().Add(5 * time.Second); len(h.waitedOn("web")) < 6; {
		if time.Now().After(deadline) {
			t.Fatal("watcher did not consume the answers")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	s := <-snaps
	if got := s.Instances("web")[0].Port; got != 5 {
		t.Errorf("slow reader got port %d, want the latest, 5", got)
	}
}

func TestWatchLogsACLFilteredAnswersLoudly(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, Level: hclog.Info})
	h := newFakeHealth()
	h.feed("web") <- answer{index: 4, filtered: true}
	w, _ := testSource(h, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan update, 1)
	go w.watch(ctx, "web", nil, updates)
	if s := receive(t, updates); !s.FilteredByACLs {
		t.Error("FilteredByACLs not set")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "[WARN]") || !strings.Contains(buf.String(), "filtered the answer by acls") {
		t.Errorf("no warning logged:\n%s", buf.String())
	}
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

func TestNewInstance(t *testing.T) {
	tests := []struct {
		name  string
		entry *api.ServiceEntry
		want  catalog.Instance
	}{
		{
			name:  "no checks is passing; service address wins",
			entry: entry("n1", "web1", "10.1.0.11", 80),
			want:  catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing},
		},
		{
			name:  "node address when the service has none",
			entry: entry("n1", "web1", "", 80),
			want:  catalog.Instance{ID: "web1", Node: "n1", Address: "192.0.2.1", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing},
		},
		{
			name: "worst of node and service checks",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("serfHealth", "passing"), check("web1-http", "warning")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Warning},
		},
		{
			name: "a critical node check makes the instance critical",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("serfHealth", "critical"), check("web1-http", "passing")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Critical},
		},
		{
			name: "an unknown status counts as critical",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("web1-http", "bogus")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Critical},
		},
		{
			name: "maintenance is apart from status",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("_node_maintenance", "critical"), check("_service_maintenance:web1", "critical"), check("web1-http", "passing")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing,
				NodeMaintenance: true, ServiceMaintenance: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := *newInstance(tt.entry)
			got.Checks = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// Weights missing from an old catalog default to Consul's 1 and 1.
	e := entry("n1", "web1", "10.1.0.11", 80)
	e.Service.Weights = api.AgentWeights{}
	if got := newInstance(e).Weights; got != (catalog.Weights{Passing: 1, Warning: 1}) {
		t.Errorf("default weights = %+v", got)
	}
}
