package main

import (
	"runtime/debug"
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

// gcPercent is the daemon's GOGC after its first sync, unless the
// environment sets one. At 1k × 10 (TestMemory1kx10, three runs each, a
// loaded 2-core machine), 50 for the whole run took the private RSS from
// 53–63 MiB to 50–52 after the first sync and from 62–67 to 51–53 after
// 200 edits, for 0.69–0.73 s → 0.64–0.84 s of CPU for the edits; it cost
// the first sync a quarter more CPU (0.61–0.66 s → 0.73–0.86 s; 6.5 s →
// 8.5 s at 10k × 10), which is why it waits for the first sync to be done.
// An idle daemon allocates next to nothing: no cost there.
const gcPercent = 50

// releaseDelay is how long after the first complete sync the daemon
// turns to its steady state: the sync's round, its plan of the whole table
// among it, is gone by then.
const releaseDelay = time.Second

// afterFirstSync is the daemon's OnSync: releaseDelay after the first
// sync that succeeded, it sets gcPercent (unless GOGC is set in the
// environment: an operator's setting stands), then collects and returns
// the free memory to the OS (one collection, some milliseconds at 1k ×
// 10), once.
func afterFirstSync(getenv func(string) string, after func(time.Duration, func()) *time.Timer) func(daemon.Report) {
	done := false
	return func(r daemon.Report) { // on the loop's goroutine
		if done || r.Err != nil {
			return
		}
		done = true
		after(releaseDelay, func() {
			if getenv("GOGC") == "" {
				debug.SetGCPercent(gcPercent)
			}
			debug.FreeOSMemory()
		})
	}
}
