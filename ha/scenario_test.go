package ha

import (
	"testing"
	"time"
)

// The safety cases of the design, each on the simulated pair.

func TestCutOffEntirely(t *testing.T) {
	s := newSim(t, 1)
	a := s.settle()
	b := 1 - a
	s.setConsul(a, false)
	s.link = [2][2]bool{} // no heartbeat either way
	cut := s.now()
	fenced := s.runUntil(time.Second, func() bool { return !s.d[a].vip })
	if fenced < 0 || fenced > DefaultTimings().Fence()+DefaultTimings().Renew {
		t.Fatalf("the cut-off active stepped down after %s, want within fence %s (+ a renewal)", fenced, DefaultTimings().Fence())
	}
	took := s.runUntil(time.Second, func() bool { return s.d[b].vip })
	s.checkSafe()
	if took < 0 {
		t.Fatalf("standby did not take over within 1s\n%s", s.tail())
	}
	total := s.now().Sub(cut)
	if total < DefaultTimings().TTL || total > time.Second {
		t.Fatalf("takeover %s after the cut, want between the ttl and 1s", total)
	}
	t.Logf("fenced after %s, standby active after %s", fenced, total)
}

// TestTakeoverFollowsTheTTL: a shorter lease_ttl takes over sooner. The
// standby used to count its guard hold from the last guard it sent, which
// it sends until PeerTimeout after it last heard the active: 600 ms after
// the cut with the default heartbeat, whatever the TTL, so halving the
// TTL took over no sooner. Counted from the heartbeat the guard echoes,
// the hold ends 350 ms after the cut and the TTL decides.
func TestTakeoverFollowsTheTTL(t *testing.T) {
	tm := DefaultTimings()
	tm.TTL = 400 * time.Millisecond // fence 200 ms: two renewals
	for seed := uint64(1); seed <= 20; seed++ {
		s := newSimTimings(t, seed, tm)
		a := s.settle()
		b := 1 - a
		s.setConsul(a, false)
		s.link = [2][2]bool{} // no heartbeat either way
		cut := s.now()
		if s.runUntil(2*time.Second, func() bool { return s.d[b].vip }) < 0 {
			t.Fatalf("seed %d: standby did not take over\n%s", seed, s.tail())
		}
		s.checkSafe()
		// The lease's last change is at most a renewal before the cut;
		// then the TTL, a write and a watch answer.
		if took := s.now().Sub(cut); took > tm.TTL+60*time.Millisecond {
			t.Fatalf("seed %d: takeover %s after the cut with a %s ttl, want within the ttl (+60ms)\n%s", seed, took, tm.TTL, s.tail())
		}
	}
}

func TestNoTakeoverWhen(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault func(s *sim, active int)
	}{
		{"only the heartbeat is cut", func(s *sim, _ int) { s.cutHeartbeat(true) }},
		{"the active loses consul but not its peer", func(s *sim, a int) { s.setConsul(a, false) }},
		{"consul is stopped altogether", func(s *sim, _ int) { s.setConsul(0, false); s.setConsul(1, false) }},
		{"the standby loses consul", func(s *sim, a int) { s.setConsul(1-a, false) }},
		{"the standby loses its carrier", func(s *sim, a int) { s.setCarrier(1-a, false) }},
		{"the active hears its peer but the peer does not hear it, both reach consul", func(s *sim, a int) { s.link[a][1-a] = false }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 2)
			a := s.settle()
			epoch := s.d[a].m.epoch
			c.fault(s, a)
			for range 5000 {
				s.step()
				if s.active() != a {
					t.Fatalf("active changed from %s at %s\n%s", s.d[a].name, s.now().Format("05.000"), s.tail())
				}
			}
			if s.d[a].m.epoch != epoch || s.d[1-a].m.takeovers != 0 {
				t.Fatalf("epoch %d → %d, standby takeovers %d", epoch, s.d[a].m.epoch, s.d[1-a].m.takeovers)
			}
			s.checkSafe()
		})
	}
}

