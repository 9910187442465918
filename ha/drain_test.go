package ha

import (
	"slices"
	"testing"
	"time"
)

// The drain: a director that stepped down keeps scheduling until its peer
// is heard active (one heartbeat more), or DrainMax. Before, StepDown set
// backup_only at once, and a new connection from a client whose ARP cache
// still named the old active met the VIP on its lo with nothing
// scheduling it: the old active's own TCP stack reset it (the VM's
// handover and streamline cases counted 1–2 resets a run).

// handedOver makes the fixture's machine active at epoch 3 and hands it
// over to b, returning the handover's actions.
func (f *fixture) handedOver() []Action {
	f.t.Helper()
	f.activate()
	hb := f.m.Heartbeat()
	f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby, Guard: true, GuardEpoch: 3, EchoInc: 7, Echo: hb.Stamp})
	acts, err := f.m.Handover()
	if err != nil {
		f.t.Fatal(err)
	}
	return acts
}

func TestHandoverDrainsUntilThePeerIsActive(t *testing.T) {
	f := newFixture(t)
	if got := kinds(f.handedOver()); !slices.Equal(got, []ActionKind{StepDown, WriteLease}) {
		t.Fatalf("handover: %v, want step-down and the handover write, no drained yet", got)
	}
	if !f.m.Draining() {
		t.Fatal("not draining after the step-down")
	}
	// The peer, still standby, or an old heartbeat of an active at the
	// epoch this director held: no end to the drain.
	f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby})
	f.m.Heard(activeBeat(3))
	if acts := f.after(200 * time.Millisecond); slices.Contains(kinds(acts), Drained) {
		t.Fatalf("drained before the peer was heard active: %v", acts)
	}
	// The peer active at the handed-over epoch: drained one heartbeat on.
	if acts := f.m.Heard(activeBeat(4)); slices.Contains(kinds(acts), Drained) {
		t.Fatalf("drained the instant the peer was heard, before its ARP could land: %v", acts)
	}
	acts := f.after(DefaultTimings().Heartbeat)
	if got := kinds(acts); !slices.Contains(got, Drained) {
		t.Fatalf("one heartbeat after the peer was heard active: %v, want drained", got)
	}
	if f.m.Draining() {
		t.Fatal("still draining after drained")
	}
	if acts := f.after(time.Second); slices.Contains(kinds(acts), Drained) {
		t.Fatalf("drained twice: %v", acts)
	}
}

// A peer that stays standby (its confirm fails, say): drained at DrainMax.
func TestDrainEndsAtDrainMax(t *testing.T) {
	f := newFixture(t)
	f.handedOver()
	tm := DefaultTimings()
	for elapsed := time.Duration(0); elapsed < tm.DrainMax()-tm.Heartbeat; elapsed += tm.Heartbeat {
		f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby})
		if acts := f.after(tm.Heartbeat); slices.Contains(kinds(acts), Drained) {
			t.Fatalf("drained after %v, before DrainMax %v, hearing a standby peer: %v", elapsed+tm.Heartbeat, tm.DrainMax(), acts)
		}
	}
	f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby})
	if acts := f.after(tm.Heartbeat); !slices.Contains(kinds(acts), Drained) {
		t.Fatalf("at DrainMax: %v, want drained", acts)
	}
}

// A director that heard no peer when it stepped down has nobody to take
// its clients over: drained at once (a stopping director without a peer
// exits at once). A peer that falls silent during the drain does not end
// it early: on a busy host that is a late heartbeat, not a lost peer.
func TestDrainWithoutAPeer(t *testing.T) {
	g := newFixture(t)
	g.activate()
	if got := kinds(g.m.Stop()); !slices.Contains(got, Drained) {
		t.Fatalf("stop without any peer: %v, want drained at once", got)
	}
	f := newFixture(t)
	f.handedOver()
	tm := DefaultTimings()
	if acts := f.after(tm.DrainMax() - time.Millisecond); slices.Contains(kinds(acts), Drained) {
		t.Fatalf("drained when the peer fell silent, before DrainMax: %v", acts)
	}
	if acts := f.after(time.Millisecond); !slices.Contains(kinds(acts), Drained) {
		t.Fatalf("at DrainMax: %v, want drained", acts)
	}
}

// A director that lost its carrier has nothing to drain: drained at once.
func TestCarrierLossDrainsAtOnce(t *testing.T) {
	f := newFixture(t)
	f.activate()
	got := kinds(f.m.Carrier(false))
	if i, j := slices.Index(got, StepDown), slices.Index(got, Drained); i < 0 || j < i {
		t.Fatalf("carrier lost: %v, want step-down then drained", got)
	}
}

// Active again while draining (the lease came back): the drain is over
// and no drained follows to stop its scheduling.
func TestActiveAgainEndsTheDrain(t *testing.T) {
	f := newFixture(t)
	f.activate()
	f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby})
	f.m.Observed(held("b", 4, 11)) // deposed
	if !f.m.Draining() {
		t.Fatal("not draining after a lost lease")
	}
	w := writeOf(t, f.m.Observed(Observation{Present: true, Lease: Lease{Epoch: 4}, Index: 12})) // released
	if acts := f.m.Written(WriteResult{Write: w, OK: true, Index: 13}); !slices.Equal(kinds(acts), []ActionKind{BecomeActive}) {
		t.Fatalf("takeover: %v", acts)
	}
	if f.m.Draining() {
		t.Fatal("still draining once active again")
	}
	// Its renewals answered, it stays active and never drains.
	for range 20 {
		acts := f.after(50 * time.Millisecond)
		if slices.Contains(kinds(acts), Drained) {
			t.Fatalf("an active director drained: %v", acts)
		}
		for _, a := range acts {
			if a.Kind == WriteLease {
				f.m.Written(WriteResult{Write: a.Write, OK: true, Index: a.Write.Index + 1})
			}
		}
	}
	if role, _ := f.m.Role(); role != Active {
		t.Fatalf("role %v, want active", role)
	}
}

// A director that is a real server of its own services (streamline)
// drains until it hears its peer active, without the heartbeat more:
// from then the new active may send it connections as a real, which it
// could balance back while it still schedules. Drained at once (an
// earlier rule), the connections it was forwarding to the other real
// were reset by its own stack (a CI run: 1 reset); draining a heartbeat
// more, one probe went round between the two and timed out (another).
func TestServesItselfDrainsUntilThePeerIsHeard(t *testing.T) {
	f := newFixture(t)
	f.m.SetServesItself(true)
	if got := kinds(f.handedOver()); slices.Contains(got, Drained) {
		t.Fatalf("handover of a director that serves itself: %v, drained before the peer is active", got)
	}
	if acts := f.after(100 * time.Millisecond); slices.Contains(kinds(acts), Drained) {
		t.Fatalf("drained before the peer was heard active: %v", acts)
	}
	if acts := f.m.Heard(activeBeat(4)); !slices.Contains(kinds(acts), Drained) {
		t.Fatalf("peer heard active: %v, want drained at once", acts)
	}
}
