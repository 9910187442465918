package ipvs

import (
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Input is what a plan is made from.
type Input struct {
	// Desired is every service render wants; Current is the kernel's
	// table, with the reals of the services of interest.
	Desired, Current State
	// Owned says which services lvs-sync made (its state file). An owned
	// service out of Desired has left the config: it drains, then goes.
	Owned func(lvs.ServiceKey) bool
	// Adopt says which desired services lvs-sync may take over when the
	// kernel has them and lvs-sync did not make them (adopt = true).
	Adopt func(lvs.ServiceKey) bool
	// Drains keeps leaving reals at weight 0 while their connections
	// finish; nil deletes them at once.
	Drains *Drainer
	Now    time.Time
	// Claim, when set, is called by Reconcile before it applies anything,
	// with the services the plan makes lvs-sync's that Owned does not
	// say are yet (Planned.Claimed): the state file is written ahead.
	Claim func([]lvs.ServiceKey)
	// Clock spaces the progress lines of a long apply (nil: the real
	// one): the daemon's clock, so that its tests are exact.
	Clock clockwork.Clock
}

// Planned is a plan and what it leaves for later.
type Planned struct {
	Plan Plan
	// Next is the earliest time a drain settles or times out; zero if none.
	Next time.Time
	// Conflicts are desired services the kernel has from someone else
	// (a foreign service on a desired VIP:port): left untouched.
	Conflicts []lvs.ServiceKey
	// Leaving are services out of Desired that lvs-sync keeps, their
	// reals at weight 0, until their connections end.
	Leaving []lvs.ServiceKey
	// Kept is every service that is lvs-sync's after the plan: desired
	// ones without a conflict, and those leaving.
	Kept map[lvs.ServiceKey]bool
}

// Changes is the one planning function: the ordered kernel changes that
// make the kernel's table match the desired state. `run` applies them,
// `plan` prints them and `status` shows what is pending, so the three can
// never tell different stories.
//
// Whose a service is, Owner decides (in.Owner()): lvs-sync's are planned,
// conflicts are listed, foreign ones are neither read nor touched.
func Changes(in Input) Planned {
	owner := in.Owner()
	whose := func(k lvs.ServiceKey) Claim {
		_, exists := in.Current[k]
		return owner.Whose(k, exists)
	}
	p := Planned{Kept: make(map[lvs.ServiceKey]bool, len(in.Desired))}
	desired := make(State, len(in.Desired))
	for k, svc := range in.Desired {
		if whose(k) == Conflict {
			p.Conflicts = append(p.Conflicts, k)
			continue
		}
		desired[k] = svc
		p.Kept[k] = true
	}
	slices.SortFunc(p.Conflicts, lvs.ServiceKey.Compare)
	ours := func(k lvs.ServiceKey) bool { return whose(k) == Ours }
	current := in.Current.Filter(ours)
	adjusted := desired
	if in.Drains != nil {
		adjusted, p.Next = in.Drains.Adjust(desired, current, in.Now)
	}
	p.Leaving = DrainingServices(adjusted, desired)
	for _, k := range p.Leaving {
		p.Kept[k] = true
	}
	p.Plan = Diff(adjusted, current, ours)
	return p
}

// Scope is what a sync looks at.
type Scope struct {
	// Keys, when not nil, are the only services looked at; they are read
	// by themselves where the kernel can, not by listing every service.
	// Nil is every service.
	Keys map[lvs.ServiceKey]bool
	// Skip leaves services out whatever Keys says (frozen ones).
	Skip func(lvs.ServiceKey) bool
}

// All is the scope of every service.
var All = Scope{}

// In reports whether the scope looks at k.
func (s Scope) In(k lvs.ServiceKey) bool {
	return (s.Keys == nil || s.Keys[k]) && (s.Skip == nil || !s.Skip(k))
}

// Full reports whether the scope is every service, none skipped.
func (s Scope) Full() bool { return s.Keys == nil && s.Skip == nil }

// Reconcile makes the kernel match desired for the services in scope,
// never touching a service that is not lvs-sync's (see Changes). A scope
// of a few keys reads those only: on a director with a thousand services,
// a change to one costs a request and a dump, not a listing of them all.
// Kept and Leaving cover the services in scope only; Foreign is filled in
// for a scope of every service. The services the plan makes lvs-sync's
// are handed to in.Claim before the first change.
func Reconcile(k Kernel, in Input, scope Scope, log hclog.Logger) (Planned, Result, error) {
	owner := in.Owner()
	inScope := func(key lvs.ServiceKey) bool { return scope.In(key) && owner.MayBeOurs(key) }
	var current State
	var err error
	var foreign []lvs.ServiceKey
	if scope.Keys != nil {
		keys := make(map[lvs.ServiceKey]bool, len(scope.Keys))
		for key := range scope.Keys {
			if inScope(key) {
				keys[key] = true
			}
		}
		current, err = ReadKeys(k, keys)
	} else {
		current, err = Read(k, inScope)
		for key := range current {
			if owner.Whose(key, true) != Ours {
				foreign = append(foreign, key)
			}
		}
		slices.SortFunc(foreign, lvs.ServiceKey.Compare)
	}
	if err != nil {
		return Planned{}, Result{}, err
	}
	desired := in.Desired
	if scope.Keys != nil {
		desired = desired.InScope(scope) // a few lookups, not a pass over every service
	}
	in.Desired, in.Current = desired.Filter(inScope), current.Filter(inScope)
	p := Changes(in)
	if in.Claim != nil {
		if claimed := p.Claimed(in.Owned); len(claimed) > 0 {
			in.Claim(claimed) // before any change: a crash in the apply leaves them lvs-sync's
		}
	}
	res := apply(k, p.Plan, log, in.Clock)
	res.Foreign = foreign
	return p, res, nil
}

// Changed returns the services whose desired state differs between two
// renders: added, removed, or with other settings or reals.
func Changed(before, after State) map[lvs.ServiceKey]bool {
	changed := map[lvs.ServiceKey]bool{}
	for k, a := range after {
		b, ok := before[k]
		if ok && a == b {
			continue // the same render: unchanged by construction
		}
		if !ok || !a.Equal(b) || !maps.Equal(a.Reals, b.Reals) {
			changed[k] = true
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			changed[k] = true
		}
	}
	return changed
}

// InScope returns the services the scope looks at. A scope of a few keys
// costs those few lookups, not a pass over every service (a flip among
// ten thousand).
func (s State) InScope(scope Scope) State {
	if scope.Keys == nil {
		return s.Filter(scope.In)
	}
	out := make(State, len(scope.Keys))
	for k := range scope.Keys {
		if svc, ok := s[k]; ok && scope.In(k) {
			out[k] = svc
		}
	}
	return out
}

// Filter returns the services for which keep holds.
func (s State) Filter(keep func(lvs.ServiceKey) bool) State {
	out := make(State, len(s))
	for k, svc := range s {
		if keep(k) {
			out[k] = svc
		}
	}
	return out
}
