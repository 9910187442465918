package ipvs

import (
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Changes is the one planning function: the ordered kernel changes that
// make the kernel's table match the desired state. `run` applies them,
// `plan` prints them and `status` shows what is pending, so the three can
// never tell different stories.
//
// current is the kernel's table, with the reals of the services of
// interest; desired is every service render wants (all of them lvs-sync's);
// owned says which other services lvs-sync made (its state file), so that
// one that left the config is deleted; every other service is foreign and
// neither read nor touched. drains keeps leaving reals at weight 0 while
// their connections finish; a nil Drainer deletes them at once. next is
// the earliest time a drain settles or times out, zero if none.
func Changes(desired, current State, owned func(lvs.ServiceKey) bool, drains *Drainer, now time.Time) (plan Plan, next time.Time) {
	ours := func(k lvs.ServiceKey) bool { return desired[k] != nil || (owned != nil && owned(k)) }
	current = current.Filter(ours)
	if drains != nil {
		desired, next = drains.Adjust(desired, current, now)
	}
	return Diff(desired, current, ours), next
}

// Reconcile makes the kernel match desired for the services in scope (nil:
// every service), never touching a service that is neither desired nor
// owned. It reads only what is in scope: on a director with a thousand
// services, a change to one costs three netlink calls, not a thousand.
func Reconcile(k Kernel, desired State, owned, scope func(lvs.ServiceKey) bool, drains *Drainer, now time.Time, log hclog.Logger) (Plan, Result, time.Time, error) {
	inScope := func(key lvs.ServiceKey) bool {
		return (scope == nil || scope(key)) && (desired[key] != nil || owned(key))
	}
	current, err := Read(k, inScope)
	if err != nil {
		return nil, Result{}, time.Time{}, err
	}
	var foreign []lvs.ServiceKey
	for key := range current {
		if desired[key] == nil && !owned(key) {
			foreign = append(foreign, key)
		}
	}
	slices.SortFunc(foreign, lvs.ServiceKey.Compare)
	plan, next := Changes(desired.Filter(inScope), current.Filter(inScope), owned, drains, now)
	res := Apply(k, plan, log)
	res.Foreign = foreign
	return plan, res, next, nil
}

// Changed returns the services whose desired state differs between two
// renders: added, removed, or with other settings or reals.
func Changed(before, after State) map[lvs.ServiceKey]bool {
	changed := map[lvs.ServiceKey]bool{}
	for k, a := range after {
		b, ok := before[k]
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
