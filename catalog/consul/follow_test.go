package consul

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// answer is one scripted reply of a feed.
type answer struct {
	index uint64
	err   error
}

// scripted is a feed that replies with the answers fed to it, blocking
// like a blocking query until one is fed or the query's context ends. It
// records the index each query waited on.
type scripted struct {
	answers chan answer
	mu      sync.Mutex
	waited  []uint64
}

func newScripted(answers ...answer) *scripted {
	s := &scripted{answers: make(chan answer, 100)}
	for _, a := range answers {
		s.answers <- a
	}
	return s
}

func (s *scripted) query(q *api.QueryOptions, _ *feedAnswer) (*api.QueryMeta, error) {
	s.mu.Lock()
	s.waited = append(s.waited, q.WaitIndex)
	s.mu.Unlock()
	select {
	case a := <-s.answers:
		if a.err != nil {
			return nil, a.err
		}
		return &api.QueryMeta{LastIndex: a.index}, nil
	case <-q.Context().Done():
		return nil, q.Context().Err()
	}
}

func (s *scripted) waitedOn() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.waited...)
}

// sleeps records the waits asked for instead of waiting.
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

// sleepless is a source whose sleeps are recorded, whose jitter is half of
// the range asked for, and whose clock stands still.
func sleepless() (*Source, *sleeps) {
	s := newSource(newFakeConsul(), Options{MinInterval: 100 * time.Millisecond, BackoffBase: time.Second, BackoffMax: 30 * time.Second,
		Clock: clockworkFake()})
	sl := &sleeps{}
	s.sleep = sl.sleep
	s.jitter = func(d time.Duration) time.Duration { return d / 2 }
	return s, sl
}

func receive(t *testing.T, ch <-chan feedAnswer) feedAnswer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no answer in 5s")
		return feedAnswer{}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in 5s", what)
		}
	}
}

// sendTo publishes a feed's answers on out, each waiting to be taken.
func sendTo(ctx context.Context, out chan<- feedAnswer) func(feedAnswer) {
	return func(a feedAnswer) {
		select {
		case out <- a:
		case <-ctx.Done():
		}
	}
}

func TestFollowKeepsTheIndexRules(t *testing.T) {
	feed := newScripted(
		answer{index: 5}, // first answer: passed on
		answer{index: 5}, // same index: nothing, ask again with 5
		answer{index: 6}, // index moved: passed on
		answer{index: 3}, // went backwards: passed on as a reset, start over from 0
		answer{index: 0}, // index 0: a reset too
		answer{index: 8}, // moved
	)
	s, sl := sleepless()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan feedAnswer)
	done := make(chan struct{})
	go func() { s.follow(ctx, feedServices, feed.query, nil, sendTo(ctx, out)); close(done) }()
	var got []feedAnswer
	for range 5 {
		a := receive(t, out)
		got = append(got, feedAnswer{feed: a.feed, index: a.index, reset: a.reset})
	}
	want := []feedAnswer{
		{feed: feedServices, index: 5}, {feed: feedServices, index: 6},
		{feed: feedServices, index: 3, reset: true}, {feed: feedServices, index: 0, reset: true},
		{feed: feedServices, index: 8},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("answers\n got %+v\nwant %+v", got, want)
	}
	waitFor(t, "7th query", func() bool { return len(feed.waitedOn()) >= 7 })
	if got, want := feed.waitedOn(), []uint64{0, 5, 5, 6, 0, 0, 8}; !reflect.DeepEqual(got, want) {
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
		t.Fatal("follow did not stop on cancel")
	}
}

func TestFollowBacksOffAndResets(t *testing.T) {
	boom := errors.New("connection refused")
	var script []answer
	for range 8 {
		script = append(script, answer{err: boom})
	}
	feed := newScripted(append(script, answer{index: 2}, answer{err: boom})...)
	s, sl := sleepless()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan feedAnswer, 10)
	go s.follow(ctx, feedNodes, feed.query, nil, sendTo(ctx, out))
	if a := receive(t, out); a.index != 2 {
		t.Errorf("answer after errors: %+v", a)
	}
	waitFor(t, "10 sleeps", func() bool { return len(sl.all()) >= 10 })
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
