package nomad

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// Defaults, as the package documentation explains them.
const (
	DefaultAddress        = "http://127.0.0.1:4646"
	DefaultNamespace      = "default"
	DefaultMaxConnections = 8
	// DefaultCheckInterval is the least time between two reads of one
	// allocation's check results.
	DefaultCheckInterval = 500 * time.Millisecond
	// DefaultCheckRate caps the check-result reads of all allocations
	// together, per second: 1,000 allocations are each read every 10 s.
	DefaultCheckRate = 100
)

// AllNamespaces is the Namespace that watches every namespace.
const AllNamespaces = "*"

// capability is the ACL capability every read of the source needs in the
// namespace it reads: service registrations and allocation check results.
const capability = "read-job"

// Options configure the source. The zero value reads the local agent's
// default namespace with the defaults above.
type Options struct {
	Address   string // DefaultAddress when empty
	Token     string
	Namespace string // DefaultNamespace when empty; AllNamespaces for all
	Region    string // "" the agent's
	// TLS, as the nomad CLI's NOMAD_CACERT, NOMAD_CLIENT_CERT,
	// NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME, NOMAD_SKIP_VERIFY.
	CACert, ClientCert, ClientKey, TLSServerName string
	SkipVerify                                   bool
	// MaxConnections is the budget of concurrent HTTP connections to the
	// agent, idle ones included (DefaultMaxConnections when < 1; at least
	// 3 are used: the feed, a reader, a check poller).
	MaxConnections int
	Logger         hclog.Logger

	// CheckInterval is the least time between two reads of one
	// allocation's check results (DefaultCheckInterval when 0).
	CheckInterval time.Duration
	// CheckRate caps the reads of check results per second, all
	// allocations together (DefaultCheckRate when 0).
	CheckRate float64
	// WaitTime is how long Nomad may hold the feed's blocking query
	// (default 5m).
	WaitTime time.Duration
	// MinInterval is the least time between two queries of the feed, plus
	// up to as much again of jitter (default 100ms).
	MinInterval time.Duration
	// BackoffBase and BackoffMax bound the retry delay (250ms, 30s).
	BackoffBase, BackoffMax time.Duration
	// ResyncInterval is how often every service is read again whatever
	// the feed says (default 5m).
	ResyncInterval time.Duration
	// Clock drives rate limits, backoffs and resyncs (default real).
	Clock clockwork.Clock
}

func (o *Options) setDefaults() {
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.MaxConnections < 1 {
		o.MaxConnections = DefaultMaxConnections
	}
	o.MaxConnections = max(o.MaxConnections, 3)
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.CheckRate <= 0 {
		o.CheckRate = DefaultCheckRate
	}
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

// readers and checkers share the budget the feed leaves: a third to
// service reads, the rest to check results, which are the many.
func (o *Options) readers() int  { return max(1, (o.MaxConnections-1)/3) }
func (o *Options) checkers() int { return max(1, o.MaxConnections-1-o.readers()) }

// Source watches Nomad's own service registrations (provider = "nomad")
// and their allocations' check results; see the package documentation.
type Source struct {
	c    *httpClient
	opts Options
	log  hclog.Logger

	mu      sync.Mutex // guards token and changed
	token   string
	changed chan struct{} // closed when the token is replaced
	trouble trouble
}

var _ catalog.Source = (*Source)(nil)

// NewSource makes a source for the agent at opts.Address. It contacts
// nothing yet.
func NewSource(opts Options) (*Source, error) {
	opts.setDefaults()
	c, err := newHTTPClient(&opts)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	return &Source{c: c, opts: opts, log: log, token: opts.Token, changed: make(chan struct{}), trouble: trouble{log: log}}, nil
}

// Token is the ACL token the queries carry now.
func (s *Source) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// SetToken makes every query from now on carry t; the feed's query in
// flight ends and asks again with it, and everything is read again.
func (s *Source) SetToken(t string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t == s.token {
		return
	}
	s.token = t
	close(s.changed)
	s.changed = make(chan struct{})
	s.log.Info("nomad token replaced; the feed asks again with it, and every service and allocation is read again")
}

// current is the token now and a channel closed when it is replaced.
func (s *Source) current() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, s.changed
}

// serviceList is /v1/services: per namespace, its services and their tags.
type serviceList []struct {
	Namespace string
	Services  []struct {
		ServiceName string
		Tags        []string
	}
}

// listServices asks /v1/services, blocking on index when it is not 0. It
// returns, for every watched name, the namespaces it is registered in.
func (s *Source) listServices(ctx context.Context, watched map[string]bool, index uint64) (map[string][]string, uint64, error) {
	tok, _ := s.current()
	var list serviceList
	idx, err := s.c.get(ctx, request{path: "/v1/services", namespace: s.opts.Namespace, capability: capability,
		token: tok, index: index, wait: s.opts.WaitTime}, &list)
	if err != nil {
		return nil, 0, err
	}
	where := map[string][]string{}
	for _, ns := range list {
		for _, svc := range ns.Services {
			if watched[svc.ServiceName] {
				where[svc.ServiceName] = append(where[svc.ServiceName], ns.Namespace)
			}
		}
	}
	for _, nss := range where {
		slices.Sort(nss)
	}
	return where, idx, nil
}

