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

// sync renders the snapshot and makes the kernel match it. changed names
// the Consul services that changed since the last sync (nil: any may
// have); only their virtual services are rendered again, but on a full
// sync. wake is when time alone next calls for a sync (zero: never);
// applied tells whether the kernel changed.
//
// It is the loop's story in phases: render the desired state, guard it
// from answers ACLs filtered, plan what to look at, apply it to the
// kernel, record what changed (metrics, conflicts, ownership), announce
// the VIPs (on the VIP link); whatever happens, publish the outcome and,
// with director.bgp, advertise the VIPs the announce rule lets it.
func (d *Daemon) sync(snap catalog.Snapshot, changed map[string]bool, t Trigger, now time.Time) (wake time.Time, applied bool, err error) {
	r := &round{t: t, now: now, start: d.clock.Now(), scope: ipvs.All}
	d.render(r, snap, changed)
	defer func() {
		r.report.Err = err
		d.publish(r.report, r.desired, &d.state.drainer, r.scope)
		if retry := d.advertise(r.report.Desired.State, d.shared.everSynced(), now); !retry.IsZero() && (wake.IsZero() || retry.Before(wake)) {
			wake = retry
		}
		if d.opts.OnSync != nil {
			d.opts.OnSync(r.report)
		}
	}()
	d.guard(r)
	if !d.plan(r) {
		d.log.Debug("synced", "reason", t, "changes", 0, "scope", "none", "took", d.clock.Since(r.start))
		return r.wake, false, nil
	}
	if err := d.apply(r); err != nil {
		return r.wake, false, err
	}
	d.record(r)
	vipErr := d.announce(r)
	if r.result.Err() == nil && vipErr == nil {
		d.state.lastApplied = r.desired
	} else {
		d.state.lastApplied = nil
	}
	d.logSynced(r)
	if err := r.result.Err(); err != nil {
		return r.wake, r.result.Applied > 0, err
	}
	return r.wake, r.result.Applied > 0, vipErr
}

// round is one sync under way: what each phase leaves for the next.
type round struct {
	t          Trigger
	now, start time.Time
	// report is what the sync publishes and hands OnSync.
	report Report
	// desired is render's state less the services the guard froze.
	desired ipvs.State
	// scope is what the sync looks at in the kernel.
	scope ipvs.Scope
	// wake is when time alone next calls for a sync (zero: never).
	wake time.Time
	// planned and result are the plan and what applying it did.
	planned ipvs.Planned
	result  ipvs.Result
	// claimed tells whether the plan claimed services, and previously
	// what lvs-sync owned before (or before it released any).
	claimed    bool
	previously []lvs.ServiceKey
	// vips tells whether the VIPs must follow what lvs-sync owns.
	vips bool
}

// render renders the desired state: of the virtual services of the
// catalog services that changed (changed nil: of all), with the history
// of the instances; it logs once what render left out or held.
//
// A full sync (a reconcile, a retry) renders no more than a catalog sync:
// it is the kernel that may have drifted, and the full sync compares all
// of it with the desired state; the others' renders are the last
// result's, as render.Update keeps them (those whose time came, a hold
// ending, rendered again). A reload renders the services it defines anew
// (render.Update compares the definitions) and those whose answers moved
// (switchTo). A maintenance page that went down or came back resets the
// last result, and so renders everything (servePages). At 10,000 services × 10 instances
// rendering everything at each reconcile was 0.31 s of CPU of the 0.87 s
// of the sync, and 57 MB of garbage, whose collection took another
// 0.47 s: an idle daemon's every minute.
func (d *Daemon) render(r *round, snap catalog.Snapshot, changed map[string]bool) {
	st := &d.state
	var only func(*config.VirtualService) bool
	if changed != nil {
		only = func(vs *config.VirtualService) bool { return changed[vs.CatalogKey()] }
	}
	if len(st.pagesDown) > 0 {
		d.servePages(d.cfg) // try again
	}
	hist := st.tracker.At(r.now)
	hist.PagesDown = st.pagesDown
	res := render.Update(st.lastResult, d.cfg, snap, hist, only)
	st.lastResult = res
	d.logNotes(res)
	d.logHolds(res.Holds)
	r.report = Report{At: r.now, Trigger: r.t, Desired: res}
	r.desired, r.wake = res.State, res.NextChange
}

