package consul

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"
)

// TestFirstSyncShowsProgress: a first snapshot of ten services that comes
// at once logs no progress; one whose last service answers 2.5 s (of a
// fake clock) after the watch began ends with a line that says so:
// msg="first sync" read=10 of=10 done=true took=2.5s.
func TestFirstSyncShowsProgress(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow=%v", slow), func(t *testing.T) {
			p := newProgressFixture(slow)
			s := newSource(p.f, Options{MinInterval: time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond,
				Logger: p.log, Clock: p.clock})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			snaps := s.Watch(ctx, p.names, nil)
			p.answerLate(t)
			if snap := next(t, snaps, "first"); len(snap.Services) != 10 {
				t.Fatalf("first snapshot has %d services, want 10", len(snap.Services))
			}
			p.check(t, "first sync", `[INFO]  first sync: read=10 of=10 done=true took=2.5s`)
		})
	}
}

// TestFetchShowsProgress: a read of the catalog (validate -catalog,
// render) whose last service answers 2.5 s (of a fake clock) after it
// began ends with a line that says so; one that answers at once logs no
// progress.
func TestFetchShowsProgress(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow=%v", slow), func(t *testing.T) {
			p := newProgressFixture(slow)
			s := newSource(p.f, Options{Logger: p.log, Clock: p.clock})
			type fetched struct {
				n   int
				err error
			}
			done := make(chan fetched, 1)
			go func() {
				snap, err := s.Fetch(context.Background(), p.names)
				done <- fetched{len(snap.Services), err}
			}()
			p.answerLate(t)
			var got fetched
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer from Fetch in 10s")
			}
			if got.err != nil || got.n != 10 {
				t.Fatalf("fetched %d services (%v), want 10", got.n, got.err)
			}
			p.check(t, "reading catalog", `[INFO]  reading catalog: read=10 of=10 done=true took=2.5s`)
		})
	}
}

// progressFixture is ten services, each on a node of its own (so that the
// first sync reads them per service: see readNodesFirst), of a fake
// Consul, logged to a buffer; with slow, the last service's answer waits
// for answerLate.
type progressFixture struct {
	slow    bool
	f       *fakeConsul
	names   []string
	release chan struct{}
	clock   *clockwork.FakeClock
	buf     bytes.Buffer
	mu      sync.Mutex
	log     hclog.Logger
}

func newProgressFixture(slow bool) *progressFixture {
	p := &progressFixture{slow: slow, f: newFakeConsul(), release: make(chan struct{}), clock: clockworkFake()}
	p.log = hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &p.buf, mu: &p.mu}, Level: hclog.Info, DisableTime: true})
	p.f.silently(func() {
		for i := range 10 {
			name, node := fmt.Sprintf("s%02d", i), fmt.Sprintf("n%02d", i)
			p.f.nodes[node] = fmt.Sprintf("192.0.2.%d", i+1)
			p.names = append(p.names, name)
			p.f.add(name, node, name+"-1", 80)
		}
		if slow {
			p.f.hold["s09"] = p.release
		}
	})
	return p
}

// answerLate, when slow, waits until every service was asked for, lets
// 2.5 s of the fake clock pass and lets the last answer go.
func (p *progressFixture) answerLate(t *testing.T) {
	t.Helper()
	if !p.slow {
		return
	}
	waitFor(t, "every service's read", func() bool {
		p.f.mu.Lock()
		defer p.f.mu.Unlock()
		for _, n := range p.names {
			if p.f.taken[n] == 0 {
				return false
			}
		}
		return true
	})
	p.clock.Advance(2500 * time.Millisecond)
	close(p.release)
}

// check looks at the lines that contain what: none when quick; when
// slow, at most one line of how far and then last.
func (p *progressFixture) check(t *testing.T, what, last string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var got []string
	for _, l := range strings.Split(p.buf.String(), "\n") {
		if strings.Contains(l, what) {
			got = append(got, l)
		}
	}
	if !p.slow {
		if len(got) > 0 {
			t.Fatalf("a quick read logged progress: %q", got)
		}
		return
	}
	if len(got) == 0 || len(got) > 2 || got[len(got)-1] != last {
		t.Fatalf("progress lines %q, want at most one line of how far, then %q", got, last)
	}
}
