package nomad

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/backoff"
	"github.com/lvs-sync/lvs-sync/internal/blocking"
)

// The queries, as the Observer hears them: the feed and the check
// results by their paths (one name for every allocation, so that a
// metric keyed by it stays small), a service read by the service's name.
const (
	FeedQuery   = "/v1/services"
	ChecksQuery = "/v1/client/allocation/:id/checks"
)

// feedAnswer is an answer of the feed whose index moved.
type feedAnswer struct {
	where map[string][]string // watched name → the namespaces it is in
	reset bool
}

type readRequest struct {
	name  string
	where []string
}

type readResult struct {
	name  string
	regs  []registration
	index uint64
	err   error
}

type pollRequest struct {
	alloc, namespace string
	spec             *allocSpec
}

type pollResult struct {
	alloc   string
	results []checkResult
	spec    *allocSpec
	err     error
}

// svcState is what a watch holds of one watched service.
type svcState struct {
	regs     []registration
	index    uint64
	answered bool // its registrations were read once
	view     *catalog.Service
	// queued waits for a reader; inflight is out; again asks for one more
	// read after the one out.
	queued, inflight, again bool
	failures                int
	retrying                bool
}

// allocState is what a watch holds of one allocation under the watched
// services: its check results, and when they are read next.
type allocState struct {
	namespace string
	checks    allocChecks
	known     bool       // read once (or given up on: checks.unread)
	spec      *allocSpec // its job's checks, once read (see readChecks)
	inflight  bool
	urgent    bool
	due       time.Time
	failures  int
	services  map[string]bool // the watched services with an instance in it
}

// watch is the state of one Watch call, owned by its run goroutine.
type watch struct {
	s        *Source
	obs      catalog.Observer
	services map[string]*svcState
	allocs   map[string]*allocState
	where    map[string][]string
	fed      bool

	readQ   []string
	urgent  []string // allocations to read before the ring's turn
	ring    []string // allocations in the order they are polled
	cursor  int
	slot    time.Time // the next check read may not start before
	retries chan string

	latest   map[string]*catalog.Service
	answered int
	changed  map[string]bool
	pending  bool
	first    bool
	snap     *catalog.Snapshot
}

// Watch follows the feed, reads the services it names and polls the
// check results of their allocations; see the package documentation and
// catalog.Source.
func (s *Source) Watch(ctx context.Context, services []string, obs catalog.Observer) <-chan catalog.Snapshot {
	w := &watch{s: s, obs: obs, services: map[string]*svcState{}, allocs: map[string]*allocState{},
		retries: make(chan string), latest: map[string]*catalog.Service{}, changed: map[string]bool{}, first: true}
	for _, name := range unique(services) {
		w.services[name] = &svcState{}
	}
	out := make(chan catalog.Snapshot)
	answers := make(chan feedAnswer)
	reads, readResults := make(chan readRequest), make(chan readResult)
	polls, pollResults := make(chan pollRequest), make(chan pollResult)
	go s.follow(ctx, w.watchedSet(), obs, answers)
	for range s.opts.readers() {
		go s.reader(ctx, obs, reads, readResults)
	}
	for range s.opts.checkers() {
		go s.poller(ctx, obs, polls, pollResults)
	}
	go w.run(ctx, answers, reads, readResults, polls, pollResults, out)
	return out
}

func (w *watch) watchedSet() map[string]bool {
	m := make(map[string]bool, len(w.services))
	for name := range w.services {
		m[name] = true
	}
	return m
}

