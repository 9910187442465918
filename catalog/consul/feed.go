package consul

import (
	"context"
	"slices"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/backoff"
)

// The change feeds, named by their API paths (what the Observer hears).
const (
	feedCritical = "/v1/health/state/critical"
	feedWarning  = "/v1/health/state/warning"
	feedServices = "/v1/catalog/services"
	feedNodes    = "/v1/catalog/nodes"
)

// feedAnswer is a feed's answer whose index moved.
type feedAnswer struct {
	feed  string
	index uint64
	// reset is set when Consul's index went back to 0 or backwards: what
	// was known by index must be forgotten.
	reset bool
	// One of these, by feed.
	checks   api.HealthChecks
	services map[string][]string
	nodes    []*api.Node
}

// query is one blocking query of a feed: it fills in the answer's body.
type query func(q *api.QueryOptions, a *feedAnswer) (*api.QueryMeta, error)

func (s *Source) feedQueries() map[string]query {
	state := func(st string) query {
		return func(q *api.QueryOptions, a *feedAnswer) (meta *api.QueryMeta, err error) {
			a.checks, meta, err = s.api.State(st, q)
			return meta, err
		}
	}
	return map[string]query{
		feedCritical: state(api.HealthCritical),
		feedWarning:  state(api.HealthWarning),
		feedServices: func(q *api.QueryOptions, a *feedAnswer) (meta *api.QueryMeta, err error) {
			a.services, meta, err = s.api.Services(q)
			return meta, err
		},
		feedNodes: func(q *api.QueryOptions, a *feedAnswer) (meta *api.QueryMeta, err error) {
			a.nodes, meta, err = s.api.Nodes(q)
			return meta, err
		},
	}
}

// follow is the blocking-query loop of one feed, after consul-template's
// watch/view.go and Consul's documented rules: same index → ask again;
// index went backwards or to 0 → start over from 0; at least MinInterval
// plus jitter between queries; backoff on errors, reset on any success.
func (s *Source) follow(ctx context.Context, feed string, ask query, obs catalog.Observer, out chan<- feedAnswer) {
	log := s.log.With("feed", feed)
	var (
		index    uint64
		failures int
	)
	for {
		start := s.opts.Clock.Now()
		q, done, retry := s.query(ctx, &api.QueryOptions{
			Datacenter: s.opts.Datacenter,
			WaitIndex:  index,
			WaitTime:   s.opts.WaitTime,
		})
		a := feedAnswer{feed: feed}
		meta, err := ask(q, &a)
		done()
		if ctx.Err() != nil {
			return
		}
		if retry() {
			continue // a new token: ask again with it, at once
		}
		err = observe(obs, feed, meta, err)
		if err != nil {
			failures++
			s.trouble.failed(feed, err)
			if s.sleep(ctx, backoff.Delay(failures, s.opts.BackoffBase, s.opts.BackoffMax, s.jitter)) != nil {
				return
			}
			continue
		}
		failures = 0
		s.trouble.ok()
		if meta.ResultsFilteredByACLs {
			log.Warn("consul filtered a change feed by acls: changes the token cannot see are found only by the periodic resync")
		}
		log.Trace("feed returned", "index", meta.LastIndex)

		unchanged := index != 0 && meta.LastIndex == index
		switch {
		case meta.LastIndex == 0:
			log.Debug("consul returned index 0, starting over")
			index, a.reset = 0, true
		case meta.LastIndex < index:
			log.Debug("consul index went backwards, starting over", "was", index, "now", meta.LastIndex)
			index, a.reset = 0, true
		default:
			index = meta.LastIndex
		}
		if !unchanged {
			a.index = meta.LastIndex
			select {
			case out <- a:
			case <-ctx.Done():
				return
			}
		}
		// Rate limit, so that a flapping index cannot become a busy loop.
		wait := s.opts.MinInterval + s.jitter(s.opts.MinInterval) - s.opts.Clock.Since(start)
		if wait > 0 && s.sleep(ctx, wait) != nil {
			return
		}
	}
}

// checkKey and checkVal are what a health-state feed is diffed by: the
// check's identity, and what of it matters (not its output).
type checkKey struct{ node, id string }

type checkVal struct{ status, serviceID, service string }

func checkSet(checks api.HealthChecks) map[checkKey]checkVal {
	m := make(map[checkKey]checkVal, len(checks))
	for _, c := range checks {
		if c != nil {
			m[checkKey{c.Node, c.CheckID}] = checkVal{c.Status, c.ServiceID, c.ServiceName}
		}
	}
	return m
}

// diffChecks returns the services whose checks changed and the nodes
// whose node checks changed between two answers of a health-state feed.
func diffChecks(old, cur map[checkKey]checkVal) (services, nodes []string) {
	note := func(k checkKey, v checkVal) {
		if v.serviceID == "" {
			nodes = append(nodes, k.node)
		} else {
			services = append(services, v.service)
		}
	}
	for k, v := range cur {
		if o, ok := old[k]; !ok || o != v {
			note(k, v)
			if ok && o.service != v.service {
				note(k, o)
			}
		}
	}
	for k, o := range old {
		if _, ok := cur[k]; !ok {
			note(k, o)
		}
	}
	return services, nodes
}

// diffNodes returns the nodes whose address changed or that left.
func diffNodes(old, cur map[string]string) []string {
	var nodes []string
	for n, addr := range old {
		if a, ok := cur[n]; !ok || a != addr {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

func nodeAddrs(nodes []*api.Node) map[string]string {
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if n != nil {
			m[n.Node] = n.Address
		}
	}
	return m
}

// watchedTags keeps the catalog/services body of the watched names only.
func watchedTags(all map[string][]string, watched map[string]*serviceState) map[string][]string {
	m := make(map[string][]string, len(watched))
	for name := range watched {
		if tags, ok := all[name]; ok {
			t := slices.Clone(tags)
			slices.Sort(t)
			m[name] = t
		}
	}
	return m
}

// diffTags returns the watched names that appeared, left or changed tags.
func diffTags(old, cur map[string][]string) []string {
	var names []string
	for name, tags := range cur {
		if o, ok := old[name]; !ok || !slices.Equal(o, tags) {
			names = append(names, name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			names = append(names, name)
		}
	}
	return names
}
