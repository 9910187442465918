package ha

import (
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
)

// Machine is one director's side of the pair: the rules of the design as
// a pure state machine. Each input — a tick, a heartbeat heard, the lease
// observed, a write's result, the carrier, a handover — returns the
// actions the drivers must take, in order. It is not safe for concurrent
// use: Run calls it from one goroutine.
//
// The rules (README "Director HA" states them for operators):
//   - The active renews its lease every Renew by compare-and-set.
//   - A standby takes over — writes epoch+1 by compare-and-set, and is
//     active only once that write took — when it has carrier and
//     either the lease was released (its holder stepped down first), or
//     all of: no heartbeat from an active peer for PeerTimeout, no guard
//     of its own in force for GuardHold (from when it heard the heartbeat
//     its last guard echoes: the active trusts a guard no longer than
//     PeerTimeout from sending what it echoes), and the lease absent or unchanged
//     for TTL as this director observes it.
//   - A lease written for it in a handover, or its own acquire whose
//     answer was lost, it confirms by compare-and-set and is active.
//   - The active steps down when the lease shows another holder or a
//     higher epoch (a heartbeat claiming one does not count),
//     when its carrier goes (then it releases the lease), or when it has
//     not renewed for Fence (TTL/2) and holds no guard from its peer
//     younger than PeerTimeout. Hearing a guard, it stays active however
//     long Consul is gone.
//   - Handover: the active, hearing a ready standby, steps down and then
//     writes the lease for the peer at epoch+1, which the peer confirms.
//     A standby's heartbeat says whether it is ready to serve (a sync
//     applied, Consul reachable); a handover to one that is not is
//     refused with its reason.
//   - A director that stepped down drains: its VIPs are off the interface
//     at once (it no longer answers ARP for them), but it keeps
//     scheduling (backup_only off, its master sync daemon on) until it
//     hears its peer active at a higher epoch and one heartbeat more has
//     passed, or DrainMax at most; then it is drained (backup_only on,
//     the master daemon stopped). Until the new active's gratuitous ARP
//     lands, clients still send to the old one's MAC: a drained director
//     would meet them with its own TCP stack (the VIP is on its lo) and
//     reset them; a draining one schedules them and syncs the connections
//     to the new active. A director without carrier, or that heard no
//     peer for PeerTimeout when it stepped down (nobody takes the clients
//     over), is drained at once. One that is a real server of its own
//     services (the streamline set-up) is drained the moment it hears
//     its peer active, without the heartbeat more: from then its new
//     active peer may send it connections as a real, which a director
//     still scheduling could balance back to the peer until it drains.
//     A peer that falls silent during the drain does not end it (on a
//     busy host that is a late heartbeat).
//   - While active, it refreshes its VIPs' lifetime every VIPRefresh: a
//     director that dies active loses them to the kernel within
//     VIPLifetime, restarted or not.
//   - Stopping (SIGTERM), the active steps down and releases the lease,
//     so that its peer takes over at once; a stopping director writes
//     nothing else.
//   - An answer with an index below the one last seen is dropped (a
//     write overtook it) unless it is a fresh read (Observation.Fresh):
//     then Consul went back (a snapshot restored, a cluster rebuilt) and
//     the key is taken as it is, but a release or a handover in it is
//     not taken at its word — the standby waits as for a lease unchanged.
type Machine struct {
	name  string
	t     Timings
	clock clockwork.Clock
	start time.Time
	inc   uint64

	role    Role
	epoch   uint64
	carrier bool

	lease        Observation
	leaseKnown   bool
	leaseChanged time.Time // when this director saw the lease change
	restored     bool      // the lease came back to an older index: see observe
	consulOK     bool
	refused      error // the last write's refusal, until one takes

	writing   bool
	lastWrite time.Time // when the last write was sent
	sentAt    time.Time // when the write in flight was sent
	retryAt   time.Time // after a write that failed, none before then
	claimed   uint64    // the epoch of an acquire whose answer was lost

	renewed   time.Time // the active's last write that took, when sent
	confirmed time.Time // the active holds its peer's guard until then

	peer         string
	peerRole     Role
	peerEpoch    uint64
	peerInc      uint64
	peerStamp    int64
	peerUnready  string // why the peer could not serve, "" ready
	unready      string // why this director could not serve, "" ready
	peerHeard    time.Time
	peerActiveAt time.Time // the last heartbeat from an active peer
	// guardEcho is when this director heard the heartbeat its last guard
	// echoes: the active holds that guard at most PeerTimeout from
	// sending that heartbeat, so no later than guardEcho+PeerTimeout.
	guardEcho time.Time

	releaseOwed bool
	handoverTo  string
	handEpoch   uint64
	stopping    bool
	keptVIPs    time.Time // when the VIPs' lifetime was last refreshed

	// A director that stepped down drains (see the rules) until
	// drainUntil, or one heartbeat after drainHeard: when it heard its
	// peer active at an epoch above drainEpoch. Zero drainUntil: drained.
	drainUntil time.Time
	drainEpoch uint64
	drainHeard time.Time
	// servesItself: this host is a real server of its own services
	// (SetServesItself): it does not drain.
	servesItself bool

	announceAt   time.Time
	takeovers    int
	lastTakeover time.Time
	lastStepDown string
}

