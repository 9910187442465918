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
)

// TestFirstSyncShowsProgress: a first snapshot of ten services that comes
// at once logs no progress; one whose last service answers 2.5 s (of a
// fake clock) after the watch began ends with a line that says so:
// msg="first sync" read=10 of=10 done=true took=2.5s.
func TestFirstSyncShowsProgress(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow=%v", slow), func(t *testing.T) {
			var buf bytes.Buffer
			var mu sync.Mutex
			log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, Level: hclog.Info, DisableTime: true})
			f := newFakeConsul()
			var names []string
			release := make(chan struct{})
			f.silently(func() {
				f.nodes["n1"] = "192.0.2.1"
				for i := range 10 {
					name := fmt.Sprintf("s%02d", i)
					names = append(names, name)
					f.add(name, "n1", name+"-1", 80)
				}
				if slow {
					f.hold["s09"] = release
				}
			})
			clock := clockworkFake()
			s := newSource(f, Options{MinInterval: time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond,
				Logger: log, Clock: clock})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			snaps := s.Watch(ctx, names, nil)
			if slow {
				waitFor(t, "every service's first read", func() bool {
					f.mu.Lock()
					defer f.mu.Unlock()
					for _, n := range names {
						if f.taken[n] == 0 {
							return false
						}
					}
					return true
				})
				clock.Advance(2500 * time.Millisecond)
				close(release)
			}
			if snap := next(t, snaps, "first"); len(snap.Services) != 10 {
				t.Fatalf("first snapshot has %d services, want 10", len(snap.Services))
			}
			mu.Lock()
			defer mu.Unlock()
			var got []string
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.Contains(l, "first sync") {
					got = append(got, l)
				}
			}
			if !slow {
				if len(got) > 0 {
					t.Fatalf("a quick first sync logged progress: %q", got)
				}
				return
			}
			want := `[INFO]  first sync: read=10 of=10 done=true took=2.5s`
			if len(got) == 0 || len(got) > 2 || got[len(got)-1] != want {
				t.Fatalf("progress lines %q, want at most one line of how far, then %q", got, want)
			}
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
			var buf bytes.Buffer
			var mu sync.Mutex
			log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, Level: hclog.Info, DisableTime: true})
			f := newFakeConsul()
			var names []string
			release := make(chan struct{})
			f.silently(func() {
				f.nodes["n1"] = "192.0.2.1"
				for i := range 10 {
					name := fmt.Sprintf("s%02d", i)
					names = append(names, name)
					f.add(name, "n1", name+"-1", 80)
				}
				if slow {
					f.hold["s09"] = release
				}
			})
			clock := clockworkFake()
			s := newSource(f, Options{Logger: log, Clock: clock})
			type fetched struct {
				n   int
				err error
			}
			done := make(chan fetched, 1)
			go func() {
				snap, err := s.Fetch(context.Background(), names)
				done <- fetched{len(snap.Services), err}
			}()
			if slow {
				waitFor(t, "every service's read", func() bool {
					f.mu.Lock()
					defer f.mu.Unlock()
					for _, n := range names {
						if f.taken[n] == 0 {
							return false
						}
					}
					return true
				})
				clock.Advance(2500 * time.Millisecond)
				close(release)
			}
			var got fetched
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer from Fetch in 10s")
			}
			if got.err != nil || got.n != 10 {
				t.Fatalf("fetched %d services (%v), want 10", got.n, got.err)
			}
			mu.Lock()
			defer mu.Unlock()
			var lines []string
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.Contains(l, "reading catalog") {
					lines = append(lines, l)
				}
			}
			if !slow {
				if len(lines) > 0 {
					t.Fatalf("a quick read logged progress: %q", lines)
				}
				return
			}
			want := `[INFO]  reading catalog: read=10 of=10 done=true took=2.5s`
			if len(lines) == 0 || len(lines) > 2 || lines[len(lines)-1] != want {
				t.Fatalf("progress lines %q, want at most one line of how far, then %q", lines, want)
			}
		})
	}
}
