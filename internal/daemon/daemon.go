// Package daemon is the loop of `lvs-sync run`: watch the catalog, render
// the desired state, plan the changes against the kernel and apply them,
// on every change (coalesced), on a timer to repair drift, and again with
// backoff after a failure. It also answers what the operator asks of a
// running lvs-sync, through the status room.
//
// It may import the stages it drives (config, catalog, render, ipvs,
// fallback), the announce rule, the status room and the metrics it
// feeds (never the bgp package: its Speaker is the narrow interface it
// owns); nothing imports it
// but cmd and the API.
// This file is the loop only: sync.go is one sync, in phases, state.go
// what one leaves for the next (warnonce.go what it logged), trigger.go
// when one is due, reloader.go how a reload is read and prepared,
// reload.go how the new config takes over, guard.go what an answer
// filtered by ACLs leaves, shared.go what the loop publishes for the API,
// bgp.go what a director.bgp director tells its speaker (the rule itself
// is internal/announce's).
package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/internal/backoff"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/internal/ownership"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// Source is the catalog the daemon watches. Watch emits a first snapshot
// once every service has answered, then one per change, and closes its
// channel when ctx ends.
type Source interface {
	Watch(ctx context.Context, services []string, obs catalog.Observer) <-chan catalog.Snapshot
}

// VIPSyncer puts the VIPs on the director; *hostnet.VIPLink is one.
type VIPSyncer interface {
	Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error)
}

// PageServer serves the local maintenance pages; *fallback.Server is one.
type PageServer interface {
	Update([]fallback.Page) error
	// Serving reports whether the page at addr is being served.
	Serving(addr netip.AddrPort) bool
}

// Options wire a daemon. Config, Source and Kernel are required.
type Options struct {
	Config *config.Config
	Source Source
	Kernel ipvs.Kernel
	// VIPs, when set, receives the VIPs of the desired services.
	VIPs VIPSyncer
	// Pages, when set, serves the local maintenance pages.
	Pages PageServer
	// Speaker, when set (director.bgp), announces the VIPs the announce
	// rule lets it to the routers.
	Speaker Speaker
	// Ownership records the services lvs-sync made (default: in memory).
	Ownership *ownership.Record
	// Metrics, when set, is kept up to date.
	Metrics *metrics.Metrics
	Logger  hclog.Logger
	// Clock is the loop's time (default: the real one).
	Clock clockwork.Clock
	// MinWait and MaxWait coalesce bursts of catalog changes: a sync waits
	// until no change came for MinWait, but no longer than MaxWait after
	// the first (defaults 50ms and 500ms).
	MinWait, MaxWait time.Duration
	// RetryBase and RetryMax bound the backoff after a failed sync
	// (defaults 250ms and 30s).
	RetryBase, RetryMax time.Duration
	// ReloadTimeout is how long a reload waits for the new config's
	// services to answer before it gives up and keeps the running config
	// (default 30s).
	ReloadTimeout time.Duration
	// OnSync, if set, is called after every sync attempt.
	OnSync func(Report)
}

// Report describes one sync.
type Report struct {
	At      time.Time
	Trigger Trigger
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
	clock  clockwork.Clock
	reload chan reloadRequest

	// Owned by the loop's goroutine.
	cfg   *config.Config
	state syncState

	// What the loop publishes for Status, Explain and Health.
	shared shared

	// src is the source the running config is watched through, for
	// Token; the loop replaces it when a reload takes over.
	srcMu sync.Mutex
	src   Source
}

// Token is the ACL token of the source the running config is watched
// through, if that source has one (consul.Source does; "" is the
// client's own): the one token holder that director.ha's calls ask too,
// so that the pair's token changes with the config, when a reload takes
// over, or not at all.
func (d *Daemon) Token() string {
	d.srcMu.Lock()
	src := d.src
	d.srcMu.Unlock()
	if t, ok := src.(interface{ Token() string }); ok {
		return t.Token()
	}
	return ""
}

func (d *Daemon) setSource(src Source) {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	d.src = src
}