// NewMachine makes the machine of the director called name, a standby
// with carrier; inc tells this run from the director's earlier ones.
func NewMachine(name string, inc uint64, t Timings, clock clockwork.Clock) *Machine {
	now := clock.Now()
	// Until PeerTimeout has passed, an active peer not yet heard may be
	// there: count the start as its last heartbeat.
	return &Machine{name: name, inc: inc, t: t, clock: clock, start: now, carrier: true, peerActiveAt: now}
}

// Role is the director's role and, when active, its epoch.
func (m *Machine) Role() (Role, uint64) { return m.role, m.epoch }

// Heartbeat is the message to send the peer now. A standby that hears an
// active peer guards it: until GuardHold after it heard the heartbeat
// the guard echoes, it will not take over.
func (m *Machine) Heartbeat() Heartbeat {
	now := m.clock.Now()
	hb := Heartbeat{From: m.name, Incarnation: m.inc, Role: m.role, Stamp: int64(now.Sub(m.start)), Unready: m.unready}
	if m.role == Active {
		hb.Epoch = m.epoch
	}
	if m.role == Standby && m.peer != "" && m.peerActive(now) {
		hb.Guard, hb.GuardEpoch, hb.EchoInc, hb.Echo = true, m.peerEpoch, m.peerInc, m.peerStamp
		m.guardEcho = m.peerHeard
	}
	return hb
}

func (m *Machine) peerActive(now time.Time) bool {
	return now.Sub(m.peerActiveAt) < m.t.PeerTimeout
}

// Tick lets time pass: renewals, fencing, re-announcing, takeovers.
func (m *Machine) Tick() []Action { return m.evaluate(nil) }

// Heard takes a heartbeat from the peer.
func (m *Machine) Heard(hb Heartbeat) []Action {
	if hb.From == m.name {
		return nil
	}
	now := m.clock.Now()
	m.peer, m.peerRole, m.peerEpoch, m.peerInc, m.peerStamp, m.peerHeard = hb.From, hb.Role, hb.Epoch, hb.Incarnation, hb.Stamp, now
	m.peerUnready = hb.Unready
	// A heartbeat is the peer's word, the lease Consul's: an active peer
	// at a higher epoch deposes this director only through the lease,
	// which its watch shows within milliseconds of the write that made
	// that epoch; a forged or replayed heartbeat deposes nobody.
	var acts []Action
	if hb.Role == Active {
		m.peerActiveAt = now
		if m.Draining() && hb.Epoch > m.drainEpoch && m.drainHeard.IsZero() {
			m.drainHeard = now
		}
	}
	if m.role == Active && hb.Guard && hb.GuardEpoch == m.epoch && hb.EchoInc == m.inc {
		// The guard is as old as the heartbeat it echoes, which this
		// director sent at start+Echo.
		until := m.start.Add(time.Duration(hb.Echo) + m.t.PeerTimeout)
		if until.After(now.Add(m.t.PeerTimeout)) {
			until = now.Add(m.t.PeerTimeout)
		}
		if until.After(m.confirmed) {
			m.confirmed = until
		}
	}
	return m.evaluate(acts)
}

// Observed takes lock_key as read from Consul.
func (m *Machine) Observed(o Observation) []Action {
	return m.evaluate(m.observe(o))
}

