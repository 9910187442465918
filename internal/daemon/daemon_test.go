package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/ownership"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

var (
	gateKey = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.60"), Port: 80}
	real1   = lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.11"), Port: 80}
	real2   = lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.12"), Port: 80}
)

func gateConfig(extra string) string {
	return `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  service    = "web"
` + extra + `
}`
}

var foreignKey = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.99.0.1"), Port: 80}

func foreignState() ipvs.State {
	return ipvs.State{foreignKey: &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{
		{Addr: netip.MustParseAddr("10.99.1.1"), Port: 80}: {Weight: 1, Forward: lvs.Masq},
	}}}
}

func mustConfig(t testing.TB, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const webConfig = `
director {
  reconcile_interval = "1s"
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  scheduler  = "rr"
}
virtual_service "api" {
  address    = "10.10.10.61:8080"
  forwarding = "masq"
  service    = "web"
}
`

// running is a daemon under test and the reports of its syncs.
type running struct {
	d       *Daemon
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	reports []Report
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
}

func (r *running) all() []Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Report(nil), r.reports...)
}

// source watches the test agent, quickly.
func source(c *api.Client) catalog.Source {
	return consul.NewSource(c, consul.Options{MinInterval: 10 * time.Millisecond})
}

func start(t *testing.T, opts Options) *running {
	t.Helper()
	r := &running{done: make(chan error, 1)}
	opts.OnSync = func(rep Report) {
		r.mu.Lock()
		r.reports = append(r.reports, rep)
		r.mu.Unlock()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.d = cancel, d
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(cancel)
	return r
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "lvs-sync", Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return testenv.WaitFor(t, what, timeout, cond)
}

func reals(st ipvs.State, vip string) map[string]int {
	ap := netip.MustParseAddrPort(vip)
	return testenv.Weights(st, lvs.ServiceKey{Protocol: lvs.TCP, Addr: ap.Addr(), Port: ap.Port()})
}

func register(t *testing.T, agent *testconsul.Agent) {
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 8001,
		Weights: &api.AgentWeights{Passing: 5, Warning: 1}}, api.HealthPassing)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web2", Name: "web", Address: "10.1.0.12", Port: 8002}, api.HealthPassing)
}

func TestDaemonFollowsConsul(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent)
	kernel := ipvstest.New(foreignState())
	d := start(t, Options{Config: mustConfig(t, webConfig), Source: source(agent.Client), Kernel: kernel})
	defer d.stop(t)

	waitFor(t, "both services converge", 10*time.Second, func() bool {
		st := kernel.State()
		return testenv.SameWeights(reals(st, "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1}) &&
			testenv.SameWeights(reals(st, "10.10.10.61:8080"), map[string]int{"10.1.0.11:8001": 5, "10.1.0.12:8002": 1})
	})

	agent.SetStatus(t, "web1", api.HealthCritical, "down")
	took := waitFor(t, "web1 leaves", 5*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.12:80": 1})
	})
	t.Logf("a failed check left the kernel %v after the update", took)
	agent.SetStatus(t, "web1", api.HealthWarning, "slow")
	waitFor(t, "web1 back at its warning weight", 5*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 1, "10.1.0.12:80": 1})
	})

	got, want := kernel.State(), foreignState()
	if got[foreignKey] == nil || (ipvs.State{foreignKey: got[foreignKey]}).String() != want.String() {
		t.Errorf("foreign service changed:\n%s", got)
	}
	// No sync ever planned a change to the foreign service.
	for _, rep := range d.all() {
		for _, op := range rep.Plan {
			if op.Service == foreignKey {
				t.Errorf("plan touched the foreign service: %s", op)
			}
		}
	}
}

func TestDaemonRestartMakesNoChanges(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent)
	kernel := ipvstest.New(foreignState())
	own := filepath.Join(t.TempDir(), "state.json")
	opts := func() Options {
		o, err := ownership.Load(own)
		if err != nil {
			t.Fatal(err)
		}
		return Options{Config: mustConfig(t, webConfig), Source: source(agent.Client), Kernel: kernel, Ownership: o}
	}
	first := start(t, opts())
	waitFor(t, "converged", 10*time.Second, func() bool { return len(reals(kernel.State(), "10.10.10.61:8080")) == 2 })
	first.stop(t)

	writes := kernel.Writes()
	second := start(t, opts())
	waitFor(t, "first sync after restart", 10*time.Second, func() bool { return len(second.all()) > 0 })
	second.stop(t)
	if rep := second.all()[0]; len(rep.Plan) != 0 || rep.Err != nil {
		t.Errorf("restart planned %d changes (%v): %v", len(rep.Plan), rep.Err, rep.Plan)
	}
	if kernel.Writes() != writes {
		t.Errorf("restart made %d kernel writes, want 0", kernel.Writes()-writes)
	}
}