// readService reads one service's registrations in each of namespaces
// (the configured one unless watching all).
func (s *Source) readService(ctx context.Context, name string, namespaces []string) ([]registration, uint64, error) {
	if s.opts.Namespace != AllNamespaces {
		namespaces = []string{s.opts.Namespace}
	}
	tok, _ := s.current()
	var all []registration
	var index uint64
	for _, ns := range namespaces {
		var regs []registration
		idx, err := s.c.get(ctx, request{path: "/v1/service/" + url.PathEscape(name), namespace: ns, capability: capability, token: tok}, &regs)
		if err != nil {
			return nil, 0, fmt.Errorf("reading nomad service %q in namespace %q: %w", name, ns, err)
		}
		all = append(all, regs...)
		index = max(index, idx)
	}
	return all, index, nil
}

// checksTimeout bounds a read of check results: the server forwards it to
// the allocation's client, which may be gone; a poller waits no longer.
const checksTimeout = 5 * time.Second

// readChecks reads the check results of one allocation. An allocation
// without any result may not be one without checks: Nomad's client
// registers a group's services (groupServiceHook) before it records its
// checks as pending (checksHook, the next allocation hook), and on a busy
// client the registration can be read between the two. So an empty answer
// is checked against the job: spec is what the allocation's task group
// declares (nil: not read yet, then read here and returned), and every
// check it declares that has no result yet counts as pending, never as
// absent. spec is read once per allocation, and only while it has no
// result.
func (s *Source) readChecks(ctx context.Context, alloc, namespace string, spec *allocSpec) ([]checkResult, *allocSpec, error) {
	tok, _ := s.current()
	var m map[string]checkResult
	if _, err := s.c.get(ctx, request{path: "/v1/client/allocation/" + url.PathEscape(alloc) + "/checks", namespace: namespace,
		capability: capability, token: tok, timeout: checksTimeout}, &m); err != nil {
		return nil, spec, fmt.Errorf("reading the check results of nomad allocation %s: %w", alloc, err)
	}
	if len(m) > 0 {
		return slices.Collect(maps.Values(m)), spec, nil
	}
	if spec == nil {
		var err error
		if spec, err = s.readSpec(ctx, alloc, namespace); err != nil {
			return nil, nil, err
		}
	}
	return spec.pending(), spec, nil
}

// allocSpec is what an allocation's job declares of the checks Nomad's
// client runs for it: the checks of its task group's Nomad services
// (group and task level, as Nomad's TaskGroup.NomadServices).
type allocSpec struct {
	checks []specCheck
}

type specCheck struct {
	service, name string
	// interpolated: the service's name holds ${…}, which the job does not
	// resolve: the check may be any of the allocation's services'.
	interpolated bool
}

// nomadService is a service block of a job, as /v1/allocation/:id has it.
type nomadService struct {
	Name, Provider string
	Checks         []struct{ Name string }
}

// readSpec reads the job of an allocation for the checks of its group.
func (s *Source) readSpec(ctx context.Context, alloc, namespace string) (*allocSpec, error) {
	tok, _ := s.current()
	var a struct {
		TaskGroup string
		Job       struct {
			TaskGroups []struct {
				Name     string
				Services []nomadService
				Tasks    []struct{ Services []nomadService }
			}
		}
	}
	if _, err := s.c.get(ctx, request{path: "/v1/allocation/" + url.PathEscape(alloc), namespace: namespace,
		capability: capability, token: tok, timeout: checksTimeout}, &a); err != nil {
		return nil, fmt.Errorf("reading the job of nomad allocation %s for its checks: %w", alloc, err)
	}
	spec := &allocSpec{}
	add := func(svcs []nomadService) {
		for _, svc := range svcs {
			if svc.Provider != "nomad" {
				continue
			}
			for _, c := range svc.Checks {
				spec.checks = append(spec.checks, specCheck{service: svc.Name, name: c.Name, interpolated: strings.Contains(svc.Name, "${")})
			}
		}
	}
	for _, tg := range a.Job.TaskGroups {
		if tg.Name != a.TaskGroup {
			continue
		}
		add(tg.Services)
		for _, t := range tg.Tasks {
			add(t.Services)
		}
	}
	return spec, nil
}

// pending is a "pending" result for each check the spec declares, as
// Nomad's client records before a check first runs.
func (spec *allocSpec) pending() []checkResult {
	var out []checkResult
	for _, c := range spec.checks {
		out = append(out, checkResult{
			ID: "pending:" + c.service + ":" + c.name, Check: c.name, Service: c.service, Status: checkPending,
			Output: "declared by the job, no result yet", anyService: c.interpolated,
		})
	}
	return out
}

