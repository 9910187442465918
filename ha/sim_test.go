package ha

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// sim runs two machines on one simulated clock, with a simulated Consul
// (a key with compare-and-set and watches) and a heartbeat link, each
// with its own faults. A director "has the VIP" from BecomeActive until
// its StepDown has taken effect, up to 30ms later.
type sim struct {
	t     testing.TB
	tm    Timings
	clock *clockwork.FakeClock
	rng   *rand.Rand
	d     [2]*simDir
	kv    struct {
		present bool
		lease   Lease
		index   uint64
	}
	raft uint64
	// era counts snapshot restores: a watch answer from an era before
	// the last is superseded by the restore's (a watch is sequential).
	era int
	// saved is a snapshot randomFault restores later.
	saved *simSnapshot
	// link[i][j]: director i's heartbeats reach j (both carriers aside).
	link   [2][2]bool
	events eventQueue
	seq    int
	// overlap is set when both had the VIP at one instant.
	overlap string
	trace   []string
}

type simDir struct {
	name     string
	m        *Machine
	vip      bool
	consul   bool // reaches Consul
	refused  bool // Consul's ACLs refuse its writes
	carrier  bool
	nextBeat time.Time
	failNext time.Time // next ConsulFailed while Consul is gone
	becameAt time.Time
	// sched: it schedules new connections (from BecomeActive until
	// Drained); a drained director's kernel resets what reaches it.
	sched    bool
	announce int
	// busyUntil: Run is taking the VIPs off; what comes for the
	// director waits.
	busyUntil time.Time
}

type simEvent struct {
	at  time.Time
	seq int
	run func()
}

type eventQueue []simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func newSim(t testing.TB, seed uint64) *sim { return newSimTimings(t, seed, DefaultTimings()) }

// newSimTimings is newSim with both directors on tm.
func newSimTimings(t testing.TB, seed uint64, tm Timings) *sim {
	s := &sim{t: t, tm: tm, clock: clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), rng: rand.New(rand.NewPCG(seed, 1))}
	for i, name := range []string{"a", "b"} {
		s.d[i] = &simDir{name: name, m: NewMachine(name, uint64(i+1)*1000+seed, tm, s.clock), consul: true, carrier: true}
	}
	s.link = [2][2]bool{{true, true}, {true, true}}
	for i := range s.d {
		s.watch(i)
	}
	return s
}

func (s *sim) now() time.Time { return s.clock.Now() }

func (s *sim) after(d time.Duration, f func()) {
	s.seq++
	heap.Push(&s.events, simEvent{at: s.now().Add(d), seq: s.seq, run: f})
}

// lat is a one-way delay to Consul or the peer: 0.5 to 5 ms.
func (s *sim) lat() time.Duration { return time.Duration(500+s.rng.IntN(4500)) * time.Microsecond }

func (s *sim) observation() Observation {
	if !s.kv.present {
		// The kvs table's index: nothing deletes the key, so the last
		// write's, or the snapshot's when restored.
		return Observation{Index: s.kv.index}
	}
	return Observation{Present: true, Lease: s.kv.lease, Index: s.kv.index}
}

// watch delivers the key as it is now to director i, as a blocking read
// returning does.
func (s *sim) watch(i int) { s.watchAs(i, false) }

// watchAs is watch; fresh is the watch's answer whose index went back.
func (s *sim) watchAs(i int, fresh bool) {
	o, era := s.observation(), s.era
	o.Fresh = fresh
	s.after(s.lat(), func() {
		if s.d[i].consul && era == s.era {
			s.to(i, func() []Action { return s.d[i].m.Observed(o) })
		}
	})
}

// simSnapshot is the simulated Consul's key and raft index, as `consul
// snapshot save` keeps them.
type simSnapshot struct {
	present bool
	lease   Lease
	index   uint64
	raft    uint64
}

func (s *sim) snapshot() simSnapshot {
	return simSnapshot{present: s.kv.present, lease: s.kv.lease, index: s.kv.index, raft: s.raft}
}

// restore puts a snapshot back: the key and its index go back; with
// rebuilt, the raft index too (a new cluster fed the snapshot), else it
// goes on from where it was (`consul snapshot restore`). Every watch
// answers at once with an index that went back.
func (s *sim) restore(snap simSnapshot, rebuilt bool) {
	s.kv.present, s.kv.lease, s.kv.index = snap.present, snap.lease, snap.index
	if rebuilt {
		s.raft = snap.raft
	}
	s.era++
	for i := range s.d {
		s.watchAs(i, true)
	}
}

// to runs an input of director i, now or once it is no longer busy.
func (s *sim) to(i int, input func() []Action) {
	if d := s.d[i]; s.now().Before(d.busyUntil) {
		s.seq++
		heap.Push(&s.events, simEvent{at: d.busyUntil, seq: s.seq, run: func() { s.to(i, input) }})
		return
	}
	s.act(i, input())
}

