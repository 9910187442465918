package render

import (
	"cmp"
	"slices"
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
	// Vanished are the instances that left the catalog (deregistered, their
	// service renamed, a snapshot restored) less than Tracker.VanishedFor
	// ago, by Consul service: the mass removal guard may hold them.
	Vanished map[string][]Vanished
	// ServingSince is when each instance last started to serve (passing or
	// warning after being critical or absent); the zero time for instances
	// already serving when lvs-sync started, which do not ramp.
	ServingSince map[InstanceKey]time.Time
}

// Vanished is an instance that left the catalog, as it was last seen.
type Vanished struct {
	Instance *catalog.Instance
	At       time.Time
}

// Tracker builds the History from the snapshots it is shown. Its work is
// proportional to what changed: a snapshot that names its changed
// services (catalog.Snapshot.Changed) is looked at for those only.
type Tracker struct {
	lastCritical map[InstanceKey]time.Time
	recovered    map[InstanceKey]time.Time
	servingSince map[InstanceKey]time.Time
	critical     map[InstanceKey]bool // critical at the last snapshot
	// byService are the instances last seen of each service, to forget
	// those that go; last is each one as last seen.
	byService map[string][]InstanceKey
	last      map[InstanceKey]*catalog.Instance
	vanished  map[string]map[InstanceKey]Vanished
	seeded    bool
	// VanishedFor is how long an instance that left is remembered: the
	// longest removal_hold of the config (0: not at all).
	VanishedFor time.Duration
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
		t.byService = map[string][]InstanceKey{}
		t.last = map[InstanceKey]*catalog.Instance{}
		t.vanished = map[string]map[InstanceKey]Vanished{}
	}
	for name, gone := range t.vanished { // forget what left long enough ago
		for k, v := range gone {
			if !now.Before(v.At.Add(t.VanishedFor)) {
				delete(gone, k)
			}
		}
		if len(gone) == 0 {
			delete(t.vanished, name)
		}
	}
	for name, svc := range snap.Services {
		if snap.ChangedService(name) || t.byService[name] == nil {
			t.observeService(name, svc.Instances, now)
		}
	}
	if snap.Changed == nil { // every service: forget those no longer watched
		for name := range t.byService {
			if _, ok := snap.Services[name]; !ok {
				t.observeService(name, nil, now)
			}
		}
	}
	t.seeded = true
	return t.At(now)
}

// observeService records the instances of one service.
func (t *Tracker) observeService(name string, instances []*catalog.Instance, now time.Time) {
	keys := make([]InstanceKey, 0, len(instances))
	seen := make(map[InstanceKey]bool, len(instances))
	for _, in := range instances {
		k := InstanceKey{Node: in.Node, ID: in.ID}
		if seen[k] {
			continue
		}
		seen[k] = true
		keys = append(keys, k)
		t.last[k] = in
		if gone := t.vanished[name]; gone != nil {
			delete(gone, k) // back
		}
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
	for _, k := range t.byService[name] {
		if !seen[k] {
			if last := t.last[k]; last != nil && t.VanishedFor > 0 && t.seeded {
				if t.vanished[name] == nil {
					t.vanished[name] = map[InstanceKey]Vanished{}
				}
				t.vanished[name][k] = Vanished{Instance: last, At: now}
			}
			delete(t.last, k)
			delete(t.lastCritical, k)
			delete(t.recovered, k)
			delete(t.servingSince, k)
			delete(t.critical, k)
		}
	}
	if len(keys) == 0 && instances == nil {
		delete(t.byService, name)
		return
	}
	t.byService[name] = keys
}

// At returns the history as of now, without a new snapshot: for a sync that
// only time calls for (a hold ending, a slow start stepping up). The
// History shares the tracker's maps: it is valid until the next Observe,
// which a render finishes before.
func (t *Tracker) At(now time.Time) History {
	h := History{Now: now, LastCritical: t.lastCritical, Recovered: t.recovered, ServingSince: t.servingSince}
	if len(t.vanished) > 0 {
		h.Vanished = make(map[string][]Vanished, len(t.vanished))
		for name, gone := range t.vanished {
			for _, v := range gone {
				h.Vanished[name] = append(h.Vanished[name], v)
			}
			slices.SortFunc(h.Vanished[name], func(a, b Vanished) int {
				return cmp.Or(cmp.Compare(a.Instance.Node, b.Instance.Node), cmp.Compare(a.Instance.ID, b.Instance.ID))
			})
		}
	}
	return h
}

// Len is how many instances the tracker remembers, for tests of its
// bounds.
func (t *Tracker) Len() int {
	n := len(t.servingSince) + len(t.critical) + len(t.last)
	for _, gone := range t.vanished {
		n += len(gone)
	}
	return n
}
