// Package blocking is the one loop of lvs-sync's Consul blocking queries:
// the catalog's change feeds and the pair's lease and peers follow it.
// It keeps consul-template's rules (watch/view.go) and Consul's
// documented ones, and nothing else:
//
//   - the next query waits on the index of the last answer; an answer at
//     the same index (a wait that ran out) is asked again;
//   - an index that went backwards or to 0 (a snapshot restored, a
//     cluster rebuilt) starts over from 0, and the answer says so;
//   - at least MinInterval, plus up to as much again of jitter, between
//     the starts of two queries after a success, so that a flapping index
//     is no busy loop;
//   - after a failure a backoff (internal/backoff), doubling up to
//     BackoffMax; any success resets it.
//
// What a query asks, its token, what is logged and who is told are the
// caller's: the query and the handler are closures. It imports the
// standard library, clockwork and internal/backoff, not Consul's API.
package blocking

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/internal/backoff"
)

// ErrAgain, returned by a Query, asks again at once, with the same index:
// the query was neither a success nor a failure (the catalog's, when its
// token was replaced while it waited).
var ErrAgain = errors.New("blocking: ask again")

// Query is one blocking query: it waits while Consul's index is still
// index (0: it answers at once) and returns the answer's body and index.
// ctx is Follow's.
type Query[T any] func(ctx context.Context, index uint64) (T, uint64, error)

// Answer is a successful query's index, as the follower judged it.
type Answer struct {
	// Index is the answer's index.
	Index uint64
	// Was is the index the answer is judged against: the last answer's,
	// 0 at the start and after a reset.
	Was uint64
	// Same is set when the index did not move (Was ≠ 0): nothing changed,
	// yet Consul answered. A feed ignores it; a watch that counts answers
	// as Consul's liveness does not.
	Same bool
	// Reset is set when the index went backwards or to 0: what was known
	// by index must be forgotten. The next query starts over from 0.
	Reset bool
}

// Follower holds the rules' figures. The zero value asks without pause,
// retries at once and runs on the real clock.
type Follower struct {
	// MinInterval is the least time between the starts of two queries
	// after a success, to which up to as much again of jitter is added.
	// 0 asks again as soon as an answer is handled.
	MinInterval time.Duration
	// BackoffBase is the wait after a first failure, doubled on every
	// further one up to BackoffMax (backoff.Delay).
	BackoffBase, BackoffMax time.Duration
	// Afresh makes the query after a failure wait on index 0, so that it
	// answers at once: for a caller that was told of the failure and must
	// hear the state as soon as Consul answers again. The answer is still
	// judged against the index last seen (Same, Reset).
	Afresh bool
	// Clock measures the interval and, unless Sleep is set, sleeps
	// (default real).
	Clock clockwork.Clock
	// Jitter returns a random duration in [0, d) (default uniform).
	Jitter func(d time.Duration) time.Duration
	// Sleep waits d or until ctx ends, returning ctx's error then
	// (default a timer of Clock).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Follow asks ask by f's rules, and hands handle each successful answer
// with its judged index, until ctx ends. handle runs before the next
// query. A failure goes to no handler: the query saw it first, and tells
// whom it must.
func Follow[T any](ctx context.Context, f Follower, ask Query[T], handle func(T, Answer)) {
	clock := f.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	jitter := f.Jitter
	if jitter == nil {
		jitter = Jitter
	}
	sleep := f.Sleep
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) error { return Sleep(ctx, clock, d) }
	}
	var (
		seen     uint64 // the last answer's index; 0 after a reset
		wait     uint64 // the index the next query waits on
		failures int
	)
	for {
		start := clock.Now()
		body, index, err := ask(ctx, wait)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrAgain) {
			continue
		}
		if err != nil {
			failures++
			if f.Afresh {
				wait = 0
			}
			if sleep(ctx, backoff.Delay(failures, f.BackoffBase, f.BackoffMax, jitter)) != nil {
				return
			}
			continue
		}
		failures = 0
		a := Answer{Index: index, Was: seen, Same: seen != 0 && index == seen, Reset: index == 0 || index < seen}
		if a.Reset {
			seen = 0
		} else {
			seen = index
		}
		wait = seen
		handle(body, a)
		if ctx.Err() != nil {
			return
		}
		// Rate limit, so that a flapping index cannot become a busy loop.
		if d := f.MinInterval + jitter(f.MinInterval) - clock.Since(start); d > 0 && sleep(ctx, d) != nil {
			return
		}
	}
}

// Sleep waits d on clock, or until ctx ends (its error then).
func Sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// Jitter is a random duration in [0, d): the default Follower.Jitter.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
