package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Health is the part of Consul's health endpoint the watcher uses;
// (*api.Client).Health() satisfies it.
type Health interface {
	Service(service, tag string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

var _ Health = (*api.Health)(nil)

// Options tune the watcher. The zero value gives the defaults.
type Options struct {
	// Datacenter to query; empty is the agent's own.
	Datacenter string
	// WaitTime is how long Consul may hold a blocking query (default 5m).
	WaitTime time.Duration
	// MinInterval is the least time between two queries of one service,
	// to which up to as much again of random jitter is added (default 100ms).
	MinInterval time.Duration
	// BackoffBase is the first retry delay after an error, doubled on every
	// further error up to BackoffMax (defaults 250ms and 30s).
	BackoffBase, BackoffMax time.Duration
	Logger                  hclog.Logger
	// Observer, if set, hears of every query's outcome.
	Observer Observer
}

// Observer hears of every blocking query: its service, the index Consul
// answered with, and the error if it failed. It must not block.
type Observer interface {
	ObserveQuery(service string, index uint64, err error)
}

func (o *Options) setDefaults() {
	if o.WaitTime == 0 {
		o.WaitTime = 5 * time.Minute
	}
	if o.MinInterval == 0 {
		o.MinInterval = 100 * time.Millisecond
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = 250 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
}

// Watcher runs one blocking query per watched service and merges the
// answers into snapshots.
type Watcher struct {
	health   Health
	services []string
	opts     Options
	log      hclog.Logger

	// sleep waits d or until ctx ends; jitter picks a random delay in
	// [0, d). Tests replace both.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration
	now    func() time.Time
}

// NewWatcher watches the named Consul services (duplicates are watched once).
func NewWatcher(h Health, services []string, opts Options) *Watcher {
	opts.setDefaults()
	names := slices.Clone(services)
	slices.Sort(names)
	return &Watcher{
		health:   h,
		services: slices.Compact(names),
		opts:     opts,
		log:      opts.Logger,
		sleep:    sleepCtx,
		jitter:   randJitter,
		now:      time.Now,
	}
}

// Run starts the queries and returns a channel of snapshots. The first
// snapshot comes once every service has answered; after that one comes for
// every change. A slow reader gets only the latest snapshot, never a stale
// one. The channel is closed when ctx ends.
func (w *Watcher) Run(ctx context.Context) <-chan Snapshot {
	out := make(chan Snapshot)
	updates := make(chan *Service)
	for _, name := range w.services {
		go w.watch(ctx, name, updates)
	}
	go func() {
		defer close(out)
		latest := make(map[string]*Service, len(w.services))
		var pending *Snapshot
		for {
			var send chan Snapshot
			var next Snapshot
			if pending != nil {
				send, next = out, *pending
			}
			select {
			case <-ctx.Done():
				return
			case svc := <-updates:
				latest[svc.Name] = svc
				if len(latest) == len(w.services) {
					pending = &Snapshot{Services: maps.Clone(latest)}
				}
			case send <- next:
				pending = nil
			}
		}
	}()
	return out
}

// Fetch asks once for every service, without blocking, and returns the
// snapshot: what `lvs-sync render` shows.
func Fetch(ctx context.Context, h Health, services []string, opts Options) (Snapshot, error) {
	opts.setDefaults()
	snap := Snapshot{Services: make(map[string]*Service, len(services))}
	for _, name := range services {
		if _, ok := snap.Services[name]; ok {
			continue
		}
		q := (&api.QueryOptions{Datacenter: opts.Datacenter}).WithContext(ctx)
		entries, meta, err := h.Service(name, "", false, q)
		if err != nil {
			return Snapshot{}, fmt.Errorf("querying health of service %q: %w", name, err)
		}
		svc := newService(name, entries, meta)
		if svc.FilteredByACLs {
			opts.Logger.Warn("consul filtered the answer by acls: the token cannot read every instance", "service", name)
		}
		snap.Services[name] = svc
	}
	return snap, nil
}

// watch is the blocking-query loop of one service, after consul-template's
// watch/view.go and Consul's documented rules.
func (w *Watcher) watch(ctx context.Context, name string, updates chan<- *Service) {
	log := w.log.With("service", name)
	var (
		index    uint64
		last     *Service
		failures int
	)
	for {
		start := w.now()
		q := (&api.QueryOptions{
			Datacenter: w.opts.Datacenter,
			WaitIndex:  index,
			WaitTime:   w.opts.WaitTime,
		}).WithContext(ctx)
		entries, meta, err := w.health.Service(name, "", false, q)
		if ctx.Err() != nil {
			return
		}
		if err == nil && meta == nil {
			err = errors.New("answer without query metadata")
		}
		if w.opts.Observer != nil {
			var idx uint64
			if meta != nil {
				idx = meta.LastIndex
			}
			w.opts.Observer.ObserveQuery(name, idx, err)
		}
		if err != nil {
			failures++
			delay := w.backoff(failures)
			log.Warn("catalog query failed", "error", err, "failures", failures, "retry_in", delay)
			if w.sleep(ctx, delay) != nil {
				return
			}
			continue
		}
		failures = 0
		log.Trace("catalog query returned", "index", meta.LastIndex, "instances", len(entries))

		unchanged := index != 0 && meta.LastIndex == index
		switch {
		case meta.LastIndex == 0:
			log.Debug("consul returned index 0, starting over")
			index = 0
		case meta.LastIndex < index:
			log.Debug("consul index went backwards, starting over", "was", index, "now", meta.LastIndex)
			index = 0
		default:
			index = meta.LastIndex
		}
		if !unchanged {
			svc := newService(name, entries, meta)
			if svc.FilteredByACLs {
				log.Warn("consul filtered the answer by acls: the token cannot read every instance, so some real servers may be missing",
					"index", svc.Index)
			}
			if last == nil || !svc.sameContent(last) {
				last = svc
				select {
				case updates <- svc:
				case <-ctx.Done():
					return
				}
			}
		}

		// Rate limit: at least MinInterval plus jitter between two queries,
		// so that a flapping index cannot turn into a busy loop.
		wait := w.opts.MinInterval + w.jitter(w.opts.MinInterval) - w.now().Sub(start)
		if wait > 0 && w.sleep(ctx, wait) != nil {
			return
		}
	}
}

// backoff is the delay after the n-th consecutive failure: BackoffBase
// doubled n-1 times, capped at BackoffMax, less up to a quarter of jitter.
func (w *Watcher) backoff(n int) time.Duration {
	d := w.opts.BackoffBase
	for i := 1; i < n && d < w.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, w.opts.BackoffMax)
	return d - w.jitter(d/4)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func randJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