// New checks the options and fills in defaults.
func New(opts Options) (*Daemon, error) {
	if opts.Config == nil || opts.Source == nil || opts.Kernel == nil {
		return nil, fmt.Errorf("daemon needs a config, a catalog source and a kernel")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Ownership == nil {
		opts.Ownership, _ = ownership.Load("")
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.MinWait == 0 {
		opts.MinWait = 50 * time.Millisecond
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 500 * time.Millisecond
	}
	if opts.ReloadTimeout == 0 {
		opts.ReloadTimeout = 30 * time.Second
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = 250 * time.Millisecond
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 30 * time.Second
	}
	d := &Daemon{
		src:    opts.Source,
		opts:   opts,
		log:    opts.Logger,
		clock:  opts.Clock,
		reload: make(chan reloadRequest, 1),
	}
	d.state.init()
	d.shared.init()
	d.setConfig(opts.Config)
	return d, nil
}

// setConfig makes cfg the one the loop works with.
func (d *Daemon) setConfig(cfg *config.Config) {
	d.cfg = cfg
	d.state.setConfig(cfg)
	d.shared.setConfig(cfg)
}

// loop is the sync loop's state between two events: the watches, the
// latest snapshot, what is due when, and how many syncs failed in a row.
// Its methods take the time as an argument, so that tests drive it event
// by event.
type loop struct {
	d *Daemon
	// cur is the watch of the running config; next, during a reload, the
	// new config's, until its first complete snapshot.
	cur, next *watch
	snap      *catalog.Snapshot
	// changed are the Consul services that changed since the last sync
	// (nil: any may have).
	changed  map[string]bool
	sched    schedule
	pending  time.Time // first catalog answer not yet applied
	failures int
}

// snapshot takes a new catalog snapshot: a catalog sync is due once no
// other came for MinWait, at most MaxWait after the first not applied.
func (l *loop) snapshot(s catalog.Snapshot, now time.Time) {
	if l.snap == nil {
		l.d.log.Info("first complete catalog snapshot", "services", len(s.Services))
	}
	first := l.snap == nil
	s = l.d.guardSnapshot(s)
	l.snap = &s
	switch {
	case first || s.Changed == nil:
		l.changed = nil
	case l.changed != nil:
		for name := range s.Changed {
			l.changed[name] = true
		}
	}
	if l.pending.IsZero() {
		l.pending = now
	}
	l.d.state.observe(s, now)
	due := now.Add(l.d.opts.MinWait)
	if latest := l.pending.Add(l.d.opts.MaxWait); latest.Before(due) {
		due = latest
	}
	l.sched.at(TriggerCatalog, due)
}

// fire runs what is due at now: a reload that timed out, a sync.
func (l *loop) fire(now time.Time) {
	l.giveUp(now)
	t, ok := l.sched.fire(now)
	if !ok || l.snap == nil {
		return // nothing to sync before the first snapshot
	}
	wake, applied, err := l.d.sync(*l.snap, l.changed, t, now)
	l.synced(t, now, wake, applied, err)
}

// nextEvent is when the loop's timer must fire: the earliest due trigger
// or reload deadline.
func (l *loop) nextEvent() (time.Time, bool) {
	_, at, ok := l.sched.next()
	if l.next != nil && (!ok || l.next.by.Before(at)) {
		return l.next.by, true
	}
	return at, ok
}

// synced schedules what follows a sync: a retry after a failure, the next
// periodic reconcile (after a full sync, or when none is due within the
// running config's interval), and the next time time alone calls for one.
func (l *loop) synced(t Trigger, now, wake time.Time, applied bool, err error) {
	l.sched.cancel(TriggerCatalog)
	l.sched.cancel(TriggerRetry)
	l.sched.cancel(TriggerTimer)
	if err != nil {
		l.failures++
		delay := backoff.Delay(l.failures, l.d.opts.RetryBase, l.d.opts.RetryMax, nil)
		l.d.log.Error("sync failed; keeping what the kernel has and retrying", "error", err, "retry_in", delay, "failures", l.failures)
		l.sched.at(TriggerRetry, now.Add(delay))
	} else {
		if t == TriggerCatalog && applied && !l.pending.IsZero() {
			l.d.opts.Metrics.ObserveApplyLatency(l.d.clock.Since(l.pending))
		}
		l.failures = 0
		l.pending = time.Time{}
		l.changed = map[string]bool{} // rendered: from now on, what changes
	}
	// The periodic reconcile counts from the last full sync: a catalog or
	// timer sync looks only at what changed and must not push it away, or
	// drift in a quiet service is never repaired while another is busy.
	interval := l.d.cfg.Director.ReconcileInterval
	latest := now.Add(interval + interval/10)
	if due := l.sched.due[TriggerReconcile]; t.Full() || due.IsZero() || due.After(latest) {
		l.sched.at(TriggerReconcile, now.Add(interval+rand.N(interval/10+1)))
	}
	if !wake.IsZero() {
		l.sched.at(TriggerTimer, wake)
	}
}

// Run syncs until ctx ends. It never applies anything before the first
// complete snapshot, and on return it leaves the kernel as it is. With a
// speaker, it announces nothing before the first sync is applied, and
// before it returns it withdraws every VIP and waits the bgp block's
// shutdown_delay.
func (d *Daemon) Run(ctx context.Context) error {
	d.servePages(d.cfg)
	defer d.withdraw()
	if d.opts.Speaker != nil {
		d.log.Named("announce").Info("announcing no vip until the first sync is applied", "vips", len(d.cfg.VIPs()))
		d.advertise(nil, false, d.clock.Now()) // every VIP "not synced yet", shown from the start
	}
	l := &loop{d: d, cur: d.startWatch(ctx, d.cfg, d.opts.Source)}
	defer func() {
		l.cur.stop()
		if l.next != nil {
			l.next.stop()
		}
	}()
	timer := d.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// One timer, to the earliest event.
		timer.Stop()
		var fire <-chan time.Time
		if at, ok := l.nextEvent(); ok {
			timer.Reset(max(at.Sub(d.clock.Now()), 0))
			fire = timer.Chan()
		}
		var nextSnaps <-chan catalog.Snapshot
		if l.next != nil {
			nextSnaps = l.next.snaps
		}
		select {
		case <-ctx.Done():
			d.log.Info("stopping; the kernel table is left as it is")
			return nil // withdrawn (deferred)
		case r := <-d.reload:
			l.reload(ctx, r, d.clock.Now())
		case s, ok := <-nextSnaps:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				l.next.snaps = nil
				continue
			}
			l.switchTo(s, d.clock.Now())
		case s, ok := <-l.cur.snaps:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				l.cur.snaps = nil // closed: never select it again (a reload starts a new one)
				continue
			}
			l.snapshot(s, d.clock.Now())
		case <-fire:
			l.fire(d.clock.Now())
		}
	}
}
