// Package daemon is the loop of `lvs-sync run`: watch the catalog, render
// the desired state, diff it against the kernel and apply the difference,
// on every change (coalesced), on a timer to repair drift, and again with
// backoff after a failure.
package daemon

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// VIPSyncer puts the VIPs on the director; *ipvs.VIPLink is one.
type VIPSyncer interface {
	Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error)
}

// PageServer serves the local maintenance pages; *fallback.Server is one.
type PageServer interface {
	Update([]fallback.Page) error
}

// Options wire a daemon. Config, Health and Kernel are required.
type Options struct {
	Config *config.Config
	Health catalog.Health
	Kernel ipvs.Kernel
	// VIPs, when set, receives the VIPs of the desired services.
	VIPs VIPSyncer
	// Pages, when set, serves the local maintenance pages.
	Pages PageServer
	// Ownership records the services lvs-sync made (default: in memory).
	Ownership *Ownership
	Logger    hclog.Logger
	// MinWait and MaxWait coalesce bursts of catalog changes: a sync waits
	// until no change came for MinWait, but no longer than MaxWait after
	// the first (defaults 50ms and 500ms).
	MinWait, MaxWait time.Duration
	// RetryBase and RetryMax bound the backoff after a failed sync
	// (defaults 250ms and 30s).
	RetryBase, RetryMax time.Duration
	// Watch tunes the catalog watcher; its Datacenter and Logger are set
	// from the config and Logger.
	Watch catalog.Options
	// OnSync, if set, is called after every sync attempt.
	OnSync func(Report)
}

// Report describes one sync.
type Report struct {
	At      time.Time
	Reason  string // "catalog", "reconcile" or "retry"
	Plan    ipvs.Plan
	Applied int
	Err     error
	// Desired is what render produced.
	Desired render.Result
}

// Daemon runs the sync loop.
type Daemon struct {
	opts Options
	log  hclog.Logger
	// notes already logged, so a bad instance warns once, not every sync.
	logged map[string]bool
	// lastApplied is the desired state of the last sync that fully
	// succeeded; nil forces the next sync to read everything.
	lastApplied ipvs.State
	// history of the instances, for hold and slow start.
	tracker render.Tracker
	// drainer keeps leaving reals at weight 0 while connections finish.
	drainer *ipvs.Drainer
	// wake is when time alone calls for a sync (zero: never).
	wake time.Time
}

