package catalog

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is a catalog the test drives: Watch hands out a channel the
// test sends on; Fetch answers snap or err. It records what was asked.
type fakeSource struct {
	mu      sync.Mutex
	watched [][]string
	fetched [][]string
	ch      chan Snapshot
	snap    Snapshot
	err     error
}

func newFake() *fakeSource { return &fakeSource{ch: make(chan Snapshot)} }

func (f *fakeSource) Watch(ctx context.Context, names []string, obs Observer) <-chan Snapshot {
	f.mu.Lock()
	f.watched = append(f.watched, slices.Clone(names))
	f.mu.Unlock()
	for _, n := range names {
		obs.ObserveQuery(n, 1, nil)
	}
	obs.ObserveQuery("fake-sweep", 1, nil)
	return f.ch
}

func (f *fakeSource) Fetch(ctx context.Context, names []string) (Snapshot, error) {
	f.mu.Lock()
	f.fetched = append(f.fetched, slices.Clone(names))
	f.mu.Unlock()
	return f.snap, f.err
}

func (f *fakeSource) asked() (watched, fetched [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watched, f.fetched
}

// split reads "nomad/x" as Nomad's x, anything else as Consul's.
func split(key string) (string, string) {
	if name, ok := strings.CutPrefix(key, "nomad/"); ok {
		return "nomad", name
	}
	return "consul", key
}

type recorder struct {
	mu      sync.Mutex
	queries []string
	errs    []error
}

func (r *recorder) ObserveQuery(q string, _ uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, q)
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

func svc(name, addr string) *Service {
	return &Service{Name: name, Instances: []*Instance{{ID: name + "-1", Node: "n1", Address: addr, Port: 80, Status: Passing}}}
}

func snap(changed []string, svcs ...*Service) Snapshot {
	s := Snapshot{Services: map[string]*Service{}}
	for _, v := range svcs {
		s.Services[v.Name] = v
	}
	if changed != nil {
		s.Changed = map[string]bool{}
		for _, c := range changed {
			s.Changed[c] = true
		}
	}
	return s
}

func send(t *testing.T, ch chan Snapshot, s Snapshot) {
	t.Helper()
	select {
	case ch <- s:
	case <-time.After(5 * time.Second):
		t.Fatal("the combiner does not take a source's snapshot")
	}
}

func receive(t *testing.T, ch <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("the combined channel closed")
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no combined snapshot")
	}
	return Snapshot{}
}

// none checks that nothing is offered: the combiner's goroutine has had
// the chance, since a later send to it went through.
func none(t *testing.T, ch <-chan Snapshot) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("a combined snapshot %v before every catalog answered", slices.Sorted(maps.Keys(s.Services)))
	default:
	}
}

// until reads snapshots until one has want's services, and returns the
// keys they said changed: every change, none twice counted, none lost.
func until(t *testing.T, out <-chan Snapshot, want map[string]*Service) map[string]bool {
	t.Helper()
	changed := map[string]bool{}
	for {
		s := receive(t, out)
		if s.Changed == nil {
			t.Fatal("a snapshot after the first has Changed nil")
		}
		maps.Copy(changed, s.Changed)
		if maps.Equal(s.Services, want) {
			return changed
		}
	}
}

