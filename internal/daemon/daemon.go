// Package daemon is the loop of `lvs-sync run`: watch the catalog, render
// the desired state, diff it against the kernel and apply the difference,
// on every change (coalesced), on a timer to repair drift, and again with
// backoff after a failure. It also answers what the operator asks of a
// running lvs-sync: its status, why a real is where it is, its health.
package daemon

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// VIPSyncer puts the VIPs on the director; *hostnet.VIPLink is one.
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
	// Metrics, when set, is kept up to date.
	Metrics *Metrics
	Logger  hclog.Logger
	// MinWait and MaxWait coalesce bursts of catalog changes: a sync waits
	// until no change came for MinWait, but no longer than MaxWait after
	// the first (defaults 50ms and 500ms).
	MinWait, MaxWait time.Duration
	// RetryBase and RetryMax bound the backoff after a failed sync
	// (defaults 250ms and 30s).
	RetryBase, RetryMax time.Duration
	// Watch tunes the catalog watcher; its Datacenter, Logger and Observer
	// are set by the daemon.
	Watch catalog.Options
	// OnSync, if set, is called after every sync attempt.
	OnSync func(Report)
}

// Report describes one sync.
type Report struct {
	At      time.Time
	Reason  string // "catalog", "reconcile", "retry" or "timer"
	Plan    ipvs.Plan
	Applied int
	Err     error
	// Desired is what render produced.
	Desired render.Result
}

// Daemon runs the sync loop.
type Daemon struct {
	opts   Options
	log    hclog.Logger
	reload chan *config.Config

	// Owned by the loop's goroutine.
	cfg *config.Config
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

	// Shared with Status, Explain and Health, under mu.
	mu        sync.Mutex
	shared    sharedState
	consulMu  sync.Mutex
	lastQuery map[string]queryState
}

// sharedState is what the loop publishes after each sync.
type sharedState struct {
	cfg       *config.Config
	synced    time.Time // first successful sync; zero before
	lastSync  time.Time
	lastErr   error
	result    render.Result
	draining  map[lvs.ServiceKey]map[lvs.RealKey]time.Time
	changedAt map[string]time.Time // decisionKey → when it last changed
	signature map[string]string
}

type queryState struct {
	lastOK, lastErrAt time.Time
	err               error
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
	d := &Daemon{
		opts:      opts,
		log:       opts.Logger,
		reload:    make(chan *config.Config, 1),
		logged:    map[string]bool{},
		lastQuery: map[string]queryState{},
	}
	d.opts.Watch.Logger = opts.Logger.Named("catalog")
	d.opts.Watch.Observer = d
	d.setConfig(opts.Config)
	d.shared.changedAt = map[string]time.Time{}
	d.shared.signature = map[string]string{}
	return d, nil
}

// setConfig makes cfg the one the loop works with.
func (d *Daemon) setConfig(cfg *config.Config) {
	d.cfg = cfg
	d.opts.Watch.Datacenter = cfg.Consul.Datacenter
	timeouts := map[lvs.ServiceKey]time.Duration{}
	for _, vs := range cfg.VirtualServices {
		timeouts[vs.Key()] = vs.DrainTimeout
	}
	if d.drainer == nil {
		d.drainer = &ipvs.Drainer{}
	}
	d.drainer.Timeout = func(k lvs.ServiceKey) time.Duration { return timeouts[k] }
	d.mu.Lock()
	d.shared.cfg = cfg
	d.mu.Unlock()
}