func (m *Machine) observe(o Observation) []Action {
	m.consulOK = true
	wentBack := m.leaseKnown && o.Index < m.lease.Index
	if wentBack && !o.Fresh {
		return nil // older than what a write told us
	}
	if !m.leaseKnown || o.Index != m.lease.Index || o.Present != m.lease.Present || o.Lease != m.lease.Lease {
		m.leaseChanged = m.clock.Now()
	}
	if o.Index != m.lease.Index || !m.leaseKnown {
		// A restored lease says nothing of who holds the VIPs now: no
		// release or handover in it is taken at its word.
		m.restored = wentBack
	}
	m.lease, m.leaseKnown = o, true
	if m.role == Active && o.Present && (o.Lease.Holder != m.name || o.Lease.Epoch != m.epoch) {
		return m.stepDown(fmt.Sprintf("lease is held by %q at epoch %d", o.Lease.Holder, o.Lease.Epoch))
	}
	return nil
}

// ConsulFailed records that Consul could not be read.
func (m *Machine) ConsulFailed() []Action {
	m.consulOK = false
	return m.evaluate(nil)
}

// Written takes a write's result.
func (m *Machine) Written(r WriteResult) []Action {
	now := m.clock.Now()
	m.writing = false
	w := r.Write
	var acts []Action
	if !r.OK {
		m.retryAt = m.sentAt.Add(m.t.Renew / 2)
	}
	if r.Err == nil {
		m.refused = r.Refused
	}
	switch {
	case r.Err != nil:
		m.consulOK = false
		if w.Kind == Acquire {
			m.claimed = w.Lease.Epoch // it may have taken: confirm it if the key says so
		}
	case r.OK:
		m.consulOK = true
		m.lease, m.restored = Observation{Present: true, Lease: w.Lease, Index: r.Index}, false
		m.leaseKnown, m.leaseChanged = true, now
		switch w.Kind {
		case Acquire, Confirm:
			if m.role == Standby {
				acts = m.becomeActive(w.Lease.Epoch, now)
			}
		case Renew:
			if m.role == Active && w.Lease.Epoch == m.epoch {
				m.renewed = m.sentAt
			}
		case Release:
			m.releaseOwed = false
		case HandOver:
			m.handoverTo = ""
		}
	default:
		m.consulOK = true
		if r.Current != nil {
			acts = m.observe(*r.Current)
		}
		if w.Kind == HandOver {
			m.handoverTo = "" // the lease changed under it: it decides
		}
	}
	return m.evaluate(acts)
}

// Carrier takes the interface's link state.
func (m *Machine) Carrier(up bool) []Action {
	if up == m.carrier {
		return m.evaluate(nil)
	}
	m.carrier = up
	var acts []Action
	if !up && m.role == Active {
		acts = m.stepDown("interface lost its carrier")
		m.releaseOwed = true
	}
	return m.evaluate(acts)
}

// Handover makes an active step down for its peer, which must be heard,
// a standby, and guarding this director.
func (m *Machine) Handover() ([]Action, error) {
	now := m.clock.Now()
	switch {
	case m.role != Active:
		return nil, ErrNotActive
	case m.peer == "" || now.Sub(m.peerHeard) >= m.t.PeerTimeout:
		return nil, fmt.Errorf("no peer heard for %s: nobody to hand over to", m.t.PeerTimeout)
	case m.peerRole != Standby || !now.Before(m.confirmed):
		return nil, fmt.Errorf("peer %s is not a guarding standby", m.peer)
	case m.peerUnready != "":
		return nil, fmt.Errorf("peer %s is not ready to serve: %s", m.peer, m.peerUnready)
	case !m.consulOK:
		return nil, fmt.Errorf("consul is unreachable: the lease cannot be handed over")
	}
	acts := m.stepDown("handover to " + m.peer)
	m.handoverTo, m.handEpoch = m.peer, m.epoch
	return m.evaluate(acts), nil
}

// SetUnready says why this director could not serve now ("": it can);
// its heartbeats carry it, and its peer refuses to hand over to it.
// Takeovers do not wait for it: the peer they replace is gone.
func (m *Machine) SetUnready(reason string) { m.unready = reason }

// SetServesItself says whether this host is a real server of its own
// virtual services, which makes a step-down drained at once (see the
// rules).
func (m *Machine) SetServesItself(b bool) { m.servesItself = b }

