package consul

import (
	"cmp"
	"errors"
	"net/http"
	"slices"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
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

// readNodesFirst starts the first sync by node: every node of the nodes
// feed is read in full (readNodeFull) before any service, and once all
// have answered, every watched service's first answer is built from them
// (synthesize): at 10,000 services on 100 nodes, 200 reads instead of
// 10,000. Each node's index is kept as a full node read's: every service's
// first answer is built from (or, in doubt, read after) that read, so a
// node whose index has not moved since holds nothing its services'
// answers lack.
func (w *watch) readNodesFirst() {
	w.firstReads = make(map[string]bool, len(w.nodes))
	w.bodies = make(map[string]*nodeBody, len(w.nodes))
	for n := range w.nodes {
		w.firstReads[n] = true
		w.markNode(n)
		w.nodeSt[n].first = true
	}
}

// firstRead takes a node's first read in. One that failed, or that ACLs
// filtered, gives the first sync by node up: every service is read per
// service (a failure also forgets the nodes' indexes: each node is read
// in full at its first sweep; a 404 turns node sweeps off).
func (w *watch) firstRead(r readResult, ns *nodeState) {
	if !w.firstReads[r.name] {
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
		w.perService()
		return
	case r.body.filtered:
		ns.index = r.body.index
		w.s.log.Debug("consul filtered a node read by acls: the first sync reads every service", "node", r.name)
		w.perService()
		return
	}
	ns.index = r.body.index
	w.bodies[r.name] = r.body
	w.firstDone(r.name)
}

// perService gives the first sync by node up: every service not answered
// yet is read per service.
func (w *watch) perService() {
	clear(w.firstReads)
	w.bodies = nil
	w.dropNodeReads() // what they would name is read now
	w.sweepAll(false)
}

// firstDone notes that node's first read is no longer awaited (answered,
// or the node left); the last one synthesizes every service.
func (w *watch) firstDone(node string) {
	if !w.firstReads[node] {
		return
	}
	delete(w.firstReads, node)
	if len(w.firstReads) == 0 {
		w.synthesize()
	}
}

// synthesize builds each watched service's first answer from the nodes'
// first reads: its instances on every node, sorted as newService sorts
// them. Its index is the lowest of those reads' (never above what it saw,
// so any later read supersedes it), its maxMod the highest ModifyIndex of
// its instances, and it is taken in as a read issued when the first node
// read went: an event on one of its nodes since, or a disagreement with a
// feed, reads it again (answer). A service already read, or queued for a
// read (a feed named it meanwhile), is left to that read; one in doubt
// (an instance changed after its node's checks were read) is read at once.
func (w *watch) synthesize() {
	bodies := w.bodies
	w.bodies = nil
	lowest := uint64(0)
	found := map[string]*readResult{}
	for n, b := range bodies {
		if lowest == 0 || b.index < lowest {
			lowest = b.index
		}
		for name, o := range b.services {
			r := found[name]
			if r == nil {
				r = &readResult{name: name, svc: &catalog.Service{Name: name, Index: b.index}, nodes: map[string]string{}}
				found[name] = r
			}
			if o.doubt {
				r.err = errDoubt
			}
			r.svc.Instances = append(r.svc.Instances, o.instances...)
			r.svc.Index = min(r.svc.Index, b.index)
			r.nodes[n] = b.addrs
			r.maxMod = max(r.maxMod, o.maxMod)
		}
	}
	for name, st := range w.services {
		if st.svc != nil || st.inflight || st.queue != notQueued {
			continue
		}
		r := found[name]
		switch {
		case r == nil:
			r = &readResult{name: name, svc: &catalog.Service{Name: name, Index: lowest}}
		case r.err != nil:
			w.mark(name, true)
			continue
		}
		slices.SortFunc(r.svc.Instances, func(a, b *catalog.Instance) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
		})
		if w.obs != nil {
			// The service's answer, at its index, as a read's would be
			// heard: per-service metrics (lvs_sync_catalog_last_index)
			// know every service answered by node reads too.
			w.obs.ObserveQuery(name, r.svc.Index, nil)
		}
		w.answer(*r, st, w.firstIssued, false, false)
	}
}

// errDoubt marks a synthesized answer that must be read per service.
var errDoubt = errors.New("an instance changed after its node's checks were read")

// dropNodeReads unqueues every node read: the sweep they were for is
// done per service.
func (w *watch) dropNodeReads() {
	for _, ns := range w.nodeSt {
		ns.queued, ns.again, ns.first = false, false, false
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
	if r.first {
		w.firstRead(r, ns)
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
