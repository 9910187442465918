package main

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// The memory of `lvs-sync run`: its decisions about Go's collector, made
// here and nowhere else. TestMemory1kx10 (internal/benchwatch) holds the
// result to issue 23's goal.
//
// The daemon's heap is mostly long-lived: the catalog, the rendered state
// and its decisions, the metrics. Its garbage comes in bursts, and the
// first sync is the largest: the whole catalog read at once, every virtual
// service rendered, the whole table planned and applied (at 1,000
// services × 10 instances about 31 MiB live at its peak against 25 after
// it). So the first sync runs with Go's default collector, for its speed,
// and once it is done the daemon turns to its steady state: a collector
// that lets the heap grow by half of what is live, not by all of it
// (gcPercent), and the first sync's memory returned to the OS at once,
// not slowly by the scavenger while the heap grows back to the goal the
// peak set. Not a memory limit: the live heap grows with the catalog (ten
// times at 10,000 services), and a fixed limit below it would have the
// collector run without end.
//
// Every later burst (a round of edits, a reload) leaves the same kind of
// excess behind: the heap at its goal, half again what is live, and the
// scavenger returning the free part only slowly while the goal stays. So
// when the daemon has been quiet for releaseDelay after a sync that
// changed the kernel, and the heap holds more than releaseExcess over what
// it held after the last release, it collects and returns that too, once
// per burst. Measured at 10,000 services × 10 instances (a loaded 2-core
// machine, the real binary in -dry-run against a real agent): after 200
// edits the heap held 269 MB in use and 94 MB free but not returned for
// 180 MB live, 357 MiB of private RSS; with the release, 226 MiB (223
// after the first sync).

// gcPercent is the daemon's GOGC after its first sync, unless the
// environment sets one. At 1k × 10 (TestMemory1kx10, three runs each, a
// loaded 2-core machine), 50 for the whole run took the private RSS from
// 53–63 MiB to 50–52 after the first sync and from 62–67 to 51–53 after
// 200 edits, for 0.69–0.73 s → 0.64–0.84 s of CPU for the edits; it cost
// the first sync a quarter more CPU (0.61–0.66 s → 0.73–0.86 s; 6.5 s →
// 8.5 s at 10k × 10), which is why it waits for the first sync to be done.
// An idle daemon allocates next to nothing: no cost there.
const gcPercent = 50

// releaseDelay is how long the daemon must have been quiet (no sync)
// before it returns a burst's memory: after the first complete sync, the
// sync's round, its plan of the whole table among it, is gone by then;
// after a round of edits, a collection then does not compete with the
// syncs of the round for the CPU.
const releaseDelay = time.Second

// releaseExcess is how much more than it held after its last release the
// daemon may hold before a quiet moment returns the rest: an eighth of
// the live heap, and not less than releaseFloor. The base is what the
// heap held after the release, not what is live: the spans' own slack
// (the free slots of spans that hold live objects, 49 MB of 229 at 10k ×
// 10 right after a release) is no burst's to return. Below the excess a
// collection, a full mark of the live heap (about 0.4 s of CPU at 10k ×
// 10 on a loaded 2-core machine), would cost more than the memory is
// worth; a burst that left that little behind is left to the collector.
// With a quarter over the live heap, the bench's 60 changes at 10k × 10
// left 24 MiB over the release unreturned (250 MiB private against 226).
func releaseExcess(live uint64) uint64 { return max(live/8, releaseFloor) }

const releaseFloor = 4 << 20

// memory is the daemon's OnSync: releaseDelay after a sync that
// succeeded and changed the kernel, when no such sync followed, the first
// time it sets gcPercent (unless GOGC is set in the environment: an
// operator's setting stands) and returns the free memory to the OS; every
// later time it returns it only when the heap holds more than
// releaseExcess over what it held after the last release.
type memory struct {
	getenv func(string) string
	after  func(time.Duration, func()) *time.Timer
	// held reads the heap's memory (in use, free and not yet returned)
	// and its live part as of the last collection; release collects and
	// returns the free memory (debug.FreeOSMemory).
	held    func() (held, live uint64)
	release func()

	mu     sync.Mutex
	synced int    // syncs that armed a release: the last one's stands
	steady bool   // gcPercent set, the first sync's memory returned
	base   uint64 // what the heap held after the last release
}

func newMemory(getenv func(string) string, after func(time.Duration, func()) *time.Timer) *memory {
	return &memory{getenv: getenv, after: after, held: heapHeld, release: debug.FreeOSMemory}
}

// onSync runs on the loop's goroutine. Only a sync that changed the
// kernel (and the first) arms a release: a sync that changed nothing, the
// periodic reconcile of an idle daemon, leaves its garbage to the
// collector. A release after each reconcile was, at 10,000 services × 10
// instances, a full collection a minute, 0.38 s of CPU, twice what the
// reconcile's own sync cost.
func (m *memory) onSync(r daemon.Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Err != nil || (m.synced > 0 && r.Applied == 0) {
		return
	}
	m.synced++
	n := m.synced
	m.after(releaseDelay, func() { m.quiet(n) })
}

// quiet runs releaseDelay after the n-th sync that armed a release: a
// later one has armed its own. The collection runs without the lock
// held: a sync of the loop that arms a release meanwhile does not wait
// for it (a full collection, about 0.4 s at 10k × 10).
func (m *memory) quiet(n int) {
	m.mu.Lock()
	last, first, base := n == m.synced, !m.steady, m.base
	m.steady = m.steady || last
	m.mu.Unlock()
	switch {
	case !last:
		return
	case first:
		if m.getenv("GOGC") == "" {
			debug.SetGCPercent(gcPercent)
		}
		m.returnFree()
	default:
		if held, live := m.held(); held > base+releaseExcess(live) {
			m.returnFree()
		}
	}
}

// returnFree collects, returns the free memory, and notes what the heap
// holds after.
func (m *memory) returnFree() {
	m.release()
	held, _ := m.held()
	m.mu.Lock()
	m.base = held
	m.mu.Unlock()
}

// heapSamples are the runtime's figures heapHeld reads: cheap, no stop of
// the world (unlike runtime.ReadMemStats).
var heapSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"}, // live and not yet swept
	{Name: "/memory/classes/heap/unused:bytes"},  // in spans, not in objects
	{Name: "/memory/classes/heap/free:bytes"},    // free, not returned
	{Name: "/gc/heap/live:bytes"},                // marked live by the last collection
}

func heapHeld() (held, live uint64) {
	s := make([]metrics.Sample, len(heapSamples))
	copy(s, heapSamples)
	metrics.Read(s)
	for _, x := range s[:3] {
		if x.Value.Kind() == metrics.KindUint64 {
			held += x.Value.Uint64()
		}
	}
	if s[3].Value.Kind() == metrics.KindUint64 {
		live = s[3].Value.Uint64()
	}
	return held, live
}
