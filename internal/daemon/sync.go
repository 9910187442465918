package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// drainPoll is how often the connections of draining reals are read.
const drainPoll = time.Second

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

	// What is logged while it lasts, so that it is logged once: the
	// notes of render (a bad instance), the holds of its mass removal
	// guard, the desired services the kernel has from someone else, why
	// a maintenance page cannot be served and why the state file cannot
	// be saved.
	notes     warned[string]
	holds     warned[render.Hold]
	conflicts warned[lvs.ServiceKey]
	pagesErr  warned[string]
	saveErr   warned[string]
}

func (s *syncState) init() {
	s.acl.init()
	s.notes, s.holds, s.conflicts = warned[string]{}, warned[render.Hold]{}, warned[lvs.ServiceKey]{}
	s.pagesErr, s.saveErr = warned[string]{}, warned[string]{}
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
	s.lastApplied = nil            // the next sync compares everything
	s.lastResult = render.Result{} // and renders everything
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

// sync renders the snapshot and makes the kernel match it. changed names
// the Consul services that changed since the last sync (nil: any may
// have); only their virtual services are rendered again, but on a full
// sync. wake is when time alone next calls for a sync (zero: never);
// applied tells whether the kernel changed.
func (d *Daemon) sync(snap catalog.Snapshot, changed map[string]bool, t Trigger, now time.Time) (wake time.Time, applied bool, err error) {
	start := d.clock.Now()
	st := &d.state
	var only func(*config.VirtualService) bool
	if changed != nil && !t.Full() {
		only = func(vs *config.VirtualService) bool { return changed[vs.Service] }
	}
	if len(st.pagesDown) > 0 {
		d.servePages(d.cfg) // try again
	}
	hist := st.tracker.At(now)
	hist.PagesDown = st.pagesDown
	res := render.Update(st.lastResult, d.cfg, snap, hist, only)
	st.lastResult = res
	d.logNotes(res.Notes)
	d.logHolds(res.Holds)
	report := Report{At: now, Trigger: t, Desired: res}
	scope := ipvs.All
	desired := res.State
	defer func() {
		report.Err = err
		d.publish(report, desired, &st.drainer, scope)
		if d.opts.OnSync != nil {
			d.opts.OnSync(report)
		}
	}()
	wake = res.NextChange
	// Virtual services whose Consul answer is filtered by ACLs, with no
	// good one to keep, are left as the kernel has them.
	frozen := st.acl.frozen(d.cfg)
	if frozen != nil {
		desired = desired.Filter(func(k lvs.ServiceKey) bool { return !frozen[k] })
	}

	// A catalog or timer sync looks only at the services whose desired
	// state changed since the last sync that fully succeeded, and those
	// still draining; a reconcile or a retry reads everything, to repair
	// drift.
	if !t.Full() && st.lastApplied != nil {
		dirty := ipvs.Changed(st.lastApplied, desired)
		for k := range st.drainer.Draining() {
			dirty[k] = true
		}
		if len(dirty) == 0 {
			scope.Keys = dirty // none
			d.log.Debug("synced", "reason", t, "changes", 0, "scope", "none", "took", d.clock.Since(start))
			return wake, false, nil
		}
		scope.Keys = dirty
	}
	if frozen != nil {
		scope.Skip = func(k lvs.ServiceKey) bool { return frozen[k] }
	}
	// Ownership is written ahead: what the plan is about to make or take
	// over is recorded before the first change, and forgotten only after
	// its delete succeeded (below), so that a crash in between leaves no
	// service of lvs-sync's looking like someone else's.
	own := d.opts.Ownership
	var previously []lvs.ServiceKey // owned before the claim, if any
	claimed := false
	in := ipvs.Input{Desired: desired, Owned: own.Owns, Adopt: d.cfg.Adopts, Drains: &st.drainer, Now: now,
		Claim: func(keys []lvs.ServiceKey) {
			previously, claimed = own.Keys(), true
			d.saved(own.Change(keys, nil))
		}}
	planned, result, err := ipvs.Reconcile(d.opts.Kernel, in, scope, d.log.Named("ipvs"))
	if err != nil {
		st.lastApplied = nil
		return wake, false, fmt.Errorf("reading the kernel: %w", err)
	}
	plan := planned.Plan
	report.Plan, report.Applied = plan, result.Applied
	d.opts.Metrics.sawSync(result, scope.Full(), len(result.Foreign))
	d.noteConflicts(planned.Conflicts, scope)
	if len(st.drainer.Draining()) > 0 {
		// Poll the draining reals' connections, up to the first drain
		// deadline.
		poll := now.Add(drainPoll)
		if !planned.Next.IsZero() && planned.Next.Before(poll) {
			poll = planned.Next
		}
		if wake.IsZero() || poll.Before(wake) {
			wake = poll
		}
	}

	// Owned from now on: what the plan claimed (desired without a
	// conflict, and leaving ones still draining), less what it released
	// (deleted, or gone); a full sync also retries a failed write and
	// repairs the VIPs, a scoped one changes them only with what it owns.
	var candidates []lvs.ServiceKey // the owned services of the scope
	if scope.Keys == nil {
		candidates = own.Keys()
	} else {
		for k := range scope.Keys {
			if own.Owns(k) {
				candidates = append(candidates, k)
			}
		}
	}
	released := planned.Released(candidates, scope, result)
	var vipErr error
	if scope.Keys == nil || claimed || len(released) > 0 {
		if !claimed {
			previously = own.Keys()
		}
		d.saved(own.Change(nil, released))
		vipErr = d.syncVIPs(own.Keys(), previously)
	}
	if result.Err() == nil && vipErr == nil {
		st.lastApplied = desired
	} else {
		st.lastApplied = nil
	}

	scoped := "all"
	if !scope.Full() {
		scoped = "changed"
	}
	took := d.clock.Since(start)
	d.log.Debug("synced", "reason", t, "changes", len(plan), "applied", result.Applied,
		"failed", len(result.Failed), "failed_reals", len(result.FailedReals), "scope", scoped, "took", took)
	if len(plan) > 0 {
		d.log.Info("applied changes", "reason", t, "changes", len(plan), "applied", result.Applied,
			"failed_services", len(result.Failed), "failed_reals", len(result.FailedReals), "took", took.Round(time.Microsecond))
	}
	if err := result.Err(); err != nil {
		return wake, result.Applied > 0, err
	}
	return wake, result.Applied > 0, vipErr
}

// syncVIPs puts the VIPs of the services lvs-sync keeps on the VIP link
// (a leaving one keeps its VIP while it drains) and removes those of
// services it owned before and no longer has.
func (d *Daemon) syncVIPs(kept, previously []lvs.ServiceKey) error {
	if d.opts.VIPs == nil {
		return nil
	}
	wasOurs := append(d.state.vipsOf(previously), d.state.syncedVIPs...)
	want := d.state.vipsOf(kept)
	_, _, err := d.opts.VIPs.Sync(want, func(a netip.Addr) bool { return slices.Contains(wasOurs, a) })
	if err != nil {
		return fmt.Errorf("syncing vips: %w", err)
	}
	d.state.syncedVIPs = want
	return nil
}

// vipsOf lists the VIPs of services, sorted, each once: an address
// service's address, a firewall-mark service's vips (none for a mark no
// config of this run named).
func (s *syncState) vipsOf(keys []lvs.ServiceKey) []netip.Addr {
	var vips []netip.Addr
	add := func(a netip.Addr) {
		if !slices.Contains(vips, a) {
			vips = append(vips, a)
		}
	}
	for _, k := range keys {
		if k.FWMark == 0 {
			add(k.Addr)
			continue
		}
		for _, a := range s.markVIPs[k] {
			add(a)
		}
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	return vips
}

// Cleanup removes every virtual service lvs-sync owns, and their VIPs: what
// cleanup_on_exit asks for when lvs-sync stops. Call it after Run returned.
func (d *Daemon) Cleanup() error {
	own := d.opts.Ownership
	keys := own.Keys()
	var plan ipvs.Plan
	for _, k := range keys {
		plan = append(plan, ipvs.Op{Kind: ipvs.DeleteService, Service: k})
	}
	res := ipvs.Apply(d.opts.Kernel, plan, d.log.Named("ipvs"))
	if d.opts.VIPs != nil {
		ours := d.state.vipsOf(keys)
		if _, _, err := d.opts.VIPs.Sync(nil, func(a netip.Addr) bool { return slices.Contains(ours, a) }); err != nil {
			return fmt.Errorf("removing vips: %w", err)
		}
	}
	if err := res.Err(); err != nil {
		return err
	}
	d.saved(own.Set(map[lvs.ServiceKey]bool{}))
	d.log.Info("cleaned up on exit", "services", len(keys))
	return nil
}

// noteConflicts warns once about each desired service the kernel has from
// someone else, and forgets those of the scope that no longer conflict.
func (d *Daemon) noteConflicts(conflicts []lvs.ServiceKey, scope ipvs.Scope) {
	began, _ := update(d.state.conflicts, conflicts, func(k lvs.ServiceKey) lvs.ServiceKey { return k }, scope.In)
	for _, k := range began {
		name := ""
		if vs := d.cfg.VirtualServiceAt(k); vs != nil {
			name = vs.Name
		}
		d.log.Warn("the kernel already has this virtual service and lvs-sync did not make it: left untouched; set adopt = true to take it over",
			"virtual_service", name, "service", k)
	}
	d.opts.Metrics.sawConflicts(len(d.state.conflicts))
}

// saved logs a failure to save the state file when it changes, not at
// every sync that tries again.
func (d *Daemon) saved(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch began, ended := updateErr(d.state.saveErr, msg); {
	case began:
		d.log.Warn("cannot save which services lvs-sync owns; trying again at every sync", "error", err)
	case ended:
		d.log.Info("the state file is saved again")
	}
}

// logHolds warns once about each hold of the mass removal guard.
func (d *Daemon) logHolds(holds []render.Hold) {
	began, _ := update(d.state.holds, holds, func(h render.Hold) render.Hold { return h }, nil)
	for _, h := range began {
		d.log.Named("render").Warn("instances vanished from the catalog at once: holding their reals as they were",
			"virtual_service", h.VirtualService, "vanished", h.Vanished, "of", h.Of, "until", h.Until.Format(time.RFC3339))
	}
}

// logNotes warns once about each piece of catalog data render left out,
// and each caveat about an instance it kept, while the condition lasts.
func (d *Daemon) logNotes(notes []render.Note) {
	began, _ := update(d.state.notes, notes, render.Note.String, nil)
	for _, n := range began {
		msg, kv := n.Log()
		d.log.Named("render").Warn(msg, kv...)
	}
}