func (s *sim) act(i int, acts []Action) {
	d := s.d[i]
	for n, a := range acts {
		s.trace = append(s.trace, fmt.Sprintf("%s %s: %s", s.now().Format("05.000"), d.name, a))
		switch a.Kind {
		case Drained:
			if d.vip && s.overlap == "" {
				s.overlap = fmt.Sprintf("at %s %s drained while it has the vip", s.now().Format("05.000"), d.name)
			}
			d.sched = false
		case BecomeActive:
			d.vip, d.becameAt, d.sched = true, s.now(), true
			if o := s.d[1-i]; o.vip && s.overlap == "" {
				s.overlap = fmt.Sprintf("at %s both have the vip", s.now().Format("05.000"))
			}
		case StepDown:
			// Taking the VIPs off takes up to 30ms (netlink, a busy host);
			// Run does the actions after it, a write, only then.
			rest, took := acts[n+1:], time.Duration(s.rng.IntN(30))*time.Millisecond
			d.busyUntil = s.now().Add(took)
			s.after(took, func() {
				d.vip = false
				s.act(i, rest)
			})
			return
		case Announce:
			d.announce++
		case WriteLease:
			s.write(i, a.Write)
		}
	}
}

func (s *sim) write(i int, w Write) {
	d := s.d[i]
	if !d.consul {
		s.after(time.Duration(1+s.rng.IntN(150))*time.Millisecond, func() {
			s.to(i, func() []Action { return d.m.Written(WriteResult{Write: w, Err: errors.New("consul unreachable")}) })
		})
		return
	}
	s.after(s.lat(), func() {
		if d.refused {
			cur := s.observation()
			cur.Fresh = true
			s.after(s.lat(), func() {
				r := WriteResult{Write: w, Refused: errors.New("permission denied"), Current: &cur}
				s.to(i, func() []Action { return d.m.Written(r) })
			})
			return
		}
		ok := false
		if w.Index == 0 && !s.kv.present || s.kv.present && w.Index == s.kv.index {
			s.raft++
			s.kv.present, s.kv.lease, s.kv.index, ok = true, w.Lease, s.raft, true
			for j := range s.d {
				s.watch(j)
			}
		}
		index, cur := s.kv.index, s.observation()
		cur.Fresh = true // the read after a failed compare-and-set
		s.after(s.lat(), func() {
			r := WriteResult{Write: w, Current: &cur}
			switch {
			case !d.consul:
				r = WriteResult{Write: w, Err: errors.New("consul unreachable")}
			case ok:
				r = WriteResult{Write: w, OK: true, Index: index}
			}
			s.to(i, func() []Action { return d.m.Written(r) })
		})
	})
}

// heard reports whether i's heartbeats reach j now.
func (s *sim) heard(i, j int) bool { return s.link[i][j] && s.d[i].carrier && s.d[j].carrier }

// step advances the clock by 1 ms and runs what is due.
func (s *sim) step() {
	s.clock.Advance(time.Millisecond)
	for len(s.events) > 0 && !s.events[0].at.After(s.now()) {
		heap.Pop(&s.events).(simEvent).run()
	}
	for i, d := range s.d {
		if s.now().Before(d.busyUntil) {
			continue // Run is busy with the host
		}
		s.act(i, d.m.Tick())
		if !d.consul && !s.now().Before(d.failNext) {
			d.failNext = s.now().Add(100 * time.Millisecond)
			s.to(i, d.m.ConsulFailed)
		}
		if !s.now().Before(d.nextBeat) {
			d.nextBeat = s.now().Add(s.tm.Heartbeat)
			hb, j := d.m.Heartbeat(), 1-i
			if s.heard(i, j) {
				s.after(s.lat(), func() {
					if s.heard(i, j) {
						s.to(j, func() []Action { return s.d[j].m.Heard(hb) })
					}
				})
			}
		}
	}
	if s.d[0].vip && s.d[1].vip && s.overlap == "" {
		s.overlap = fmt.Sprintf("at %s both have the vip", s.now().Format("05.000"))
	}
}

func (s *sim) run(d time.Duration) {
	for end := s.now().Add(d); s.now().Before(end); {
		s.step()
	}
}

// runUntil steps until cond holds, for at most d; it returns how long it
// took, or -1.
func (s *sim) runUntil(d time.Duration, cond func() bool) time.Duration {
	start := s.now()
	for s.now().Sub(start) < d {
		if cond() {
			return s.now().Sub(start)
		}
		s.step()
	}
	return -1
}

func (s *sim) setConsul(i int, up bool) {
	s.d[i].consul = up
	if up {
		s.watch(i)
	}
}

func (s *sim) setCarrier(i int, up bool) {
	s.d[i].carrier = up
	s.to(i, func() []Action { return s.d[i].m.Carrier(up) })
}

func (s *sim) cutHeartbeat(cut bool) { s.link = [2][2]bool{{!cut, !cut}, {!cut, !cut}} }

// active is the index of the one director with the vip, or -1.
func (s *sim) active() int {
	switch {
	case s.d[0].vip && !s.d[1].vip:
		return 0
	case s.d[1].vip && !s.d[0].vip:
		return 1
	}
	return -1
}

func (s *sim) checkSafe() {
	s.t.Helper()
	if s.overlap != "" {
		s.t.Fatalf("two actives: %s\n%s", s.overlap, s.tail())
	}
}

func (s *sim) tail() string {
	from := max(0, len(s.trace)-80)
	out := ""
	for _, l := range s.trace[from:] {
		out += l + "\n"
	}
	return out
}

// settle starts the pair and returns the active's index.
func (s *sim) settle() int {
	s.t.Helper()
	if s.runUntil(2*time.Second, func() bool { return s.active() >= 0 }) < 0 {
		s.t.Fatalf("no director became active\n%s", s.tail())
	}
	s.run(time.Second)
	s.checkSafe()
	return s.active()
}