func TestCarrierLostOnActive(t *testing.T) {
	s := newSim(t, 3)
	a := s.settle()
	s.setCarrier(a, false)
	if s.runUntil(30*time.Millisecond, func() bool { return !s.d[a].vip }) < 0 {
		t.Fatal("active kept the vip after its carrier went")
	}
	took := s.runUntil(time.Second, func() bool { return s.d[1-a].vip })
	s.checkSafe()
	// At once: a release written and seen, and an acquire, no timeout.
	if took < 0 || took > 50*time.Millisecond {
		t.Fatalf("standby took over after %s, want at once (< 50ms)\n%s", took, s.tail())
	}
	// Its carrier back, the old active stays standby.
	s.setCarrier(a, true)
	s.run(5 * time.Second)
	if s.active() != 1-a {
		t.Fatalf("after the carrier came back the active is %d, want %d", s.active(), 1-a)
	}
}

func TestOldActiveReturns(t *testing.T) {
	s := newSim(t, 4)
	a := s.settle()
	s.setConsul(a, false)
	s.link = [2][2]bool{}
	if s.runUntil(2*time.Second, func() bool { return s.d[1-a].vip }) < 0 {
		t.Fatal("no takeover")
	}
	s.setConsul(a, true)
	s.cutHeartbeat(false)
	for range 5000 {
		s.step()
		if s.d[a].vip {
			t.Fatalf("the old active took the vip back at %s\n%s", s.now().Format("05.000"), s.tail())
		}
	}
	if s.active() != 1-a {
		t.Fatal("the new active lost its role")
	}
}

func TestHandoverMakeBeforeBreak(t *testing.T) {
	s := newSim(t, 5)
	a := s.settle()
	acts, err := s.d[a].m.Handover()
	if err != nil {
		t.Fatal(err)
	}
	s.act(a, acts)
	if s.runUntil(30*time.Millisecond, func() bool { return !s.d[a].vip }) < 0 {
		t.Fatal("the active kept its vip")
	}
	off := s.now()
	// Someone schedules throughout: the old active drains until the new
	// one is active (then its gratuitous ARP moves the clients).
	gap := false
	took := s.runUntil(time.Second, func() bool {
		gap = gap || !s.d[a].sched && !s.d[1-a].sched
		return s.d[1-a].vip
	})
	s.checkSafe()
	if gap {
		t.Fatalf("the old active stopped scheduling before the new one started\n%s", s.tail())
	}
	if s.runUntil(DefaultTimings().DrainMax(), func() bool { return !s.d[a].sched }) < 0 {
		t.Fatalf("the old active never drained\n%s", s.tail())
	}
	// Without a VIP for two round trips to Consul and one watch: the gap
	// an ARP update covers.
	if took < 0 || took > 30*time.Millisecond {
		t.Fatalf("peer active %s after the old one stepped down at %s, want within 30ms", took, off.Format("05.000"))
	}
	if got := s.d[1-a].m.epoch; got != s.d[a].m.lease.Lease.Epoch || got <= 1 {
		t.Fatalf("new epoch %d", got)
	}
	s.run(3 * time.Second)
	if s.active() != 1-a {
		t.Fatal("handover did not last")
	}
	t.Logf("no director had the vip for %s", took)
}

func TestAsymmetricCutsStaySafe(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault func(s *sim, a int)
	}{
		{"standby stops hearing the active, which loses consul", func(s *sim, a int) { s.link[a][1-a] = false; s.setConsul(a, false) }},
		{"active stops hearing the standby and loses consul", func(s *sim, a int) { s.link[1-a][a] = false; s.setConsul(a, false) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 6)
			a := s.settle()
			c.fault(s, a)
			s.run(5 * time.Second)
			s.checkSafe()
			if s.active() < 0 {
				t.Fatalf("no active 5s after the fault\n%s", s.tail())
			}
		})
	}
}

