package consul

import (
	"errors"
	"net/http"

	"github.com/hashicorp/consul/api"
)

// Node sweeps: which watched services a move of /v1/catalog/services is
// about, found by reading each node's instances (see the package
// documentation) instead of every watched service.

// nodesUnsupported is why node sweeps are given up for the watch's life
// (nodesOff) on a Consul that 404s them.
const nodesUnsupported = "consul has no /v1/catalog/node-services (before 1.7)"

// nodeSweeps reports whether a sweep reads per node: once every feed has
// answered (the nodes are known), while node reads work, and when the
// nodes are fewer than the watched services, so that they cost fewer
// reads than a per-service sweep.
func (w *watch) nodeSweeps() bool {
	return len(w.ready) == feeds && w.nodesOff == "" && len(w.nodes) < len(w.services)
}

// sweepChanged finds the watched services a catalog/services move may be
// about: by node when nodeSweeps says so, else by reading them all.
func (w *watch) sweepChanged() {
	if !w.nodeSweeps() {
		w.sweepAll(false)
		return
	}
	for n := range w.nodes {
		w.markNode(n)
	}
}

// markNode asks for a read of node; one out already is done again after
// it, since it may have started before the change that asks.
func (w *watch) markNode(node string) {
	ns := w.nodeSt[node]
	if ns == nil {
		ns = &nodeState{}
		w.nodeSt[node] = ns
	}
	switch {
	case ns.inflight:
		ns.again = true
	case !ns.queued:
		ns.queued = true
		w.nodeQueue = append(w.nodeQueue, node)
	}
}

// seed probes every node before the first sweep reads any service, and
// keeps each node's index as if the node had been read in full: every
// service's answer is then read after its nodes' indexes were taken, so a
// node whose index has not moved since holds nothing its services' answers
// lack. Without it the first node sweep reads every node in full: at
// 10,000 services on 100 nodes, 100 bodies of 1,000 instances (240 MB
// allocated, seconds of the agent's and the watcher's time) on the first
// edit, where seeding costs 100 probes before the first sync.
func (w *watch) seed() {
	w.seeding = make(map[string]bool, len(w.nodes))
	for n := range w.nodes {
		w.seeding[n] = true
		w.markNode(n)
		w.nodeSt[n].seed = true
	}
}

// seeded takes a seed probe in; the last starts the first sweep. A failed
// one gives seeding up: every node is read in full at its first sweep.
func (w *watch) seeded(r readResult, ns *nodeState) {
	if !w.seeding[r.name] {
		return // given up
	}
	switch {
	case r.err != nil:
		if notFound(r.err) {
			w.nodesOff = nodesUnsupported
			w.s.log.Warn("node sweeps off: an edit or registration re-reads every watched service", "reason", w.nodesOff, "error", r.err)
			w.dropNodeReads()
		}
		w.forgetNodes()
		clear(w.seeding)
		w.sweepAll(false)
		return
	default:
		ns.index = r.onNode.index
	}
	w.seedDone(r.name)
}

// seedDone notes that node needs no seed any more (probed, or gone); the
// last one starts the first sweep.
func (w *watch) seedDone(node string) {
	if !w.seeding[node] {
		return
	}
	delete(w.seeding, node)
	if len(w.seeding) == 0 {
		w.sweepAll(false)
	}
}

// dropNodeReads unqueues every node read: the sweep they were for is
// done per service.
func (w *watch) dropNodeReads() {
	for _, ns := range w.nodeSt {
		ns.queued, ns.again, ns.seed = false, false, false
	}
	w.nodeQueue = nil
}

// forgetNodes drops the nodes' indexes: the next read of each is in full.
func (w *watch) forgetNodes() {
	for _, ns := range w.nodeSt {
		ns.index = 0
	}
}

// onNodeResult takes a node read in: every watched service whose
// instances on the node differ from its latest answer (see nodeDiffers)
// is read at once. A read that failed proves nothing: every watched
// service is swept instead.
//
// A node read only names services to read; it never takes an instance
// away, so an instance hidden from it cannot vanish. An answer filtered by
// ACLs is used like any other: Consul shows a token an instance in a node
// read exactly when it shows it in a health read, both needing node:read
// on its node and service:read on its service (filterNodeServiceList and
// CheckServiceNode.CanRead, agent/structs), so what a node read misses the
// service reads miss too. A token that may read only the watched services
// has every node read filtered (the agent's own "consul" service is hidden
// from it); falling back to per-service sweeps there would undo node
// sweeps wherever ACLs are on.
func (w *watch) onNodeResult(r readResult) {
	ns := w.nodeSt[r.name]
	ns.inflight = false
	again := ns.again
	ns.again = false
	if _, ok := w.nodes[r.name]; !ok && !ns.queued {
		delete(w.nodeSt, r.name) // the node left while it was read
	}
	if r.seed {
		w.seeded(r, ns)
		if again {
			w.markNode(r.name)
		}
		return
	}
	switch {
	case r.err != nil && notFound(r.err):
		w.nodesOff = nodesUnsupported
		w.s.log.Warn("node sweeps off: an edit or registration re-reads every watched service", "reason", w.nodesOff, "error", r.err)
		w.dropNodeReads()
		w.sweepAll(false)
		return
	case r.err != nil:
		// Logged by the reader (once an episode); a failure is not
		// reported to the Observer, lest a node never read again keep
		// lvs-sync unhealthy: the service reads of the sweep are.
		w.sweepAll(false)
		return
	}
	if !r.onNode.unchanged {
		ns.index = r.onNode.index
		for name := range w.nodeDiffers(r.name, r.onNode.services) {
			w.mark(name, true)
		}
	}
	if again {
		w.markNode(r.name)
	}
}

// nodeDiffers returns the watched services whose instances on node, as a
// node read saw them, may differ from their latest answers: another number
// of them (a registration or deregistration), or a ModifyIndex above the
// highest the answer had. Consul sets an instance's ModifyIndex to the
// index of the write that changed it, and leaves it when a registration
// changes nothing (ensureServiceTxn in agent/consul/state/catalog.go): an
// edit after an answer was read carries an index above any in it. A
// service with a read out, or never answered, is named too: its answer may
// come from before the change.
func (w *watch) nodeDiffers(node string, seen map[string]nodeCount) map[string]bool {
	out := map[string]bool{}
	check := func(name string) {
		st, ok := w.services[name]
		if !ok || out[name] {
			return
		}
		if st.svc == nil || st.inflight {
			out[name] = true
			return
		}
		held := 0
		for _, in := range st.svc.Instances {
			if in.Node == node {
				held++
			}
		}
		if c := seen[name]; c.n != held || c.maxMod > st.maxMod {
			out[name] = true
		}
	}
	for name := range w.byNode[node] {
		check(name)
	}
	for name := range seen {
		check(name)
	}
	return out
}

// notFound reports whether err is Consul's 404.
func notFound(err error) bool {
	var st api.StatusError
	return errors.As(err, &st) && st.Code == http.StatusNotFound
}
