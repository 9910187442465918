// Package backoff is the one retry delay of lvs-sync, shared by the catalog
// watcher and the daemon's loop. It imports only the standard library.
package backoff

import "time"

// Delay is the wait after the n-th consecutive failure (n ≥ 1): base
// doubled n-1 times, capped at max, less jitter(d/4) when jitter is set
// (jitter returns a random duration in [0, d)). n < 1 counts as 1.
func Delay(n int, base, max time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if jitter != nil {
		d -= jitter(d / 4)
	}
	return d
}