// follow is the feed: /v1/services as a blocking query, by
// internal/blocking's rules. Its index moves with every registration,
// deregistration and edit of any service registration in the region.
func (s *Source) follow(ctx context.Context, watched map[string]bool, obs catalog.Observer, out chan<- feedAnswer) {
	log := s.log.With("feed", FeedQuery)
	f := blocking.Follower{MinInterval: s.opts.MinInterval, BackoffBase: s.opts.BackoffBase, BackoffMax: s.opts.BackoffMax,
		Clock: s.opts.Clock}
	blocking.Follow(ctx, f, func(ctx context.Context, index uint64) (map[string][]string, uint64, error) {
		_, changed := s.current()
		qctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-qctx.Done():
			}
		}()
		where, idx, err := s.listServices(qctx, watched, index)
		cancel()
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		select {
		case <-changed:
			return nil, 0, blocking.ErrAgain // a new token: ask again with it, at once
		default:
		}
		if obs != nil {
			obs.ObserveQuery(FeedQuery, idx, err)
		}
		if err != nil {
			s.trouble.failed(FeedQuery, err)
			return nil, 0, err
		}
		s.trouble.ok()
		log.Trace("feed returned", "index", idx)
		return where, idx, nil
	}, func(where map[string][]string, b blocking.Answer) {
		switch {
		case b.Reset && b.Index == 0:
			log.Debug("nomad returned index 0, starting over")
		case b.Reset:
			log.Debug("nomad index went backwards, starting over", "was", b.Was, "now", b.Index)
		case b.Same:
			return
		}
		select {
		case out <- feedAnswer{where: where, reset: b.Reset}:
		case <-ctx.Done():
		}
	})
}