// Unready is why this director could not serve now, "" if it can.
func (m *Machine) Unready() string { return m.unready }

// Stop is the director stopping: an active steps down (VIPs off first)
// and then releases the lease, as after a lost carrier, so that its peer
// takes over at once instead of after the TTL. From now on it writes
// nothing but that release, nor takes over.
func (m *Machine) Stop() []Action {
	m.stopping = true
	var acts []Action
	if m.role == Active {
		acts = m.stepDown("stopping")
		m.releaseOwed = true
	}
	return m.evaluate(acts)
}

// stepDown makes an active a standby, draining.
func (m *Machine) stepDown(reason string) []Action {
	m.lastStepDown = reason
	m.role, m.confirmed, m.announceAt = Standby, time.Time{}, time.Time{}
	now := m.clock.Now()
	m.drainUntil, m.drainEpoch, m.drainHeard = now.Add(m.t.DrainMax()), m.epoch, time.Time{}
	if m.peer == "" || now.Sub(m.peerHeard) >= m.t.PeerTimeout {
		// No peer heard: nobody takes the clients over, nothing to drain.
		m.drainUntil = now
	}
	return []Action{{Kind: StepDown, Reason: reason}}
}

// Draining is whether this director stepped down and still schedules
// what reaches it (see the rules).
func (m *Machine) Draining() bool { return !m.drainUntil.IsZero() }

// drained is whether a draining director is done now.
func (m *Machine) drained(now time.Time) bool {
	// One heartbeat more for the SYNs sent before the new active's ARP
	// landed; none for a director that serves itself, which its new
	// active may send connections as a real from the moment it is active.
	margin := m.t.Heartbeat
	if m.servesItself {
		margin = 0
	}
	heard := !m.drainHeard.IsZero() && now.Sub(m.drainHeard) >= margin
	return !m.carrier || heard || !now.Before(m.drainUntil)
}

func (m *Machine) becomeActive(epoch uint64, now time.Time) []Action {
	if !m.carrier || m.stopping {
		m.releaseOwed = true // won it without a link to serve on, or stopping: give it back
		return nil
	}
	m.role, m.epoch, m.renewed, m.confirmed, m.claimed = Active, epoch, m.sentAt, time.Time{}, 0
	m.drainUntil = time.Time{} // BecomeActive schedules again: nothing left to drain
	m.releaseOwed, m.handoverTo = false, ""
	m.takeovers++
	m.lastTakeover = now
	m.announceAt = now.Add(m.t.Reannounce)
	m.keptVIPs = now // BecomeActive puts them on with their lifetime
	return []Action{{Kind: BecomeActive, Epoch: epoch}}
}

// evaluate adds what time and the state now call for to acts.
func (m *Machine) evaluate(acts []Action) []Action {
	now := m.clock.Now()
	if m.role == Active {
		if now.Sub(m.renewed) >= m.t.Fence() && !now.Before(m.confirmed) {
			acts = append(acts, m.stepDown(fmt.Sprintf("cut off: no lease renewal for %s and no guard from the peer", m.t.Fence()))...)
			m.releaseOwed = true
		} else {
			if !m.announceAt.IsZero() && !now.Before(m.announceAt) {
				m.announceAt = time.Time{}
				acts = append(acts, Action{Kind: Announce})
			}
			if now.Sub(m.keptVIPs) >= m.t.VIPRefresh() {
				m.keptVIPs = now
				acts = append(acts, Action{Kind: KeepVIPs})
			}
		}
	}
	if m.Draining() && m.drained(now) {
		m.drainUntil = time.Time{}
		acts = append(acts, Action{Kind: Drained})
	}
	if m.writing || now.Before(m.retryAt) {
		return acts
	}
	if w, ok := m.nextWrite(now); ok {
		m.writing, m.lastWrite, m.sentAt = true, now, now
		acts = append(acts, Action{Kind: WriteLease, Write: w})
	}
	return acts
}

