package ha

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// The rules one at a time, on one machine fed by hand.

type fixture struct {
	t     *testing.T
	clock *clockwork.FakeClock
	m     *Machine
}

func newFixture(t *testing.T) *fixture {
	c := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return &fixture{t: t, clock: c, m: NewMachine("a", 7, DefaultTimings(), c)}
}

func (f *fixture) after(d time.Duration) []Action { f.clock.Advance(d); return f.m.Tick() }

func kinds(acts []Action) []ActionKind {
	var out []ActionKind
	for _, a := range acts {
		out = append(out, a.Kind)
	}
	return out
}

func writeOf(t *testing.T, acts []Action) Write {
	t.Helper()
	for _, a := range acts {
		if a.Kind == WriteLease {
			return a.Write
		}
	}
	t.Fatalf("no write in %v", acts)
	return Write{}
}

func held(holder string, epoch, index uint64) Observation {
	return Observation{Present: true, Lease: Lease{Holder: holder, Epoch: epoch}, Index: index}
}

// activate makes the fixture's machine active at epoch 3, index 10.
func (f *fixture) activate() {
	f.t.Helper()
	w := writeOf(f.t, f.m.Observed(Observation{Present: true, Lease: Lease{Epoch: 2}, Index: 9})) // released
	if w.Kind != Acquire || w.Lease.Epoch != 3 || w.Index != 9 {
		f.t.Fatalf("acquire of a released lease: %+v", w)
	}
	if got := kinds(f.m.Written(WriteResult{Write: w, OK: true, Index: 10})); !slices.Equal(got, []ActionKind{BecomeActive}) {
		f.t.Fatalf("after the acquire took: %v", got)
	}
}

func activeBeat(epoch uint64) Heartbeat {
	return Heartbeat{From: "b", Incarnation: 9, Role: Active, Epoch: epoch}
}

func TestStandbyTakeover(t *testing.T) {
	cases := []struct {
		name string
		// feed runs on a fresh standby and returns the actions at the end.
		feed func(f *fixture) []Action
		want WriteKind // 0: no write
	}{
		{"lease unchanged for ttl and peer lost: acquire", func(f *fixture) []Action {
			f.m.Observed(held("b", 4, 20))
			f.after(599 * time.Millisecond)
			if w := f.m.Tick(); len(w) > 0 {
				f.t.Fatalf("before ttl: %v", w)
			}
			return f.after(time.Millisecond)
		}, Acquire},
		{"lease stale but the active peer heard: nothing", func(f *fixture) []Action {
			f.m.Observed(held("b", 4, 20))
			var acts []Action
			for range 40 {
				f.clock.Advance(50 * time.Millisecond)
				acts = append(acts, f.m.Heard(activeBeat(4))...)
			}
			return acts
		}, 0},
		{"lease renewed within ttl, peer lost: nothing", func(f *fixture) []Action {
			var acts []Action
			for i := range 40 {
				f.clock.Advance(100 * time.Millisecond)
				acts = append(acts, f.m.Observed(held("b", 4, uint64(20+i)))...)
			}
			return acts
		}, 0},
		{"guard sent recently: waits guard hold", func(f *fixture) []Action {
			f.m.Observed(held("b", 4, 20))
			for range 20 { // the lease goes stale while b is heard
				f.clock.Advance(50 * time.Millisecond)
				f.m.Heard(activeBeat(4))
				if hb := f.m.Heartbeat(); !hb.Guard {
					f.t.Fatalf("hearing an active peer, no guard: %+v", hb)
				}
			}
			if acts := f.after(DefaultTimings().GuardHold() - time.Millisecond); len(acts) > 0 {
				f.t.Fatalf("within guard hold: %v", acts)
			}
			return f.after(time.Millisecond)
		}, Acquire},
		{"released lease: at once, hearing a standby peer", func(f *fixture) []Action {
			f.after(time.Second)
			f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby})
			return f.m.Observed(Observation{Present: true, Lease: Lease{Epoch: 4}, Index: 21})
		}, Acquire},
		{"absent key: after the start grace", func(f *fixture) []Action {
			if acts := f.m.Observed(Observation{Index: 5}); len(acts) > 0 {
				f.t.Fatalf("within the start grace: %v", acts)
			}
			return f.after(DefaultTimings().PeerTimeout)
		}, Acquire},
		{"no carrier: nothing", func(f *fixture) []Action {
			f.m.Carrier(false)
			f.m.Observed(Observation{Present: true, Lease: Lease{Epoch: 4}, Index: 21})
			return f.after(2 * time.Second)
		}, 0},
		{"handed over to it: confirm", func(f *fixture) []Action {
			f.m.Heard(activeBeat(4))
			return f.m.Observed(Observation{Present: true, Lease: Lease{Holder: "a", Epoch: 5, HandedBy: "b"}, Index: 30})
		}, Confirm},
		{"its own lease from an earlier run: waits ttl like any", func(f *fixture) []Action {
			return f.m.Observed(held("a", 4, 20))
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			acts := c.feed(f)
			var got WriteKind
			for _, a := range acts {
				if a.Kind == WriteLease {
					got = a.Write.Kind
				}
				if a.Kind == BecomeActive {
					t.Fatalf("active without a write: %v", acts)
				}
			}
			if got != c.want {
				t.Fatalf("write %v, want %v (actions %v)", got, c.want, acts)
			}
		})
	}
}