// Reload hands the loop a new, already validated config. Services added,
// changed and removed are applied as a diff at the next sync, once the new
// set of Consul services has answered.
func (d *Daemon) Reload(cfg *config.Config) {
	select {
	case <-d.reload: // a newer one replaces a pending one
	default:
	}
	d.reload <- cfg
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

// startWatch serves the config's pages and starts watching its services,
// until the returned cancel is called.
func (d *Daemon) startWatch(ctx context.Context) (<-chan catalog.Snapshot, context.CancelFunc) {
	if d.opts.Pages != nil {
		if err := d.opts.Pages.Update(pages(d.cfg)); err != nil {
			d.log.Error("cannot serve a maintenance page", "error", err)
		}
	}
	services := d.cfg.Services()
	d.log.Info("watching consul", "services", strings.Join(services, ","), "virtual_services", len(d.cfg.VirtualServices))
	ctx, cancel := context.WithCancel(ctx)
	return catalog.NewWatcher(d.opts.Health, services, d.opts.Watch).Run(ctx), cancel
}

// Run syncs until ctx ends. It never applies anything before the first
// complete snapshot, and on return it leaves the kernel as it is.
func (d *Daemon) Run(ctx context.Context) error {
	snaps, stopWatch := d.startWatch(ctx)
	defer func() { stopWatch() }()

	var (
		snap                     *catalog.Snapshot
		pendingSince             time.Time // first catalog answer not yet applied
		quiet, deadline          timer
		reconcile, retry, wakeup timer
		failures                 int
	)
	defer quiet.stop()
	defer deadline.stop()
	defer reconcile.stop()
	defer retry.stop()
	defer wakeup.stop()

	syncNow := func(reason string) {
		quiet.stop()
		deadline.stop()
		retry.stop()
		wakeup.stop()
		applied, err := d.sync(*snap, reason)
		if err != nil {
			failures++
			delay := min(d.opts.RetryBase<<min(failures-1, 16), d.opts.RetryMax)
			d.log.Error("sync failed; keeping what the kernel has and retrying", "error", err, "retry_in", delay, "failures", failures)
			retry.start(delay)
		} else {
			failures = 0
			if reason == "catalog" && applied && !pendingSince.IsZero() && d.opts.Metrics != nil {
				d.opts.Metrics.applyLatency.Observe(time.Since(pendingSince).Seconds())
			}
			pendingSince = time.Time{}
		}
		interval := d.cfg.Director.ReconcileInterval
		reconcile.start(interval + rand.N(interval/10+1))
		if !d.wake.IsZero() {
			wakeup.start(max(time.Until(d.wake), time.Millisecond))
		}
	}

	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping; the kernel table is left as it is")
			return nil
		case cfg := <-d.reload:
			d.log.Info("reloading the config", "virtual_services", len(cfg.VirtualServices))
			stopWatch()
			d.setConfig(cfg)
			d.lastApplied = nil // the next sync compares everything
			snap = nil          // and waits for the new services to answer
			quiet.stop()
			deadline.stop()
			snaps, stopWatch = d.startWatch(ctx)
		case s, ok := <-snaps:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				snaps = nil // closed: never select it again (a reload starts a new one)
				continue
			}
			if snap == nil {
				d.log.Info("first complete catalog snapshot", "services", len(s.Services))
			}
			snap = &s
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			}
			d.tracker.Observe(s, time.Now())
			quiet.start(d.opts.MinWait)
			if !deadline.running() {
				deadline.start(d.opts.MaxWait)
			}
		case <-quiet.c():
			syncNow("catalog")
		case <-deadline.c():
			syncNow("catalog")
		case <-reconcile.c():
			if snap != nil {
				syncNow("reconcile")
			}
		case <-retry.c():
			if snap != nil {
				syncNow("retry")
			}
		case <-wakeup.c():
			if snap != nil {
				syncNow("timer")
			}
		}
	}
}

// sync renders the snapshot and makes the kernel match it. applied tells
// whether it changed the kernel.
func (d *Daemon) sync(snap catalog.Snapshot, reason string) (applied bool, err error) {
	start := time.Now()
	now := start
	res := render.RenderAt(d.cfg, snap, d.tracker.At(now))
	d.logNotes(res.Notes)
	report := Report{At: start, Reason: reason, Desired: res}
	defer func() {
		report.Err = err
		d.publish(report)
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
	var scope func(lvs.ServiceKey) bool
	if (reason == "catalog" || reason == "timer") && d.lastApplied != nil {
		changed := ipvs.Changed(d.lastApplied, desired)
		for k := range d.drainer.Draining() {
			changed[k] = true
		}
		if len(changed) == 0 {
			d.wake = res.NextChange
			d.log.Debug("synced", "reason", reason, "changes", 0, "scope", "none", "took", time.Since(start))
			return false, nil
		}
		scope = func(k lvs.ServiceKey) bool { return changed[k] }
	}
	own := d.opts.Ownership
	owned := func(k lvs.ServiceKey) bool { return own.Owns(k) || desired[k] != nil }
	var drainNext time.Time
	var adjusted ipvs.State
	adjust := func(desired, current ipvs.State) ipvs.State {
		adjusted, drainNext = d.drainer.Adjust(desired, current, now)
		return adjusted
	}
	plan, result, err := ipvs.Reconcile(d.opts.Kernel, desired, owned, scope, adjust, d.log.Named("ipvs"))
	if err != nil {
		d.lastApplied = nil
		return false, fmt.Errorf("reading the kernel: %w", err)
	}
	report.Plan, report.Applied = plan, result.Applied
	d.opts.Metrics.sawSync(result, scope == nil, len(result.Foreign))
	d.wake = res.NextChange
	if len(d.drainer.Draining()) > 0 {
		// Poll the draining reals' connections each second, up to the
		// first drain deadline.
		poll := now.Add(time.Second)
		if !drainNext.IsZero() && drainNext.Before(poll) {
			poll = drainNext
		}
		if d.wake.IsZero() || poll.Before(d.wake) {
			d.wake = poll
		}
	}

	// Owned from now on: what is desired, and what could not be deleted.
	keep := map[lvs.ServiceKey]bool{}
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
		return result.Applied > 0, err
	}
	return result.Applied > 0, vipErr
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
