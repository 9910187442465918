package main

import (
	"errors"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// TestReleaseAfterFirstSync: the memory is released once, after the first
// sync that succeeded, releaseDelay later; a failed sync does not count.
func TestReleaseAfterFirstSync(t *testing.T) {
	var delays []time.Duration
	onSync := releaseAfterFirstSync(func(d time.Duration, f func()) *time.Timer {
		delays = append(delays, d)
		return nil
	})
	onSync(daemon.Report{Err: errors.New("kernel refused")})
	if len(delays) != 0 {
		t.Fatalf("a failed sync released the memory")
	}
	onSync(daemon.Report{})
	onSync(daemon.Report{})
	if len(delays) != 1 || delays[0] != releaseDelay {
		t.Errorf("releases after three syncs: %v, want one after %v", delays, releaseDelay)
	}
}
