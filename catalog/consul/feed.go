package consul

import (
	"context"
	"slices"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/blocking"
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

// follow is the blocking-query loop of one feed: internal/blocking's
// rules (same index → ask again; index went backwards or to 0 → start
// over from 0, the answer marked reset; at least MinInterval plus jitter
// between queries; backoff on errors, reset on any success). What is the
// feed's own stays here: its token (a query that ended for a new one is
// asked again at once), the Observer, the failure log and ACL warning,
// and answers whose index moved passed on to publish (the hub's).
func (s *Source) follow(ctx context.Context, feed string, ask query, obs catalog.Observer, publish func(feedAnswer)) {
	log := s.log.With("feed", feed)
	f := blocking.Follower{MinInterval: s.opts.MinInterval, BackoffBase: s.opts.BackoffBase, BackoffMax: s.opts.BackoffMax,
		Clock: s.opts.Clock, Jitter: s.jitter, Sleep: s.sleep}
	blocking.Follow(ctx, f, func(ctx context.Context, index uint64) (feedAnswer, uint64, error) {
		q, done, retry := s.query(ctx, &api.QueryOptions{
			Datacenter: s.opts.Datacenter,
			WaitIndex:  index,
			WaitTime:   s.opts.WaitTime,
		})
		a := feedAnswer{feed: feed}
		meta, err := ask(q, &a)
		done()
		if ctx.Err() != nil {
			return a, 0, ctx.Err()
		}
		if retry() {
			return a, 0, blocking.ErrAgain // a new token: ask again with it, at once
		}
		if err = observe(obs, feed, meta, err); err != nil {
			s.trouble.failed(feed, err)
			return a, 0, err
		}
		s.trouble.ok()
		if meta.ResultsFilteredByACLs {
			log.Warn("consul filtered a change feed by acls: changes the token cannot see are found only by the periodic resync")
		}
		log.Trace("feed returned", "index", meta.LastIndex)
		return a, meta.LastIndex, nil
	}, func(a feedAnswer, b blocking.Answer) {
		switch {
		case b.Reset && b.Index == 0:
			log.Debug("consul returned index 0, starting over")
		case b.Reset:
			log.Debug("consul index went backwards, starting over", "was", b.Was, "now", b.Index)
		case b.Same:
			return
		}
		a.index, a.reset = b.Index, b.Reset
		publish(a)
	})
}

// checkKey and checkVal are what a health-state feed is diffed by: the
// check's identity, and what of it matters (not its output).
type checkKey struct{ node, id string }

type checkVal struct{ status, serviceID, service string }

// scope is whose checks a check is: a node's (serviceID ""), or an
// instance's.
type scope struct{ node, serviceID string }

// stateView is a health-state feed's last answer: its checks, and how
// many of them each node and instance has, for a read's to be compared
// with (agreesWithState).
type stateView struct {
	checks map[checkKey]checkVal
	count  map[scope]int
}

func newStateView(checks api.HealthChecks) stateView {
	v := stateView{checks: make(map[checkKey]checkVal, len(checks)), count: map[scope]int{}}
	for _, c := range checks {
		if c == nil {
			continue
		}
		k := checkKey{c.Node, c.CheckID}
		if _, dup := v.checks[k]; !dup {
			v.count[scope{c.Node, c.ServiceID}]++
		}
		v.checks[k] = checkVal{c.Status, c.ServiceID, c.ServiceName}
	}
	return v
}

// agreesWithState reports whether svc's checks in status are exactly those
// v holds for svc's nodes and instances. When they are, the diff of v and
// the feed's next answer names svc if, and only if, svc's checks in that
// status changed since it was read.
func agreesWithState(v stateView, status string, svc *catalog.Service) bool {
	seen := map[checkKey]bool{}
	scopes := map[scope]bool{}
	for _, in := range svc.Instances {
		scopes[scope{in.Node, ""}], scopes[scope{in.Node, in.ID}] = true, true
		for _, c := range in.Checks {
			k := checkKey{in.Node, c.CheckID}
			if c.Status != status || seen[k] {
				continue
			}
			seen[k] = true
			if val, ok := v.checks[k]; !ok || val.status != status || val.serviceID != c.ServiceID {
				return false
			}
		}
	}
	held := 0
	for sc := range scopes {
		held += v.count[sc]
	}
	return held == len(seen)
}

// agreesWithNodes reports whether the nodes under a read's instances have,
// in the nodes feed's last answer, the addresses the read saw (as
// nodeAddresses puts them).
func agreesWithNodes(nodes, read map[string]string) bool {
	for n, addr := range read {
		if a, ok := nodes[n]; !ok || a != addr {
			return false
		}
	}
	return true
}

// diffChecks returns the services whose checks changed and the nodes
// whose node checks changed between two answers of a health-state feed.
func diffChecks(old, cur stateView) (services, nodes []string) {
	note := func(k checkKey, v checkVal) {
		if v.serviceID == "" {
			nodes = append(nodes, k.node)
		} else {
			services = append(services, v.service)
		}
	}
	for k, v := range cur.checks {
		if o, ok := old.checks[k]; !ok || o != v {
			note(k, v)
			if ok && o.service != v.service {
				note(k, o)
			}
		}
	}
	for k, o := range old.checks {
		if _, ok := cur.checks[k]; !ok {
			note(k, o)
		}
	}
	return services, nodes
}

// diffNodes returns the nodes whose addresses changed or that left.
func diffNodes(old, cur map[string]string) []string {
	var nodes []string
	for n, addr := range old {
		if a, ok := cur[n]; !ok || a != addr {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// nodeAddrs is each node's addresses, as nodeAddresses puts them.
func nodeAddrs(nodes []*api.Node) map[string]string {
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if n != nil {
			m[n.Node] = nodeAddresses(n)
		}
	}
	return m
}

// nodeAddresses is what an instance at its node's address takes of the
// node, in one comparable string: the node's address and its tagged
// addresses of the kinds render uses (lan_ipv6 and the like), so that a
// change of either names the services on the node.
func nodeAddresses(n *api.Node) string {
	s := n.Address
	for _, tag := range []string{catalog.LANIPv4, catalog.WANIPv4, catalog.LANIPv6, catalog.WANIPv6} {
		if a := n.TaggedAddresses[tag]; a != "" {
			s += " " + tag + "=" + a
		}
	}
	return s
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