func keysOf[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func TestCombinedWatch(t *testing.T) {
	consul, nomad := newFake(), newFake()
	c := &Combined{Sources: map[string]Source{"consul": consul, "nomad": nomad}, Split: split}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := &recorder{}
	// "web" in both catalogs, and "nomad/api" asked twice: each source is
	// asked for its names, each once.
	out := c.Watch(ctx, []string{"web", "nomad/web", "nomad/api", "nomad/api"}, obs)
	cw, _ := consul.asked()
	nw, _ := nomad.asked()
	if !slices.EqualFunc(cw, [][]string{{"web"}}, slices.Equal) || !slices.EqualFunc(nw, [][]string{{"web", "api"}}, slices.Equal) {
		t.Fatalf("consul watched %v, nomad %v; want [[web]] and [[web api]]", cw, nw)
	}
	// Queries are named by key; the source's own keep their name.
	obs.mu.Lock()
	if want := []string{"web", "fake-sweep", "nomad/web", "nomad/api", "fake-sweep"}; !slices.Equal(obs.queries, want) {
		t.Errorf("observed %v, want %v", obs.queries, want)
	}
	obs.mu.Unlock()

	cWeb, nWeb, nAPI := svc("web", "10.0.0.1"), svc("web", "10.0.1.1"), svc("api", "10.0.1.2")
	send(t, consul.ch, snap(nil, cWeb))
	send(t, consul.ch, snap([]string{}, cWeb)) // taken: the first is with the combiner
	none(t, out)                               // Nomad has not answered: not complete

	send(t, nomad.ch, snap(nil, nWeb, nAPI))
	first := receive(t, out)
	if first.Changed != nil {
		t.Errorf("first combined snapshot has Changed %v, want nil: everything is new", first.Changed)
	}
	if got := keysOf(first.Services); !slices.Equal(got, []string{"nomad/api", "nomad/web", "web"}) {
		t.Fatalf("first snapshot has %v", got)
	}
	if first.Services["web"] != cWeb || first.Services["nomad/web"] != nWeb || first.Services["nomad/api"] != nAPI {
		t.Errorf("the two catalogs' web are mixed up: %v", first.Services)
	}
	if got := first.Instances("nomad/web")[0].Address; got != "10.0.1.1" {
		t.Errorf("nomad/web's instance at %s, want Nomad's 10.0.1.1", got)
	}

	// A change of Nomad's web is nomad/web's alone.
	nWeb2 := svc("web", "10.0.1.9")
	send(t, nomad.ch, snap([]string{"web"}, nWeb2, nAPI))
	changed := until(t, out, map[string]*Service{"web": cWeb, "nomad/web": nWeb2, "nomad/api": nAPI})
	if got := keysOf(changed); !slices.Equal(got, []string{"nomad/web"}) {
		t.Errorf("Changed = %v, want [nomad/web]", got)
	}

	// A slow reader: changes of both catalogs, then one snapshot with
	// both. The empty sends are barriers: a source's next snapshot is
	// taken once its previous is with the combiner.
	cWeb2 := svc("web", "10.0.0.2")
	nAPI2 := svc("api", "10.0.1.3")
	send(t, consul.ch, snap([]string{"web"}, cWeb2))
	send(t, nomad.ch, snap([]string{"api"}, nWeb2, nAPI2))
	send(t, consul.ch, snap([]string{}, cWeb2))
	send(t, nomad.ch, snap([]string{}, nWeb2, nAPI2))
	s := receive(t, out)
	if got := keysOf(s.Changed); !slices.Equal(got, []string{"nomad/api", "web"}) {
		t.Errorf("a slow reader's Changed = %v, want [nomad/api web]", got)
	}
	if s.Services["web"] != cWeb2 || s.Services["nomad/api"] != nAPI2 || s.Services["nomad/web"] != nWeb2 {
		t.Errorf("a slow reader's snapshot: %v", s.Services)
	}
	// The snapshot handed out is the reader's: later changes leave it be.
	send(t, consul.ch, snap([]string{"web"}, cWeb))
	changed = until(t, out, map[string]*Service{"web": cWeb, "nomad/web": nWeb2, "nomad/api": nAPI2})
	if s.Services["web"] != cWeb2 {
		t.Error("a later change wrote into a snapshot already handed out")
	}
	if got := keysOf(changed); !slices.Equal(got, []string{"web"}) {
		t.Errorf("after the reader took one, Changed = %v, want [web]", got)
	}

	cancel()
	select {
	case _, ok := <-out:
		if ok {
			for range out {
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the combined channel is not closed when ctx ends")
	}
}

// TestCombinedWatchOneCatalog: keys of one provider alone never start
// the other's source: a config of Nomad services never contacts Consul.
func TestCombinedWatchOneCatalog(t *testing.T) {
	consul, nomad := newFake(), newFake()
	c := &Combined{Sources: map[string]Source{"consul": consul, "nomad": nomad}, Split: split}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := c.Watch(ctx, []string{"nomad/web"}, nil)
	send(t, nomad.ch, snap(nil, svc("web", "10.0.1.1")))
	if s := receive(t, out); s.Changed != nil || len(s.Services) != 1 {
		t.Errorf("first snapshot %v changed %v", s.Services, s.Changed)
	}
	if _, err := c.Fetch(ctx, []string{"nomad/web"}); err != nil {
		t.Fatal(err)
	}
	if w, f := consul.asked(); len(w) != 0 || len(f) != 0 {
		t.Errorf("consul was asked (watch %v, fetch %v) for nomad keys alone", w, f)
	}
}

// TestCombinedNoSource: keys of a provider the combiner has no source for
// are reported, under each key, and the whole is never complete: no pool
// is rendered from half an answer.
func TestCombinedNoSource(t *testing.T) {
	consul := newFake()
	c := &Combined{Sources: map[string]Source{"consul": consul}, Split: split}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := &recorder{}
	out := c.Watch(ctx, []string{"web", "nomad/web"}, obs)
	send(t, consul.ch, snap(nil, svc("web", "10.0.0.1")))
	send(t, consul.ch, snap([]string{"web"}, svc("web", "10.0.0.2")))
	none(t, out)
	obs.mu.Lock()
	if len(obs.errs) != 1 || !strings.Contains(obs.errs[0].Error(), "nomad catalog") || !slices.Contains(obs.queries, "nomad/web") {
		t.Errorf("observed %v with errors %v, want one error for nomad/web", obs.queries, obs.errs)
	}
	obs.mu.Unlock()
	if _, err := c.Fetch(ctx, []string{"web", "nomad/web"}); err == nil || !strings.Contains(err.Error(), "nomad catalog") {
		t.Errorf("Fetch without a nomad source: %v, want an error naming the nomad catalog", err)
	}
}

func TestCombinedFetch(t *testing.T) {
	consul, nomad := newFake(), newFake()
	consul.snap = snap(nil, svc("web", "10.0.0.1"))
	nomad.snap = snap(nil, svc("web", "10.0.1.1"))
	c := &Combined{Sources: map[string]Source{"consul": consul, "nomad": nomad}, Split: split}
	s, err := c.Fetch(context.Background(), []string{"web", "nomad/web"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Changed != nil || s.Services["web"] != consul.snap.Services["web"] || s.Services["nomad/web"] != nomad.snap.Services["web"] {
		t.Errorf("fetched %v changed %v", s.Services, s.Changed)
	}
	// A catalog failing fails the read, and says which.
	nomad.err = errors.New("403 Permission denied")
	_, err = c.Fetch(context.Background(), []string{"web", "nomad/web"})
	if err == nil || !strings.Contains(err.Error(), "nomad catalog: 403 Permission denied") {
		t.Errorf("Fetch with nomad failing: %v, want nomad's error, named", err)
	}
	// With no key at all, nothing is asked and nothing is missing.
	s, err = c.Fetch(context.Background(), nil)
	if err != nil || len(s.Services) != 0 {
		t.Errorf("Fetch of nothing: %v, %v", s.Services, err)
	}
}

// TestCombinedSourceFails: a source whose channel closes (its watch
// ended) leaves the rest running; nothing is emitted for it after.
func TestCombinedSourceFails(t *testing.T) {
	consul, nomad := newFake(), newFake()
	c := &Combined{Sources: map[string]Source{"consul": consul, "nomad": nomad}, Split: split}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := c.Watch(ctx, []string{"web", "nomad/web"}, nil)
	send(t, nomad.ch, snap(nil, svc("web", "10.0.1.1")))
	close(nomad.ch)
	send(t, consul.ch, snap(nil, svc("web", "10.0.0.1")))
	if s := receive(t, out); len(s.Services) != 2 {
		t.Errorf("first snapshot %v", s.Services)
	}
	send(t, consul.ch, snap([]string{"web"}, svc("web", "10.0.0.2")))
	if s := receive(t, out); !slices.Equal(keysOf(s.Changed), []string{"web"}) || s.Instances("web")[0].Address != "10.0.0.2" {
		t.Errorf("after nomad's watch ended, consul's change: %v changed %v", s.Services, s.Changed)
	}
	close(consul.ch)
	select {
	case _, ok := <-out:
		if ok {
			t.Error("a snapshot after every source's channel closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the combined channel stays open after every source's closed")
	}
}

// TestCombinedWatchConsulAlone: keys of one catalog whose names are the
// keys (Consul's) get that source's snapshots as they are, not merged
// into new maps: a flip among ten thousand services copies nothing of
// the others.
func TestCombinedWatchConsulAlone(t *testing.T) {
	consul := newFake()
	c := &Combined{Sources: map[string]Source{"consul": consul}, Split: split}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := c.Watch(ctx, []string{"web", "api"}, nil)
	for i, sent := range []Snapshot{
		snap(nil, svc("web", "10.0.1.1"), svc("api", "10.0.1.2")),
		snap([]string{"web"}, svc("web", "10.0.1.3"), svc("api", "10.0.1.2")),
	} {
		go func() { consul.ch <- sent }() // the reader's receive takes it
		got := receive(t, out)
		if reflect.ValueOf(got.Services).UnsafePointer() != reflect.ValueOf(sent.Services).UnsafePointer() || !maps.Equal(got.Changed, sent.Changed) {
			t.Errorf("snapshot %d: got %v changed %v, want the source's own %v changed %v", i, got.Services, got.Changed, sent.Services, sent.Changed)
		}
	}
}
