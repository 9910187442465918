package consul

import (
	"maps"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// How a watch turns answers into snapshots: the reader gets the latest,
// never one per answer.

// rebuildEvery throttles rebuilding a snapshot the reader has not taken
// yet: a burst of answers costs one copy of the service map per period,
// not one per answer.
const rebuildEvery = 10 * time.Millisecond

// apply makes svc the service's latest answer.
func (w *watch) apply(name string, st *serviceState, svc *catalog.Service) {
	old := st.svc
	st.index = svc.Index
	material := old == nil || !svc.SameContent(old)
	if !material && !outputsMoved(svc, old) {
		return
	}
	if svc.FilteredByACLs && (old == nil || !old.FilteredByACLs) {
		w.s.log.Warn("consul filtered the answer by acls: the token cannot read every instance, so some real servers may be missing",
			"service", name, "index", svc.Index)
	}
	if old == nil {
		w.answered++
		if w.answered == len(w.services) {
			w.prog.Done(w.answered)
			w.prog = nil
		} else {
			w.prog.Update(w.answered)
		}
	} else {
		for _, in := range old.Instances {
			if set := w.byNode[in.Node]; set != nil {
				delete(set, name)
				if len(set) == 0 {
					delete(w.byNode, in.Node)
				}
			}
		}
	}
	for _, in := range svc.Instances {
		set := w.byNode[in.Node]
		if set == nil {
			set = map[string]bool{}
			w.byNode[in.Node] = set
		}
		set[name] = true
	}
	st.svc = svc
	if w.shared {
		w.latest, w.shared = maps.Clone(w.latest), false // the built snapshot keeps its own
	}
	w.latest[name] = svc
	w.dirty = true
	if material {
		w.sinceSent[name], w.sinceBuilt[name] = true, true
		w.pending = w.pending || w.answered == len(w.services)
	}
}

// build makes the snapshot offered to the reader.
func (w *watch) build() {
	snap := catalog.Snapshot{Services: w.latest}
	if !w.first {
		snap.Changed = maps.Clone(w.sinceSent)
	}
	w.built, w.builtAt, w.dirty, w.shared = &snap, w.s.opts.Clock.Now(), false, true
	clear(w.sinceBuilt)
}

// sent notes that the reader took the built snapshot.
func (w *watch) sent() {
	w.first = false
	w.sinceSent, w.sinceBuilt = w.sinceBuilt, w.sinceSent
	clear(w.sinceBuilt)
	w.pending = len(w.sinceSent) > 0
	w.built = nil // never offered twice
}
