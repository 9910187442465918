package ha

import (
	"slices"
	"testing"
	"time"
)

// TestStopReleasesTheLease: a stopping active steps down (VIPs off) and
// then releases its lease, so that the peer takes it at once; before,
// the release was owed but never written and the peer waited out the TTL.
func TestStopReleasesTheLease(t *testing.T) {
	f := newFixture(t)
	f.activate()
	acts := f.m.Stop()
	// No peer heard: nobody takes its clients, nothing to drain.
	if got := kinds(acts); !slices.Equal(got, []ActionKind{StepDown, Drained, WriteLease}) {
		t.Fatalf("stop of an active: %v, want step-down, drained, write-lease", got)
	}
	if w := writeOf(t, acts); w.Kind != Release || w.Lease.Holder != "" || w.Lease.Epoch != 3 || w.Index != 10 {
		t.Fatalf("stop wrote %+v, want a release of epoch 3 at index 10", w)
	}
	if role, _ := f.m.Role(); role != Standby {
		t.Fatalf("role %v after stop", role)
	}

	// A standby that stops writes nothing.
	g := newFixture(t)
	g.m.Observed(held("b", 4, 20))
	if acts := g.m.Stop(); len(acts) != 0 {
		t.Fatalf("stop of a standby: %v", acts)
	}
}

// TestStopWaitsForTheWriteInFlight: a renewal in flight when the active
// stops is answered first; its answer brings the release.
func TestStopWaitsForTheWriteInFlight(t *testing.T) {
	f := newFixture(t)
	f.activate()
	renew := writeOf(t, f.after(100*time.Millisecond))
	if renew.Kind != Renew {
		t.Fatalf("want a renewal, got %+v", renew)
	}
	if got := kinds(f.m.Stop()); !slices.Equal(got, []ActionKind{StepDown, Drained}) {
		t.Fatalf("stop with a write in flight: %v", got)
	}
	acts := f.m.Written(WriteResult{Write: renew, OK: true, Index: 11})
	if w := writeOf(t, acts); w.Kind != Release || w.Index != 11 {
		t.Fatalf("after the renewal's answer: %+v, want the release at index 11", w)
	}
}

// TestStoppingNeverTakesOver: a stopping standby whose acquire was in
// flight gives back what it won instead of becoming active, and takes
// nothing over later, however long the lease stands unrenewed.
func TestStoppingNeverTakesOver(t *testing.T) {
	f := newFixture(t)
	w := writeOf(t, f.m.Observed(Observation{Present: true, Lease: Lease{Epoch: 2}, Index: 9}))
	if w.Kind != Acquire {
		t.Fatalf("want an acquire, got %+v", w)
	}
	f.m.Stop()
	acts := f.m.Written(WriteResult{Write: w, OK: true, Index: 10})
	if slices.Contains(kinds(acts), BecomeActive) {
		t.Fatalf("a stopping director became active: %v", acts)
	}
	if r := writeOf(t, acts); r.Kind != Release || r.Index != 10 {
		t.Fatalf("want the won lease released, got %+v", r)
	}
	f.m.Written(WriteResult{Write: writeOf(t, acts), OK: true, Index: 11})
	if acts := f.after(10 * time.Second); len(acts) != 0 {
		t.Fatalf("a stopped director acted: %v", acts)
	}
}

// TestActiveKeepsItsVIPsAlive: an active refreshes its VIPs' lifetime
// every VIPRefresh, so that a director that dies active loses them to
// the kernel; a standby, or an active that fenced itself, does not.
func TestActiveKeepsItsVIPsAlive(t *testing.T) {
	f := newFixture(t)
	refresh := DefaultTimings().VIPRefresh()
	count := func(acts []Action) int {
		n := 0
		for _, a := range acts {
			if a.Kind == KeepVIPs {
				n++
			}
		}
		return n
	}
	if n := count(f.after(time.Second)); n != 0 {
		t.Fatalf("a standby kept vips: %d", n)
	}
	f.activate()
	// step lets d pass, the lease's writes all taking.
	step := func(d time.Duration) int {
		acts := f.after(d)
		for _, a := range acts {
			if a.Kind == WriteLease {
				f.m.Written(WriteResult{Write: a.Write, OK: true, Index: a.Write.Index + 1})
			}
		}
		return count(acts)
	}
	if n := step(refresh - time.Millisecond); n != 0 {
		t.Fatalf("refreshed before VIPRefresh: %d", n)
	}
	step(time.Millisecond)
	total := 0
	for range 8 {
		total += step(refresh / 2)
	}
	if total != 4 {
		t.Fatalf("%d refreshes in 4 VIPRefresh periods, want 4", total)
	}
	// Cut off from Consul and unguarded, it fences itself: no refresh more.
	acts := f.after(time.Second)
	if !slices.Contains(kinds(acts), StepDown) || count(acts) != 0 {
		t.Fatalf("a fenced active: %v", kinds(acts))
	}
	if n := count(f.after(time.Second)); n != 0 {
		t.Fatalf("a fenced director kept vips: %d", n)
	}
}

// TestPairStopHandsOver, against a real Consul: stopping the active (as
// SIGTERM does) releases its lease after it stepped down, and the standby
// takes over at once. The lease TTL is 20 s, so a standby that had to
// wait it out (as before: the release was never written) fails the 5 s
// bound by far.
func TestPairStopHandsOver(t *testing.T) {
	tm := DefaultTimings()
	tm.TTL = 20 * time.Second
	w, ds := startPair(t, "lvs-sync/ha/test-stop", tm)
	active, standby := settled(t, ds)
	active.stop()
	<-active.done
	if st := active.r.State(); st.Role != "standby" || st.Holder != "" {
		t.Fatalf("stopped active: role %s, lease holder %q as it last saw it; want standby, released", st.Role, st.Holder)
	}
	if !standby.r.WaitRole(Active, 5*time.Second) {
		t.Fatalf("the standby did not take over within 5s of the active's stop (lease ttl 20s): %+v", standby.r.State())
	}
	w.check(t)
}
