package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Combined is one Source over several catalogs (Consul's and Nomad's):
// the daemon, render and plan watch or read one set of keys, each of which
// names its catalog and the service's name there. It runs only the
// sources some key names, so a catalog no key names is never contacted.
type Combined struct {
	// Sources by provider, the name Split gives.
	Sources map[string]Source
	// Split reads a key as its provider and the service's name in that
	// provider's catalog (config.ParseCatalogKey): the rule of the keys is
	// the caller's, not the combiner's.
	Split func(key string) (provider, name string)
}

// byProvider is the watched keys split by provider: each provider's
// service names, each once, and the key of each name.
type byProvider map[string]*part

type part struct {
	names []string
	keyOf map[string]string
}

func (c *Combined) split(keys []string) byProvider {
	parts := byProvider{}
	for _, k := range keys {
		p, name := c.Split(k)
		pt := parts[p]
		if pt == nil {
			pt = &part{keyOf: map[string]string{}}
			parts[p] = pt
		}
		if _, ok := pt.keyOf[name]; !ok {
			pt.keyOf[name] = k
			pt.names = append(pt.names, name)
		}
	}
	return parts
}

// providers lists the providers in a stable order, for errors and logs.
func (b byProvider) providers() []string { return slices.Sorted(maps.Keys(b)) }

// identity tells whether each name is its own key.
func (pt *part) identity() bool {
	for name, k := range pt.keyOf {
		if name != k {
			return false
		}
	}
	return true
}

// rekey is a provider's snapshot keyed by the keys the caller watches.
func (pt *part) rekey(s Snapshot, into map[string]*Service) {
	for name, svc := range s.Services {
		if k, ok := pt.keyOf[name]; ok {
			into[k] = svc
		}
	}
}

// Fetch reads every key's service once, from each of the catalogs at the
// same time; it fails if any catalog does, naming it.
func (c *Combined) Fetch(ctx context.Context, keys []string) (Snapshot, error) {
	parts := c.split(keys)
	snaps := make(map[string]Snapshot, len(parts))
	errs := make(map[string]error, len(parts))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p, pt := range parts {
		src := c.Sources[p]
		if src == nil {
			mu.Lock()
			errs[p] = errors.New("no source for it")
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := src.Fetch(ctx, pt.names)
			mu.Lock()
			defer mu.Unlock()
			snaps[p], errs[p] = s, err
		}()
	}
	wg.Wait()
	out := Snapshot{Services: make(map[string]*Service, len(keys))}
	for _, p := range parts.providers() {
		if err := errs[p]; err != nil {
			return Snapshot{}, fmt.Errorf("%s catalog: %w", p, err)
		}
		parts[p].rekey(snaps[p], out.Services)
	}
	return out, nil
}

// Watch watches each key's service through its provider's source and
// emits merged snapshots: the first once every provider's source has
// emitted one (each is complete, so then the whole is), then one per
// change of any, whose Changed names the changed keys. A slow reader gets
// the latest, with every change since it last read. A provider without a
// source is reported to obs once, under each of its keys, and keeps the
// whole from ever being complete. The channel closes when every source's
// has.
func (c *Combined) Watch(ctx context.Context, keys []string, obs Observer) <-chan Snapshot {
	parts := c.split(keys)
	if len(parts) == 1 {
		for p, pt := range parts {
			if src := c.Sources[p]; src != nil && pt.identity() {
				// One catalog, whose names are the keys (Consul's alone):
				// its snapshots are the whole, passed on as they are. Merging
				// them copies every service's entry twice an answer, work
				// that grows with the services however few changed.
				return src.Watch(ctx, pt.names, keyedObserver{obs: obs, keyOf: pt.keyOf})
			}
		}
	}
	type update struct {
		provider string
		snap     Snapshot
	}
	updates := make(chan update)
	var wg sync.WaitGroup
	for _, p := range parts.providers() {
		pt := parts[p]
		src := c.Sources[p]
		if src == nil {
			if obs != nil {
				for _, name := range pt.names {
					obs.ObserveQuery(pt.keyOf[name], 0, fmt.Errorf("%s catalog: no source for it", p))
				}
			}
			continue
		}
		ch := src.Watch(ctx, pt.names, keyedObserver{obs: obs, keyOf: pt.keyOf})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				select {
				case updates <- update{p, s}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(updates) }()

	out := make(chan Snapshot)
	go func() {
		defer close(out)
		latest := make(map[string]map[string]*Service, len(parts)) // by provider, by key
		var pending *Snapshot                                      // built, not taken yet
		var sinceTaken map[string]bool                             // nil until the reader took the first
		for {
			var send chan<- Snapshot
			var next Snapshot
			if pending != nil {
				send, next = out, *pending
			}
			select {
			case u, ok := <-updates:
				if !ok {
					return
				}
				pt := parts[u.provider]
				_, seen := latest[u.provider]
				services := make(map[string]*Service, len(pt.keyOf))
				pt.rekey(u.snap, services)
				latest[u.provider] = services
				if sinceTaken != nil {
					for name, k := range pt.keyOf {
						if !seen || u.snap.ChangedService(name) {
							sinceTaken[k] = true
						}
					}
				}
				if len(latest) < len(parts) {
					continue // not complete yet
				}
				merged := Snapshot{Services: make(map[string]*Service, len(keys))}
				for _, svcs := range latest {
					maps.Copy(merged.Services, svcs)
				}
				if sinceTaken != nil {
					merged.Changed = maps.Clone(sinceTaken)
				}
				pending = &merged
			case send <- next:
				pending, sinceTaken = nil, map[string]bool{}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// keyedObserver tells obs of a provider's queries under the caller's keys:
// a query of service "web" of Nomad's is "nomad/web"'s; one that is not a
// service's (the source's own) keeps its name.
type keyedObserver struct {
	obs   Observer
	keyOf map[string]string
}

func (o keyedObserver) ObserveQuery(query string, index uint64, err error) {
	if o.obs == nil {
		return
	}
	if k, ok := o.keyOf[query]; ok {
		query = k
	}
	o.obs.ObserveQuery(query, index, err)
}
