package ipvs

import (
	"slices"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Claim is whose a virtual service is.
type Claim uint8

const (
	// Foreign is someone else's service that the config does not name:
	// never read, changed nor deleted.
	Foreign Claim = iota
	// Conflict is a service the config names that the kernel has from
	// someone else: left untouched, warned about, until adopt = true.
	Conflict
	// Ours is lvs-sync's: it made it, or the config names it and the
	// kernel lacks it (lvs-sync is about to make it) or adopt allows.
	Ours
)

func (c Claim) String() string {
	switch c {
	case Conflict:
		return "conflict"
	case Ours:
		return "ours"
	}
	return "foreign"
}

// Owner is the one rule of whose a virtual service is. The plan (Changes
// and Reconcile), status, `plan`'s read of the kernel and the loop's
// record of what it made all ask it, so they cannot disagree. A nil func
// answers false.
type Owner struct {
	// Owned says which services lvs-sync made: its state file.
	Owned func(lvs.ServiceKey) bool
	// Desired says which services the config wants.
	Desired func(lvs.ServiceKey) bool
	// Adopt says which desired services lvs-sync may take over when the
	// kernel has them and it did not make them (adopt = true).
	Adopt func(lvs.ServiceKey) bool
}

// Whose says whose k is; inKernel is whether the kernel has it. A service
// lvs-sync made stays its own, desired or not (one that left the config
// drains and goes); a desired one is its own unless the kernel has it
// from someone else.
func (o Owner) Whose(k lvs.ServiceKey, inKernel bool) Claim {
	switch {
	case o.Owned != nil && o.Owned(k):
		return Ours
	case o.Desired == nil || !o.Desired(k):
		return Foreign
	case inKernel && (o.Adopt == nil || !o.Adopt(k)):
		return Conflict
	}
	return Ours
}

// MayBeOurs reports whether k is lvs-sync's unless the kernel has it from
// someone else: the services whose reals a read of the kernel looks at,
// before it knows which the kernel has.
func (o Owner) MayBeOurs(k lvs.ServiceKey) bool { return o.Whose(k, false) == Ours }

// Owner is the rule of an Input: its Owned, Adopt and the keys of Desired.
func (in Input) Owner() Owner {
	return Owner{Owned: in.Owned, Adopt: in.Adopt, Desired: func(k lvs.ServiceKey) bool { return in.Desired[k] != nil }}
}

// Claimed lists, sorted, the services the plan makes lvs-sync's that
// owned does not say are: the desired ones it is about to make or take
// over. They are to be recorded before the plan is applied (Input.Claim),
// so that a crash in between leaves them lvs-sync's, not conflicts.
func (p Planned) Claimed(owned func(lvs.ServiceKey) bool) []lvs.ServiceKey {
	var keys []lvs.ServiceKey
	for k := range p.Kept {
		if owned == nil || !owned(k) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	return keys
}

// Released lists, sorted, the services of owned (those lvs-sync made)
// that are no longer its own once the plan was applied with res: in the
// scope, not kept, and deleted or already gone. One whose delete failed
// stays lvs-sync's, to be deleted at a later sync.
func (p Planned) Released(owned []lvs.ServiceKey, scope Scope, res Result) []lvs.ServiceKey {
	var keys []lvs.ServiceKey
	for _, k := range owned {
		if scope.In(k) && !p.Kept[k] && res.Failed[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	return keys
}