// New checks the options and fills in defaults.
func New(opts Options) (*Daemon, error) {
	if opts.Config == nil || opts.Health == nil || opts.Kernel == nil {
		return nil, fmt.Errorf("daemon needs a config, a consul health client and a kernel")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Ownership == nil {
		opts.Ownership, _ = LoadOwnership("")
	}
	if opts.MinWait == 0 {
		opts.MinWait = 50 * time.Millisecond
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 500 * time.Millisecond
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = 250 * time.Millisecond
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 30 * time.Second
	}
	opts.Watch.Datacenter = opts.Config.Consul.Datacenter
	opts.Watch.Logger = opts.Logger.Named("catalog")
	d := &Daemon{opts: opts, log: opts.Logger, logged: map[string]bool{}}
	timeouts := map[ipvs.ServiceKey]time.Duration{}
	for _, vs := range opts.Config.VirtualServices {
		timeouts[vs.Key()] = vs.DrainTimeout
	}
	d.drainer = &ipvs.Drainer{Timeout: func(k ipvs.ServiceKey) time.Duration { return timeouts[k] }}
	return d, nil
}

// pages lists the local maintenance pages the config asks for.
func pages(cfg *config.Config) []fallback.Page {
	var ps []fallback.Page
	for _, vs := range cfg.VirtualServices {
		if vs.Fallback.Local {
			ps = append(ps, fallback.Page{Service: vs.Name, Addr: vs.Address, Template: vs.MaintenancePage})
		}
	}
	return ps
}

// Run syncs until ctx ends. It never applies anything before the first
// complete snapshot, and on return it leaves the kernel as it is.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.opts.Config
	services := make([]string, 0, len(cfg.VirtualServices))
	for _, vs := range cfg.VirtualServices {
		services = append(services, vs.Service)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d.opts.Pages != nil {
		if err := d.opts.Pages.Update(pages(cfg)); err != nil {
			d.log.Error("cannot serve a maintenance page", "error", err)
		}
	}
	snaps := catalog.NewWatcher(d.opts.Health, services, d.opts.Watch).Run(ctx)
	d.log.Info("watching consul", "services", strings.Join(services, ","), "virtual_services", len(cfg.VirtualServices))

	var (
		snap                *catalog.Snapshot
		quiet, deadline     timer
		reconcile, retry    timer
		wake                timer
		failures            int
		reconcileInterval   = cfg.Director.ReconcileInterval
		reconcileWithJitter = func() time.Duration {
			return reconcileInterval + rand.N(reconcileInterval/10+1)
		}
	)
	defer quiet.stop()
	defer deadline.stop()
	defer reconcile.stop()
	defer retry.stop()
	defer wake.stop()

	sync := func(reason string) {
		quiet.stop()
		deadline.stop()
		retry.stop()
		wake.stop()
		if err := d.sync(*snap, reason); err != nil {
			failures++
			delay := min(d.opts.RetryBase<<min(failures-1, 16), d.opts.RetryMax)
			d.log.Error("sync failed; keeping what the kernel has and retrying", "error", err, "retry_in", delay, "failures", failures)
			retry.start(delay)
		} else {
			failures = 0
		}
		reconcile.start(reconcileWithJitter())
		if !d.wake.IsZero() {
			wake.start(max(time.Until(d.wake), time.Millisecond))
		}
	}

	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping; the kernel table is left as it is")
			return nil
		case s, ok := <-snaps:
			if !ok {
				return nil
			}
			if snap == nil {
				d.log.Info("first complete catalog snapshot", "services", len(s.Services))
			}
			snap = &s
			d.tracker.Observe(s, time.Now())
			quiet.start(d.opts.MinWait)
			if !deadline.running() {
				deadline.start(d.opts.MaxWait)
			}
		case <-quiet.c():
			sync("catalog")
		case <-deadline.c():
			sync("catalog")
		case <-reconcile.c():
			sync("reconcile")
		case <-retry.c():
			sync("retry")
		case <-wake.c():
			sync("timer")
		}
	}
}

// sync renders the snapshot and makes the kernel match it.
func (d *Daemon) sync(snap catalog.Snapshot, reason string) (err error) {
	start := time.Now()
	now := start
	res := render.RenderAt(d.opts.Config, snap, d.tracker.At(now))
	d.logNotes(res.Notes)
	report := Report{At: start, Reason: reason, Desired: res}
	defer func() {
		report.Err = err
		if d.opts.OnSync != nil {
			d.opts.OnSync(report)
		}
	}()

	// A real of an instance in maintenance leaves like a deregistered one:
	// it drains, then goes.
	desired := withoutMaintenance(res)

	// A sync for a catalog change or a timer looks only at the services
	// whose desired state changed since the last sync that fully succeeded,
	// and those still draining; the periodic reconcile and retries read
	// everything, to repair drift.
	var scope func(ipvs.ServiceKey) bool
	if (reason == "catalog" || reason == "timer") && d.lastApplied != nil {
		changed := ipvs.Changed(d.lastApplied, desired)
		for k := range d.drainer.Draining() {
			changed[k] = true
		}
		if len(changed) == 0 {
			d.wake = res.NextChange
			d.log.Debug("synced", "reason", reason, "changes", 0, "scope", "none", "took", time.Since(start))
			return nil
		}
		scope = func(k ipvs.ServiceKey) bool { return changed[k] }
	}
	own := d.opts.Ownership
	owned := func(k ipvs.ServiceKey) bool { return own.Owns(k) || desired[k] != nil }
	var drainNext time.Time
	adjust := func(desired, current ipvs.State) ipvs.State {
		var out ipvs.State
		out, drainNext = d.drainer.Adjust(desired, current, now)
		return out
	}
	plan, result, err := ipvs.Reconcile(d.opts.Kernel, desired, owned, scope, adjust, d.log.Named("ipvs"))
	if err != nil {
		d.lastApplied = nil
		return fmt.Errorf("reading the kernel: %w", err)
	}
	report.Plan, report.Applied = plan, result.Applied
	d.wake = res.NextChange
	if len(d.drainer.Draining()) > 0 {
		// Poll the draining reals' connections each second, up to the
		// first drain timeout.
		poll := now.Add(time.Second)
		if !drainNext.IsZero() && drainNext.Before(poll) {
			poll = drainNext
		}
		if d.wake.IsZero() || poll.Before(d.wake) {
			d.wake = poll
		}
	}

	// Owned from now on: what is desired, and what could not be deleted.
	keep := map[ipvs.ServiceKey]bool{}
	for k := range desired {
		keep[k] = true
	}
	for _, op := range report.Plan {
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
		d.lastApplied = desired
	} else {
		d.lastApplied = nil
	}

	scoped := "all"
	if scope != nil {
		scoped = "changed"
	}
	d.log.Debug("synced", "reason", reason, "changes", len(report.Plan), "applied", result.Applied,
		"failed", len(result.Failed), "scope", scoped, "took", time.Since(start))
	if len(report.Plan) > 0 {
		d.log.Info("applied changes", "reason", reason, "changes", len(report.Plan), "applied", result.Applied,
			"failed_services", len(result.Failed), "took", time.Since(start).Round(time.Microsecond))
	}
	if err := result.Err(); err != nil {
		return err
	}
	return vipErr
}

