package consul

import (
	"context"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// WatchSizes is Watch, and a function that tells how many entries the
// watch's state holds, map by map. Call it only once the snapshots
// channel is closed: the watch's goroutine owns the state until then.
func (s *Source) WatchSizes(ctx context.Context, services []string, obs catalog.Observer) (<-chan catalog.Snapshot, func() map[string]int) {
	var w *watch
	s.watched = func(x *watch) { w = x }
	snaps := s.Watch(ctx, services, obs)
	s.watched = nil
	return snaps, func() map[string]int {
		sizes := map[string]int{
			"services": len(w.services), "nodes": len(w.nodes), "tags": len(w.tags), "ready": len(w.ready),
			"byNode": len(w.byNode), "nodeSeq": len(w.nodeSeq), "latest": len(w.latest),
			"sinceSent": len(w.sinceSent), "sinceBuilt": len(w.sinceBuilt),
			"urgent": len(w.urgent), "sweep": len(w.sweep), "nodeSt": len(w.nodeSt),
		}
		s.trouble.mu.Lock()
		sizes["trouble"] = len(s.trouble.seen)
		s.trouble.mu.Unlock()
		for _, set := range w.byNode {
			sizes["byNode services"] += len(set)
		}
		for _, view := range w.checks {
			sizes["checks"] += len(view.checks)
			sizes["check counts"] += len(view.count)
		}
		for _, svc := range w.latest {
			sizes["instances"] += len(svc.Instances)
		}
		return sizes
	}
}
