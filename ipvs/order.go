package ipvs

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The order of a service's reals in the kernel, and why it matters.
//
// mh and sh build their lookup table by walking the service's list of
// destinations in order (ip_vs_mh.c ip_vs_mh_populate: round-robin over the
// list, an earlier real winning a contested slot; ip_vs_sh.c
// ip_vs_sh_reassign), and the kernel keeps that list in an order its
// history decides: __ip_vs_update_dest (ip_vs_ctl.c) puts a new real, or
// one taken back from the trash, at the head of the list (list_add_rcu),
// an edit leaves it where it is, and a delete takes it out. Two directors
// that saw the same reals join in different orders, or one that saw a
// real leave and come back and one that did not, build different tables,
// and a flow that ECMP moves from one to the other lands on another real.
//
// So for those schedulers lvs-sync keeps the list in one canonical order
// on every director: descending address, then port, from the head. It is
// the order a fresh service already gets (Diff adds reals in ascending
// order, each at the head), so adding a service costs nothing more. When
// the kernel's list is not canonical (reals joined one by one, a real came
// back), Diff deletes and adds again the reals that are out of place,
// keeping the longest tail of the canonical order that the kernel's list
// already has, in the same batch: the deletes first (Op.Requeue), then
// every add in ascending order. A real that joins with a higher address
// than the others costs one add; one that joins lower costs a delete and
// an add of each real above it.
//
// What a flow sees of a requeued real: the kernel moves a deleted real
// with connections to its trash, and the add right after takes it back
// (ip_vs_add_dest: ip_vs_trash_get_dest), the same destination with its
// connections and counters, so established flows go on to it. Between the
// two, a few microseconds inside one netlink batch, the real is
// unavailable: a new connection is scheduled by the table without it, and
// a packet of an existing one is forwarded as usual unless
// net.ipv4.vs.expire_nodest_conn is 1 (then that connection ends). A real
// added back at weight 0 (draining) loses its slots in mh's table, since
// an add sets last_weight to the weight given: the same as a director that
// adds it fresh at weight 0.
//
// Other schedulers do not build a table from the list (rr and wrr walk it,
// but no two directors could agree on their turn anyway): their order is
// left as it is, at no cost.

// OrderMatters reports whether the scheduler builds its table from the
// order of the service's reals in the kernel's list: mh and sh.
func OrderMatters(scheduler string) bool { return scheduler == "mh" || scheduler == "sh" }

// CanonicalOrder returns the reals in the order lvs-sync keeps the
// kernel's list of an mh or sh service in, head first: descending address,
// then port.
func CanonicalOrder(reals map[lvs.RealKey]Real) []lvs.RealKey {
	keys := make([]lvs.RealKey, 0, len(reals))
	for k := range reals {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b lvs.RealKey) int { return b.Compare(a) })
	return keys
}

// KernelOrder returns the reals in the kernel's list order, head first,
// and whether it is known: every real read from a kernel, at a place of
// its own (Position 1 to n).
func KernelOrder(reals map[lvs.RealKey]Real) ([]lvs.RealKey, bool) {
	keys := make([]lvs.RealKey, len(reals))
	for k, r := range reals {
		if r.Position < 1 || r.Position > len(reals) || keys[r.Position-1].Addr.IsValid() {
			return nil, false
		}
		keys[r.Position-1] = k
	}
	return keys, true
}

// Order returns the reals in the order that decides the service's table:
// the kernel's where it is known and matters, else the canonical order
// (a desired service: the order it will have once synced). For a
// scheduler whose table does not depend on it, the canonical order, so
// that two directors with the same reals show the same.
func (s *Service) Order() []lvs.RealKey {
	if OrderMatters(s.Scheduler) {
		if keys, ok := KernelOrder(s.Reals); ok {
			return keys
		}
	}
	return CanonicalOrder(s.Reals)
}

// requeue returns the reals of want that the kernel has (in have) out of
// the canonical order: those to delete and add again so that the list
// becomes canonical. The longest tail of the canonical order whose reals
// the kernel has in that relative order stays; every real above it that
// the kernel has is requeued (the others are added, as new). Nil when the
// kernel's order is unknown or already canonical.
func requeue(want, have map[lvs.RealKey]Real) map[lvs.RealKey]bool {
	if _, ok := KernelOrder(have); !ok {
		return nil
	}
	target := CanonicalOrder(want)
	// Walk up from the tail while each real is in the kernel, ahead of
	// the one below it.
	tail := len(target)
	below := len(have) + 1
	for tail > 0 {
		cur, ok := have[target[tail-1]]
		if !ok || cur.Position >= below {
			break
		}
		below = cur.Position
		tail--
	}
	var out map[lvs.RealKey]bool
	for _, rk := range target[:tail] {
		if _, ok := have[rk]; ok {
			if out == nil {
				out = map[lvs.RealKey]bool{}
			}
			out[rk] = true
		}
	}
	return out
}

// Fingerprint is a short hash of what decides a service's table: its
// scheduler, its flags, and its reals in the order that decides the table
// (Service.Order) with their weights. Two directors whose services have
// the same fingerprint map a flow to the same real (for mh, on kernels
// built with the same table size, and given the same last weights: a real
// at weight 0 keeps the slots of its last weight, which no reader sees).
// It is 48 bits, so that it is exact in a float64 (a Prometheus gauge).
type Fingerprint uint64

// String is the fingerprint as 12 hex digits.
func (f Fingerprint) String() string { return fmt.Sprintf("%012x", uint64(f)) }

// Fingerprint hashes the service's table's inputs: SHA-256 of a text that
// names them ("mh 0x10 10.1.0.13:80=1 10.1.0.12:80=1"), its first 48 bits.
// It depends on nothing of the host, so it is stable across directors and
// restarts.
func (s *Service) Fingerprint() Fingerprint {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %#x", s.Scheduler, s.Flags&^FlagHashed)
	for _, rk := range s.Order() {
		fmt.Fprintf(&b, " %s=%d", rk, s.Reals[rk].Weight)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return Fingerprint(binary.BigEndian.Uint64(sum[:8]) >> 16)
}
