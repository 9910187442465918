package daemon

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/announce"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// shared is what the loop publishes after each sync for Status, Explain
// and Health, which the API calls from its own goroutines.
type shared struct {
	mu       sync.Mutex
	cfg      *config.Config
	synced   time.Time // first successful sync; zero before
	lastSync time.Time
	lastErr  error
	// failures counts the syncs that failed in a row.
	failures int
	// filtered are the Consul services whose answers ACLs filter.
	filtered []string
	// pagesErr is why a maintenance page cannot be served, if one cannot.
	pagesErr string
	result   render.Result
	// desired is what the last sync wanted in the kernel, and drains its
	// drains under way: what status plans the next sync with.
	desired  ipvs.State
	drains   *ipvs.Drainer
	frozen   map[lvs.ServiceKey]bool
	draining map[lvs.ServiceKey]map[lvs.RealKey]time.Time
	// metricsCfg is the config the metrics last saw the whole table of.
	metricsCfg *config.Config
	// decided is what each instance's decision was and when it last
	// changed, by virtual service name: one map, not one for each, as it
	// holds every instance of the catalog.
	decided map[string]map[render.InstanceKey]decided
	// decidedOf is the config decided was last noted under: the first
	// sync of another forgets the services it removed.
	decidedOf *config.Config

	queryMu   sync.Mutex
	lastQuery map[string]queryState

	// table is the kernel's table as Status last read it.
	table kernelTable

	// vips are the announce rule's last decision, with director.bgp.
	vips []announce.VIP

	// selfReals are the virtual services with one of this host's
	// addresses among their reals (noteSelfReals).
	selfReals map[lvs.ServiceKey]bool
	// hostAddrs are this host's addresses as the last full sync read them.
	hostAddrs map[netip.Addr]bool
}

// decisionSig is what of a decision counts as a change of it.
type decisionSig struct {
	in     bool
	weight int
	rule   render.RuleKind
}

// decided is an instance's decision as noted, and when it last changed.
type decided struct {
	sig decisionSig
	at  time.Time
}

type queryState struct {
	lastOK, lastErrAt time.Time
	err               error
}

func (s *shared) init() {
	s.decided = map[string]map[render.InstanceKey]decided{}
	s.lastQuery = map[string]queryState{}
	s.selfReals = map[lvs.ServiceKey]bool{}
}

func (s *shared) setConfig(cfg *config.Config) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

