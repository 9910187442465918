package consul

import (
	"context"
	"errors"
	"maps"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/backoff"
)

// update is one service's new answer. material is false when only check
// outputs changed: the answer is kept, so the next snapshot carries the
// latest outputs, but it does not make a snapshot by itself.
type update struct {
	svc      *catalog.Service
	material bool
}

// Watch runs one blocking query per service and merges the answers into
// snapshots; see catalog.Source.
func (s *Source) Watch(ctx context.Context, services []string, obs catalog.Observer) <-chan catalog.Snapshot {
	names := unique(services)
	out := make(chan catalog.Snapshot)
	updates := make(chan update)
	for _, name := range names {
		go s.watch(ctx, name, obs, updates)
	}
	go merge(ctx, len(names), updates, out)
	return out
}

// merge keeps the latest answer of every service and offers the latest
// complete snapshot on out, with the services changed since the last one
// it delivered.
func merge(ctx context.Context, n int, updates <-chan update, out chan<- catalog.Snapshot) {
	defer close(out)
	latest := make(map[string]*catalog.Service, n)
	var (
		pending bool
		first   = true
		changed = map[string]bool{}
	)
	for {
		var send chan<- catalog.Snapshot
		var next catalog.Snapshot
		if pending {
			send = out
			next = catalog.Snapshot{Services: maps.Clone(latest)}
			if !first {
				next.Changed = maps.Clone(changed)
			}
		}
		select {
		case <-ctx.Done():
			return
		case u := <-updates:
			latest[u.svc.Name] = u.svc
			if u.material {
				changed[u.svc.Name] = true
			}
			pending = pending || (u.material && len(latest) == n)
		case send <- next:
			pending, first = false, false
			clear(changed)
		}
	}
}

// watch is the blocking-query loop of one service, after consul-template's
// watch/view.go and Consul's documented rules.
func (s *Source) watch(ctx context.Context, name string, obs catalog.Observer, updates chan<- update) {
	log := s.log.With("service", name)
	var (
		index    uint64
		last     *catalog.Service
		failures int
	)
	for {
		start := s.now()
		q := (&api.QueryOptions{
			Datacenter: s.opts.Datacenter,
			WaitIndex:  index,
			WaitTime:   s.opts.WaitTime,
		}).WithContext(ctx)
		entries, meta, err := s.health.Service(name, "", false, q)
		if ctx.Err() != nil {
			return
		}
		if err == nil && meta == nil {
			err = errors.New("answer without query metadata")
		}
		if obs != nil {
			var idx uint64
			if meta != nil {
				idx = meta.LastIndex
			}
			obs.ObserveQuery(name, idx, err)
		}
		if err != nil {
			failures++
			delay := backoff.Delay(failures, s.opts.BackoffBase, s.opts.BackoffMax, s.jitter)
			log.Warn("catalog query failed", "error", err, "failures", failures, "retry_in", delay)
			if s.sleep(ctx, delay) != nil {
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
			material := last == nil || !svc.SameContent(last)
			if material || outputsMoved(svc, last) {
				last = svc
				select {
				case updates <- update{svc: svc, material: material}:
				case <-ctx.Done():
					return
				}
			}
		}

		// Rate limit: at least MinInterval plus jitter between two queries,
		// so that a flapping index cannot turn into a busy loop.
		wait := s.opts.MinInterval + s.jitter(s.opts.MinInterval) - s.now().Sub(start)
		if wait > 0 && s.sleep(ctx, wait) != nil {
			return
		}
	}
}

// outputsMoved reports whether a's check outputs differ from b's, given
// that their content is the same.
func outputsMoved(a, b *catalog.Service) bool {
	for i, in := range a.Instances {
		for j, c := range in.Checks {
			if c.Output != b.Instances[i].Checks[j].Output {
				return true
			}
		}
	}
	return false
}
