package blocking

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// reply is one scripted answer of the fake query.
type reply struct {
	index uint64
	err   error
}

// rig runs Follow over a fake query the test answers one call at a time,
// on a fake clock.
type rig struct {
	t       *testing.T
	ctx     context.Context
	clock   *clockwork.FakeClock
	calls   chan uint64 // the index each query waited on
	replies chan reply
	handled chan handled
	done    chan struct{}
}

type handled struct {
	body string
	a    Answer
}

func start(t *testing.T, f Follower) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, ctx: ctx, clock: clockwork.NewFakeClock(), calls: make(chan uint64), replies: make(chan reply),
		handled: make(chan handled, 100), done: make(chan struct{})}
	f.Clock = r.clock
	ask := func(ctx context.Context, index uint64) (string, uint64, error) {
		select {
		case r.calls <- index:
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
		select {
		case rep := <-r.replies:
			return fmt.Sprint("body ", rep.index), rep.index, rep.err
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
	go func() {
		defer close(r.done)
		Follow(ctx, f, ask, func(body string, a Answer) { r.handled <- handled{body, a} })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Follow did not return when its context ended")
		}
	})
	return r
}

// answer waits for the next query, checks the index it waits on, and
// answers it.
func (r *rig) answer(wait uint64, rep reply) {
	r.t.Helper()
	select {
	case got := <-r.calls:
		if got != wait {
			r.t.Fatalf("query waited on index %d, want %d", got, wait)
		}
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no query (waiting on %d) in 5s", wait)
	}
	r.replies <- rep
}

// got is the next answer handed to the handler.
func (r *rig) got() Answer {
	r.t.Helper()
	select {
	case h := <-r.handled:
		if want := fmt.Sprint("body ", h.a.Index); h.body != want {
			r.t.Errorf("handler got body %q with index %d", h.body, h.a.Index)
		}
		return h.a
	case <-time.After(5 * time.Second):
		r.t.Fatal("no answer handled in 5s")
		return Answer{}
	}
}

// sleeping waits until the follower sleeps on the clock.
func (r *rig) sleeping() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	if err := r.clock.BlockUntilContext(ctx, 1); err != nil {
		r.t.Fatal("the follower does not sleep")
	}
}

// waits checks that the follower, sleeping, asks again exactly d later:
// not at d less a nanosecond, at once at d.
func (r *rig) waits(d time.Duration) {
	r.t.Helper()
	r.sleeping()
	r.clock.Advance(d - 1)
	select {
	case i := <-r.calls:
		r.t.Fatalf("asked again (on %d) before %v", i, d)
	case <-time.After(20 * time.Millisecond):
	}
	r.clock.Advance(1)
}

func noJitter(time.Duration) time.Duration { return 0 }

func TestSameIndexAsksAgain(t *testing.T) {
	r := start(t, Follower{Jitter: noJitter})
	r.answer(0, reply{index: 5})
	if a := r.got(); a != (Answer{Index: 5}) {
		t.Errorf("first answer %+v", a)
	}
	r.answer(5, reply{index: 5}) // a wait that ran out
	if a := r.got(); a != (Answer{Index: 5, Was: 5, Same: true}) {
		t.Errorf("same index: %+v, want it marked Same", a)
	}
	r.answer(5, reply{index: 7}) // asked again on the same index
	if a := r.got(); a != (Answer{Index: 7, Was: 5}) {
		t.Errorf("moved: %+v", a)
	}
	r.answer(7, reply{index: 7})
	r.got()
}

func TestIndexBackResets(t *testing.T) {
	r := start(t, Follower{Jitter: noJitter})
	r.answer(0, reply{index: 9})
	r.got()
	r.answer(9, reply{index: 4}) // a snapshot restored
	if a := r.got(); a != (Answer{Index: 4, Was: 9, Reset: true}) {
		t.Errorf("index went back: %+v, want Reset", a)
	}
	r.answer(0, reply{index: 4}) // starts over from 0: not Same
	if a := r.got(); a != (Answer{Index: 4}) {
		t.Errorf("after the reset: %+v", a)
	}
	r.answer(4, reply{index: 0}) // index 0 is a reset too
	if a := r.got(); a != (Answer{Index: 0, Was: 4, Reset: true}) {
		t.Errorf("index 0: %+v, want Reset", a)
	}
	r.answer(0, reply{index: 6})
	if a := r.got(); a != (Answer{Index: 6}) {
		t.Errorf("after index 0: %+v", a)
	}
	r.answer(6, reply{index: 6})
}

