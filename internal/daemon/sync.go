package daemon

import (
	"fmt"
	"maps"
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
	// logged are the notes already logged, so that a bad instance warns
	// once, not every sync.
	logged map[string]bool
	// lastApplied is the desired state of the last sync that fully
	// succeeded; nil makes the next sync read everything.
	lastApplied ipvs.State
	// tracker keeps the instances' history, for hold and slow start.
	tracker render.Tracker
	// drainer keeps leaving reals at weight 0 while connections finish.
	drainer ipvs.Drainer
}

func (s *syncState) init() { s.logged = map[string]bool{} }

func (s *syncState) setConfig(cfg *config.Config) {
	s.drainer.Timeout = drainTimeouts(cfg)
	s.lastApplied = nil // the next sync compares everything
}

// NewDrainer is a drainer with no drain under way, as run has when it
// starts, with each virtual service's drain_timeout: what plan shows.
func NewDrainer(cfg *config.Config) *ipvs.Drainer {
	return &ipvs.Drainer{Timeout: drainTimeouts(cfg)}
}

func drainTimeouts(cfg *config.Config) func(lvs.ServiceKey) time.Duration {
	timeouts := make(map[lvs.ServiceKey]time.Duration, len(cfg.VirtualServices))
	for _, vs := range cfg.VirtualServices {
		timeouts[vs.Key()] = vs.DrainTimeout
	}
	return func(k lvs.ServiceKey) time.Duration { return timeouts[k] }
}

func (s *syncState) observe(snap catalog.Snapshot, now time.Time) { s.tracker.Observe(snap, now) }

// sync renders the snapshot and makes the kernel match it. wake is when
// time alone next calls for a sync (zero: never); applied tells whether
// the kernel changed.
func (d *Daemon) sync(snap catalog.Snapshot, t Trigger, now time.Time) (wake time.Time, applied bool, err error) {
	start := d.clock.Now()
	st := &d.state
	res := render.RenderAt(d.cfg, snap, st.tracker.At(now))
	d.logNotes(res.Notes)
	report := Report{At: now, Trigger: t, Desired: res}
	defer func() {
		report.Err = err
		d.publish(report, st.drainer.Draining())
		if d.opts.OnSync != nil {
			d.opts.OnSync(report)
		}
	}()
	desired := res.State
	wake = res.NextChange

	// A catalog or timer sync looks only at the services whose desired
	// state changed since the last sync that fully succeeded, and those
	// still draining; a reconcile or a retry reads everything, to repair
	// drift.
	var scope func(lvs.ServiceKey) bool
	if !t.Full() && st.lastApplied != nil {
		changed := ipvs.Changed(st.lastApplied, desired)
		for k := range st.drainer.Draining() {
			changed[k] = true
		}
		if len(changed) == 0 {
			d.log.Debug("synced", "reason", t, "changes", 0, "scope", "none", "took", d.clock.Since(start))
			return wake, false, nil
		}
		scope = func(k lvs.ServiceKey) bool { return changed[k] }
	}
	own := d.opts.Ownership
	plan, result, drainNext, err := ipvs.Reconcile(d.opts.Kernel, desired, own.Owns, scope, &st.drainer, now, d.log.Named("ipvs"))
	if err != nil {
		st.lastApplied = nil
		return wake, false, fmt.Errorf("reading the kernel: %w", err)
	}
	report.Plan, report.Applied = plan, result.Applied
	d.opts.Metrics.sawSync(result, scope == nil, len(result.Foreign))
	if len(st.drainer.Draining()) > 0 {
		// Poll the draining reals' connections, up to the first drain
		// deadline.
		poll := now.Add(drainPoll)
		if !drainNext.IsZero() && drainNext.Before(poll) {
			poll = drainNext
		}
		if wake.IsZero() || poll.Before(wake) {
			wake = poll
		}
	}

	// Owned from now on: what is desired, and what could not be deleted.
	keep := make(map[lvs.ServiceKey]bool, len(desired))
	for k := range desired {
		keep[k] = true
	}
	for _, op := range plan {
		if op.Kind == ipvs.DeleteService && result.Failed[op.Service] != nil {
			keep[op.Service] = true
		}
	}
	previously := own.Keys()
	if err := own.Set(keep); err != nil {
		d.log.Warn("cannot save which services lvs-sync owns", "error", err)
	}
	vipErr := d.syncVIPs(desired, previously)
	if result.Err() == nil && vipErr == nil {
		st.lastApplied = desired
	} else {
		st.lastApplied = nil
	}

	scoped := "all"
	if scope != nil {
		scoped = "changed"
	}
	took := d.clock.Since(start)
	d.log.Debug("synced", "reason", t, "changes", len(plan), "applied", result.Applied,
		"failed", len(result.Failed), "scope", scoped, "took", took)
	if len(plan) > 0 {
		d.log.Info("applied changes", "reason", t, "changes", len(plan), "applied", result.Applied,
			"failed_services", len(result.Failed), "took", took.Round(time.Microsecond))
	}
	if err := result.Err(); err != nil {
		return wake, result.Applied > 0, err
	}
	return wake, result.Applied > 0, vipErr
}

// syncVIPs puts the desired VIPs on the VIP link and removes those of
// services lvs-sync owned before and no longer serves.
func (d *Daemon) syncVIPs(desired ipvs.State, previously []lvs.ServiceKey) error {
	if d.opts.VIPs == nil {
		return nil
	}
	wasOurs := vipsOfKeys(previously)
	_, _, err := d.opts.VIPs.Sync(vipsOfKeys(slices.Collect(maps.Keys(desired))), func(a netip.Addr) bool { return slices.Contains(wasOurs, a) })
	if err != nil {
		return fmt.Errorf("syncing vips: %w", err)
	}
	return nil
}

// vipsOfKeys lists the VIPs of services, sorted, each once.
func vipsOfKeys(keys []lvs.ServiceKey) []netip.Addr {
	var vips []netip.Addr
	for _, k := range keys {
		if k.FWMark == 0 && !slices.Contains(vips, k.Addr) {
			vips = append(vips, k.Addr)
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
		ours := vipsOfKeys(keys)
		if _, _, err := d.opts.VIPs.Sync(nil, func(a netip.Addr) bool { return slices.Contains(ours, a) }); err != nil {
			return fmt.Errorf("removing vips: %w", err)
		}
	}
	if err := res.Err(); err != nil {
		return err
	}
	if err := own.Set(map[lvs.ServiceKey]bool{}); err != nil {
		d.log.Warn("cannot save which services lvs-sync owns", "error", err)
	}
	d.log.Info("cleaned up on exit", "services", len(keys))
	return nil
}

// logNotes warns once about each piece of catalog data render left out.
func (d *Daemon) logNotes(notes []render.Note) {
	seen := make(map[string]bool, len(notes))
	for _, n := range notes {
		key := n.String()
		seen[key] = true
		if d.state.logged[key] {
			continue
		}
		d.log.Named("render").Warn("skipped catalog data", "virtual_service", n.VirtualService, "node", n.Node,
			"instance", n.InstanceID, "reason", n.Message)
	}
	d.state.logged = seen
}
