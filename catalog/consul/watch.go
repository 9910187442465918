package consul

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/backoff"
	"github.com/lvs-sync/lvs-sync/internal/progress"
)

// queued says whether, and how, a service waits for a read.
type queued int

const (
	notQueued queued = iota
	queuedUrgent
	queuedSweep
)

// serviceState is what a watch holds for one watched service: bounded by
// the watched services, whatever the catalog does.
type serviceState struct {
	svc   *catalog.Service // the latest answer; nil until the first
	index uint64           // its index: a stale answer older than it is dropped
	queue queued
	stale bool // the queued read may be ?stale (a backstop resync)
	// inflight is set while a read is out; issued is the event sequence
	// number when it went; again asks for one more read after it.
	inflight, again, againUrgent bool
	issued                       uint64
	failures                     int
	retrying                     bool
	// maxMod is the highest ModifyIndex of the instances of the latest
	// answer (kept even when its content did not change): a node read
	// showing a higher one has seen an edit this answer has not.
	maxMod uint64
}

// nodeState is what a watch holds for one node while node sweeps are in
// use: the node's index when it was last read in full, and its read's
// queue state, as a service's.
type nodeState struct {
	index                   uint64
	queued, inflight, again bool
	first                   bool // the queued read is a first read (see readNodesFirst)
}

// A readRequest is a service's read, or a node's (node set).
type readRequest struct {
	name  string
	stale bool
	node  bool
	held  uint64 // a node's index when last read in full
	first bool   // a node's read for the first sync (readNodeFull)
}

type readResult struct {
	name   string
	stale  bool
	svc    *catalog.Service
	nodes  map[string]string // node → its addresses, under svc's instances
	maxMod uint64
	node   bool
	first  bool
	onNode nodeAnswer
	body   *nodeBody // a first read's
	err    error
}

// watch is the state of one Watch call, owned by its run goroutine.
type watch struct {
	s        *Source
	obs      catalog.Observer // the caller's
	services map[string]*serviceState
	answered int

	// The feeds' last answers, which feeds have answered once, and the
	// event sequence number of each feed's last answer.
	checks map[string]stateView
	nodes  map[string]string
	tags   map[string][]string
	ready  map[string]bool
	fedAt  map[string]uint64
	// await names, by feed, the services whose answer did not agree with
	// that feed's last answer: they are re-read at its next.
	await map[string]map[string]bool

	// byNode maps a node to the watched services with an instance on it;
	// nodeSeq stamps the last event on a node with the event sequence.
	byNode  map[string]map[string]bool
	nodeSeq map[string]uint64
	seq     uint64

	urgent, sweep []string
	retries       chan string

	// Node sweeps (see the package documentation): each node's state, the
	// nodes queued for a read, and, once node reads proved unusable, why
	// (then every sweep reads per service).
	nodeSt    map[string]*nodeState
	nodeQueue []string
	nodesOff  string
	// firstReads names the nodes whose first read the first sync waits
	// for, bodies holds those answered, firstIssued is the event sequence
	// number when the first of them went (see readNodesFirst).
	firstReads  map[string]bool
	bodies      map[string]*nodeBody
	firstIssued uint64

	// Emission: latest is shared with the snapshot last built (so it is
	// copied before a change); sinceSent and sinceBuilt are the services
	// changed since the last snapshot sent and since the one built.
	latest                        map[string]*catalog.Service
	built                         *catalog.Snapshot
	builtAt                       time.Time
	shared, dirty, pending, first bool
	sinceSent, sinceBuilt         map[string]bool
	// prog is how far the first complete snapshot is, in services
	// answered of those watched; nil once it is complete.
	prog *progress.Reporter
}