// withoutMaintenance drops the reals of instances in maintenance from the
// rendered state, so that they drain and go.
func withoutMaintenance(res render.Result) ipvs.State {
	out := make(ipvs.State, len(res.State))
	for k, svc := range res.State {
		out[k] = svc
		for rk := range svc.Reals {
			if res.Origins[k][rk].Source != render.SourceMaintenance {
				continue
			}
			if out[k] == svc {
				cp := *svc
				cp.Reals = maps.Clone(svc.Reals)
				out[k] = &cp
			}
			delete(out[k].Reals, rk)
		}
	}
	return out
}

// syncVIPs puts the desired VIPs on the VIP link and removes those of
// services lvs-sync owned before and no longer serves.
func (d *Daemon) syncVIPs(desired ipvs.State, previously []ipvs.ServiceKey) error {
	if d.opts.VIPs == nil {
		return nil
	}
	var want []netip.Addr
	for k := range desired {
		if k.FWMark == 0 && !slices.Contains(want, k.Addr) {
			want = append(want, k.Addr)
		}
	}
	slices.SortFunc(want, netip.Addr.Compare)
	wasOurs := map[netip.Addr]bool{}
	for _, k := range previously {
		wasOurs[k.Addr] = true
	}
	_, _, err := d.opts.VIPs.Sync(want, func(a netip.Addr) bool { return wasOurs[a] })
	if err != nil {
		return fmt.Errorf("syncing vips: %w", err)
	}
	return nil
}

// logNotes warns once about each piece of catalog data render left out.
func (d *Daemon) logNotes(notes []render.Note) {
	seen := make(map[string]bool, len(notes))
	for _, n := range notes {
		key := n.String()
		seen[key] = true
		if d.logged[key] {
			continue
		}
		d.log.Named("render").Warn("skipped catalog data", "virtual_service", n.VirtualService, "node", n.Node,
			"instance", n.InstanceID, "reason", n.Message)
	}
	d.logged = seen
}

// timer is a stoppable one-shot timer whose channel is nil when stopped,
// so that a select on it blocks.
type timer struct{ t *time.Timer }

func (t *timer) start(d time.Duration) {
	t.stop()
	t.t = time.NewTimer(d)
}

func (t *timer) stop() {
	if t.t != nil {
		t.t.Stop()
		t.t = nil
	}
}

func (t *timer) running() bool { return t.t != nil }

func (t *timer) c() <-chan time.Time {
	if t.t == nil {
		return nil
	}
	return t.t.C
}
