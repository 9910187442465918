package daemon

import (
	"net/netip"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// syncState is what one sync leaves for the next; the loop's goroutine
// owns it.
type syncState struct {
	// lastApplied is the desired state of the last sync that fully
	// succeeded; nil makes the next sync read everything.
	lastApplied ipvs.State
	// tracker keeps the instances' history, for hold and slow start.
	tracker render.Tracker
	// drainer keeps leaving reals at weight 0 while connections finish.
	drainer ipvs.Drainer
	// timeouts are the drain timeouts of every virtual service a config
	// has named, so that one a reload removed drains with its own.
	timeouts map[lvs.ServiceKey]time.Duration
	// lastResult is the last render, which the next one updates; the zero
	// value renders everything.
	lastResult render.Result
	// acl keeps answers filtered by ACLs from emptying pools.
	acl aclGuard
	// pagesDown are the virtual services whose local page cannot be
	// served.
	pagesDown map[string]bool
	// markVIPs are the vips of every firewall-mark service a config has
	// named, as a mark's key does not carry them: one a reload removed
	// keeps its VIPs while it drains, and they go with it.
	markVIPs map[lvs.ServiceKey][]netip.Addr
	// syncedVIPs are the VIPs the last VIP sync put on the link: a mark
	// whose vips a reload changed leaves the old ones, which its key no
	// longer names, to be taken off.
	syncedVIPs []netip.Addr
	// logged is what is logged while it lasts, so that it is logged once.
	logged logged
	// bgp is what the speaker was told, with director.bgp.
	bgp advertiser
}

// logged are the conditions logged once while they last: the notes of
// render (a bad instance), the holds of its mass removal guard, the
// desired services the kernel has from someone else, why a maintenance
// page cannot be served and why the state file cannot be saved.
type logged struct {
	// notes are the notes of each virtual service as last rendered, by
	// name: render's own slices, shared, not a set of every note.
	notes map[string][]render.Note
	// notesOf is the config notes were last held for: the first render
	// of another forgets the notes of the services it removed.
	notesOf   *config.Config
	holds     warned[render.Hold]
	conflicts warned[lvs.ServiceKey]
	pagesErr  warned[string]
	saveErr   warned[string]
}

func (s *syncState) init() {
	s.acl.init()
	s.logged = logged{notes: map[string][]render.Note{}, holds: warned[render.Hold]{}, conflicts: warned[lvs.ServiceKey]{},
		pagesErr: warned[string]{}, saveErr: warned[string]{}}
	s.bgp.err = warned[string]{}
}

func (s *syncState) setConfig(cfg *config.Config) {
	// A service a reload removed drains with the timeout it had.
	if s.timeouts == nil {
		s.timeouts = map[lvs.ServiceKey]time.Duration{}
	}
	if s.markVIPs == nil {
		s.markVIPs = map[lvs.ServiceKey][]netip.Addr{}
	}
	for _, vs := range cfg.VirtualServices {
		s.timeouts[vs.Key()] = vs.DrainTimeout
		if vs.FWMark != 0 {
			s.markVIPs[vs.Key()] = vs.VIPs
		}
	}
	s.drainer.Timeout = drainTimeout(s.timeouts)
	s.tracker.VanishedFor = 0
	for _, vs := range cfg.VirtualServices {
		s.tracker.VanishedFor = max(s.tracker.VanishedFor, vs.RemovalHold)
	}
	// The next sync compares everything. It renders what changed: render
	// keeps the last result's services the new config defines alike.
	s.lastApplied = nil
}

// NewDrainer is a drainer with no drain under way, as run has when it
// starts, with each virtual service's drain_timeout: what plan shows.
func NewDrainer(cfg *config.Config) *ipvs.Drainer {
	timeouts := make(map[lvs.ServiceKey]time.Duration, len(cfg.VirtualServices))
	for _, vs := range cfg.VirtualServices {
		timeouts[vs.Key()] = vs.DrainTimeout
	}
	return &ipvs.Drainer{Timeout: drainTimeout(timeouts)}
}

// drainTimeout is each service's drain_timeout; a service no config
// names (it left the config while lvs-sync was stopped) has the default.
func drainTimeout(timeouts map[lvs.ServiceKey]time.Duration) func(lvs.ServiceKey) time.Duration {
	return func(k lvs.ServiceKey) time.Duration {
		if t, ok := timeouts[k]; ok {
			return t
		}
		return config.DefaultDrainTimeout
	}
}

func (s *syncState) observe(snap catalog.Snapshot, now time.Time) { s.tracker.Observe(snap, now) }
