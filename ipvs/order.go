package ipvs

import (
	"slices"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The order of a service's reals in the kernel: __ip_vs_update_dest
// (ip_vs_ctl.c) puts a new real, or one taken back from the trash, at the
// head of the service's list of destinations (list_add_rcu), an edit
// leaves it where it is, and a delete takes it out. mh and sh build their
// table by walking that list.

// CanonicalOrder returns the reals in descending address, then port: the
// order of a fresh service's list, which Diff adds in ascending order,
// each at the head.
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