// Watch follows the change feeds and re-reads the services they name;
// see the package documentation and catalog.Source.
func (s *Source) Watch(ctx context.Context, services []string, obs catalog.Observer) <-chan catalog.Snapshot {
	w := &watch{
		s: s, services: map[string]*serviceState{},
		checks: map[string]stateView{}, ready: map[string]bool{},
		fedAt: map[string]uint64{}, await: map[string]map[string]bool{},
		byNode: map[string]map[string]bool{}, nodeSeq: map[string]uint64{},
		retries: make(chan string), latest: map[string]*catalog.Service{}, nodeSt: map[string]*nodeState{},
		first: true, sinceSent: map[string]bool{}, sinceBuilt: map[string]bool{},
	}
	w.obs = obs
	for _, name := range unique(services) {
		w.services[name] = &serviceState{}
	}
	w.prog = progress.New(s.log, s.opts.Clock, "first sync", "read", len(w.services))
	if s.watched != nil {
		s.watched(w)
	}
	out := make(chan catalog.Snapshot)
	answers := make(chan feedAnswer)
	s.feeds.subscribe(ctx, obs, answers)
	work := make(chan readRequest)
	results := make(chan readResult)
	for range s.opts.readers() {
		go s.readLoop(ctx, obs, w.services, work, results)
	}
	go w.run(ctx, answers, work, results, out)
	return out
}