func TestRemovedServiceIsDeletedEvenAfterRestart(t *testing.T) {
	agent := testconsul.Start(t)
	register(t, agent)
	kernel := ipvstest.New(foreignState())
	own := filepath.Join(t.TempDir(), "state.json")
	o, _ := ownership.Load(own)
	first := start(t, Options{Config: mustConfig(t, webConfig), Source: source(agent.Client), Kernel: kernel, Ownership: o})
	waitFor(t, "converged", 10*time.Second, func() bool { return len(kernel.State()) == 3 })
	first.stop(t)

	// The api virtual service leaves the config while lvs-sync is down.
	o, err := ownership.Load(own)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Keys()) != 2 {
		t.Fatalf("state file owns %v, want web and api", o.Keys())
	}
	cfg := mustConfig(t, `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  scheduler  = "rr"
}`)
	second := start(t, Options{Config: cfg, Source: source(agent.Client), Kernel: kernel, Ownership: o})
	defer second.stop(t)
	waitFor(t, "api deleted", 10*time.Second, func() bool { return reals(kernel.State(), "10.10.10.61:8080") == nil })
	st := kernel.State()
	if len(st) != 2 || st[foreignKey] == nil {
		t.Errorf("kernel after removal:\n%s", st)
	}
}

// TestFilteredAnswersKeepTheKernel, with a real agent with ACLs on: a
// token whose policy loses node read gets `200 []` answers filtered by
// ACLs on its next fresh queries (a reload makes them); lvs-sync keeps
// the last good state, says so in health and status, and follows Consul
// again once the token reads everything.
func TestFilteredAnswersKeepTheKernel(t *testing.T) {
	agent := testconsul.StartWithACLs(t)
	register(t, agent)
	const full = `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`
	token, policy := agent.Token(t, "lvs-sync", full)
	conf := api.DefaultConfig()
	conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, token, ""
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	kernel := ipvstest.New(ipvs.State{})
	cfg := mustConfig(t, webConfig)
	r := start(t, Options{Config: cfg, Source: source(client), Kernel: kernel})
	defer r.stop(t)
	want := map[string]int{"10.1.0.11:80": 5, "10.1.0.12:80": 1}
	waitFor(t, "converged", 10*time.Second, func() bool { return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), want) })

	agent.SetRules(t, policy, "lvs-sync", `service_prefix "" { policy = "read" }`)
	r.d.Reload(mustConfig(t, webConfig), nil, "test")
	waitFor(t, "health to name the acls", 10*time.Second, func() bool {
		ok, why := r.d.Health()
		return !ok && strings.Contains(why, "acls")
	})
	syncs := len(r.all())
	waitFor(t, "a sync after the filtered answer", 10*time.Second, func() bool { return len(r.all()) > syncs })
	if got := reals(kernel.State(), "10.10.10.60:80"); !testenv.SameWeights(got, want) {
		t.Fatalf("after answers filtered by acls the kernel has %v, want %v kept", got, want)
	}
	st, err := r.d.Status()
	if err != nil || len(st.Warnings) == 0 {
		t.Errorf("status warnings %v (%v), want the filtered service named", st.Warnings, err)
	}

	agent.SetRules(t, policy, "lvs-sync", full)
	r.d.Reload(mustConfig(t, webConfig), nil, "test")
	waitFor(t, "healthy again", 10*time.Second, func() bool { ok, _ := r.d.Health(); return ok })
	agent.SetStatus(t, "web2", api.HealthCritical, "down")
	waitFor(t, "following consul again", 10*time.Second, func() bool {
		return testenv.SameWeights(reals(kernel.State(), "10.10.10.60:80"), map[string]int{"10.1.0.11:80": 5})
	})
}

// TestDaemonHoldsDeregistrationsOneAfterAnother: three of four healthy
// instances deregistered one after another, three API calls a few
// milliseconds apart (a departing agent, a broken deploy), are held like
// one mass removal with the defaults (max_removal 50%, removal_hold 10s):
// the four reals stay for removal_hold, then the three go.
func TestDaemonHoldsDeregistrationsOneAfterAnother(t *testing.T) {
	agent := testconsul.Start(t)
	for i := range 4 {
		agent.Register(t, &api.AgentServiceRegistration{ID: fmt.Sprintf("web%d", i+1), Name: "web",
			Address: fmt.Sprintf("10.1.0.%d", 11+i), Port: 80}, api.HealthPassing)
	}
	kernel := ipvstest.New(ipvs.State{})
	d := start(t, Options{Config: mustConfig(t, gateConfig("")), Source: source(agent.Client), Kernel: kernel})
	defer d.stop(t)
	web := func() map[string]int { return reals(kernel.State(), "10.10.10.60:80") }
	all := map[string]int{"10.1.0.11:80": 1, "10.1.0.12:80": 1, "10.1.0.13:80": 1, "10.1.0.14:80": 1}
	waitFor(t, "four reals", 10*time.Second, func() bool { return testenv.SameWeights(web(), all) })

	for _, id := range []string{"web2", "web3", "web4"} {
		if err := agent.Client.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond) // apart, as separate updates
	}
	deregistered := time.Now()
	// The hold counts from when lvs-sync saw the first of them, after the
	// calls: until 8s after the last call it must have all four.
	for time.Since(deregistered) < 8*time.Second {
		if got := web(); !testenv.SameWeights(got, all) {
			t.Fatalf("%s after the deregistrations the kernel has %v, want all four held", time.Since(deregistered).Round(time.Millisecond), got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, "the three go after removal_hold", 20*time.Second, func() bool {
		return testenv.SameWeights(web(), map[string]int{"10.1.0.11:80": 1})
	})
	t.Logf("the held reals went %s after the deregistrations", time.Since(deregistered).Round(time.Millisecond))
	holds := 0
	for _, rep := range d.all() {
		holds = max(holds, len(rep.Desired.Holds))
	}
	if holds != 1 {
		t.Errorf("at most %d holds at once, want one", holds)
	}
}
