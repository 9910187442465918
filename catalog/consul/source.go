// Package consul is the Consul implementation of catalog.Source: blocking
// queries against a Consul agent's HTTP API, converted into the neutral
// model of package catalog. It may import catalog, internal/backoff and
// consul/api; nothing above it.
package consul

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// Health is the part of Consul's health endpoint the source uses;
// (*api.Client).Health() satisfies it.
type Health interface {
	Service(service, tag string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

var _ Health = (*api.Health)(nil)

// Options tune the source. The zero value gives the defaults.
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

// Source watches Consul services, one blocking query per service.
type Source struct {
	health Health
	opts   Options
	log    hclog.Logger

	// sleep waits d or until ctx ends; jitter picks a random delay in
	// [0, d). Tests replace both.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration
	now    func() time.Time
}

var _ catalog.Source = (*Source)(nil)

// NewSource reads the catalog through client's agent.
func NewSource(client *api.Client, opts Options) *Source {
	return newSource(client.Health(), opts)
}

func newSource(h Health, opts Options) *Source {
	opts.setDefaults()
	return &Source{
		health: h,
		opts:   opts,
		log:    opts.Logger,
		sleep:  sleepCtx,
		jitter: randJitter,
		now:    time.Now,
	}
}

// Fetch asks once for every service, without blocking, and returns the
// snapshot: what `lvs-sync render` shows.
func (s *Source) Fetch(ctx context.Context, services []string) (catalog.Snapshot, error) {
	snap := catalog.Snapshot{Services: make(map[string]*catalog.Service, len(services))}
	for _, name := range unique(services) {
		q := (&api.QueryOptions{Datacenter: s.opts.Datacenter}).WithContext(ctx)
		entries, meta, err := s.health.Service(name, "", false, q)
		if err != nil {
			return catalog.Snapshot{}, fmt.Errorf("querying health of service %q: %w", name, err)
		}
		svc := newService(name, entries, meta)
		if svc.FilteredByACLs {
			s.log.Warn("consul filtered the answer by acls: the token cannot read every instance", "service", name)
		}
		snap.Services[name] = svc
	}
	return snap, nil
}

// unique returns the names sorted, each once.
func unique(names []string) []string {
	names = slices.Clone(names)
	slices.Sort(names)
	return slices.Compact(names)
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
