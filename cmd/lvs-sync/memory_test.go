package main

import (
	"errors"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// fakeMemory is a memory whose timers, heap and release the test holds.
type fakeMemory struct {
	*memory
	delays     []time.Duration
	fns        []func()
	held, live uint64
	slack      uint64 // what the heap holds over live after a release
	released   int
}

func newFakeMemory(gogc string) *fakeMemory {
	f := &fakeMemory{}
	f.memory = newMemory(func(k string) string { return map[string]string{"GOGC": gogc}[k] },
		func(d time.Duration, fn func()) *time.Timer {
			f.delays, f.fns = append(f.delays, d), append(f.fns, fn)
			return nil
		})
	f.memory.held = func() (uint64, uint64) { return f.held, f.live }
	f.memory.release = func() { f.released++; f.held = f.live + f.slack }
	return f
}

// TestMemoryAfterFirstSync: the daemon turns to its steady state once,
// releaseDelay after the first sync that succeeded and no sync after it
// (a failed sync does not count): GOGC gcPercent, unless GOGC is set, and
// the first sync's memory returned.
func TestMemoryAfterFirstSync(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, gogc := range []string{"", "200"} {
		debug.SetGCPercent(100)
		m := newFakeMemory(gogc)
		m.onSync(daemon.Report{Err: errors.New("kernel refused")})
		if len(m.delays) != 0 {
			t.Fatalf("GOGC=%q: a failed sync armed a release", gogc)
		}
		m.onSync(daemon.Report{})
		m.onSync(daemon.Report{Applied: 3})
		if len(m.delays) != 2 || m.delays[0] != releaseDelay || m.delays[1] != releaseDelay {
			t.Fatalf("GOGC=%q: after two syncs %v, want two after %v", gogc, m.delays, releaseDelay)
		}
		m.fns[0]() // a sync came after it: not quiet yet
		if got := debug.SetGCPercent(100); got != 100 || m.released != 0 {
			t.Fatalf("GOGC=%q: a sync followed, yet the percent is %d and %d releases", gogc, got, m.released)
		}
		m.fns[1]()
		want := gcPercent
		if gogc != "" {
			want = 100 // as the runtime had it: the environment's is not touched
		}
		if got := debug.SetGCPercent(100); got != want {
			t.Errorf("GOGC=%q: the collector's percent is %d, want %d", gogc, got, want)
		}
		if m.released != 1 {
			t.Errorf("GOGC=%q: %d releases after the first sync, want 1", gogc, m.released)
		}
	}
}

// TestMemoryReleasesABurstsExcess: once steady, a quiet moment after a
// sync that changed the kernel returns the memory only when the heap
// holds more than releaseExcess over what it held after the last release
// (the spans' slack is not a burst's), and only after the last sync of a
// burst; a sync that changed nothing arms no release.
func TestMemoryReleasesABurstsExcess(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const live, slack = 180 << 20, 49 << 20
	m := newFakeMemory("")
	m.live, m.slack = live, slack
	m.onSync(daemon.Report{})
	m.fns[0]() // steady
	m.released = 0
	base := uint64(live + slack)

	m.held = base + 2*releaseExcess(live)
	m.onSync(daemon.Report{}) // changed nothing (a quiet reconcile): arms nothing
	if len(m.fns) != 1 {
		t.Fatalf("a sync that changed nothing armed a release")
	}

	m.held = base + releaseExcess(live) // at the edge: kept
	m.onSync(daemon.Report{Applied: 1})
	m.fns[len(m.fns)-1]()
	if m.released != 0 {
		t.Errorf("released with %d MiB held, %d after the last release, within the excess", m.held>>20, base>>20)
	}

	m.held = base + releaseExcess(live) + 1 // a burst left more
	for range 3 {
		m.onSync(daemon.Report{Applied: 1})
	}
	n := len(m.fns)
	m.fns[n-3]()
	m.fns[n-2]()
	if m.released != 0 {
		t.Errorf("released before the burst's last sync was quiet")
	}
	m.fns[n-1]()
	if m.released != 1 {
		t.Errorf("%d releases after a burst left %d MiB held for %d live, want 1", m.released, m.held>>20, m.live>>20)
	}

	m.live, m.base, m.released = 1<<20, 1<<20, 0 // a small daemon, 1 MiB after its last release
	m.held = 1<<20 + releaseFloor                // its floor over that
	m.onSync(daemon.Report{Applied: 1})
	m.fns[len(m.fns)-1]()
	if m.released != 0 {
		t.Errorf("released %d MiB over a live heap of 1 MiB, under the floor", releaseFloor>>20)
	}
}

// TestHeapHeld: the runtime's figures are read, and what is held is at
// least what is live (as of a collection: none yet, nothing is).
func TestHeapHeld(t *testing.T) {
	runtime.GC()
	held, live := heapHeld()
	if live == 0 || held < live {
		t.Errorf("held %d, live %d: want live > 0 and held at least live", held, live)
	}
}

// TestMemoryReleaseDoesNotHoldTheLoop: while a release collects (a full
// collection, some hundred milliseconds at 10k × 10), a sync of the loop
// that arms the next one does not wait for it.
func TestMemoryReleaseDoesNotHoldTheLoop(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	m := newFakeMemory("")
	inRelease, unblock := make(chan struct{}), make(chan struct{})
	m.memory.release = func() {
		close(inRelease)
		<-unblock
	}
	m.onSync(daemon.Report{})
	released := make(chan struct{})
	go func() {
		m.fns[0]()
		close(released)
	}()
	<-inRelease
	synced := make(chan struct{})
	go func() {
		m.onSync(daemon.Report{Applied: 1})
		close(synced)
	}()
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Error("a sync waited for the release under way")
	}
	close(unblock)
	<-released
}