// readLoop is one of the readers sharing the budget left by the feeds.
// watched is the watch's map of services, never written once the watch
// runs: the reader looks names up in it alone.
func (s *Source) readLoop(ctx context.Context, obs catalog.Observer, watched map[string]*serviceState, work <-chan readRequest, results chan<- readResult) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-work:
			res := readResult{name: r.name, stale: r.stale, node: r.node, first: r.first}
			switch {
			case r.first:
				res.body, res.err = s.readNodeFull(ctx, r.name, watched, obs)
			case r.node:
				res.onNode, res.err = s.readNode(ctx, r.name, r.held, obs)
			default:
				res.svc, res.nodes, res.maxMod, res.err = s.read(ctx, r.name, r.stale, obs)
			}
			if ctx.Err() != nil {
				return
			}
			switch {
			case res.err == nil:
				s.trouble.ok()
			case !r.node || !notFound(res.err):
				s.trouble.failed(r.name, res.err)
			}
			select {
			case results <- res:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (w *watch) run(ctx context.Context, answers <-chan feedAnswer, work chan<- readRequest, results <-chan readResult, out chan<- catalog.Snapshot) {
	defer close(out)
	clock := w.s.opts.Clock
	resyncIn := func() time.Duration {
		return w.s.opts.ResyncInterval + w.s.jitter(w.s.opts.ResyncInterval/10)
	}
	resync := clock.NewTimer(resyncIn())
	defer resync.Stop()
	tokenChanged := w.s.tokenChanged()
	for {
		var send chan<- catalog.Snapshot
		var snap catalog.Snapshot
		if w.pending {
			if w.built == nil || (w.dirty && clock.Since(w.builtAt) >= rebuildEvery) {
				w.build()
			}
			send, snap = out, *w.built
		}
		var give chan<- readRequest
		req, ok := w.peek()
		if ok {
			give = work
		}
		select {
		case <-ctx.Done():
			return
		case a := <-answers:
			w.onFeed(a)
		case r := <-results:
			w.onResult(ctx, r)
		case name := <-w.retries:
			w.services[name].retrying = false
			w.mark(name, true)
		case give <- req:
			w.dispatched(req)
		case send <- snap:
			w.sent()
		case <-resync.Chan():
			w.s.log.Debug("resyncing every service")
			w.sweepAll(true)
			resync.Reset(resyncIn())
		case <-tokenChanged:
			// What the token may read changed: every answer held may be
			// wrong, whatever its index.
			tokenChanged = w.s.tokenChanged()
			for _, st := range w.services {
				st.index = 0
			}
			w.forgetNodes()
			w.sweepAll(false)
		}
	}
}

// onFeed turns a feed's answer into the reads it calls for.
func (w *watch) onFeed(a feedAnswer) {
	w.seq++
	first := !w.ready[a.feed]
	w.ready[a.feed] = true
	w.fedAt[a.feed] = w.seq
	for name := range w.await[a.feed] {
		w.mark(name, true)
	}
	delete(w.await, a.feed)
	if a.reset {
		for _, st := range w.services {
			st.index = 0
		}
		w.forgetNodes()
	}
	switch a.feed {
	case feedCritical, feedWarning:
		cur := newStateView(a.checks)
		if !first {
			services, nodes := diffChecks(w.checks[a.feed], cur)
			for _, name := range services {
				w.mark(name, true)
			}
			for _, n := range nodes {
				w.nodeEvent(n)
			}
		}
		w.checks[a.feed] = cur
	case feedNodes:
		cur := nodeAddrs(a.nodes)
		if !first {
			for _, n := range diffNodes(w.nodes, cur) {
				w.nodeEvent(n)
			}
		}
		old := w.nodes
		w.nodes = cur
		for n := range w.nodeSeq {
			if _, ok := cur[n]; !ok {
				delete(w.nodeSeq, n)
			}
		}
		for n, ns := range w.nodeSt {
			if _, ok := cur[n]; !ok && !ns.inflight {
				delete(w.nodeSt, n)
				w.firstDone(n)
			}
		}
		if !first && w.nodeSweeps() {
			// A node that came after the node sweep a registration on it
			// started: that sweep did not know of it.
			for n := range cur {
				if _, ok := old[n]; !ok {
					w.markNode(n)
				}
			}
		}
	case feedServices:
		cur := watchedTags(a.services, w.services)
		if !first {
			for _, name := range diffTags(w.tags, cur) {
				w.mark(name, true)
			}
			w.sweepChanged()
		}
		w.tags = cur
	}
	switch {
	case first && len(w.ready) == feeds:
		// Every feed holds an index now: any later change moves one.
		if w.nodeSweeps() && len(w.nodes) > 0 {
			w.readNodesFirst() // then every service at once
		} else {
			w.sweepAll(false)
		}
		if len(w.services) == 0 {
			w.pending = true
		}
	case a.reset && !first:
		w.sweepAll(false)
	}
}

// nodeEvent re-reads every watched service on node, and stamps the node
// so that a read already out when the event came is done again.
func (w *watch) nodeEvent(node string) {
	w.nodeSeq[node] = w.seq
	for name := range w.byNode[node] {
		w.mark(name, true)
	}
}

// mark asks for a read of a watched service: urgent ones go first.
func (w *watch) mark(name string, urgent bool) {
	st, ok := w.services[name]
	if !ok {
		return
	}
	if st.inflight {
		st.again, st.againUrgent = true, st.againUrgent || urgent
		return
	}
	switch {
	case urgent && st.queue != queuedUrgent:
		st.queue, st.stale = queuedUrgent, false
		w.urgent = append(w.urgent, name)
	case !urgent && st.queue == notQueued:
		st.queue = queuedSweep
		w.sweep = append(w.sweep, name)
	}
}

// sweepAll queues a read of every watched service; stale ones may be
// answered by any server (the backstop resync).
func (w *watch) sweepAll(stale bool) {
	for name, st := range w.services {
		if st.queue == notQueued && !st.inflight {
			st.stale = stale
		}
		w.mark(name, false)
	}
}

// peek returns the next read: urgent services first, then nodes (which
// find the services to read urgently), then the per-service sweep.
func (w *watch) peek() (readRequest, bool) {
	if name, ok := w.head(&w.urgent, queuedUrgent); ok {
		return readRequest{name: name, stale: w.services[name].stale}, true
	}
	for len(w.nodeQueue) > 0 {
		n := w.nodeQueue[0]
		if ns := w.nodeSt[n]; ns != nil && ns.queued {
			return readRequest{name: n, node: true, held: ns.index, first: ns.first}, true
		}
		w.nodeQueue = w.nodeQueue[1:] // gone, or unqueued, since
	}
	w.nodeQueue = nil
	if name, ok := w.head(&w.sweep, queuedSweep); ok {
		return readRequest{name: name, stale: w.services[name].stale}, true
	}
	return readRequest{}, false
}

// head returns the first service of list still queued as kind, dropping
// those before it.
func (w *watch) head(list *[]string, kind queued) (string, bool) {
	for len(*list) > 0 {
		name := (*list)[0]
		if w.services[name].queue == kind {
			return name, true
		}
		*list = (*list)[1:] // promoted to urgent, or already read
	}
	*list = nil
	return "", false
}

// dispatched notes that the read peek chose is out.
func (w *watch) dispatched(r readRequest) {
	if r.node {
		w.nodeQueue = w.nodeQueue[1:]
		ns := w.nodeSt[r.name]
		ns.queued, ns.inflight, ns.first = false, true, false
		if r.first && w.firstIssued == 0 {
			w.firstIssued = w.seq
		}
		return
	}
	st := w.services[r.name]
	if st.queue == queuedUrgent {
		w.urgent = w.urgent[1:]
	} else {
		w.sweep = w.sweep[1:]
	}
	st.queue, st.inflight, st.issued = notQueued, true, w.seq
}

// onResult takes a read's answer in.
func (w *watch) onResult(ctx context.Context, r readResult) {
	if r.node {
		w.onNodeResult(r)
		return
	}
	st := w.services[r.name]
	st.inflight = false
	again, againUrgent := st.again, st.againUrgent
	st.again, st.againUrgent = false, false
	if r.err != nil {
		st.failures++
		if !st.retrying {
			st.retrying = true
			delay := backoff.Delay(st.failures, w.s.opts.BackoffBase, w.s.opts.BackoffMax, w.s.jitter)
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
	if r.stale && st.svc != nil && r.svc.Index < st.index {
		// A server behind the one that answered before: ask the leader.
		w.mark(r.name, true)
		return
	}
	w.answer(r, st, st.issued, again, againUrgent)
}

// answer takes a service's answer in, read or synthesized (see
// synthesize), issued at event sequence number issued: it is read again
// (urgently) when again is set, when a node event came on one of its nodes
// since, or when it disagrees with the feeds.
func (w *watch) answer(r readResult, st *serviceState, issued uint64, again, againUrgent bool) {
	st.maxMod = r.maxMod
	for _, in := range r.svc.Instances {
		if w.nodeSeq[in.Node] > issued {
			again, againUrgent = true, true // a node event came while the read was out
			break
		}
	}
	if !again && w.disagrees(r, issued) {
		again, againUrgent = true, true
	}
	w.apply(r.name, st, r.svc)
	if again {
		w.mark(r.name, againUrgent)
	}
}

// disagrees compares an answer with the diffed feeds' last answers. An
// answer may have seen a change those feeds have not shown yet: if the
// change is undone before a feed next answers, the diff of its two answers
// is empty, yet the answer holds the change. So an answer that differs
// from a feed's last answer is re-read at that feed's next, which will
// come, since the feed has a change to show. It reports whether the answer
// must be re-read at once instead: when such a feed answered while the
// read was out (its diff may already have passed the change by), or when
// the answer is ?stale (it may be behind the feed, which then need not
// move again).
func (w *watch) disagrees(r readResult, issued uint64) bool {
	now := false
	for _, f := range []string{feedCritical, feedWarning, feedNodes} {
		var agrees bool
		switch f {
		case feedNodes:
			agrees = agreesWithNodes(w.nodes, r.nodes)
		case feedCritical:
			agrees = agreesWithState(w.checks[f], api.HealthCritical, r.svc)
		case feedWarning:
			agrees = agreesWithState(w.checks[f], api.HealthWarning, r.svc)
		}
		switch {
		case agrees:
			delete(w.await[f], r.name)
		case r.stale || w.fedAt[f] > issued:
			now = true
		default:
			if w.await[f] == nil {
				w.await[f] = map[string]bool{}
			}
			w.await[f][r.name] = true
		}
	}
	return now
}