// publish shares a sync's outcome. Its work is proportional to what the
// sync looked at: the decisions of the virtual services render rendered
// anew, the metrics of the services in scope (nil: all).
func (d *Daemon) publish(r Report, desired ipvs.State, drains *ipvs.Drainer, scope ipvs.Scope) {
	draining := drains.Draining()
	s := &d.shared
	if len(r.Plan) > 0 {
		s.table.changed()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tables := s.metricsScope(r, draining, scope)
	s.lastSync = r.At
	s.lastErr = r.Err
	if r.Err == nil && s.synced.IsZero() {
		s.synced = r.At
	}
	if r.Err != nil {
		s.failures++
	} else {
		s.failures = 0
	}
	s.filtered = d.state.acl.filteredServices()
	s.pagesErr = message(d.state.logged.pagesErr)
	d.opts.Metrics.SawFiltered(s.filtered)
	s.result = r.Desired
	s.desired = desired
	s.drains = drains.Clone()
	s.frozen = d.state.acl.frozen(s.cfg)
	s.draining = draining
	s.noteDecisions(r.Desired, r.At)
	s.noteSelfReals(desired, scope)
	if d.opts.Metrics != nil {
		d.opts.Metrics.SawTable(expected(r.Desired.State, draining, tables), s.input(d), tables.Full(), r.Err == nil)
		if tables.Full() {
			s.metricsCfg = s.cfg
		}
	}
}

// metricsScope is what of the table the metrics look at again after a
// sync: the sync's scope, but after a full sync that changed nothing (no
// plan; it and the sync before it succeeded; the config the one the
// metrics last saw whole) only the services whose desired state changed
// since the last sync, or whose drains began, went on or ended. The
// gauges of the others are what the syncs before set from the same
// services (each sync's scope holds every service whose desired state
// changed since the last, and the drains), and nothing else moves them:
// the config did not change, and with no plan neither did what lvs-sync
// owns. At 10,000 services × 10 instances the status view of every
// service was 0.36 s of CPU at each periodic reconcile of an idle daemon.
// Call with s.mu held, before the sync's outcome is noted.
func (s *shared) metricsScope(r Report, draining map[lvs.ServiceKey]map[lvs.RealKey]time.Time, scope ipvs.Scope) ipvs.Scope {
	if !scope.Full() || r.Err != nil || len(r.Plan) > 0 || s.lastSync.IsZero() || s.lastErr != nil ||
		s.metricsCfg == nil || s.metricsCfg != s.cfg || s.result.State == nil {
		return scope
	}
	keys := ipvs.Changed(s.result.State, r.Desired.State)
	for k := range draining {
		keys[k] = true
	}
	for k := range s.draining {
		keys[k] = true
	}
	return ipvs.Scope{Keys: keys, Skip: scope.Skip}
}

// noteDecisions notes when each instance's decision last changed, in the
// virtual services res rendered anew at; call with s.mu held.
func (s *shared) noteDecisions(res render.Result, at time.Time) {
	for _, name := range res.Rendered {
		byInstance := s.decided[name]
		if byInstance == nil {
			byInstance = map[render.InstanceKey]decided{}
			s.decided[name] = byInstance
		}
		ds := res.Decisions[name]
		seen := make(map[render.InstanceKey]bool, len(ds))
		for _, dec := range ds {
			k := render.InstanceKey{Node: dec.Instance.Node, ID: dec.Instance.ID}
			seen[k] = true
			sig := decisionSig{in: dec.In, weight: dec.Weight, rule: dec.Rule.Kind}
			if old, ok := byInstance[k]; !ok || old.sig != sig {
				byInstance[k] = decided{sig: sig, at: at}
			}
		}
		for k := range byInstance {
			if !seen[k] {
				delete(byInstance, k)
			}
		}
	}
	if s.decidedOf != s.cfg { // the first sync of a config
		for name := range s.decided { // forget virtual services a reload removed
			if s.cfg.VirtualService(name) == nil {
				delete(s.decided, name)
			}
		}
		s.decidedOf = s.cfg
	}
}

// expected is the owned part of the kernel's table, in scope (nil: all),
// after a sync that succeeded: the desired state, with the draining reals
// at weight 0.
func expected(desired ipvs.State, draining map[lvs.ServiceKey]map[lvs.RealKey]time.Time, scope ipvs.Scope) ipvs.State {
	if !scope.Full() {
		desired = desired.InScope(scope)
	}
	if len(draining) == 0 {
		return desired
	}
	out := make(ipvs.State, len(desired))
	for k, svc := range desired {
		out[k] = svc
		if reals := draining[k]; len(reals) > 0 {
			cp := *svc
			cp.Reals = make(map[lvs.RealKey]ipvs.Real, len(svc.Reals)+len(reals))
			for rk, r := range svc.Reals {
				cp.Reals[rk] = r
			}
			for rk := range reals {
				cp.Reals[rk] = ipvs.Real{Weight: 0}
			}
			out[k] = &cp
		}
	}
	return out
}

// input is the status room's input; call with s.mu held.
func (s *shared) input(d *Daemon) status.Input {
	return status.Input{
		Config:   s.cfg,
		Owns:     d.opts.Ownership.Owns,
		Desired:  &s.result,
		Draining: s.draining,
		ChangedAt: func(vs string, in render.InstanceKey) time.Time {
			return s.decided[vs][in].at
		},
	}
}

// everSynced tells whether a sync was ever applied.
func (s *shared) everSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.synced.IsZero()
}

// unhealthyAfter is how many syncs in a row must fail before /v1/health
// says so: one failure is retried within a second.
const unhealthyAfter = 3

// Health reports whether lvs-sync is doing its job: it has applied a first
// sync, its syncs succeed, Consul answers in full (no answer filtered by
// ACLs), and Consul has not been unreachable for longer than the config's
// consul_unreachable_after.
func (d *Daemon) Health() (bool, string) {
	s := &d.shared
	s.mu.Lock()
	synced, cfg, failures, lastErr, filtered := s.synced, s.cfg, s.failures, s.lastErr, s.filtered
	s.mu.Unlock()
	switch {
	case synced.IsZero():
		return false, "no sync applied yet"
	case failures >= unhealthyAfter:
		return false, fmt.Sprintf("the last %d syncs failed: %v", failures, lastErr)
	case len(filtered) > 0:
		return false, fmt.Sprintf("consul filters the answers of %s by acls: the last good state is kept; give the token service and node read",
			strings.Join(filtered, ", "))
	}
	s.queryMu.Lock()
	defer s.queryMu.Unlock()
	limit := cfg.API.ConsulUnreachableAfter
	now := d.clock.Now()
	for query, q := range s.lastQuery {
		if q.err != nil && q.lastErrAt.After(q.lastOK) && now.Sub(q.lastOK) > limit {
			return false, fmt.Sprintf("consul unreachable for %s (query %q): %v", now.Sub(q.lastOK).Round(time.Second), query, q.err)
		}
	}
	return true, "synced"
}