// nextWrite is the lease write due now, if any.
func (m *Machine) nextWrite(now time.Time) (Write, bool) {
	l, ours := m.lease.Lease, m.leaseKnown && m.lease.Present && m.lease.Lease.Holder == m.name
	at := m.lease.Index
	if m.leaseKnown && !m.lease.Present {
		at = 0
	}
	switch {
	case m.stopping:
		if m.releaseOwed && ours {
			return Write{Kind: Release, Lease: Lease{Epoch: l.Epoch, Renewed: now}, Index: at}, true
		}
		return Write{}, false
	case m.role == Active:
		if now.Sub(m.lastWrite) < m.t.Renew {
			return Write{}, false
		}
		return Write{Kind: Renew, Lease: Lease{Holder: m.name, Epoch: m.epoch, Renewed: now}, Index: at}, true
	case !m.leaseKnown:
		return Write{}, false
	case m.handoverTo != "":
		if !ours || l.Epoch != m.handEpoch {
			m.handoverTo = ""
			return Write{}, false
		}
		return Write{Kind: HandOver, Lease: Lease{Holder: m.handoverTo, Epoch: l.Epoch + 1, Renewed: now, HandedBy: m.name}, Index: at}, true
	case m.releaseOwed:
		if !ours {
			m.releaseOwed = false
			return Write{}, false
		}
		return Write{Kind: Release, Lease: Lease{Epoch: l.Epoch, Renewed: now}, Index: at}, true
	case !m.carrier:
		return Write{}, false
	case ours && !m.restored && (l.HandedBy != "" || (m.claimed != 0 && l.Epoch == m.claimed)):
		return Write{Kind: Confirm, Lease: Lease{Holder: m.name, Epoch: l.Epoch, Renewed: now}, Index: at}, true
	case m.mayTakeOver(now):
		return Write{Kind: Acquire, Lease: Lease{Holder: m.name, Epoch: l.Epoch + 1, Renewed: now}, Index: at}, true
	}
	return Write{}, false
}

// mayTakeOver is the standby's rule.
func (m *Machine) mayTakeOver(now time.Time) bool {
	if m.lease.Present && m.lease.Lease.Holder == "" && !m.restored {
		return true // released: its holder stepped down before writing it
	}
	if m.peerActive(now) || now.Sub(m.guardEcho) < m.t.GuardHold() {
		return false
	}
	return !m.lease.Present && !m.restored || now.Sub(m.leaseChanged) >= m.t.TTL
}

// Status is what the machine knows, for status and metrics.
type Status struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Epoch uint64 `json:"epoch,omitempty"`
	// Holder and LeaseEpoch are the lease as last seen; Holder "" is
	// released or absent.
	Holder       string    `json:"holder"`
	LeaseEpoch   uint64    `json:"lease_epoch"`
	LeaseIndex   uint64    `json:"lease_index"`
	LeaseChanged time.Time `json:"lease_changed,omitzero"`
	ConsulOK     bool      `json:"consul_ok"`
	Carrier      bool      `json:"carrier"`
	Peer         string    `json:"peer,omitempty"`
	PeerRole     string    `json:"peer_role,omitempty"`
	PeerHeard    time.Time `json:"peer_heard,omitzero"`
	Takeovers    int       `json:"takeovers"`
	LastTakeover time.Time `json:"last_takeover,omitzero"`
	LastStepDown string    `json:"last_step_down,omitempty"`
	// LeaseError is why Consul refuses this director's lease writes
	// (its ACLs), while it does.
	LeaseError string `json:"lease_error,omitempty"`
	// Unready and PeerUnready are why this director and its peer could
	// not serve now ("": they can).
	Unready     string `json:"unready,omitempty"`
	PeerUnready string `json:"peer_unready,omitempty"`
}

// Status reports the machine's state.
func (m *Machine) Status() Status {
	s := Status{Name: m.name, Role: m.role.String(), Holder: m.lease.Lease.Holder, LeaseEpoch: m.lease.Lease.Epoch,
		LeaseIndex: m.lease.Index, LeaseChanged: m.leaseChanged, ConsulOK: m.consulOK, Carrier: m.carrier,
		Peer: m.peer, PeerHeard: m.peerHeard, Takeovers: m.takeovers, LastTakeover: m.lastTakeover, LastStepDown: m.lastStepDown}
	if m.role == Active {
		s.Epoch = m.epoch
	}
	if m.refused != nil {
		s.LeaseError = m.refused.Error()
	}
	s.Unready = m.unready
	if m.peer != "" {
		s.PeerUnready = m.peerUnready
	}
	if m.peer != "" {
		s.PeerRole = m.peerRole.String()
	}
	return s
}