// TestIndexGoesBack restores an older snapshot of Consul under a settled
// pair — the key, and its ModifyIndex, go back — as `consul snapshot
// restore` does, and as a cluster rebuilt from a snapshot does with the
// raft index too: a director is active again within 2 × the TTL, and
// stays.
func TestIndexGoesBack(t *testing.T) {
	for _, c := range []struct {
		name    string
		rebuilt bool
		// fromStart: the snapshot has no lease (taken before the pair ran).
		fromStart bool
	}{
		{"snapshot restored", false, false},
		{"cluster rebuilt from a snapshot", true, false},
		{"snapshot from before the pair", false, true},
		{"cluster rebuilt, snapshot from before the pair", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t, 4)
			before := s.snapshot()
			a := s.settle()
			if !c.fromStart {
				before = s.snapshot()
			}
			s.run(2 * time.Second) // renewals: the index moves on
			s.restore(before, c.rebuilt)
			restored := s.now()
			ttl := DefaultTimings().TTL
			// Whoever holds it then must be renewing it.
			for s.now().Sub(restored) < 2*ttl {
				s.step()
			}
			act := s.active()
			if act < 0 {
				t.Fatalf("no active %s after the restore (was %s)\n%s", 2*ttl, s.d[a].name, s.tail())
			}
			from := s.kv.index
			s.run(2 * time.Second)
			s.checkSafe()
			if s.active() != act {
				t.Fatalf("active %d then %d after the restore\n%s", act, s.active(), s.tail())
			}
			if s.kv.index == from || s.kv.lease.Holder != s.d[act].name {
				t.Fatalf("the active %s does not renew: lease %+v at index %d\n%s", s.d[act].name, s.kv.lease, s.kv.index, s.tail())
			}
		})
	}
}

// TestACLRefusal: Consul refuses one director's writes (a token without
// key:write). It never becomes active, and says why in its status, while
// the other can serve or not. Both refused, neither is active; the ACL
// fixed, one is.
func TestACLRefusal(t *testing.T) {
	s := newSim(t, 5)
	s.d[0].refused = true
	s.setCarrier(1, false) // b cannot serve: a would take over
	s.run(3 * time.Second)
	if s.d[0].vip {
		t.Fatalf("a is active with its writes refused\n%s", s.tail())
	}
	if st := s.d[0].m.Status(); st.LeaseError == "" {
		t.Fatalf("a's writes are refused and its status does not say so: %+v", st)
	}
	s.setCarrier(1, true)
	if s.runUntil(3*time.Second, func() bool { return s.active() == 1 }) < 0 {
		t.Fatalf("b, allowed to write, did not become active\n%s", s.tail())
	}
	if st := s.d[1].m.Status(); st.LeaseError != "" {
		t.Fatalf("b's status has a lease error: %q", st.LeaseError)
	}

	s = newSim(t, 6)
	s.d[0].refused, s.d[1].refused = true, true
	s.run(3 * time.Second)
	if s.d[0].vip || s.d[1].vip {
		t.Fatalf("a director is active without any write taken\n%s", s.tail())
	}
	s.d[0].refused, s.d[1].refused = false, false
	if s.runUntil(3*time.Second, func() bool { return s.active() >= 0 }) < 0 {
		t.Fatalf("the ACL fixed, no director became active\n%s", s.tail())
	}
	s.run(time.Second)
	if a := s.active(); a < 0 || s.d[a].m.Status().LeaseError != "" {
		t.Fatalf("after the fix: active %d, status %+v", a, s.d[max(a, 0)].m.Status())
	}
	s.checkSafe()
}

// TestForgedHeartbeat: a heartbeat claiming the peer is active at a
// higher epoch, which the lease in Consul does not confirm (forged,
// replayed), sent to the active every 200ms for 5s, deposes nobody.
// (That it reaches the machine at all is the transport's to prevent:
// TestPairForgedHeartbeats.)
func TestForgedHeartbeat(t *testing.T) {
	s := newSim(t, 7)
	a := s.settle()
	epoch := s.d[a].m.epoch
	forged := Heartbeat{From: s.d[1-a].name, Incarnation: 1, Role: Active, Epoch: epoch + 100}
	for range 25 {
		s.to(a, func() []Action { return s.d[a].m.Heard(forged) })
		s.run(200 * time.Millisecond)
		if s.active() != a || s.d[a].m.epoch != epoch {
			t.Fatalf("a forged heartbeat moved the active: %s now %s epoch %d\n%s", s.d[a].name, s.d[a].m.role, s.d[a].m.epoch, s.tail())
		}
	}
	s.checkSafe()
}
