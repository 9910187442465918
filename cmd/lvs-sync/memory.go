package main

import (
	"runtime/debug"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// The memory of `lvs-sync run`: two decisions about Go's collector, made
// here and nowhere else. TestMemory1kx10 (internal/benchwatch) holds the
// result to issue 23's goal.

// gcPercent is run's GOGC, unless the environment sets one. The daemon's
// heap is mostly long-lived: the catalog, the rendered state and its
// decisions, the metrics; garbage comes in bursts (the first sync, a
// sweep's re-reads). Go's default of 100 lets the heap grow to twice what
// is live before collecting, and the RSS follows: at 1,000 services × 10
// instances (TestMemory1kx10, three runs each on a loaded 2-core machine)
// 50 takes the private RSS from 53–63 MiB to 50–52 after the first sync
// and from 62–67 to 51–53 after 200 edits, for 0.61–0.66 s → 0.73–0.86 s
// of CPU to the first sync and about the same for the edits (0.69–0.73 s →
// 0.64–0.84 s). An idle daemon allocates next to nothing, so it costs
// nothing there. Not a memory limit: the live heap grows with the catalog
// (ten times at 10,000 services), and a fixed limit below it would have
// the collector run without end.
const gcPercent = 50

// setGCPercent sets gcPercent, unless GOGC is set: an operator's setting
// stands.
func setGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// releaseDelay is how long after the first complete sync its memory is
// returned: the sync's round, its plan of the whole table among it, is
// gone by then.
const releaseDelay = time.Second

// releaseAfterFirstSync is the daemon's OnSync: releaseDelay after the
// first sync that succeeds, it collects and returns the free memory to
// the OS, once. The first sync is the daemon's one burst above its steady
// state: the whole catalog read at once, every virtual service rendered,
// the whole table planned and applied. The collector's goal, set from
// that peak, would let the heap grow to it again before collecting, and
// the pages it freed go back to the OS only slowly. At 1k × 10 the peak
// is about 31 MiB live against 25 afterwards. It costs one collection
// (some milliseconds at that size), once.
func releaseAfterFirstSync(after func(time.Duration, func()) *time.Timer) func(daemon.Report) {
	done := false
	return func(r daemon.Report) { // on the loop's goroutine
		if done || r.Err != nil {
			return
		}
		done = true
		after(releaseDelay, debug.FreeOSMemory)
	}
}