func TestOnlyAWriteThatTookMakesActive(t *testing.T) {
	for _, r := range []struct {
		name   string
		result func(w Write) WriteResult
		active bool
	}{
		{"took", func(w Write) WriteResult { return WriteResult{Write: w, OK: true, Index: 22} }, true},
		{"conflict", func(w Write) WriteResult {
			return WriteResult{Write: w, Current: &Observation{Present: true, Lease: Lease{Holder: "b", Epoch: 5}, Index: 22}}
		}, false},
		{"consul unreachable", func(w Write) WriteResult { return WriteResult{Write: w, Err: errors.New("refused")} }, false},
	} {
		t.Run(r.name, func(t *testing.T) {
			f := newFixture(t)
			f.m.Observed(held("b", 4, 20))
			w := writeOf(t, f.after(time.Second))
			if w.Lease != (Lease{Holder: "a", Epoch: 5, Renewed: f.clock.Now()}) || w.Index != 20 {
				t.Fatalf("acquire %+v", w)
			}
			f.m.Written(r.result(w))
			if role, _ := f.m.Role(); (role == Active) != r.active {
				t.Fatalf("role %v after %s", role, r.name)
			}
		})
	}
}

func TestLostAcquireAnswerIsConfirmed(t *testing.T) {
	f := newFixture(t)
	f.m.Observed(held("b", 4, 20))
	w := writeOf(t, f.after(time.Second))
	f.m.Written(WriteResult{Write: w, Err: errors.New("timeout")})
	f.clock.Advance(100 * time.Millisecond)
	c := writeOf(t, f.m.Observed(Observation{Present: true, Lease: w.Lease, Index: 21}))
	if c.Kind != Confirm || c.Index != 21 || c.Lease.Epoch != 5 {
		t.Fatalf("confirm %+v", c)
	}
}

func TestActiveRules(t *testing.T) {
	tm := DefaultTimings()
	cases := []struct {
		name string
		feed func(f *fixture) []Action
		// stays: still active at the end.
		stays bool
	}{
		{"renews every 100ms and stays", func(f *fixture) []Action {
			idx := uint64(10)
			for range 30 {
				acts := f.after(tm.Renew)
				w := writeOf(f.t, acts)
				if w.Kind != Renew || w.Index != idx || w.Lease.Epoch != 3 {
					f.t.Fatalf("renew %+v", w)
				}
				idx++
				f.m.Written(WriteResult{Write: w, OK: true, Index: idx})
			}
			return nil
		}, true},
		{"renewal conflicts with another holder: steps down", func(f *fixture) []Action {
			w := writeOf(f.t, f.after(tm.Renew))
			return f.m.Written(WriteResult{Write: w, Current: &Observation{Present: true, Lease: Lease{Holder: "b", Epoch: 4}, Index: 12}})
		}, false},
		{"observes a higher epoch: steps down", func(f *fixture) []Action {
			return f.m.Observed(held("a", 4, 12))
		}, false},
		{"hears an active peer at a higher epoch the lease does not show: stays", func(f *fixture) []Action {
			return f.m.Heard(activeBeat(4))
		}, true},
		{"hears an active peer at a higher epoch, then the lease shows it: steps down", func(f *fixture) []Action {
			f.m.Heard(activeBeat(4))
			return f.m.Observed(held("b", 4, 12))
		}, false},
		{"hears an active peer at a lower epoch: stays", func(f *fixture) []Action {
			return f.m.Heard(activeBeat(2))
		}, true},
		{"cannot renew, no guard: fenced at ttl/2", func(f *fixture) []Action {
			var acts []Action
			for f.clock.Since(f.m.renewed) < tm.Fence()-10*time.Millisecond {
				acts = f.after(10 * time.Millisecond)
				for _, a := range acts {
					if a.Kind == WriteLease {
						f.m.Written(WriteResult{Write: a.Write, Err: errors.New("refused")})
					}
				}
				if role, _ := f.m.Role(); role != Active {
					f.t.Fatalf("stepped down before the fence, after %s", f.clock.Since(f.m.renewed))
				}
			}
			return f.after(10 * time.Millisecond)
		}, false},
		{"cannot renew, hears the guard: stays however long", func(f *fixture) []Action {
			for range 200 {
				hb := f.m.Heartbeat()
				f.clock.Advance(tm.Heartbeat)
				for _, a := range f.m.Tick() {
					if a.Kind == WriteLease {
						f.m.Written(WriteResult{Write: a.Write, Err: errors.New("refused")})
					}
				}
				f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Guard: true, GuardEpoch: 3, EchoInc: 7, Echo: hb.Stamp})
			}
			return nil
		}, true},
		{"cannot renew, only stale guards (after a freeze): fenced", func(f *fixture) []Action {
			hb := f.m.Heartbeat()
			f.clock.Advance(2 * time.Second) // frozen
			return f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Guard: true, GuardEpoch: 3, EchoInc: 7, Echo: hb.Stamp})
		}, false},
		{"guard for another incarnation does not count", func(f *fixture) []Action {
			f.clock.Advance(tm.Fence() - time.Millisecond)
			f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Guard: true, GuardEpoch: 3, EchoInc: 6, Echo: int64(tm.Fence())})
			return f.after(2 * time.Millisecond)
		}, false},
		{"carrier lost: steps down, then releases", func(f *fixture) []Action {
			acts := f.m.Carrier(false)
			if got := kinds(acts); !slices.Equal(got, []ActionKind{StepDown, Drained, WriteLease}) || acts[2].Write.Kind != Release || acts[2].Write.Lease.Holder != "" {
				f.t.Fatalf("carrier lost: %v", acts)
			}
			return acts
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.activate()
			c.feed(f)
			if role, _ := f.m.Role(); (role == Active) != c.stays {
				t.Fatalf("role %v, stays %v; last step down %q", role, c.stays, f.m.lastStepDown)
			}
		})
	}
}

