package consul

import (
	"context"
	"sync"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// hub runs the four change feeds once per Source and hands their answers
// to each of its watches. A reload watches the new config's services
// beside the running config's until they have all answered
// (internal/daemon); with feeds per watch the two held eight blocking
// queries, the whole default budget, and the new watch's reads each
// waited for some feed to answer: on a quiet catalog the reload gave up
// after its 30 s (measured: 1,000 services, the third SIGHUP in a row).
// Shared, the feeds hold four connections however many watches run, and
// the readers of every watch share the rest.
//
// The feeds run while any watch does, under a context of their own: the
// watch that started them may end first (the running config's, when the
// reload takes over). A watch that joins gets each feed's latest answer
// at once, which is as good as a first answer of its own: its reads go
// after it, and every later change moves the feed past its index. A
// watch that is slow to take answers gets the latest of each feed, with
// a reset kept if any answer it missed had one: a watch diffs each answer
// against the last it took, so a skipped one loses nothing (as the feed's
// rate limit already skips intermediate states).
type hub struct {
	s *Source

	mu     sync.Mutex
	seq    uint64 // subscribers so far
	subs   map[*subscriber]bool
	last   map[string]feedAnswer // each feed's latest answer
	cancel context.CancelFunc    // the feeds', while any watch runs
}

// subscriber is one watch's side of the hub: the answers it has not
// taken yet, the latest of each feed, and a wake-up for its pump.
type subscriber struct {
	seq     uint64 // its place among the subscribers: the newest is highest
	obs     catalog.Observer
	pending map[string]feedAnswer
	wake    chan struct{}
}

// subscribe hands out every feed's answers to out until ctx ends, and
// starts the feeds if no other watch runs.
func (h *hub) subscribe(ctx context.Context, obs catalog.Observer, out chan<- feedAnswer) {
	sub := &subscriber{obs: obs, pending: map[string]feedAnswer{}, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	h.seq++
	sub.seq = h.seq
	for feed, a := range h.last {
		sub.pending[feed] = a
	}
	if len(sub.pending) > 0 {
		sub.wake <- struct{}{}
	}
	if h.subs == nil {
		h.subs = map[*subscriber]bool{}
	}
	h.subs[sub] = true
	if h.cancel == nil {
		var fctx context.Context
		fctx, h.cancel = context.WithCancel(context.Background())
		for feed, ask := range h.s.feedQueries() {
			go h.s.follow(fctx, feed, ask, h, h.publish)
		}
	}
	h.mu.Unlock()
	go h.pump(ctx, sub, out)
}

// pump delivers a subscriber's pending answers, in a fixed order of the
// feeds, until ctx ends; then it leaves the hub.
func (h *hub) pump(ctx context.Context, sub *subscriber, out chan<- feedAnswer) {
	defer h.leave(sub)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.wake:
		}
		for _, feed := range feedOrder {
			h.mu.Lock()
			a, ok := sub.pending[feed]
			delete(sub.pending, feed)
			h.mu.Unlock()
			if !ok {
				continue
			}
			select {
			case out <- a:
			case <-ctx.Done():
				return
			}
		}
	}
}

// feedOrder is the order in which a subscriber gets answers it holds.
var feedOrder = []string{feedNodes, feedServices, feedCritical, feedWarning}

// leave removes a subscriber; the last one stops the feeds, and their
// answers are forgotten (feeds started again begin at index 0).
func (h *hub) leave(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) == 0 && h.cancel != nil {
		h.cancel()
		h.cancel, h.last = nil, nil
	}
}

// publish takes a feed's answer whose index moved and queues it for every
// subscriber, replacing one it has not taken (keeping its reset).
func (h *hub) publish(a feedAnswer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel == nil {
		return // the last watch left while the query was out
	}
	if h.last == nil {
		h.last = map[string]feedAnswer{}
	}
	h.last[a.feed] = a
	for sub := range h.subs {
		b := a
		if p, ok := sub.pending[a.feed]; ok && p.reset {
			b.reset = true
		}
		sub.pending[a.feed] = b
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// ObserveQuery tells the Observer of the newest watch of a feed's query.
// One Observer, not each watch's: in a reload the two watches' Observers
// are the daemon's, each wrapped for its config's keys, and a feed's
// answer heard twice would count twice in its metrics. The newest is the
// reload's, which takes over or, given up, leaves the running one the
// newest again. (Observers are not compared: a wrapper with a map in it
// is no comparable value.)
func (h *hub) ObserveQuery(query string, index uint64, err error) {
	h.mu.Lock()
	var obs catalog.Observer
	var newest uint64
	for sub := range h.subs {
		if sub.seq > newest {
			obs, newest = sub.obs, sub.seq
		}
	}
	h.mu.Unlock()
	if obs != nil {
		obs.ObserveQuery(query, index, err)
	}
}
