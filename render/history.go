package render

import (
	"maps"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// InstanceKey identifies a Consul instance across snapshots.
type InstanceKey struct{ Node, ID string }

// History is what render needs to know of the past. The zero value is no
// history: nothing is held out or ramping.
type History struct {
	Now time.Time
	// LastCritical is when each instance was last seen critical.
	LastCritical map[InstanceKey]time.Time
	// Recovered is when each instance that was critical last stopped
	// being so: flap damping counts its hold from then, the pass, not
	// from the failure.
	Recovered map[InstanceKey]time.Time
	// ServingSince is when each instance last started to serve (passing or
	// warning after being critical or absent); the zero time for instances
	// already serving when lvs-sync started, which do not ramp.
	ServingSince map[InstanceKey]time.Time
}

// Tracker builds the History from the snapshots it is shown.
type Tracker struct {
	lastCritical map[InstanceKey]time.Time
	recovered    map[InstanceKey]time.Time
	servingSince map[InstanceKey]time.Time
	critical     map[InstanceKey]bool // critical at the last snapshot
	seeded       bool
}

// Observe records a snapshot seen at now and returns the history to render
// it with. The first snapshot seeds the tracker: instances serving then
// count as serving for ever, so that a restart ramps nothing.
func (t *Tracker) Observe(snap catalog.Snapshot, now time.Time) History {
	if t.lastCritical == nil {
		t.lastCritical = map[InstanceKey]time.Time{}
		t.recovered = map[InstanceKey]time.Time{}
		t.servingSince = map[InstanceKey]time.Time{}
		t.critical = map[InstanceKey]bool{}
	}
	seen := map[InstanceKey]bool{}
	for _, svc := range snap.Services {
		for _, in := range svc.Instances {
			k := InstanceKey{Node: in.Node, ID: in.ID}
			if seen[k] {
				continue
			}
			seen[k] = true
			switch {
			case in.Status == catalog.Critical:
				t.lastCritical[k] = now
				t.critical[k] = true
				delete(t.recovered, k)
				delete(t.servingSince, k)
			default:
				if t.critical[k] {
					t.recovered[k] = now
					delete(t.critical, k)
				}
				if _, ok := t.servingSince[k]; !ok {
					since := now
					if !t.seeded {
						since = time.Time{}
					}
					t.servingSince[k] = since
				}
			}
		}
	}
	for k := range t.servingSince {
		if !seen[k] {
			delete(t.servingSince, k)
		}
	}
	for _, m := range []map[InstanceKey]time.Time{t.lastCritical, t.recovered} {
		for k := range m {
			if !seen[k] {
				delete(m, k)
			}
		}
	}
	for k := range t.critical {
		if !seen[k] {
			delete(t.critical, k)
		}
	}
	t.seeded = true
	return t.At(now)
}

// At returns the history as of now, without a new snapshot: for a sync that
// only time calls for (a hold ending, a slow start stepping up).
func (t *Tracker) At(now time.Time) History {
	return History{Now: now, LastCritical: maps.Clone(t.lastCritical), Recovered: maps.Clone(t.recovered), ServingSince: maps.Clone(t.servingSince)}
}
