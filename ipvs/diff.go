package ipvs

import (
	"fmt"
	"slices"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// OpKind is the kind of one kernel change, in the order a plan applies them.
type OpKind int

// Kinds of change, in plan order: services exist before their reals are
// added, and reals go before their service does.
const (
	AddService OpKind = iota
	UpdateService
	AddReal
	UpdateReal
	DeleteReal
	DeleteService
)

var opNames = [...]string{"add service", "update service", "add real", "update real", "delete real", "delete service"}

func (k OpKind) String() string { return opNames[k] }

// Op is one kernel change.
type Op struct {
	Kind    OpKind
	Service lvs.ServiceKey
	// Spec is the desired service, for AddService and UpdateService.
	Spec *Service
	// Real and RealSpec, for the real-server kinds.
	Real     lvs.RealKey
	RealSpec Real
	// Requeue marks a DeleteReal that an AddReal of the same real follows
	// in the same plan, to put it back at the head of the kernel's list:
	// it goes before every add (order.go).
	Requeue bool
	// Stage marks the two ops of a staged add (stage.go): the AddService
	// that creates the service under StageScheduler, and the
	// UpdateService, after every add of a real, that binds its own
	// scheduler (the switch).
	Stage bool
}

// String is the change as the ipvsadm command that makes it.
func (o Op) String() string {
	switch o.Kind {
	case AddService:
		return "ipvsadm -A " + ServiceRule(o.Service, o.Spec)
	case UpdateService:
		return "ipvsadm -E " + ServiceRule(o.Service, o.Spec)
	case AddReal:
		return "ipvsadm -a " + RealRule(o.Service, o.Real, o.RealSpec)
	case UpdateReal:
		return "ipvsadm -e " + RealRule(o.Service, o.Real, o.RealSpec)
	case DeleteReal:
		return fmt.Sprintf("ipvsadm -d %s -r %s", o.Service.Ipvsadm(), o.Real)
	case DeleteService:
		return "ipvsadm -D " + o.Service.Ipvsadm()
	}
	return fmt.Sprintf("op(%d)", int(o.Kind))
}

// Plan is an ordered list of kernel changes.
type Plan []Op

// Diff returns the changes that make current into desired. It is pure.
// Reals are added in ascending order; for a service whose scheduler builds
// its table from the kernel's list (mh, sh), the reals out of the
// canonical order are deleted and added again (order.go). A new mh
// service is added staged: under no scheduler, its reals, then mh
// (stage.go).
//
// Every desired service is lvs-sync's. A current service that is not
// desired is deleted only if owned says lvs-sync made it (a virtual service
// removed from the config); any other is foreign and never touched, nor are
// its reals. Within an owned service every real is lvs-sync's to manage.
func Diff(desired, current State, owned func(lvs.ServiceKey) bool) Plan {
	// The plan's order is rank, then service, then real. The adds of
	// services the kernel lacks (at the first sync, the whole table:
	// 12,000 ops of 184 bytes at 1,000 × 10) are appended in that order,
	// new services and their reals walked sorted, into lists sized
	// beforehand; the changes to services the kernel has (few, but from
	// every service of a full sync) are collected as the maps give them
	// and sorted on their own; each rank's two lists are merged. Sorting
	// the whole plan took a third of a first sync's time in the guest.
	var adds, changes [2*int(DeleteService) + 1]Plan
	var fresh []lvs.ServiceKey
	reals, staged := 0, 0
	for k, want := range desired {
		if _, ok := current[k]; !ok {
			fresh = append(fresh, k)
			reals += len(want.Reals)
			if Staged(want.Scheduler) {
				staged++
			}
		}
	}
	if len(fresh) > 0 {
		slices.SortFunc(fresh, lvs.ServiceKey.Compare)
		adds[Op{Kind: AddService}.rank()] = make(Plan, 0, len(fresh))
		adds[Op{Kind: AddReal}.rank()] = make(Plan, 0, reals)
		adds[Op{Kind: UpdateService, Stage: true}.rank()] = make(Plan, 0, staged)
	}
	add := func(op Op) { adds[op.rank()] = append(adds[op.rank()], op) }
	for _, k := range fresh {
		want := desired[k]
		if Staged(want.Scheduler) {
			stagedAdd(k, want, add)
			continue
		}
		add(Op{Kind: AddService, Service: k, Spec: want})
		for _, rk := range want.SortedReals() {
			add(Op{Kind: AddReal, Service: k, Real: rk, RealSpec: want.Reals[rk]})
		}
	}
	change := func(op Op) { changes[op.rank()] = append(changes[op.rank()], op) }
	for k, want := range desired {
		have, ok := current[k]
		if !ok {
			continue // added above
		}
		if !want.Equal(have) {
			change(Op{Kind: UpdateService, Service: k, Spec: want})
		}
		var out map[lvs.RealKey]bool
		if OrderMatters(want.Scheduler) {
			out = requeue(want.Reals, have.Reals)
		}
		for rk, r := range want.Reals {
			cur, ok := have.Reals[rk]
			switch {
			case !ok:
				change(Op{Kind: AddReal, Service: k, Real: rk, RealSpec: r})
			case out[rk]:
				change(Op{Kind: DeleteReal, Service: k, Real: rk, Requeue: true})
				change(Op{Kind: AddReal, Service: k, Real: rk, RealSpec: r})
			case !r.Equal(normaliseReal(r, cur)):
				change(Op{Kind: UpdateReal, Service: k, Real: rk, RealSpec: r})
			}
		}
		for rk := range have.Reals {
			if _, ok := want.Reals[rk]; !ok {
				change(Op{Kind: DeleteReal, Service: k, Real: rk})
			}
		}
	}
	for k := range current {
		if _, ok := desired[k]; !ok && owned != nil && owned(k) {
			change(Op{Kind: DeleteService, Service: k})
		}
	}
	n := 0
	for r := range adds {
		n += len(adds[r]) + len(changes[r])
	}
	if n == 0 {
		return nil
	}
	plan := make(Plan, 0, n)
	for r := range adds {
		slices.SortFunc(changes[r], Op.compare)
		plan = mergeOps(plan, adds[r], changes[r])
	}
	return plan
}

// compare orders the ops of one rank: by service, then real.
func (o Op) compare(b Op) int {
	if c := o.Service.Compare(b.Service); c != 0 {
		return c
	}
	return o.Real.Compare(b.Real)
}

// mergeOps appends to plan the ops of a and b, each sorted, in order.
func mergeOps(plan, a, b Plan) Plan {
	for len(a) > 0 && len(b) > 0 {
		if a[0].compare(b[0]) <= 0 {
			plan, a = append(plan, a[0]), a[1:]
		} else {
			plan, b = append(plan, b[0]), b[1:]
		}
	}
	plan = append(plan, a...)
	return append(plan, b...)
}

// rank is the op's place in a plan: its kind's, but a requeue's delete
// goes before every add, so that the adds put the reals at the head of the
// kernel's list in ascending order (order.go), and the switch of a staged
// add goes after every add of a real, so that its scheduler builds its
// table once, from the whole list (stage.go).
func (o Op) rank() int {
	switch {
	case o.Requeue:
		return 2*int(AddReal) - 1
	case o.Stage && o.Kind == UpdateService:
		return 2*int(AddReal) + 1
	}
	return 2 * int(o.Kind)
}

// normaliseReal undoes a kernel quirk before comparing: a real whose
// address is local to the director is reported as "local node" whatever
// method it was added with, so any method matches it.
func normaliseReal(want, have Real) Real {
	if have.Forward == lvs.LocalNode {
		have.Forward = want.Forward
	}
	return have
}
