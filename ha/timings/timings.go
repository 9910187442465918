// Package timings holds the HA pair's periods and the rules that keep the
// pair's guarantees with them: one active at most, a standby that takes
// over only after the active has fenced itself. It is a leaf, so that
// config can refuse an ha block's timings by the same rules ha runs by.
package timings

import (
	"errors"
	"fmt"
	"time"
)

// Timings are the heartbeat's and the lease's periods. Fence (TTL/2) and
// GuardHold and DrainMax follow from them.
type Timings struct {
	// Heartbeat is how often a director tells its peer its role.
	Heartbeat time.Duration
	// PeerTimeout is how long without a heartbeat means the peer is lost.
	PeerTimeout time.Duration
	// Renew is how often the active renews its lease.
	Renew time.Duration
	// TTL is how long a lease must stay unrenewed, as the standby
	// observes it in Consul, before the standby may take it.
	TTL time.Duration
	// Reannounce is when the VIPs are announced a second time after a
	// takeover: receivers ignore an update within locktime (1 s).
	Reannounce time.Duration
}

// Default are the design's: heartbeat every 50 ms, peer lost after
// 250 ms, lease renewed every 100 ms, lease TTL 600 ms.
func Default() Timings {
	return Timings{Heartbeat: 50 * time.Millisecond, PeerTimeout: 250 * time.Millisecond,
		Renew: 100 * time.Millisecond, TTL: 600 * time.Millisecond, Reannounce: time.Second}
}

// Fence is how long an active may fail to renew, hearing no guard from
// its peer, before it steps down: half the TTL, strictly before the
// standby may take over.
func (t Timings) Fence() time.Duration { return t.TTL / 2 }

// VIPLifetime is the lifetime the active gives its VIPs on the
// interface, in whole seconds as the kernel counts it: TTL + 1 s, rounded
// up. The active refreshes it every VIPRefresh while the rules keep it
// active; a process that dies (kill -9, a panic, the OOM killer) refreshes
// nothing, and the kernel drops the VIP itself, whoever restarts or not.
func (t Timings) VIPLifetime() time.Duration {
	return (t.TTL + time.Second + time.Second - 1).Truncate(time.Second)
}

// VIPRefresh is how often the active refreshes its VIPs' lifetime: an
// eighth of it, so that a late refresh or two never lets one lapse.
func (t Timings) VIPRefresh() time.Duration { return t.VIPLifetime() / 8 }

// GuardHold is how long a standby waits, after hearing the heartbeat its
// last guard (its promise not to take over while it hears the active)
// echoes, before it may take over. The active trusts a guard only for
// PeerTimeout from sending the heartbeat the guard echoes, which is before
// the standby heard it: the guard has expired at the active by then,
// whatever the delays. The two heartbeats more are margin for the active
// to notice (it evaluates every half heartbeat) and take its VIPs off.
// Counted from the last guard sent instead, as it once was, the wait
// added another PeerTimeout (a standby guards until PeerTimeout after it
// last heard the active): 600 ms after a cut with the defaults, as long
// as the TTL, which is why a shorter lease_ttl took over no sooner.
func (t Timings) GuardHold() time.Duration { return t.PeerTimeout + 2*t.Heartbeat }

// DrainMax bounds how long a director that stepped down keeps
// scheduling for the clients whose ARP caches still name it, when it
// does not hear its peer active sooner (see ha.Machine). A handover
// makes the peer active after two lease writes and a watch answer, well
// within it; a stopping director waits no longer than that to exit.
func (t Timings) DrainMax() time.Duration { return t.TTL + t.PeerTimeout }

// Problem is a timing that breaks a rule, named as the ha block names it.
type Problem struct {
	Field string // heartbeat_interval, peer_timeout, renew_interval, lease_ttl, reannounce
	Err   error
}

// Problems lists what breaks the rules, nil for safe timings.
func (t Timings) Problems() []Problem {
	var ps []Problem
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"heartbeat_interval", t.Heartbeat}, {"peer_timeout", t.PeerTimeout}, {"renew_interval", t.Renew},
		{"lease_ttl", t.TTL}, {"reannounce", t.Reannounce}} {
		if d.v <= 0 {
			ps = append(ps, Problem{d.field, fmt.Errorf("%s must be positive", d.v)})
		}
	}
	if t.PeerTimeout < 2*t.Heartbeat {
		ps = append(ps, Problem{"peer_timeout", fmt.Errorf("%s must be at least two heartbeats (heartbeat_interval %s)",
			t.PeerTimeout, t.Heartbeat)})
	}
	if t.Fence() < 2*t.Renew {
		ps = append(ps, Problem{"lease_ttl", fmt.Errorf("%s must be at least four renewals (renew_interval %s): "+
			"the active fences itself after half of it", t.TTL, t.Renew)})
	}
	return ps
}

// Validate checks that the timings keep the rules safe.
func (t Timings) Validate() error {
	var errs []error
	for _, p := range t.Problems() {
		errs = append(errs, fmt.Errorf("%s: %w", p.Field, p.Err))
	}
	return errors.Join(errs...)
}
