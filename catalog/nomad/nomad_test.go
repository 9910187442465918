package nomad_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/nomad"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
)

// server is the tasks' HTTP server: it answers 500 while a file "fail" is
// in the task's local directory, and always for /broken; 200 otherwise.
const server = `import http.server, os
fail = os.path.join(os.environ["NOMAD_TASK_DIR"], "fail")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        bad = os.path.exists(fail) or self.path == "/broken"
        self.send_response(500 if bad else 200)
        self.end_headers()
        self.wfile.write(b"failing" if bad else b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["NOMAD_PORT_http"])), H).serve_forever()
`

// cluster is a dev agent without Consul and the jobs run on it.
type cluster struct {
	t      testing.TB
	agent  *testnomad.Agent
	python string
	script string
	// shutdownDelay, when set, is the tasks' shutdown_delay in the jobs
	// run from then on.
	shutdownDelay string
	// checkPath is the checks' path in the jobs run from then on
	// (default /health).
	checkPath string
	// noCheck leaves the check out of the jobs run from then on.
	noCheck bool
}

func startCluster(t testing.TB, opts testnomad.Options) *cluster {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("the test jobs serve HTTP with python3, which is not on PATH: %v", err)
	}
	c := &cluster{t: t, agent: testnomad.StartWith(t, "", opts), python: python}
	c.script = filepath.Join(c.agent.Dir, "server.py")
	if err := os.WriteFile(c.script, []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// run submits a job of one group "g" of count allocations, each
// registering service in Nomad with tags and an http check every second.
// Deployments are off (max_parallel = 0), so that scaling is immediate.
func (c *cluster) run(job, service string, count int, tags ...string) {
	c.t.Helper()
	c.runIn("default", job, service, count, tags...)
}

// runIn is run in a namespace.
func (c *cluster) runIn(namespace, job, service string, count int, tags ...string) {
	c.t.Helper()
	tj, _ := json.Marshal(tags)
	var delay string
	if c.shutdownDelay != "" {
		delay = fmt.Sprintf("shutdown_delay = %q", c.shutdownDelay)
	}
	check := fmt.Sprintf(`check {
        name     = "alive"
        type     = "http"
        path     = %q
        interval = "1s"
        timeout  = "1s"
      }`, cmp.Or(c.checkPath, "/health"))
	if c.noCheck {
		check = ""
	}
	hcl := fmt.Sprintf(`job %q {
  namespace = %q
  type = "service"
  update {
    max_parallel = 0
  }
  group "g" {
    count = %d
    network {
      port "http" {}
    }
    service {
      name     = %q
      provider = "nomad"
      port     = "http"
      tags     = %s
      %s
    }
    task "s" {
      driver = "raw_exec"
      %s
      config {
        command = %q
        args    = [%q]
      }
      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
`, job, namespace, count, service, tj, check, delay, c.python, c.script)
	path := filepath.Join(c.agent.Dir, namespace+"-"+job+".nomad.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if code, out := c.agent.CLI(c.t, "job", "run", "-detach", path); code != 0 {
		c.t.Fatalf("nomad job run %s: exit %d\n%s", job, code, out)
	}
}

// send calls the agent's HTTP API.
func (c *cluster) send(method, path string, body any) {
	c.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, c.agent.Addr+path, bytes.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.agent.Token != "" {
		req.Header.Set("X-Nomad-Token", c.agent.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var msg bytes.Buffer
		_, _ = msg.ReadFrom(resp.Body)
		c.t.Fatalf("%s %s: %s %s", method, path, resp.Status, msg.String())
	}
}

func (c *cluster) scale(job string, count int) {
	c.t.Helper()
	c.send(http.MethodPost, "/v1/job/"+job+"/scale", map[string]any{"Count": count, "Target": map[string]string{"Group": "g"}})
}

func (c *cluster) stopAlloc(id string) {
	c.t.Helper()
	c.send(http.MethodPost, "/v1/allocation/"+id+"/stop", nil)
}

// failFile is the file whose presence makes an allocation's check fail.
func (c *cluster) failFile(alloc string) string {
	return filepath.Join(c.agent.Dir, "data", "alloc", alloc, "s", "local", "fail")
}

func (c *cluster) setFailing(alloc string, failing bool) {
	c.t.Helper()
	var err error
	if failing {
		err = os.WriteFile(c.failFile(alloc), nil, 0o644)
	} else {
		err = os.Remove(c.failFile(alloc))
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Fatal(err)
	}
}

func (c *cluster) source(t testing.TB, opts nomad.Options) *nomad.Source {
	t.Helper()
	opts.Address = c.agent.Addr
	s, err := nomad.NewSource(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// latestOf keeps a watch's latest snapshot.
type latestOf struct {
	mu    sync.Mutex
	snap  catalog.Snapshot
	count int
	at    time.Time
	all   []catalog.Snapshot
}

func follow(snaps <-chan catalog.Snapshot) *latestOf {
	l := &latestOf{}
	go func() {
		for s := range snaps {
			l.mu.Lock()
			l.snap, l.count, l.at = s, l.count+1, time.Now()
			l.all = append(l.all, s)
			l.mu.Unlock()
		}
	}()
	return l
}

// history is every snapshot so far.
func (l *latestOf) history() []catalog.Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

func (l *latestOf) get() (catalog.Snapshot, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap, l.count
}

// instance finds the instance of an allocation in a snapshot's service.
func instance(s catalog.Snapshot, service, alloc string) *catalog.Instance {
	for _, in := range s.Instances(service) {
		if in.Allocation == alloc {
			return in
		}
	}
	return nil
}

func allPassing(ins []*catalog.Instance, n int) bool {
	if len(ins) != n {
		return false
	}
	for _, in := range ins {
		if in.Status != catalog.Passing {
			return false
		}
	}
	return true
}

// TestInstancesAndChecks: a job of three allocations with an http check
// gives three passing instances with address, port, node, allocation,
// weight and thresholds from tags, and their check; a check made to fail
// takes its instance critical within the check's interval + 1 s, and back;
// a stopped allocation leaves at the start of its shutdown_delay, while
// its task still runs; never more connections than the budget.
func TestInstancesAndChecks(t *testing.T) {
	c := startCluster(t, testnomad.Options{})
	c.shutdownDelay = "4s"
	c.run("web", "web", 3, "prod", "lvs-weight=3", "lvs-upper-threshold=100", "lvs-weight=x")
	src := c.source(t, nomad.Options{MaxConnections: 4})
	conns := nomad.CountConns(src)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(src.Watch(ctx, []string{"web", "absent", "broken"}, nil))

	testenv.WaitFor(t, "three passing instances of web", 45*time.Second, func() bool {
		s, _ := latest.get()
		return allPassing(s.Instances("web"), 3)
	})
	snap, _ := latest.get()
	if svc := snap.Services["absent"]; svc == nil || len(svc.Instances) != 0 {
		t.Fatalf("absent: %+v, want a service without instances", svc)
	}
	for _, in := range snap.Instances("web") {
		if in.Address != "127.0.0.1" || in.Port == 0 || in.Node == "" || in.Allocation == "" || !strings.Contains(in.ID, in.Allocation) {
			t.Errorf("instance %+v: want 127.0.0.1, a port, a node, its allocation", in)
		}
		if in.Weights != (catalog.Weights{Passing: 3, Warning: 1}) || in.Meta["lvs-upper-threshold"] != "100" || !in.HasTags([]string{"prod"}) {
			t.Errorf("instance %s: weights %v, meta %v, tags %v: want 3/1 from lvs-weight=3 (lvs-weight=x ignored), the threshold, prod",
				in.ID, in.Weights, in.Meta, in.Tags)
		}
		if len(in.Checks) != 1 || in.Checks[0].Name != "alive" || in.Checks[0].Status != "success" {
			t.Errorf("instance %s: checks %+v, want alive = success", in.ID, in.Checks)
		}
	}
	fetched, err := src.Fetch(context.Background(), []string{"web", "absent", "broken"})
	if err != nil {
		t.Fatal(err)
	}
	if diffs := compare(snap, fetched); len(diffs) > 0 {
		t.Fatalf("watch and fetch differ:\n%s", strings.Join(diffs, "\n"))
	}

	victim := snap.Instances("web")[1].Allocation
	c.setFailing(victim, true)
	took := testenv.WaitFor(t, "the failing allocation's instance critical", 10*time.Second, func() bool {
		s, _ := latest.get()
		in := instance(s, "web", victim)
		return in != nil && in.Status == catalog.Critical
	})
	snap, _ = latest.get()
	in := instance(snap, "web", victim)
	t.Logf("check failing → instance critical in %v (check interval 1s)", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("critical after %v, want within the check interval + 1s = 2s", took)
	}
	if len(in.Checks) != 1 || in.Checks[0].Status != "failure" || in.Checks[0].Output == "" {
		t.Errorf("checks %+v: want alive = failure with its output", in.Checks)
	}
	if snap.Changed != nil && !snap.Changed["web"] {
		t.Errorf("the snapshot's Changed %v does not name web", snap.Changed)
	}
	for _, o := range snap.Instances("web") {
		if o.Allocation != victim && o.Status != catalog.Passing {
			t.Errorf("instance %s %s, want passing: only %s fails", o.ID, o.Status, victim)
		}
	}
	c.setFailing(victim, false)
	testenv.WaitFor(t, "the allocation passing again", 10*time.Second, func() bool {
		s, _ := latest.get()
		in := instance(s, "web", victim)
		return in != nil && in.Status == catalog.Passing
	})

	c.stopAlloc(victim)
	gone := testenv.WaitFor(t, "the stopped allocation gone", 20*time.Second, func() bool {
		s, _ := latest.get()
		return instance(s, "web", victim) == nil
	})
	var alloc struct{ ClientStatus string }
	if err := c.agent.Get("/v1/allocation/"+victim, &alloc); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped allocation gone from the snapshots after %v, its task %s (shutdown_delay 4s)", gone.Round(time.Millisecond), alloc.ClientStatus)
	if alloc.ClientStatus != "running" {
		t.Errorf("the stopped allocation's client status %q when its instance left, want running: deregistered at the start of shutdown_delay", alloc.ClientStatus)
	}
	// New allocations whose check fails from the start arrive critical:
	// no snapshot ever shows them passing.
	c.checkPath = "/broken"
	c.run("broken", "broken", 2)
	testenv.WaitFor(t, "two instances of broken", 30*time.Second, func() bool {
		s, _ := latest.get()
		return len(s.Instances("broken")) == 2
	})
	for i, s := range latest.history() {
		for _, in := range s.Instances("broken") {
			if in.Status != catalog.Critical {
				t.Errorf("snapshot %d: broken's instance %s %s with checks %+v, want critical from the start", i, in.Allocation, in.Status, in.Checks)
			}
		}
	}
	if most := conns.Most(); most > 4 {
		t.Errorf("%d connections at once, budget 4", most)
	}
	t.Logf("connections at most %d (budget 4)", conns.Most())
}

// TestForbidden: with ACLs on, a token that may not read the namespace
// gets an error naming the namespace and the capability, never an empty
// pool; its watch emits nothing until a token that may is set.
func TestForbidden(t *testing.T) {
	c := startCluster(t, testnomad.Options{ACL: true})
	c.run("web", "web", 1, "prod")
	src := c.source(t, nomad.Options{Token: "00000000-0000-0000-0000-000000000000"})
	_, err := src.Fetch(context.Background(), []string{"web"})
	var forbidden *nomad.ForbiddenError
	if !errors.As(err, &forbidden) || forbidden.Namespace != "default" || forbidden.Capability != "read-job" {
		t.Fatalf("Fetch with a token that may not read: %v, want a ForbiddenError for namespace default, read-job", err)
	}
	if !strings.Contains(err.Error(), `namespace "default"`) || !strings.Contains(err.Error(), "read-job") {
		t.Errorf("error %q does not name the namespace and the capability", err)
	}
	t.Logf("the error: %v", err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := &refusals{}
	latest := follow(src.Watch(ctx, []string{"web"}, obs))
	testenv.WaitFor(t, "the watch's feed refused twice", 10*time.Second, func() bool { return obs.count(nomad.FeedQuery) >= 2 })
	if _, n := latest.get(); n != 0 {
		t.Fatalf("%d snapshots from a watch whose token may not read, want none", n)
	}
	src.SetToken(c.agent.Token)
	testenv.WaitFor(t, "the instance with a token that may read", 30*time.Second, func() bool {
		s, _ := latest.get()
		return allPassing(s.Instances("web"), 1)
	})
}

// TestAllNamespaces: one service name in two namespaces; the source of
// one namespace sees its own instance, the source of "*" both, and its
// watch follows a scale-up in either.
func TestAllNamespaces(t *testing.T) {
	c := startCluster(t, testnomad.Options{})
	c.send(http.MethodPost, "/v1/namespace", map[string]string{"Name": "blue"})
	c.run("web", "web", 1, "default")
	c.runIn("blue", "web", "web", 1, "blue")
	one := c.source(t, nomad.Options{})
	all := c.source(t, nomad.Options{Namespace: nomad.AllNamespaces})
	var got catalog.Snapshot
	testenv.WaitFor(t, "two passing instances in two namespaces", 30*time.Second, func() bool {
		var err error
		got, err = all.Fetch(context.Background(), []string{"web"})
		return err == nil && allPassing(got.Instances("web"), 2)
	})
	var tags []string
	for _, in := range got.Instances("web") {
		tags = append(tags, in.Tags...)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"blue", "default"}) {
		t.Errorf("tags %v, want one instance of each namespace", tags)
	}
	if s, err := one.Fetch(context.Background(), []string{"web"}); err != nil || len(s.Instances("web")) != 1 || s.Instances("web")[0].Tags[0] != "default" {
		t.Fatalf("the default namespace's source: %v, %v; want its one instance", err, s.Services["web"])
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(all.Watch(ctx, []string{"web"}, nil))
	testenv.WaitFor(t, "the watch of every namespace: two instances", 20*time.Second, func() bool {
		s, _ := latest.get()
		return allPassing(s.Instances("web"), 2)
	})
	c.send(http.MethodPost, "/v1/job/web/scale?namespace=blue", map[string]any{"Count": 2, "Target": map[string]string{"Group": "g"}})
	testenv.WaitFor(t, "the watch of every namespace: blue scaled to two", 30*time.Second, func() bool {
		s, _ := latest.get()
		return allPassing(s.Instances("web"), 3)
	})

	// CheckRate caps the check reads of all allocations together: at 5 a
	// second, 3 allocations that may each be read every 10 ms take at
	// least 2 s for 11 reads (without the cap, ~100 ms).
	capped := c.source(t, nomad.Options{Namespace: nomad.AllNamespaces, CheckRate: 5, CheckInterval: 10 * time.Millisecond})
	polls := &pollTimes{}
	follow(capped.Watch(ctx, []string{"web"}, polls))
	testenv.WaitFor(t, "11 check reads", 20*time.Second, func() bool { return polls.count() >= 11 })
	if took := polls.span(11); took < 1800*time.Millisecond {
		t.Errorf("11 check reads in %v at CheckRate 5/s, want at least 2 s", took)
	}
}

// pollTimes is an Observer noting when each check read answered.
type pollTimes struct {
	mu sync.Mutex
	at []time.Time
}

func (p *pollTimes) ObserveQuery(query string, _ uint64, _ error) {
	if query == nomad.ChecksQuery {
		p.mu.Lock()
		p.at = append(p.at, time.Now())
		p.mu.Unlock()
	}
}

func (p *pollTimes) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.at)
}

// span is the time from the first read to the nth.
func (p *pollTimes) span(n int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at[n-1].Sub(p.at[0])
}

// refusals is an Observer counting refused queries by what they asked.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) ObserveQuery(query string, _ uint64, err error) {
	var forbidden *nomad.ForbiddenError
	if errors.As(err, &forbidden) {
		r.mu.Lock()
		if r.n == nil {
			r.n = map[string]int{}
		}
		r.n[query]++
		r.mu.Unlock()
	}
}

func (r *refusals) count(query string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[query]
}

// compare lists how got differs from want, service by service, check
// outputs and indexes aside.
func compare(got, want catalog.Snapshot) []string {
	var diffs []string
	for name, w := range want.Services {
		g := got.Services[name]
		switch {
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%s: missing", name))
		case !g.SameContent(w):
			diffs = append(diffs, fmt.Sprintf("%s:\n  got  %s\n  want %s", name, describe(g), describe(w)))
		}
	}
	if len(got.Services) != len(want.Services) {
		diffs = append(diffs, fmt.Sprintf("%d services, want %d", len(got.Services), len(want.Services)))
	}
	return diffs
}

func describe(s *catalog.Service) string {
	var parts []string
	for _, in := range s.Instances {
		var checks []string
		for _, c := range in.Checks {
			checks = append(checks, c.Name+"="+c.Status)
		}
		slices.Sort(checks)
		parts = append(parts, fmt.Sprintf("%s %s:%d %v w=%v %s checks=%v", in.Allocation[:8], in.Address, in.Port, in.Tags, in.Weights, in.Status, checks))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}
