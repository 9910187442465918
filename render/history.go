package render

import (
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
	// Vanished are the updates, less than twice Tracker.VanishedFor ago,
	// in which instances left the catalog (deregistered, their service
	// renamed, a snapshot restored), by Consul service, oldest first: the
	// mass removal guard may hold them.
	Vanished map[string][]Vanishing
	// PagesDown names the virtual services whose local maintenance page
	// cannot be served (its address would not bind): their local fallback
	// is not rendered, as it would answer nothing.
	PagesDown map[string]bool
	// ServingSince is when each instance last started to serve (passing or
	// warning after being critical or absent); the zero time for instances
	// already serving when lvs-sync started, which do not ramp.
	ServingSince map[InstanceKey]time.Time
}

// Vanishing is one update in which instances of a service left the
// catalog: those that left, and all the service had just before, as last
// seen, so that whether it starts a mass removal is decided by how many of
// those reals vanished within removal_hold from then on, net of the reals
// that arrived, never by a later change of health of what vanished.
type Vanishing struct {
	At     time.Time
	Gone   []*catalog.Instance
	Before []*catalog.Instance
}

// Tracker builds the History from the snapshots it is shown. Its work is
// proportional to what changed: a snapshot that names its changed
// services (catalog.Snapshot.Changed) is looked at for those only.
type Tracker struct {
	lastCritical map[InstanceKey]time.Time
	recovered    map[InstanceKey]time.Time
	servingSince map[InstanceKey]time.Time
	critical     map[InstanceKey]bool // critical at the last snapshot
	// byService are the instances last seen of each service, one for
	// each key (the last of the snapshot's duplicates), to forget those
	// that go and tell what vanished. It holds the snapshot's own slice
	// when it has no duplicates: not a list of keys and a map from key to
	// instance beside it (at 10,000 services × 10 instances those were
	// 14 MB of the daemon's live heap, for what the snapshot held already).
	byService map[string][]*catalog.Instance
	vanished  map[string][]Vanishing
	seeded    bool
	// VanishedFor is the longest removal_hold of the config (0: the guard
	// is off). An instance that left is remembered for twice as long: a
	// burst of vanishings is held for removal_hold from its first, and a
	// later vanishing within it must still be seen to belong to it when
	// that first's hold has ended.
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
		t.byService = map[string][]*catalog.Instance{}
		t.vanished = map[string][]Vanishing{}
	}
	for name, vs := range t.vanished { // forget what left long enough ago
		vs = slices.DeleteFunc(vs, func(v Vanishing) bool { return !now.Before(v.At.Add(2 * t.VanishedFor)) })
		if len(vs) == 0 {
			delete(t.vanished, name)
		} else {
			t.vanished[name] = vs
		}
	}
	if snap.Changed == nil {
		for name, svc := range snap.Services {
			t.observeService(name, svc.Instances, now)
		}
	} else {
		for name := range snap.Changed { // one not in Services is no longer watched
			t.observeService(name, snap.Instances(name), now)
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
	seen := make(map[InstanceKey]bool, len(instances))
	dup := false
	for _, in := range instances {
		k := InstanceKey{Node: in.Node, ID: in.ID}
		if seen[k] {
			dup = true
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
	var gone, before []*catalog.Instance
	for _, last := range t.byService[name] {
		before = append(before, last)
		if k := (InstanceKey{Node: last.Node, ID: last.ID}); !seen[k] {
			gone = append(gone, last)
			delete(t.lastCritical, k)
			delete(t.recovered, k)
			delete(t.servingSince, k)
			delete(t.critical, k)
		}
	}
	if len(gone) > 0 && t.VanishedFor > 0 && t.seeded {
		vs := append(t.vanished[name], Vanishing{At: now, Gone: gone, Before: before})
		if len(vs) > maxVanishings {
			vs = slices.Delete(vs, 0, len(vs)-maxVanishings) // the oldest go first
		}
		t.vanished[name] = vs
	}
	if instances == nil {
		delete(t.byService, name)
		return
	}
	if dup {
		instances = lastOfEach(instances)
	}
	t.byService[name] = instances
}

// lastOfEach is instances with one for each key: the last of its
// duplicates, at the place of the first.
func lastOfEach(instances []*catalog.Instance) []*catalog.Instance {
	at := make(map[InstanceKey]int, len(instances))
	out := make([]*catalog.Instance, 0, len(instances))
	for _, in := range instances {
		k := InstanceKey{Node: in.Node, ID: in.ID}
		if i, ok := at[k]; ok {
			out[i] = in
			continue
		}
		at[k] = len(out)
		out = append(out, in)
	}
	return out
}

// At returns the history as of now, without a new snapshot: for a sync that
// only time calls for (a hold ending, a slow start stepping up). The
// History shares the tracker's maps: it is valid until the next Observe,
// which a render finishes before.
func (t *Tracker) At(now time.Time) History {
	h := History{Now: now, LastCritical: t.lastCritical, Recovered: t.recovered, ServingSince: t.servingSince}
	if len(t.vanished) > 0 {
		h.Vanished = t.vanished
	}
	return h
}

// maxVanishings bounds the vanishings remembered of one service: a
// service that loses instances this often within removal_hold is being
// rolled, not emptied by accident, and the mass removal guard counts a
// burst from the oldest vanishing it remembers.
const maxVanishings = 8

// Len is how many instances the tracker remembers of the live catalog,
// for tests of its bounds.
func (t *Tracker) Len() int {
	n := len(t.servingSince) + len(t.critical)
	for _, ins := range t.byService {
		n += len(ins)
	}
	return n
}

// VanishedLen is how many instances the vanishings it remembers hold: at
// most maxVanishings per service, for removal_hold.
func (t *Tracker) VanishedLen() int {
	n := 0
	for _, vs := range t.vanished {
		for _, v := range vs {
			n += len(v.Gone) + len(v.Before)
		}
	}
	return n
}
