package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/blocking"
	"github.com/lvs-sync/lvs-sync/internal/progress"
)

// DefaultMaxConnections is the connection budget when none is given.
const DefaultMaxConnections = 8

// feeds is the number of blocking queries that each hold a connection.
const feeds = 4

// reader is the part of Consul's HTTP API the source uses; clientReader
// wraps a *api.Client, tests give a fake.
type reader interface {
	Service(service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
	State(state string, q *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error)
	Services(q *api.QueryOptions) (map[string][]string, *api.QueryMeta, error)
	Nodes(q *api.QueryOptions) ([]*api.Node, *api.QueryMeta, error)
	NodeServices(node string, q *api.QueryOptions) ([]nodeService, *api.QueryMeta, error)
	// NodeInstances and NodeChecks are the first sync's reads of a node
	// in full (see readNodeFull).
	NodeInstances(node string, q *api.QueryOptions) (*api.Node, []nodeInstance, *api.QueryMeta, error)
	NodeChecks(node string, q *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error)
}

// nodeService is what a node read keeps of each instance on the node: the
// rest of /v1/catalog/node-services' body (kilobytes an instance with its
// proxy and connect blocks) is skipped by the decoder.
type nodeService struct {
	ID, Service string
	ModifyIndex uint64
}

// nodeInstance is what the first sync's node read keeps of each instance:
// what newInstance takes of a health answer's service, and its
// ModifyIndex; the proxy and connect blocks are skipped by the decoder.
type nodeInstance struct {
	ID, Service, Address string
	Tags                 []string
	TaggedAddresses      map[string]api.ServiceAddress
	Meta                 map[string]string
	Port                 int
	Weights              api.AgentWeights
	ModifyIndex          uint64
}

type clientReader struct{ c *api.Client }

func (r clientReader) Service(name string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	return r.c.Health().Service(name, "", false, q)
}

func (r clientReader) State(state string, q *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error) {
	return r.c.Health().State(state, q)
}

func (r clientReader) Services(q *api.QueryOptions) (map[string][]string, *api.QueryMeta, error) {
	return r.c.Catalog().Services(q)
}

func (r clientReader) Nodes(q *api.QueryOptions) ([]*api.Node, *api.QueryMeta, error) {
	return r.c.Catalog().Nodes(q)
}

func (r clientReader) NodeServices(node string, q *api.QueryOptions) ([]nodeService, *api.QueryMeta, error) {
	var out struct{ Services []nodeService }
	meta, err := r.c.Raw().Query("/v1/catalog/node-services/"+url.PathEscape(node), &out, q)
	return out.Services, meta, err
}

func (r clientReader) NodeInstances(node string, q *api.QueryOptions) (*api.Node, []nodeInstance, *api.QueryMeta, error) {
	var out struct {
		Node     *api.Node
		Services []nodeInstance
	}
	meta, err := r.c.Raw().Query("/v1/catalog/node-services/"+url.PathEscape(node), &out, q)
	return out.Node, out.Services, meta, err
}

func (r clientReader) NodeChecks(node string, q *api.QueryOptions) (api.HealthChecks, *api.QueryMeta, error) {
	return r.c.Health().Node(node, q)
}

// Options tune the source. The zero value gives the defaults.
type Options struct {
	// Datacenter to query; empty is the agent's own.
	Datacenter string
	// MaxConnections is the connection budget (default 8); give the
	// client's transport the same with LimitConnections.
	MaxConnections int
	// WaitTime is how long Consul may hold a blocking query (default 5m;
	// 1s when the budget is under 5, so that reads get a connection).
	WaitTime time.Duration
	// MinInterval is the least time between two queries of one feed, to
	// which up to as much again of random jitter is added (default 100ms).
	MinInterval time.Duration
	// BackoffBase is the first retry delay after an error, doubled on every
	// further error up to BackoffMax (defaults 250ms and 30s).
	BackoffBase, BackoffMax time.Duration
	// ResyncInterval is how often every service is re-read whatever the
	// feeds say, up to 10% jitter added (default 5m).
	ResyncInterval time.Duration
	// Clock drives the rate limits, backoffs and resyncs (default real).
	Clock  clockwork.Clock
	Logger hclog.Logger
}

func (o *Options) setDefaults() {
	if o.MaxConnections < 1 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.WaitTime == 0 {
		o.WaitTime = 5 * time.Minute
		if o.MaxConnections <= feeds {
			o.WaitTime = time.Second
		}
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
	if o.ResyncInterval == 0 {
		o.ResyncInterval = 5 * time.Minute
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
}

// readers is how many reads may run at once beside the feeds.
func (o *Options) readers() int { return max(1, o.MaxConnections-feeds) }

// LimitConnections caps conf's transport at n connections to the agent
// (DefaultMaxConnections when n < 1), idle ones included. Call it before
// api.NewClient.
func LimitConnections(conf *api.Config, n int) {
	if n < 1 {
		n = DefaultMaxConnections
	}
	if conf.Transport == nil {
		conf.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	conf.Transport.MaxConnsPerHost = n
	conf.Transport.MaxIdleConnsPerHost = n
	// Never close an idle connection of the budget: the transport frees a
	// closing connection's slot before its socket is gone, so a close and
	// a redial could hold budget+1 connections at the agent for a moment.
	conf.Transport.IdleConnTimeout = 0
}

// Source watches Consul services through the change feeds described above.
type Source struct {
	api     reader
	opts    Options
	log     hclog.Logger
	trouble trouble
	tok     token

	// sleep waits d or until ctx ends; jitter picks a random delay in
	// [0, d). Tests replace both.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(d time.Duration) time.Duration
	// watched, when set (tests), is handed each watch Watch starts.
	watched func(*watch)
	// feeds are the change feeds, shared by every watch (see hub).
	feeds hub
}

var _ catalog.Source = (*Source)(nil)

// NewSource reads the catalog through client's agent. Give the client's
// transport the budget first (LimitConnections).
func NewSource(client *api.Client, opts Options) *Source {
	return newSource(clientReader{client}, opts)
}

func newSource(r reader, opts Options) *Source {
	opts.setDefaults()
	s := &Source{api: r, opts: opts, log: opts.Logger, jitter: blocking.Jitter}
	s.feeds.s = s
	s.tok.changed, s.tok.cancel = context.WithCancel(context.Background())
	s.trouble.log = opts.Logger
	s.sleep = func(ctx context.Context, d time.Duration) error { return blocking.Sleep(ctx, s.opts.Clock, d) }
	return s
}

// Fetch reads every service once, without blocking, as many at a time as
// the budget allows: what `lvs-sync render` shows. A fetch that takes 2 s
// or more logs how far it is (msg="reading catalog" read=N of=M).
func (s *Source) Fetch(ctx context.Context, services []string) (catalog.Snapshot, error) {
	names := unique(services)
	snap := catalog.Snapshot{Services: make(map[string]*catalog.Service, len(names))}
	prog := progress.New(s.log, s.opts.Clock, "reading catalog", "read", len(names))
	read := 0
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	for range min(s.opts.MaxConnections, max(1, len(names))) {
		wg.Go(func() {
			for name := range next {
				svc, _, _, err := s.read(ctx, name, false, nil)
				mu.Lock()
				read++
				prog.Update(read)
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					snap.Services[name] = svc
					if svc.FilteredByACLs {
						s.log.Warn("consul filtered the answer by acls: the token cannot read every instance", "service", name)
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, name := range names {
		next <- name
	}
	close(next)
	wg.Wait()
	prog.Done(read)
	if first != nil {
		return catalog.Snapshot{}, first
	}
	return snap, nil
}

// read asks for one service's instances without blocking. It returns the
// addresses of the nodes under them too (as nodeAddresses puts them), for
// the nodes feed's to be compared with, and the highest ModifyIndex of its
// instances, for a node read's (see nodeDiffers).
func (s *Source) read(ctx context.Context, name string, stale bool, obs catalog.Observer) (*catalog.Service, map[string]string, uint64, error) {
	q, done, _ := s.query(ctx, &api.QueryOptions{Datacenter: s.opts.Datacenter, AllowStale: stale})
	entries, meta, err := s.api.Service(name, q)
	done()
	err = observe(obs, name, meta, err)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("querying health of service %q: %w", name, err)
	}
	nodes := map[string]string{}
	var maxMod uint64
	for _, e := range entries {
		if e != nil && e.Service != nil && e.Node != nil {
			nodes[e.Node.Node] = nodeAddresses(e.Node)
			maxMod = max(maxMod, e.Service.ModifyIndex)
		}
	}
	return newService(name, entries, meta), nodes, maxMod, nil
}

// nodeQuery is the name the Observer hears node reads by: one for every
// node, so that a node that leaves leaves no query behind.
const nodeQuery = "/v1/catalog/node-services"

// probeFilter matches no instance (Consul requires a service name), so
// that a probe's answer is its index alone: a node's index, which Consul
// moves on every write of the node or of an instance on it
// (catalogUpdateNodeIndexes in agent/consul/state).
const probeFilter = `Service == ""`

// nodeAnswer is a node read's: the node's index, and, unless a probe found
// that index unchanged, each service's instances on the node.
type nodeAnswer struct {
	index     uint64
	unchanged bool
	services  map[string]nodeCount
}

// nodeCount is a service's instances on one node: how many, and the
// highest ModifyIndex among them.
type nodeCount struct {
	n      int
	maxMod uint64
}

// readNode reads the instances on a node (never ?stale: it must see every
// change its catalog/services answer showed). With held, the node's index
// when it was last read in full, it probes first, and reads the body only
// when the index moved: at 10,000 services on 100 nodes a body is 1,000
// instances (19 ms and 2.4 MB allocated on the bench's machine), a probe a
// few bytes (1.1 ms, 8 KB; BenchmarkNodeRead).
func (s *Source) readNode(ctx context.Context, node string, held uint64, obs catalog.Observer) (nodeAnswer, error) {
	ask := func(filter string) ([]nodeService, *api.QueryMeta, error) {
		q, done, _ := s.query(ctx, &api.QueryOptions{Datacenter: s.opts.Datacenter, Filter: filter})
		entries, meta, err := s.api.NodeServices(node, q)
		done()
		if err == nil && meta == nil {
			err = errors.New("answer without query metadata")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading the services of node %q: %w", node, err)
		}
		if obs != nil {
			obs.ObserveQuery(nodeQuery, meta.LastIndex, nil) // errors: see onNodeResult
		}
		return entries, meta, nil
	}
	if held != 0 {
		_, meta, err := ask(probeFilter)
		if err != nil {
			return nodeAnswer{}, err
		}
		if meta.LastIndex == held {
			return nodeAnswer{index: meta.LastIndex, unchanged: true}, nil
		}
	}
	entries, meta, err := ask("")
	if err != nil {
		return nodeAnswer{}, err
	}
	a := nodeAnswer{index: meta.LastIndex, services: map[string]nodeCount{}}
	for _, e := range entries {
		c := a.services[e.Service]
		c.n++
		c.maxMod = max(c.maxMod, e.ModifyIndex)
		a.services[e.Service] = c
	}
	return a, nil
}

// nodeBody is the first sync's read of a node in full: each watched
// service's instances on it, converted as a health read's would be.
type nodeBody struct {
	index    uint64 // the node's index, as a node read's (see readNode)
	addrs    string // the node's addresses, as nodeAddresses puts them
	services map[string]*onNode
	// filtered is set when ACLs filtered either read: the first sync is
	// then read per service, which says which services lost instances.
	filtered bool
}

// onNode is one service's instances on a node, the highest ModifyIndex
// among them, and whether one changed after the node's checks were read
// (doubt: the service is read per service).
type onNode struct {
	instances []*catalog.Instance
	maxMod    uint64
	doubt     bool
}

// readNodeFull reads a node for the first sync: its checks
// (/v1/health/node/:node), then its instances (/v1/catalog/node-services,
// the node object with them), never ?stale, and builds each watched
// service's instances on the node exactly as a health read of the service
// would (newInstance: the node's checks and the instance's own). The order
// matters: Consul writes a registration and its checks in one write, so
// an instance whose ModifyIndex is at most the checks read's index (the
// checks table's, moved by every check write) was there, checks and all,
// when the checks were read. One above it may have been registered or
// edited after, with checks the read missed: its service is in doubt, and
// read per service. A check that changed after the checks read is the
// health-state feeds' to show, as for any read (see disagrees).
func (s *Source) readNodeFull(ctx context.Context, node string, watched map[string]*serviceState, obs catalog.Observer) (*nodeBody, error) {
	q, done, _ := s.query(ctx, &api.QueryOptions{Datacenter: s.opts.Datacenter})
	checks, hmeta, err := s.api.NodeChecks(node, q)
	done()
	if err == nil && hmeta == nil {
		err = errors.New("answer without query metadata")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the checks of node %q: %w", node, err)
	}
	q, done, _ = s.query(ctx, &api.QueryOptions{Datacenter: s.opts.Datacenter})
	n, instances, meta, err := s.api.NodeInstances(node, q)
	done()
	if err == nil && (meta == nil || n == nil) {
		err = errors.New("answer without query metadata or node")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the services of node %q: %w", node, err)
	}
	if obs != nil {
		obs.ObserveQuery(nodeQuery, meta.LastIndex, nil) // errors: see onNodeResult
	}
	b := &nodeBody{index: meta.LastIndex, addrs: nodeAddresses(n), services: map[string]*onNode{},
		filtered: hmeta.ResultsFilteredByACLs || meta.ResultsFilteredByACLs}
	var nodeChecks api.HealthChecks
	byID := map[string]api.HealthChecks{}
	for _, c := range checks {
		switch {
		case c == nil:
		case c.ServiceID == "":
			nodeChecks = append(nodeChecks, c)
		default:
			byID[c.ServiceID] = append(byID[c.ServiceID], c)
		}
	}
	for _, e := range instances {
		if _, ok := watched[e.Service]; !ok {
			continue
		}
		o := b.services[e.Service]
		if o == nil {
			o = &onNode{}
			b.services[e.Service] = o
		}
		entry := &api.ServiceEntry{Node: n, Checks: append(nodeChecks[:len(nodeChecks):len(nodeChecks)], byID[e.ID]...),
			Service: &api.AgentService{ID: e.ID, Service: e.Service, Address: e.Address, Port: e.Port, Tags: e.Tags,
				TaggedAddresses: e.TaggedAddresses, Meta: e.Meta, Weights: e.Weights}}
		o.instances = append(o.instances, newInstance(entry))
		o.maxMod = max(o.maxMod, e.ModifyIndex)
		o.doubt = o.doubt || e.ModifyIndex > hmeta.LastIndex
	}
	return b, nil
}

// observe tells obs of a query's outcome; an answer without metadata is
// an error.
func observe(obs catalog.Observer, query string, meta *api.QueryMeta, err error) error {
	if err == nil && meta == nil {
		err = errors.New("answer without query metadata")
	}
	if obs != nil {
		var idx uint64
		if meta != nil {
			idx = meta.LastIndex
		}
		obs.ObserveQuery(query, idx, err)
	}
	return err
}

// trouble logs failures once per kind and episode, with what to do about
// them, instead of once per query: an episode ends with a success.
type trouble struct {
	log  hclog.Logger
	mu   sync.Mutex
	seen map[string]bool
}

// failed notes a failed query.
func (t *trouble) failed(what string, err error) {
	kind, advice := classify(err)
	t.mu.Lock()
	repeated := t.seen[kind]
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	t.seen[kind] = true
	t.mu.Unlock()
	if repeated {
		t.log.Debug("consul query failed again", "query", what, "error", err)
		return
	}
	t.log.Warn("consul query failed; retrying with backoff, further failures are logged at debug",
		"query", what, "error", err, "advice", advice)
}

// ok notes a successful query, ending an episode.
func (t *trouble) ok() {
	t.mu.Lock()
	was := len(t.seen)
	clear(t.seen)
	t.mu.Unlock()
	if was > 0 {
		t.log.Info("consul answers again")
	}
}

func classify(err error) (kind, advice string) {
	var status api.StatusError
	switch {
	case errors.As(err, &status) && status.Code == http.StatusTooManyRequests:
		return "too many connections",
			"the agent limits connections per client address: raise its limits.http_max_conns_per_client, or lower consul.max_connections here"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return "connection refused",
			"is the agent running at the configured address? an agent over its limits.http_max_conns_per_client also closes connections: raise it, or lower consul.max_connections"
	}
	return "query error", "see the error"
}

// unique returns the names sorted, each once.
func unique(names []string) []string {
	names = slices.Clone(names)
	slices.Sort(names)
	return slices.Compact(names)
}