func TestErrorsBackOffAndSuccessResets(t *testing.T) {
	boom := errors.New("connection refused")
	r := start(t, Follower{BackoffBase: time.Second, BackoffMax: 4 * time.Second, Jitter: noJitter})
	r.answer(0, reply{index: 3})
	r.got()
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		r.answer(3, reply{err: boom}) // the index is kept through failures
		r.waits(d)
	}
	r.answer(3, reply{index: 8})
	if a := r.got(); a != (Answer{Index: 8, Was: 3}) {
		t.Errorf("answer after failures: %+v", a)
	}
	r.answer(8, reply{err: boom})
	r.waits(time.Second) // the success reset the backoff
	r.answer(8, reply{index: 8})
	if a := r.got(); a != (Answer{Index: 8, Was: 8, Same: true}) {
		t.Errorf("answer after a failure: %+v (failures go to no handler)", a)
	}
}

func TestBackoffJitter(t *testing.T) {
	r := start(t, Follower{BackoffBase: 800 * time.Millisecond, BackoffMax: time.Minute,
		Jitter: func(d time.Duration) time.Duration { return d / 2 }})
	r.answer(0, reply{err: errors.New("boom")})
	r.waits(700 * time.Millisecond) // less half of a quarter
	r.answer(0, reply{index: 1})
}

func TestMinIntervalHonoured(t *testing.T) {
	r := start(t, Follower{MinInterval: 100 * time.Millisecond, BackoffBase: time.Second, BackoffMax: time.Second,
		Jitter: func(d time.Duration) time.Duration { return d / 2 }})
	r.answer(0, reply{index: 1})
	r.waits(150 * time.Millisecond) // the interval and its jitter
	r.answer(1, reply{index: 1})    // an answer at the same index is limited too
	r.waits(150 * time.Millisecond)
	// The interval runs from the query's start: a query that took 120ms
	// is followed 30ms later; one that took longer, at once.
	select {
	case <-r.calls:
	case <-time.After(5 * time.Second):
		t.Fatal("no query")
	}
	r.clock.Advance(120 * time.Millisecond)
	r.replies <- reply{index: 2}
	r.waits(30 * time.Millisecond)
	select {
	case <-r.calls:
	case <-time.After(5 * time.Second):
		t.Fatal("no query")
	}
	r.clock.Advance(time.Second)
	r.replies <- reply{index: 3}
	r.answer(3, reply{index: 4})
}

func TestNoMinIntervalAsksAtOnce(t *testing.T) {
	// The lease's figures: each change is asked for as soon as the last
	// one is handled, on a clock that never moves.
	r := start(t, Follower{BackoffBase: 100 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Afresh: true})
	for i := uint64(1); i <= 5; i++ {
		r.answer(i-1, reply{index: i})
		if a := r.got(); a.Index != i {
			t.Fatalf("answer %+v, want index %d", a, i)
		}
	}
}

func TestAfreshAsksFromZeroAfterAFailure(t *testing.T) {
	boom := errors.New("boom")
	r := start(t, Follower{BackoffBase: 100 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Afresh: true, Jitter: noJitter})
	r.answer(0, reply{index: 7})
	r.got()
	r.answer(7, reply{err: boom})
	r.waits(100 * time.Millisecond)
	r.answer(0, reply{index: 7}) // at once, and still judged against 7
	if a := r.got(); a != (Answer{Index: 7, Was: 7, Same: true}) {
		t.Errorf("after a failure, same index: %+v", a)
	}
	r.answer(7, reply{err: boom})
	r.waits(100 * time.Millisecond) // constant: base and max are one
	r.answer(0, reply{index: 5})    // Consul came back restored
	if a := r.got(); a != (Answer{Index: 5, Was: 7, Reset: true}) {
		t.Errorf("after a failure, index back: %+v, want Reset", a)
	}
	r.answer(0, reply{index: 6})
}

func TestErrAgainAsksAgainAtOnce(t *testing.T) {
	r := start(t, Follower{MinInterval: time.Second, BackoffBase: time.Second, BackoffMax: time.Second, Jitter: noJitter})
	r.answer(0, reply{index: 2})
	r.got()
	r.waits(time.Second)
	r.answer(2, reply{err: ErrAgain}) // no failure, no interval, same index
	r.answer(2, reply{err: fmt.Errorf("token replaced: %w", ErrAgain)})
	r.answer(2, reply{err: errors.New("boom")})
	r.waits(time.Second) // the first failure: ErrAgain counted none
	r.answer(2, reply{index: 3})
}

func TestStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	clock := clockwork.NewFakeClock()
	go func() {
		defer close(done)
		Follow(ctx, Follower{BackoffBase: time.Hour, BackoffMax: time.Hour, Clock: clock},
			func(context.Context, uint64) (int, uint64, error) { return 0, 0, errors.New("boom") },
			func(int, Answer) { t.Error("a failure was handled") })
	}()
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
	defer bcancel()
	if err := clock.BlockUntilContext(bctx, 1); err != nil {
		t.Fatal("no backoff")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return from its backoff when its context ended")
	}
}