// guard leaves the virtual services whose Consul answer is filtered by
// ACLs, with no good one to keep, as the kernel has them: out of the
// desired state and out of the scope.
func (d *Daemon) guard(r *round) {
	frozen := d.state.acl.frozen(d.cfg)
	if frozen == nil {
		return
	}
	r.desired = r.desired.Filter(func(k lvs.ServiceKey) bool { return !frozen[k] })
	r.scope.Skip = func(k lvs.ServiceKey) bool { return frozen[k] }
}

// plan narrows what the sync looks at: a catalog or timer sync, the
// services whose desired state changed since the last sync that fully
// succeeded, and those still draining; a reconcile or a retry reads
// everything, to repair drift. It reports false when there is nothing to
// look at.
func (d *Daemon) plan(r *round) bool {
	st := &d.state
	if r.t.Full() || st.lastApplied == nil {
		return true
	}
	dirty := ipvs.Changed(st.lastApplied, r.desired)
	for k := range st.drainer.Draining() {
		dirty[k] = true
	}
	r.scope.Keys = dirty // none, when empty
	return len(dirty) > 0
}

// apply reads the kernel's services in scope, plans and applies the
// changes. Ownership is written ahead: what the plan is about to make or
// take over is recorded before the first change, and forgotten only
// after its delete succeeded (record), so that a crash in between leaves
// no service of lvs-sync's looking like someone else's.
func (d *Daemon) apply(r *round) error {
	own := d.opts.Ownership
	in := ipvs.Input{Desired: r.desired, Owned: own.Owns, Adopt: d.cfg.Adopts, Drains: &d.state.drainer, Now: r.now, Clock: d.clock,
		Claim: func(keys []lvs.ServiceKey) {
			r.previously, r.claimed = own.Keys(), true
			d.saved(own.Change(keys, nil))
		}}
	planned, result, err := ipvs.Reconcile(d.opts.Kernel, in, r.scope, d.log.Named("ipvs"))
	if err != nil {
		d.state.lastApplied = nil
		return fmt.Errorf("reading the kernel: %w", err)
	}
	r.planned, r.result = planned, result
	r.report.Plan, r.report.Applied = planned.Plan, result.Applied
	return nil
}

// record notes what the sync did: the metrics, the conflicts, when the
// drains under way call for the next sync, and what lvs-sync owns from
// now on.
func (d *Daemon) record(r *round) {
	d.opts.Metrics.SawSync(r.result, r.scope.Full(), len(r.result.Foreign))
	d.noteConflicts(r.planned.Conflicts, r.scope)
	if len(d.state.drainer.Draining()) > 0 {
		// Poll the draining reals' connections, up to the first drain
		// deadline.
		poll := r.now.Add(drainPoll)
		if next := r.planned.Next; !next.IsZero() && next.Before(poll) {
			poll = next
		}
		if r.wake.IsZero() || poll.Before(r.wake) {
			r.wake = poll
		}
	}
	d.release(r)
}

// release records what lvs-sync owns from now on: what the plan claimed
// (desired without a conflict, and leaving ones still draining), less
// what it released (deleted, or gone). A full sync also retries a failed
// write and repairs the VIPs, a scoped one changes them only with what it
// owns.
func (d *Daemon) release(r *round) {
	own := d.opts.Ownership
	var candidates []lvs.ServiceKey // the owned services of the scope
	if r.scope.Keys == nil {
		candidates = own.Keys()
	} else {
		for k := range r.scope.Keys {
			if own.Owns(k) {
				candidates = append(candidates, k)
			}
		}
	}
	released := r.planned.Released(candidates, r.scope, r.result)
	if r.scope.Keys != nil && !r.claimed && len(released) == 0 {
		return
	}
	if !r.claimed {
		r.previously = own.Keys()
	}
	d.saved(own.Change(nil, released))
	r.vips = true
}

