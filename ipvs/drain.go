package ipvs

import (
	"cmp"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Drainer lets real servers that leave the desired state go gracefully:
// a leaving real first gets weight 0, so that it takes no new connection,
// and is deleted once it has no active connection or its service's drain
// timeout has passed. UDP reals, services whose timeout is 0 and reals with
// no connection at all are deleted at once. A real that comes back while
// draining is simply given its weight again.
//
// The kernel silently drops the packets of connections to a deleted real,
// and counts a connection still in its handshake (SYN_RECV) as inactive. So
// a real with any connection stays at weight 0 for Settle before "no active
// connection" may delete it: by then a connection scheduled just before the
// weight went to 0 is established, and counted, or gone. (Seen in the VM: a
// request scheduled 5 ms before the weight change hung until its server
// stopped, when the real was deleted at once.)
//
// The start of each drain is remembered here; after a restart, a real at
// weight 0 that is no longer desired is found in the kernel and drains
// again from then.
type Drainer struct {
	// Timeout is the drain timeout of a service.
	Timeout func(lvs.ServiceKey) time.Duration
	// Settle is the least time at weight 0 before a real without active
	// connections is deleted (default 500ms, a hundred times the handshake
	// race seen in the VM; never more than the timeout).
	Settle time.Duration
	since  map[lvs.ServiceKey]map[lvs.RealKey]time.Time
}

// DefaultSettle is the default Drainer.Settle.
const DefaultSettle = 500 * time.Millisecond

// Draining reports the reals draining now, by service.
func (d *Drainer) Draining() map[lvs.ServiceKey]map[lvs.RealKey]time.Time {
	out := make(map[lvs.ServiceKey]map[lvs.RealKey]time.Time, len(d.since))
	for k, reals := range d.since {
		out[k] = make(map[lvs.RealKey]time.Time, len(reals))
		for rk, t := range reals {
			out[k][rk] = t
		}
	}
	return out
}

// Clone is a copy with the same drains under way, to plan with (status
// shows what the next sync would do) without moving the original's.
func (d *Drainer) Clone() *Drainer {
	return &Drainer{Timeout: d.Timeout, Settle: d.Settle, since: d.Draining()}
}

// Adjust returns desired with the draining reals of current added back at
// weight 0, and the earliest time a drain settles or times out (zero if
// none). current holds only lvs-sync's services: a service of current
// that desired lacks has left the config (or changed its address, port or
// protocol) and drains as a whole — its reals at weight 0 until their
// connections end, then the service is deleted.
func (d *Drainer) Adjust(desired, current State, now time.Time) (State, time.Time) {
	if d.since == nil {
		d.since = map[lvs.ServiceKey]map[lvs.RealKey]time.Time{}
	}
	var next time.Time
	out := desired
	copied := false
	edit := func(k lvs.ServiceKey, base *Service) *Service {
		if !copied {
			out = make(State, len(desired)+1)
			for key, svc := range desired {
				out[key] = svc
			}
			copied = true
		}
		if out[k] == nil || out[k] == desired[k] {
			cp := *base
			cp.Reals = make(map[lvs.RealKey]Real, len(base.Reals)+1)
			for key, real := range base.Reals {
				cp.Reals[key] = real
			}
			out[k] = &cp
		}
		return out[k]
	}
	for k, cur := range current {
		if cur.Reals == nil {
			continue // not read: out of scope
		}
		want, desiredService := desired[k]
		if !desiredService {
			// The whole service leaves: it stays, with no real but those
			// that drain, until none does.
			want = &Service{Scheduler: cur.Scheduler, Flags: cur.Flags, Timeout: cur.Timeout, Netmask: cur.Netmask}
		}
		timeout := time.Duration(0)
		if d.Timeout != nil {
			timeout = d.Timeout(k)
		}
		for rk, r := range cur.Reals {
			if _, stays := want.Reals[rk]; stays {
				d.stop(k, rk)
				continue
			}
			if k.Protocol == lvs.UDP || timeout <= 0 || r.ActiveConns+r.InactiveConns == 0 {
				d.stop(k, rk) // deleted by the diff
				continue
			}
			start, draining := d.since[k][rk]
			if !draining {
				start = now
				if d.since[k] == nil {
					d.since[k] = map[lvs.RealKey]time.Time{}
				}
				d.since[k][rk] = now
			}
			settle := min(cmp.Or(d.Settle, DefaultSettle), timeout)
			settled := !now.Before(start.Add(settle))
			if !now.Before(start.Add(timeout)) || (settled && r.ActiveConns == 0) {
				d.stop(k, rk)
				continue
			}
			deadline := start.Add(timeout)
			if r.ActiveConns == 0 {
				deadline = start.Add(settle) // only settling is left
			}
			r.Weight, r.ActiveConns, r.InactiveConns, r.Position, r.Stats = 0, 0, 0, 0, Stats{} // desired: no observation
			edit(k, want).Reals[rk] = r
			if next.IsZero() || deadline.Before(next) {
				next = deadline
			}
		}
	}
	// Forget drains of services that left the kernel or the scope's view.
	for k := range d.since {
		if _, ok := current[k]; !ok {
			delete(d.since, k)
		}
	}
	return out, next
}

// DrainingServices lists the services of a drained state (what Adjust
// returned) that desired lacks: those that left and wait for their
// connections before they are deleted.
func DrainingServices(adjusted, desired State) []lvs.ServiceKey {
	var keys []lvs.ServiceKey
	for k := range adjusted {
		if desired[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	return keys
}

func (d *Drainer) stop(k lvs.ServiceKey, rk lvs.RealKey) {
	if reals, ok := d.since[k]; ok {
		delete(reals, rk)
		if len(reals) == 0 {
			delete(d.since, k)
		}
	}
}