// forgetQueries drops what is known of the queries of a config that a
// reload replaced, so that a service it removed cannot keep lvs-sync
// unhealthy.
func (s *shared) forgetQueries() {
	s.queryMu.Lock()
	clear(s.lastQuery)
	s.queryMu.Unlock()
}

// ObserveQuery hears from the catalog source.
func (d *Daemon) ObserveQuery(query string, index uint64, err error) {
	s := &d.shared
	s.queryMu.Lock()
	q := s.lastQuery[query]
	if err != nil {
		q.err, q.lastErrAt = err, d.clock.Now()
	} else {
		q.err, q.lastOK = nil, d.clock.Now()
	}
	s.lastQuery[query] = q
	s.queryMu.Unlock()
	d.opts.Metrics.SawQuery(query, index, err)
}

// Status annotates the kernel's whole table, read at most statusMaxAge
// ago (or since the last sync that changed it).
func (d *Daemon) Status() (status.View, error) {
	current, err := d.shared.table.read(d.opts.Kernel, d.clock.Now)
	if err != nil {
		return status.View{}, fmt.Errorf("reading the kernel: %w", err)
	}
	var sp status.Speaker
	if d.opts.Speaker != nil {
		sp = d.opts.Speaker.State() // asked before the lock: the loop's publish must not wait on the speaker
	}
	s := &d.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	v := status.View{Synced: s.synced, LastSync: s.lastSync, Services: status.Services(current, s.input(d))}
	if d.opts.Speaker != nil {
		v.BGP = status.BGPOf(sp, s.vips, d.clock.Now())
	}
	if s.drains != nil {
		// What the next sync would change: the one plan run applies,
		// with a copy of its drains.
		unfrozen := current.Filter(func(k lvs.ServiceKey) bool { return !s.frozen[k] })
		planned := ipvs.Changes(ipvs.Input{Desired: s.desired, Current: unfrozen, Owned: d.opts.Ownership.Owns,
			Adopt: s.cfg.Adopts, Drains: s.drains.Clone(), Now: d.clock.Now()})
		for _, op := range planned.Plan {
			v.Pending = append(v.Pending, op.String())
		}
	}
	if d.opts.Ownership.Unknown() {
		v.Warnings = append(v.Warnings, "the state file could not be read: lvs-sync owns nothing and deletes nothing until it is moved aside")
	}
	if s.pagesErr != "" {
		v.Warnings = append(v.Warnings, "a maintenance page cannot be served: "+s.pagesErr)
	}
	for _, name := range s.filtered {
		v.Warnings = append(v.Warnings, fmt.Sprintf("consul filtered the answer for service %q by acls: its last good state is kept", name))
	}
	if s.lastErr != nil {
		v.LastError = s.lastErr.Error()
	}
	return v, nil
}

// Services annotates the kernel's whole table as Status does, from the
// same read (at most statusMaxAge old), without Status's plan: what the
// traffic metrics read at each scrape, so that a scrape costs the kernel
// at most one dump a second however many services and scrapers there are,
// and the dump /v1/status reads serves both.
func (d *Daemon) Services() ([]status.ServiceView, error) {
	current, err := d.shared.table.read(d.opts.Kernel, d.clock.Now)
	if err != nil {
		return nil, fmt.Errorf("reading the kernel: %w", err)
	}
	s := &d.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	return status.Services(current, s.input(d)), nil
}

// Explain tells why each instance of a virtual service is where it is.
func (d *Daemon) Explain(name string) (status.Explanation, error) {
	s := &d.shared
	s.mu.Lock()
	vs := s.cfg.VirtualService(name)
	s.mu.Unlock()
	if vs == nil {
		return status.Explanation{}, fmt.Errorf("no virtual_service %q in the config", name)
	}
	k := vs.Key()
	current, err := ipvs.Read(d.opts.Kernel, func(key lvs.ServiceKey) bool { return key == k })
	if err != nil {
		return status.Explanation{}, fmt.Errorf("reading the kernel: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return status.Explain(vs, current[k], s.input(d)), nil
}
