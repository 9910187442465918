package main

import (
	"errors"
	"runtime/debug"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// TestAfterFirstSync: the daemon turns to its steady state once, after the
// first sync that succeeded, releaseDelay later (a failed sync does not
// count): GOGC gcPercent, unless GOGC is set.
func TestAfterFirstSync(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, gogc := range []string{"", "200"} {
		debug.SetGCPercent(100)
		var delays []time.Duration
		var fns []func()
		onSync := afterFirstSync(func(k string) string { return map[string]string{"GOGC": gogc}[k] },
			func(d time.Duration, f func()) *time.Timer {
				delays, fns = append(delays, d), append(fns, f)
				return nil
			})
		onSync(daemon.Report{Err: errors.New("kernel refused")})
		if len(delays) != 0 {
			t.Fatalf("GOGC=%q: a failed sync turned to the steady state", gogc)
		}
		onSync(daemon.Report{})
		onSync(daemon.Report{})
		if len(delays) != 1 || delays[0] != releaseDelay {
			t.Fatalf("GOGC=%q: after three syncs %v, want once after %v", gogc, delays, releaseDelay)
		}
		fns[0]()
		want := gcPercent
		if gogc != "" {
			want = 100 // as the runtime had it: the environment's is not touched
		}
		if got := debug.SetGCPercent(100); got != want {
			t.Errorf("GOGC=%q: the collector's percent is %d, want %d", gogc, got, want)
		}
	}
}
