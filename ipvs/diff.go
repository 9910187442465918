package ipvs

import (
	"cmp"
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
//
// Every desired service is lvs-sync's. A current service that is not
// desired is deleted only if owned says lvs-sync made it (a virtual service
// removed from the config); any other is foreign and never touched, nor are
// its reals. Within an owned service every real is lvs-sync's to manage.
func Diff(desired, current State, owned func(lvs.ServiceKey) bool) Plan {
	var plan Plan
	for k, want := range desired {
		have, ok := current[k]
		switch {
		case !ok:
			plan = append(plan, Op{Kind: AddService, Service: k, Spec: want})
			for rk, r := range want.Reals {
				plan = append(plan, Op{Kind: AddReal, Service: k, Real: rk, RealSpec: r})
			}
			continue
		case !want.Equal(have):
			plan = append(plan, Op{Kind: UpdateService, Service: k, Spec: want})
		}
		for rk, r := range want.Reals {
			cur, ok := have.Reals[rk]
			switch {
			case !ok:
				plan = append(plan, Op{Kind: AddReal, Service: k, Real: rk, RealSpec: r})
			case !r.Equal(normaliseReal(r, cur)):
				plan = append(plan, Op{Kind: UpdateReal, Service: k, Real: rk, RealSpec: r})
			}
		}
		for rk := range have.Reals {
			if _, ok := want.Reals[rk]; !ok {
				plan = append(plan, Op{Kind: DeleteReal, Service: k, Real: rk})
			}
		}
	}
	for k := range current {
		if _, ok := desired[k]; !ok && owned != nil && owned(k) {
			plan = append(plan, Op{Kind: DeleteService, Service: k})
		}
	}
	slices.SortFunc(plan, func(a, b Op) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), a.Service.Compare(b.Service), a.Real.Compare(b.Real))
	})
	return plan
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
