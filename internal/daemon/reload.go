package daemon

// Reloads and watches: a new config's services are watched beside the
// running config's, which stays in charge until they have all answered.

import (
	"context"
	"maps"
	"strings"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/render"
)

// reloadRequest is a new config, the source to watch its services
// through (nil: the running one), and what asked for it (SIGHUP, a file
// change), for the logs.
type reloadRequest struct {
	cfg     *config.Config
	src     Source
	trigger string
}

// Reload hands the loop a new, already validated config. The running
// config stays in charge until the new one's Consul services have all
// answered; then what it adds, changes and removes is applied as a diff.
// src, when not nil, is the source the new config is watched through (one
// with a new token): it becomes the running source when the config takes
// over, and is dropped with it when the reload is given up.
func (d *Daemon) Reload(cfg *config.Config, src Source, trigger string) {
	select {
	case <-d.reload: // a newer one replaces a pending one
	default:
	}
	d.reload <- reloadRequest{cfg: cfg, src: src, trigger: trigger}
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

// watch is one running watch of a config's Consul services.
type watch struct {
	cfg     *config.Config
	src     Source // what it watches through
	trigger string // what asked for it, for a reload
	snaps   <-chan catalog.Snapshot
	stop    context.CancelFunc
	// by is when a reload gives up on this watch's first snapshot.
	by time.Time
}

// startWatch starts watching cfg's services through src until the watch
// is stopped.
func (d *Daemon) startWatch(ctx context.Context, cfg *config.Config, src Source) *watch {
	services := cfg.Services()
	d.log.Info("watching the catalog", "services", strings.Join(services, ","), "virtual_services", len(cfg.VirtualServices))
	ctx, cancel := context.WithCancel(ctx)
	return &watch{cfg: cfg, src: src, snaps: src.Watch(ctx, services, d), stop: cancel}
}

// servePages serves the local maintenance pages cfg asks for, and notes
// those that cannot be served, whose local fallback render then leaves
// out. An error is logged when it changes, not at every sync that tries
// again.
func (d *Daemon) servePages(cfg *config.Config) {
	if d.opts.Pages == nil {
		return
	}
	err := d.opts.Pages.Update(pages(cfg))
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch began, ended := updateErr(d.state.logged.pagesErr, msg); {
	case began:
		d.log.Error("cannot serve a maintenance page; its local fallback is left out until it can", "error", err)
	case ended:
		d.log.Info("every maintenance page is served again")
	}
	var down map[string]bool
	for _, p := range pages(cfg) {
		if !d.opts.Pages.Serving(p.Addr) {
			if down == nil {
				down = map[string]bool{}
			}
			down[p.Service] = true
		}
	}
	if !maps.Equal(down, d.state.pagesDown) {
		d.state.lastResult = render.Result{} // render every service again
	}
	d.state.pagesDown = down
}

// reload starts watching a new config's services beside the running
// watch, which keeps the kernel attended until the new one has answered.
// A newer reload replaces a pending one.
func (l *loop) reload(ctx context.Context, r reloadRequest, now time.Time) {
	cfg := r.cfg
	if l.next != nil {
		l.next.stop()
		l.d.log.Info("a newer config replaces the reload in progress")
	}
	l.d.log.Info("reloading the config: waiting for its services to answer", "virtual_services", len(cfg.VirtualServices),
		"timeout", l.d.opts.ReloadTimeout)
	src := r.src
	if src == nil {
		src = l.cur.src
	}
	l.next = l.d.startWatch(ctx, cfg, src)
	l.next.by, l.next.trigger = now.Add(l.d.opts.ReloadTimeout), r.trigger
}

// switchTo makes the reload's watch, and so its source, the running one,
// on its first complete snapshot: the new config's changes are applied as
// a diff at the next sync, which compares everything. That sync renders
// the virtual services the new config defines anew (render.Update sees
// the config change) and those whose catalog service the running watch
// had changed since the last sync or answers differently from the new
// one: at 10,000 services a reload that edits one renders one, not all.
func (l *loop) switchTo(s catalog.Snapshot, now time.Time) {
	changed := l.changedSince(s)
	if changed != nil {
		// What the tracker and the guard look at again: what changed, and
		// the services no longer watched, which the tracker forgets.
		s.Changed = maps.Clone(changed)
		for name := range l.snap.Services {
			if _, ok := s.Services[name]; !ok {
				s.Changed[name] = true
			}
		}
	}
	l.cur.stop()
	l.cur, l.next = l.next, nil
	l.d.setConfig(l.cur.cfg)
	l.d.setSource(l.cur.src)
	l.d.shared.forgetQueries()
	l.d.servePages(l.cur.cfg)
	l.d.opts.Metrics.ConfigReload(true)
	l.d.log.Info("config reloaded", "trigger", l.cur.trigger, "virtual_services", len(l.cur.cfg.VirtualServices))
	l.snap, l.pending, l.changed = nil, time.Time{}, nil
	l.snapshot(s, now)
	l.changed = changed
}

// changedSince names the catalog services whose answer in s, the new
// watch's first snapshot, may differ from what the last render saw: those
// changed since the last sync, those s answers differently from the
// running watch (SameContent) and those it did not watch. Nil, every one,
// when the last sync's own set was.
func (l *loop) changedSince(s catalog.Snapshot) map[string]bool {
	if l.snap == nil || l.changed == nil {
		return nil
	}
	changed := maps.Clone(l.changed)
	for name, svc := range s.Services {
		if old := l.snap.Services[name]; old == nil || !svc.SameContent(old) {
			changed[name] = true
		}
	}
	return changed
}

// giveUp ends a reload whose services did not answer in time: the running
// config stays, and the reload is reported failed.
func (l *loop) giveUp(now time.Time) {
	if l.next == nil || now.Before(l.next.by) {
		return
	}
	l.next.stop()
	l.d.opts.Metrics.ConfigReload(false)
	l.d.log.Error("config reload failed: its services did not all answer in time; the running config stays",
		"trigger", l.next.trigger, "timeout", l.d.opts.ReloadTimeout)
	l.next = nil
}