// announce puts on the VIP link the VIPs of what lvs-sync owns now, when
// that may have changed, and takes off those of what it no longer owns.
func (d *Daemon) announce(r *round) error {
	if !r.vips {
		return nil
	}
	return d.syncVIPs(d.opts.Ownership.Keys(), r.previously)
}

// logSynced logs how the sync went: at debug every time, at info when it
// changed the kernel.
func (d *Daemon) logSynced(r *round) {
	plan, result := r.planned.Plan, r.result
	scoped := "all"
	if !r.scope.Full() {
		scoped = "changed"
	}
	took := d.clock.Since(r.start)
	d.log.Debug("synced", "reason", r.t, "changes", len(plan), "applied", result.Applied,
		"failed", len(result.Failed), "failed_reals", len(result.FailedReals), "scope", scoped, "took", took)
	if len(plan) > 0 {
		d.log.Info("applied changes", "reason", r.t, "changes", len(plan), "applied", result.Applied,
			"failed_services", len(result.Failed), "failed_reals", len(result.FailedReals), "took", took.Round(time.Microsecond))
	}
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
	began, _ := update(d.state.logged.conflicts, conflicts, func(k lvs.ServiceKey) lvs.ServiceKey { return k }, scope.In)
	for _, k := range began {
		name := ""
		if vs := d.cfg.VirtualServiceAt(k); vs != nil {
			name = vs.Name
		}
		d.log.Warn("the kernel already has this virtual service and lvs-sync did not make it: left untouched; set adopt = true to take it over",
			"virtual_service", name, "service", k)
	}
	d.opts.Metrics.SawConflicts(len(d.state.logged.conflicts))
}

// saved logs a failure to save the state file when it changes, not at
// every sync that tries again.
func (d *Daemon) saved(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch began, ended := updateErr(d.state.logged.saveErr, msg); {
	case began:
		d.log.Warn("cannot save which services lvs-sync owns; trying again at every sync", "error", err)
	case ended:
		d.log.Info("the state file is saved again")
	}
}

// logHolds warns once about each hold of the mass removal guard.
func (d *Daemon) logHolds(holds []render.Hold) {
	began, _ := update(d.state.logged.holds, holds, func(h render.Hold) render.Hold { return h }, nil)
	for _, h := range began {
		d.log.Named("render").Warn("instances vanished from the catalog at once: holding their reals as they were",
			"virtual_service", h.VirtualService, "vanished", h.Vanished, "of", h.Of, "until", h.Until.Format(time.RFC3339))
	}
}

// logNotes warns once about each piece of catalog data render left out,
// and each caveat about an instance it kept, while the condition lasts:
// a note of a virtual service rendered anew is logged when its previous
// render did not have it. Only those services can have notes that began
// or ended: the others' are the previous result's, held as they were. The
// notes held are render's slices, shared: not a set of ten thousand notes
// (1,000 gate services × 10 instances on another port than the virtual
// one), nor their texts formatted at each sync.
func (d *Daemon) logNotes(res render.Result) {
	held := d.state.logged.notes
	var began []render.Note
	for _, name := range res.Rendered {
		now, before := res.NotesOf(name), held[name]
		var was map[render.Note]bool
		if len(before) > 0 && len(now) > 0 {
			was = make(map[render.Note]bool, len(before))
			for _, n := range before {
				was[n] = true
			}
		}
		for _, n := range now {
			if !was[n] {
				began = append(began, n)
			}
		}
		if len(now) == 0 {
			delete(held, name)
		} else {
			held[name] = now
		}
	}
	if d.state.logged.notesOf != d.cfg { // the first render of a config
		for name := range held { // forget virtual services a reload removed
			if d.cfg.VirtualService(name) == nil {
				delete(held, name)
			}
		}
		d.state.logged.notesOf = d.cfg
	}
	for _, n := range began {
		msg, kv := n.Log()
		d.log.Named("render").Warn(msg, kv...)
	}
}