// Fetch reads every service once, then the check results of every
// allocation under them, as many at a time as the budget allows: what
// `lvs-sync render` shows.
func (s *Source) Fetch(ctx context.Context, services []string) (catalog.Snapshot, error) {
	names := unique(services)
	where := map[string][]string{}
	if s.opts.Namespace == AllNamespaces {
		watched := map[string]bool{}
		for _, n := range names {
			watched[n] = true
		}
		var err error
		if where, _, err = s.listServices(ctx, watched, 0); err != nil {
			return catalog.Snapshot{}, fmt.Errorf("listing nomad services: %w", err)
		}
	}
	regs := make(map[string][]registration, len(names))
	index := map[string]uint64{}
	var mu sync.Mutex
	err := parallel(ctx, s.opts.MaxConnections, names, func(name string) error {
		r, idx, err := s.readService(ctx, name, where[name])
		mu.Lock()
		regs[name], index[name] = r, idx
		mu.Unlock()
		return err
	})
	if err != nil {
		return catalog.Snapshot{}, err
	}
	allocNS := map[string]string{}
	for _, rs := range regs {
		for _, r := range rs {
			allocNS[r.AllocID] = r.Namespace
		}
	}
	checks := map[string]allocChecks{}
	err = parallel(ctx, s.opts.MaxConnections, slices.Sorted(maps.Keys(allocNS)), func(alloc string) error {
		res, _, err := s.readChecks(ctx, alloc, allocNS[alloc], nil)
		var forbidden *ForbiddenError
		if errors.As(err, &forbidden) {
			return err
		}
		mu.Lock()
		checks[alloc] = newAllocChecks(res, err)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return catalog.Snapshot{}, err
	}
	snap := catalog.Snapshot{Services: make(map[string]*catalog.Service, len(names))}
	for _, name := range names {
		snap.Services[name] = s.build(name, index[name], regs[name], checks)
	}
	return snap, nil
}

// allocChecks is what is known of one allocation's check results: the
// results, or why they could not be read.
type allocChecks struct {
	results []checkResult
	unread  string
}

func newAllocChecks(res []checkResult, err error) allocChecks {
	if err != nil {
		return allocChecks{unread: err.Error()}
	}
	return allocChecks{results: res}
}

// build converts a service's registrations with the check results held.
func (s *Source) build(name string, index uint64, regs []registration, checks map[string]allocChecks) *catalog.Service {
	svc := &catalog.Service{Name: name, Index: index}
	for _, r := range regs {
		c := checks[r.AllocID]
		svc.Instances = append(svc.Instances, newInstance(r, c.results, c.unread, func(tag string) {
			// Once per service and tag, whatever the churn of instances.
			s.trouble.once("tag "+name+" "+tag, "ignoring a tag lvs-sync cannot parse",
				"service", name, "instance", r.ID, "allocation", r.AllocID, "tag", tag,
				"want", fmt.Sprintf("%s=<0..%d>", TagWeight, maxWeight))
		}))
	}
	sortInstances(svc.Instances)
	return svc
}

// parallel runs f on each of items, n at a time, and returns the first
// error.
func parallel(ctx context.Context, n int, items []string, f func(string) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan string)
	)
	for range min(n, max(1, len(items))) {
		wg.Go(func() {
			for it := range next {
				if err := f(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		select {
		case next <- it:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// trouble logs a condition once per episode instead of once per query.
type trouble struct {
	log  hclog.Logger
	mu   sync.Mutex
	seen map[string]bool
}

// first reports whether key is new in this episode, and notes it.
func (t *trouble) first(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	was := t.seen[key]
	t.seen[key] = true
	return !was
}

// once logs msg at warn the first time key is seen, at debug after.
func (t *trouble) once(key, msg string, kv ...any) {
	if t.first(key) {
		t.log.Warn(msg, kv...)
		return
	}
	t.log.Debug(msg, kv...)
}

// failed notes a failed query: logged once per kind (a refusal: per
// namespace) until a success.
func (t *trouble) failed(query string, err error) {
	var forbidden *ForbiddenError
	if errors.As(err, &forbidden) {
		if t.first("failed forbidden " + forbidden.Namespace) {
			t.log.Error("nomad refused the token: no instance in that namespace can be known until the token may read it",
				"query", query, "namespace", forbidden.Namespace, "capability", forbidden.Capability, "error", err)
		}
		return
	}
	if t.first("failed query") {
		t.log.Warn("nomad query failed; retrying with backoff, further failures are logged at debug", "query", query, "error", err)
		return
	}
	t.log.Debug("nomad query failed again", "query", query, "error", err)
}

// ok notes a successful query, ending the episodes of failures.
func (t *trouble) ok() {
	t.mu.Lock()
	was := false
	for k := range t.seen {
		if strings.HasPrefix(k, "failed ") {
			delete(t.seen, k)
			was = true
		}
	}
	t.mu.Unlock()
	if was {
		t.log.Info("nomad answers again")
	}
}

// unique returns the names sorted, each once.
func unique(names []string) []string {
	names = slices.Clone(names)
	slices.Sort(names)
	return slices.Compact(names)
}