// reader is one of the connections that read services.
func (s *Source) reader(ctx context.Context, obs catalog.Observer, in <-chan readRequest, out chan<- readResult) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-in:
			regs, idx, err := s.readService(ctx, r.name, r.where)
			if ctx.Err() != nil {
				return
			}
			if obs != nil {
				obs.ObserveQuery(r.name, idx, err)
			}
			if err != nil {
				s.trouble.failed(r.name, err)
			} else {
				s.trouble.ok()
			}
			select {
			case out <- readResult{name: r.name, regs: regs, index: idx, err: err}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// poller is one of the connections that read check results.
func (s *Source) poller(ctx context.Context, obs catalog.Observer, in <-chan pollRequest, out chan<- pollResult) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-in:
			res, spec, err := s.readChecks(ctx, r.alloc, r.namespace, r.spec)
			if ctx.Err() != nil {
				return
			}
			if obs != nil {
				obs.ObserveQuery(ChecksQuery, 0, err)
			}
			select {
			case out <- pollResult{alloc: r.alloc, results: res, spec: spec, err: err}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (w *watch) run(ctx context.Context, answers <-chan feedAnswer, reads chan<- readRequest, readResults <-chan readResult,
	polls chan<- pollRequest, pollResults <-chan pollResult, out chan<- catalog.Snapshot) {
	defer close(out)
	opts := &w.s.opts
	clock := opts.Clock
	resyncIn := func() time.Duration { return opts.ResyncInterval + blocking.Jitter(opts.ResyncInterval/10) }
	resync := clock.NewTimer(resyncIn())
	defer resync.Stop()
	wake := clock.NewTimer(time.Hour)
	defer wake.Stop()
	gap := time.Duration(float64(time.Second) / opts.CheckRate)
	_, tokenChanged := w.s.current()
	for {
		var send chan<- catalog.Snapshot
		var snap catalog.Snapshot
		if w.pending {
			if w.snap == nil {
				w.build()
			}
			send, snap = out, *w.snap
		}
		var giveRead chan<- readRequest
		var readReq readRequest
		if len(w.readQ) > 0 {
			giveRead, readReq = reads, readRequest{name: w.readQ[0], where: w.where[w.readQ[0]]}
		}
		var givePoll chan<- pollRequest
		var pollReq pollRequest
		now := clock.Now()
		alloc, pollAt, wait, ok := w.nextPoll(now)
		switch {
		case ok && !now.Before(w.slot):
			givePoll, pollReq = polls, pollRequest{alloc: alloc, namespace: w.allocs[alloc].namespace, spec: w.allocs[alloc].spec}
		case ok:
			wake.Reset(w.slot.Sub(now))
		case wait > 0:
			wake.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case a := <-answers:
			w.onFeed(a)
		case giveRead <- readReq:
			w.readQ = w.readQ[1:]
			st := w.services[readReq.name]
			st.queued, st.inflight = false, true
		case r := <-readResults:
			w.onRead(ctx, r)
		case name := <-w.retries:
			w.services[name].retrying = false
			w.mark(name)
		case givePoll <- pollReq:
			a := w.allocs[pollReq.alloc]
			a.inflight, a.urgent = true, false
			if pollAt >= 0 {
				w.cursor = pollAt + 1
			}
			// From when it went, not when the loop looked: a poll that
			// waited for a free connection starts no burst.
			w.slot = maxTime(w.slot, clock.Now()).Add(gap)
		case r := <-pollResults:
			w.onPoll(r)
		case <-wake.Chan():
		case send <- snap:
			w.first, w.pending, w.snap = false, false, nil
			clear(w.changed)
		case <-resync.Chan():
			w.s.log.Debug("resyncing every service")
			w.sweep()
			resync.Reset(resyncIn())
		case <-tokenChanged:
			// What the token may read changed: read everything again.
			_, tokenChanged = w.s.current()
			w.sweep()
			for id, a := range w.allocs {
				if !a.urgent {
					a.urgent = true
					w.urgent = append(w.urgent, id)
				}
			}
		}
	}
}

// onFeed takes an answer of the feed in: every watched service is read
// again, since the answer does not say which changed.
func (w *watch) onFeed(a feedAnswer) {
	w.where = a.where
	if a.reset {
		for _, st := range w.services {
			st.index = 0
		}
	}
	if !w.fed && len(w.services) == 0 {
		w.pending = true // nothing to wait for: an empty snapshot
	}
	w.fed = true
	w.sweep()
}

func (w *watch) sweep() {
	for name := range w.services {
		w.mark(name)
	}
}

// mark asks for a read of a watched service.
func (w *watch) mark(name string) {
	st := w.services[name]
	switch {
	case st.inflight:
		st.again = true
	case !st.queued && !st.retrying:
		st.queued = true
		w.readQ = append(w.readQ, name)
	}
}

// onRead takes a read's answer in: the registrations, and the
// allocations under them, which are polled at once when new.
func (w *watch) onRead(ctx context.Context, r readResult) {
	st := w.services[r.name]
	st.inflight = false
	again := st.again
	st.again = false
	if r.err != nil {
		st.failures++
		if !st.retrying {
			st.retrying = true
			delay := backoff.Delay(st.failures, w.s.opts.BackoffBase, w.s.opts.BackoffMax, blocking.Jitter)
			w.s.opts.Clock.AfterFunc(delay, func() {
				select {
				case w.retries <- r.name:
				case <-ctx.Done():
				}
			})
		}
		return
	}
	st.failures = 0
	old := st.regs
	st.regs, st.index, st.answered = r.regs, r.index, true
	for _, reg := range old {
		if a := w.allocs[reg.AllocID]; a != nil {
			delete(a.services, r.name)
		}
	}
	for _, reg := range r.regs {
		a := w.allocs[reg.AllocID]
		if a == nil {
			a = &allocState{namespace: reg.Namespace, services: map[string]bool{}, urgent: true}
			w.allocs[reg.AllocID] = a
			w.urgent = append(w.urgent, reg.AllocID)
			w.ring = append(w.ring, reg.AllocID)
		}
		a.services[r.name] = true
	}
	for _, reg := range old {
		if a := w.allocs[reg.AllocID]; a != nil && len(a.services) == 0 {
			delete(w.allocs, reg.AllocID) // gone from every watched service; its ring entry is skipped
		}
	}
	if len(w.ring) > 2*len(w.allocs)+16 {
		w.ring = slices.DeleteFunc(w.ring, func(id string) bool { return w.allocs[id] == nil })
		w.cursor = 0
	}
	w.rebuild(r.name)
	if again {
		w.mark(r.name)
	}
}

// nextPoll picks the allocation whose check results are read next:
// new ones first (at -1), then the first due one from the ring's cursor
// (at its index there). It moves nothing: the cursor moves past an
// allocation only when its read goes, so that one passed over while the
// loop served something else is not left for a whole round. When none is
// due it returns how long until one is.
func (w *watch) nextPoll(now time.Time) (id string, at int, wait time.Duration, ok bool) {
	for len(w.urgent) > 0 {
		id := w.urgent[0]
		if a := w.allocs[id]; a != nil && a.urgent && !a.inflight {
			return id, -1, 0, true
		}
		w.urgent = w.urgent[1:]
	}
	w.urgent = nil
	var soonest time.Duration
	for k := range len(w.ring) {
		i := (w.cursor + k) % len(w.ring)
		id := w.ring[i]
		a := w.allocs[id]
		switch {
		case a == nil || a.inflight:
		case !a.due.After(now):
			return id, i, 0, true
		case soonest == 0 || a.due.Sub(now) < soonest:
			soonest = a.due.Sub(now)
		}
	}
	return "", 0, soonest, false
}

// onPoll takes an allocation's check results in.
func (w *watch) onPoll(r pollResult) {
	a := w.allocs[r.alloc]
	if a == nil {
		return // no watched service has it any more
	}
	a.inflight = false
	if r.spec != nil {
		a.spec = r.spec
	}
	now := w.s.opts.Clock.Now()
	a.due = now.Add(w.s.opts.CheckInterval)
	var forbidden *ForbiddenError
	switch {
	case r.err == nil:
		a.failures = 0
		a.checks, a.known = allocChecks{results: r.results}, true
		slices.SortFunc(a.checks.results, func(x, y checkResult) int { return cmp.Compare(x.ID, y.ID) })
	case errors.As(r.err, &forbidden):
		w.s.trouble.failed(ChecksQuery, r.err)
		a.checks, a.known = allocChecks{unread: r.err.Error()}, true
	case notFound(r.err):
		// Stopped and collected: its registrations are going too. Until
		// they are, it does not serve.
		a.checks, a.known = allocChecks{unread: r.err.Error()}, true
	default:
		w.s.trouble.failed(ChecksQuery, r.err)
		a.failures++
		a.due = now.Add(backoff.Delay(a.failures, w.s.opts.BackoffBase, w.s.opts.BackoffMax, blocking.Jitter))
		if a.known {
			return // keep the last results: a blip of the agent takes nothing out
		}
		a.checks, a.known = allocChecks{unread: r.err.Error()}, true
	}
	for name := range a.services {
		w.rebuild(name)
	}
}

// rebuild converts a service once its registrations were read and the
// check results of every allocation under them are known; until then the
// service keeps its last view.
func (w *watch) rebuild(name string) {
	st := w.services[name]
	if !st.answered {
		return
	}
	for _, reg := range st.regs {
		if a := w.allocs[reg.AllocID]; a == nil || !a.known {
			return
		}
	}
	checks := make(map[string]allocChecks, len(st.regs))
	for _, reg := range st.regs {
		checks[reg.AllocID] = w.allocs[reg.AllocID].checks
	}
	svc := w.s.build(name, st.index, st.regs, checks)
	old := st.view
	if old != nil && svc.SameContent(old) && !outputsMoved(svc, old) {
		return
	}
	st.view = svc
	if old == nil {
		w.answered++
	}
	w.latest[name] = svc
	w.snap = nil
	if old == nil || !svc.SameContent(old) {
		w.changed[name] = true
		w.pending = w.pending || w.answered == len(w.services)
	}
}

// build makes the snapshot offered to the reader.
func (w *watch) build() {
	snap := catalog.Snapshot{Services: maps.Clone(w.latest)}
	if !w.first {
		snap.Changed = maps.Clone(w.changed)
	}
	w.snap = &snap
}

// outputsMoved reports whether any check output differs between two
// answers of like content: news for status, not for the kernel.
func outputsMoved(a, b *catalog.Service) bool {
	for i := range a.Instances {
		for j := range a.Instances[i].Checks {
			if a.Instances[i].Checks[j].Output != b.Instances[i].Checks[j].Output {
				return true
			}
		}
	}
	return false
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