func TestAnnouncesAgainAfterASecond(t *testing.T) {
	f := newFixture(t)
	f.activate()
	n := 0
	for range 150 {
		for _, a := range f.after(10 * time.Millisecond) {
			switch a.Kind {
			case Announce:
				n++
			case WriteLease:
				f.m.Written(WriteResult{Write: a.Write, OK: true, Index: a.Write.Index + 1})
			}
		}
	}
	if n != 1 {
		t.Fatalf("announced again %d times in 1.5s, want 1", n)
	}
}

func TestHandoverPreconditions(t *testing.T) {
	f := newFixture(t)
	if _, err := f.m.Handover(); !errors.Is(err, ErrNotActive) {
		t.Fatalf("standby handover: %v", err)
	}
	f.activate()
	if _, err := f.m.Handover(); err == nil {
		t.Fatal("handover without a peer heard succeeded")
	}
	f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby})
	if _, err := f.m.Handover(); err == nil {
		t.Fatal("handover to a peer that does not guard succeeded")
	}
	hb := f.m.Heartbeat()
	f.m.Heard(Heartbeat{From: "b", Incarnation: 9, Role: Standby, Guard: true, GuardEpoch: 3, EchoInc: 7, Echo: hb.Stamp})
	acts, err := f.m.Handover()
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(acts); !slices.Equal(got, []ActionKind{StepDown, WriteLease}) {
		t.Fatalf("handover actions %v", acts)
	}
	if w := acts[1].Write; w.Kind != HandOver || w.Lease.Holder != "b" || w.Lease.Epoch != 4 || w.Lease.HandedBy != "a" || w.Index != 10 {
		t.Fatalf("handover write %+v", w)
	}
}

// A standby that says it cannot serve (no sync applied yet, Consul
// unreachable) is not handed over to: the handover is refused with its
// reason, and goes ahead once it is ready.
func TestHandoverToUnreadyPeerRefused(t *testing.T) {
	f := newFixture(t)
	f.activate()
	hb := f.m.Heartbeat()
	guard := Heartbeat{From: "b", Incarnation: 9, Role: Standby, Guard: true, GuardEpoch: 3, EchoInc: 7, Echo: hb.Stamp,
		Unready: "no sync applied yet"}
	f.m.Heard(guard)
	if _, err := f.m.Handover(); err == nil || !strings.Contains(err.Error(), "no sync applied yet") {
		t.Fatalf("handover to an unready peer: %v", err)
	}
	if role, _ := f.m.Role(); role != Active {
		t.Fatal("a refused handover stepped down")
	}
	if st := f.m.Status(); st.PeerUnready != "no sync applied yet" {
		t.Fatalf("status peer_unready %q", st.PeerUnready)
	}
	guard.Unready = ""
	f.m.Heard(guard)
	if _, err := f.m.Handover(); err != nil {
		t.Fatalf("handover to the peer once ready: %v", err)
	}
	// Its own readiness goes out in its heartbeats.
	g := newFixture(t)
	g.m.SetUnready("consul unreachable for 40s")
	if got := g.m.Heartbeat().Unready; got != "consul unreachable for 40s" {
		t.Fatalf("heartbeat unready %q", got)
	}
}
