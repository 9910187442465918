// Package announce is the one rule of which VIPs a director of an
// all-active tier (director.bgp) announces to its routers, and why a VIP
// is not announced. It is pure, and imports of lvs-sync only ipvs, the
// desired state's model: the daemon hands it what it knows after each
// sync (and when it stops), and hands the speaker the prefixes it
// returns; status and the metrics show its VIPs.
//
// The rule, in the order it is applied:
//
//   - Stopping: every VIP is withdrawn ("stopping"), first of all, while
//     the kernel still forwards: the routers move the flows to the other
//     directors before this one goes.
//   - Not synced: before the first sync is applied nothing is announced
//     ("not synced yet"): a director that boots with an empty table must
//     not take a share of the traffic.
//   - Pool empty: a VIP none of whose virtual services can serve (no real
//     with a weight above 0, the fallback included) is withdrawn ("pool
//     empty"): another director, or none, is as good. A service with a
//     fallback (a server, or the local page) serves it, so its VIP stays.
//   - Otherwise the VIP is announced.
//
// Nothing else withdraws a VIP. A Consul outage in particular changes
// nothing (fail static): the catalog's last answer stays, so the desired
// state, and so the announcements, stay as they were; a rule that
// followed Consul's health would make every director of the tier
// withdraw together. A service whose Consul answer ACLs filter, with no
// good answer to keep, is left as the kernel has it and counts as
// serving for the same reason.
package announce

import (
	"net/netip"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// Reason is why a VIP is not announced.
type Reason string

// The reasons, as status and the metrics show them.
const (
	NotSynced Reason = "not synced yet"
	Stopping  Reason = "stopping"
	PoolEmpty Reason = "pool empty"
)

// Service is a virtual service as the rule sees it.
type Service struct {
	// VIPs are the addresses clients reach it at (an address service's
	// address, a firewall mark's vips).
	VIPs []netip.Addr
	// Serving tells whether the desired state gives it a real with a
	// weight above 0 (an instance's, or its fallback's), or leaves it as
	// the kernel has it.
	Serving bool
}

// ServiceOf is a virtual service at vips whose desired state (render's,
// nil if none) is desired; frozen tells that it is left as the kernel
// has it (its Consul answer filtered by ACLs, with no good one kept). It
// serves when it is frozen, or when a real of its desired state has a
// weight above 0: an instance's, or its fallback (which render adds
// only when no instance serves).
func ServiceOf(vips []netip.Addr, desired *ipvs.Service, frozen bool) Service {
	s := Service{VIPs: vips, Serving: frozen}
	if desired != nil {
		for _, r := range desired.Reals {
			s.Serving = s.Serving || r.Weight > 0
		}
	}
	return s
}

// Input is what the daemon knows when it decides.
type Input struct {
	// Synced tells whether a first sync has been applied.
	Synced bool
	// Stopping tells whether lvs-sync is stopping.
	Stopping bool
	// Services are the virtual services of the running config.
	Services []Service
	Now      time.Time
}

// VIP is one VIP's announcement.
type VIP struct {
	Addr      netip.Addr
	Announced bool
	// Reason is why it is not announced; "" when it is.
	Reason Reason
	// Since is when it took this state (announced, or not for this
	// reason).
	Since time.Time
}

// Rule decides, remembering since when each VIP is as it is. The zero
// value is ready; it is not safe for concurrent use.
type Rule struct {
	last map[netip.Addr]VIP
}

// Decide applies the rule: every VIP of in.Services once, sorted by
// address.
func (r *Rule) Decide(in Input) []VIP {
	serving := map[netip.Addr]bool{}
	for _, s := range in.Services {
		for _, a := range s.VIPs {
			serving[a] = serving[a] || s.Serving
		}
	}
	next := make(map[netip.Addr]VIP, len(serving))
	out := make([]VIP, 0, len(serving))
	for a, ok := range serving {
		v := VIP{Addr: a, Announced: true}
		switch {
		case in.Stopping:
			v = VIP{Addr: a, Reason: Stopping}
		case !in.Synced:
			v = VIP{Addr: a, Reason: NotSynced}
		case !ok:
			v = VIP{Addr: a, Reason: PoolEmpty}
		}
		v.Since = in.Now
		if prev, seen := r.last[a]; seen && prev.Announced == v.Announced && prev.Reason == v.Reason {
			v.Since = prev.Since
		}
		next[a] = v
		out = append(out, v)
	}
	r.last = next
	slices.SortFunc(out, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	return out
}

// Prefixes are the host routes of the announced VIPs, /32 or /128, in
// the VIPs' order: what the speaker is to announce, the rest withdrawn.
func Prefixes(vips []VIP) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range vips {
		if v.Announced {
			out = append(out, netip.PrefixFrom(v.Addr, v.Addr.BitLen()))
		}
	}
	return out
}

// Changed lists the VIPs whose state differs from before's (or that
// before did not have), and the addresses before had that vips does not:
// what to log.
func Changed(before, vips []VIP) (changed []VIP, gone []netip.Addr) {
	had := make(map[netip.Addr]VIP, len(before))
	for _, v := range before {
		had[v.Addr] = v
	}
	for _, v := range vips {
		if p, ok := had[v.Addr]; !ok || p.Announced != v.Announced || p.Reason != v.Reason {
			changed = append(changed, v)
		}
		delete(had, v.Addr)
	}
	for a := range had {
		gone = append(gone, a)
	}
	slices.SortFunc(gone, netip.Addr.Compare)
	return changed, gone
}
