// Package nomad holds lvs-sync's Nomad job files; these tests run them on a
// real Nomad dev agent joined to a real Consul dev agent.
package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	consulsrc "github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
	"github.com/lvs-sync/lvs-sync/internal/vmtest"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

var jobFiles = []string{"lvs-sync.nomad.hcl", "realserver.nomad.hcl", "../examples/web.nomad.hcl", "../examples/web-nomad.nomad.hcl"}

// jobVars are the variables each job needs to validate and plan.
func jobVars(file string) []string {
	switch filepath.Base(file) {
	case "lvs-sync.nomad.hcl":
		return []string{"-var", "artifact=http://127.0.0.1:1/lvs-sync"}
	case "realserver.nomad.hcl":
		return []string{"-var", "artifact=http://127.0.0.1:1/lvs-sync", "-var", "vips=10.10.10.60"}
	}
	return nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

// TestJobFiles validates and plans every job file with the real nomad,
// and checks that every HCL file is formatted as nomad fmt would.
func TestJobFiles(t *testing.T) {
	consul := testconsul.Start(t)
	nomad := testnomad.Start(t, consul.HTTPAddr)
	hcl, _ := filepath.Glob("*.hcl")
	examples, _ := filepath.Glob("../examples/*.hcl")
	for _, f := range append(hcl, examples...) {
		if code, out := nomad.CLI(t, "fmt", "-check", f); code != 0 {
			t.Errorf("nomad fmt -check %s: exit %d\n%s", f, code, out)
		}
	}
	for _, f := range jobFiles {
		args := append(append([]string{"job", "validate"}, jobVars(f)...), f)
		if code, out := nomad.CLI(t, args...); code != 0 || !strings.Contains(out, "Job validation successful") {
			t.Errorf("nomad job validate %s: exit %d\n%s", f, code, out)
		}
		// plan exits 1 when the job would change the cluster: it is new.
		args = append(append([]string{"job", "plan"}, jobVars(f)...), f)
		if code, out := nomad.CLI(t, args...); code != 1 || !strings.Contains(out, "Job: ") {
			t.Errorf("nomad job plan %s: exit %d\n%s", f, code, out)
		}
	}
}

type allocation struct {
	ID            string
	ClientStatus  string
	DesiredStatus string
	JobVersion    int
	TaskStates    map[string]struct {
		State    string
		Restarts int
	}
}

func allocs(t *testing.T, nomad *testnomad.Agent, job string) []allocation {
	t.Helper()
	var list []struct{ ID string }
	if err := nomad.Get("/v1/job/"+job+"/allocations", &list); err != nil {
		return nil
	}
	var out []allocation
	for _, l := range list {
		var a allocation
		if err := nomad.Get("/v1/allocation/"+l.ID, &a); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// serveFile serves one file on loopback, for a job's artifact.
func serveFile(t *testing.T, path string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }))
	t.Cleanup(srv.Close)
	return srv.URL + "/lvs-sync"
}

// TestLVSSyncSystemJob runs the system job on a dev agent whose client
// sits on a non-loopback interface (lvs-sync in -dry-run: this kernel has
// no IPVS): the allocation becomes healthy; its API answers on loopback and
// not on the node's address, and its /v1/health check shows in Consul,
// run against 127.0.0.1; a change of the templated config reaches the
// running lvs-sync as a reload, without a restart; and the state file's
// directory is the client's host volume, written from one allocation and
// read from the next.
func TestLVSSyncSystemJob(t *testing.T) {
	consul := testconsul.Start(t)
	iface, nodeIP := testnomad.HostInterface(t)
	nomad := testnomad.StartWith(t, consul.HTTPAddr, testnomad.Options{NetworkInterface: iface})
	bin := filepath.Join(t.TempDir(), "lvs-sync")
	vmtest.BuildStatic(t, bin, "./cmd/lvs-sync", false)
	apiPort := testconsul.FreePorts(t, 1)[0]
	cfg := func(vs ...string) string {
		s := fmt.Sprintf("consul {\n  address = %q\n}\n", consul.HTTPAddr)
		for i, name := range vs {
			s += fmt.Sprintf("virtual_service %q {\n  address    = \"10.10.10.%d:80\"\n  forwarding = \"gate\"\n  service    = \"web\"\n}\n", name, 60+i)
		}
		return s
	}
	if _, err := consul.Client.KV().Put(&api.KVPair{Key: "lvs-sync/config", Value: []byte(cfg("web"))}, nil); err != nil {
		t.Fatal(err)
	}
	consul.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthPassing)

	artifact := serveFile(t, bin)
	runJob := func(logLevel string) {
		t.Helper()
		code, out := nomad.CLI(t, "job", "run", "-detach",
			"-var", "artifact="+artifact,
			"-var", fmt.Sprintf("api_port=%d", apiPort),
			"-var", fmt.Sprintf(`extra_args=["-dry-run","-log-level",%q]`, logLevel),
			"lvs-sync.nomad.hcl")
		if code != 0 {
			t.Fatalf("nomad job run: exit %d\n%s", code, out)
		}
	}
	running := func(not string) allocation {
		t.Helper()
		var alloc allocation
		waitFor(t, "the allocation running", 90*time.Second, func() bool {
			for _, a := range allocs(t, nomad, "lvs-sync") {
				if a.ID != not && a.ClientStatus == "failed" {
					t.Fatalf("allocation failed: %+v", a.TaskStates)
				}
				if a.ID != not && a.ClientStatus == "running" {
					alloc = a
					return true
				}
			}
			return false
		})
		return alloc
	}
	runJob("debug")
	alloc := running("")
	waitFor(t, "the lvs-sync health check passing in Consul", 60*time.Second, func() bool {
		entries, _, err := consul.Client.Health().Service("lvs-sync", "", true, nil)
		return err == nil && len(entries) == 1 && slices.ContainsFunc(entries[0].Checks, func(c *api.HealthCheck) bool {
			return c.Name == "lvs-sync health" && c.Status == api.HealthPassing
		})
	})
	// The API is on loopback, the check goes there, and the node's own
	// address has nothing on the port.
	loopback := fmt.Sprintf("127.0.0.1:%d", apiPort)
	checks, _, err := consul.Client.Health().Checks("lvs-sync", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Consul's HTTP check says what it asked: "HTTP GET <url>: 200 OK ...".
	want := "HTTP GET http://" + loopback + "/v1/health: 200 OK"
	if len(checks) != 1 || !strings.HasPrefix(checks[0].Output, want) {
		for _, c := range checks {
			t.Logf("check %q: %s: %s", c.Name, c.Status, c.Output)
		}
		t.Errorf("lvs-sync's check in Consul does not say %q", want)
	}
	services, _, err := consul.Client.Catalog().Service("lvs-sync", "", nil)
	var registered []string
	for _, svc := range services {
		registered = append(registered, fmt.Sprintf("%s:%d", svc.ServiceAddress, svc.ServicePort))
	}
	if err != nil || !slices.Equal(registered, []string{loopback}) {
		t.Errorf("lvs-sync in Consul's catalog at %q (%v), want %q", registered, err, loopback)
	}
	if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(nodeIP, uint16(apiPort)).String(), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the API answers on the node's address %s:%d, want loopback only", nodeIP, apiPort)
	}
	liveStatus := func() status.View {
		var st status.View
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", apiPort))
		if err == nil {
			defer resp.Body.Close()
			_ = json.NewDecoder(resp.Body).Decode(&st)
		}
		return st
	}
	names := func() []string {
		var n []string
		for _, s := range liveStatus().Services {
			n = append(n, s.Name)
		}
		return n
	}
	waitFor(t, "lvs-sync serving web", 30*time.Second, func() bool { return slices.Equal(names(), []string{"web"}) })

	// Edit the config in Consul KV: the template re-renders, SIGHUP.
	if _, err := consul.Client.KV().Put(&api.KVPair{Key: "lvs-sync/config", Value: []byte(cfg("web", "web-b"))}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reloaded config in lvs-sync", 60*time.Second, func() bool { return slices.Equal(names(), []string{"web", "web-b"}) })
	after := allocs(t, nomad, "lvs-sync")
	if len(after) != 1 || after[0].ID != alloc.ID || after[0].TaskStates["lvs-sync"].Restarts != 0 {
		t.Fatalf("the config change restarted lvs-sync: %+v", after)
	}
	// Nomad records no task event for a template's signal; lvs-sync's log
	// says it was SIGHUP.
	_, logs := nomad.CLI(t, "alloc", "logs", "-stderr", alloc.ID, "lvs-sync")
	if !strings.Contains(logs, "config reloaded: trigger=SIGHUP") {
		t.Errorf("no reload in lvs-sync's log:\n%s", logs)
	}

	// The state file's directory is the host volume: what one allocation
	// writes there, the director keeps, and the next allocation finds.
	const stateDir = "/var/lib/lvs-sync"
	probe := "written by " + alloc.ID
	if code, out := nomad.CLI(t, "alloc", "exec", "-task", "lvs-sync", alloc.ID, "/bin/sh", "-c", "echo '"+probe+"' > "+stateDir+"/probe"); code != 0 {
		t.Fatalf("writing into %s in the allocation: exit %d\n%s", stateDir, code, out)
	}
	if b, err := os.ReadFile(filepath.Join(nomad.Volumes["lvs-sync"], "probe")); err != nil || strings.TrimSpace(string(b)) != probe {
		t.Errorf("the host volume has %q (%v), want %q", b, err, probe)
	}
	runJob("info") // new arguments: a new allocation
	next := running(alloc.ID)
	code, out := nomad.CLI(t, "alloc", "exec", "-task", "lvs-sync", next.ID, "/bin/cat", stateDir+"/probe")
	if code != 0 || strings.TrimSpace(out) != probe {
		t.Errorf("the next allocation reads %q from %s (exit %d), want %q", out, stateDir, code, probe)
	}
	if code, out := nomad.CLI(t, "job", "stop", "-purge", "lvs-sync"); code != 0 {
		t.Errorf("nomad job stop: %d %s", code, out)
	}
}

// transition is a change of one real seen in the kernel.
type transition struct {
	real     string
	from, to int // weight; -1 absent
	at       time.Time
}

// TestWebRollingUpdate deploys examples/web.nomad.hcl and rolls it while
// lvs-sync follows Consul (its kernel an in-memory table): new allocations
// join once passing; old ones, with connections open, drain at weight 0
// and go once their connections end; two of three serve throughout; the
// log of states shows just that.
func TestWebRollingUpdate(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("the example job serves HTTP with python3, which is not on PATH: %v", err)
	}
	consul := testconsul.Start(t)
	nomad := testnomad.Start(t, consul.HTTPAddr)
	job := webJobOffLoopback(t, python)
	run := func(version string) {
		code, out := nomad.CLI(t, "job", "run", "-detach", "-var", "version="+version, "-var", "command="+python, job)
		if code != 0 {
			t.Fatalf("nomad job run: exit %d\n%s", code, out)
		}
	}
	cfg, err := config.Parse([]byte(`virtual_service "web" {
  address       = "10.10.10.60:80"
  forwarding    = "masq"
  tags          = ["prod"]
  drain_timeout = "60s"
}`), "lvs-sync.hcl")
	if err != nil {
		t.Fatal(err)
	}
	kernel := ipvstest.New(ipvs.State{})
	key := cfg.VirtualServices[0].Key()
	var mu sync.Mutex
	var log []transition
	last := map[string]int{}
	d, err := daemon.New(daemon.Options{Config: cfg, Source: consulsrc.NewSource(consul.Client, consulsrc.Options{}), Kernel: kernel,
		OnSync: func(daemon.Report) {
			mu.Lock()
			defer mu.Unlock()
			now := testenv.Weights(kernel.State(), key)
			for r, w := range now {
				if old, ok := last[r]; !ok || old != w {
					from := -1
					if ok {
						from = old
					}
					log = append(log, transition{r, from, w, time.Now()})
				}
			}
			for r, w := range last {
				if _, ok := now[r]; !ok {
					log = append(log, transition{r, w, -1, time.Now()})
				}
			}
			last = now
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	weights := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for r, w := range last {
			out[r] = w
		}
		return out
	}

	run("1")
	waitFor(t, "three v1 reals", 90*time.Second, func() bool {
		w := weights()
		return len(w) == 3 && w[firstKey(w)] == 1
	})
	v1 := weights()
	// Each v1 real has a client connected, as under load.
	for r := range v1 {
		ap := netip.MustParseAddrPort(r)
		if err := kernel.SetConns(key, lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()}, 1, 0); err != nil {
			t.Fatal(err)
		}
	}

	run("2")
	ended := map[string]bool{}
	waitFor(t, "the rolling update done: three v2 reals, no v1", 180*time.Second, func() bool {
		w := weights()
		// A v1 real at weight 0 is draining: its connection ends now.
		for r := range v1 {
			if w[r] == 0 && !ended[r] {
				if _, in := w[r]; in {
					ap := netip.MustParseAddrPort(r)
					_ = kernel.SetConns(key, lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()}, 0, 1)
					ended[r] = true
				}
			}
		}
		newOnes := 0
		for r, wt := range w {
			if _, old := v1[r]; old {
				return false
			}
			if wt == 1 {
				newOnes++
			}
		}
		return newOnes == 3
	})

	mu.Lock()
	defer mu.Unlock()
	var lines []string
	for _, tr := range log {
		lines = append(lines, fmt.Sprintf("%s %-16s %2d -> %2d", tr.at.Format("15:04:05.000"), tr.real, tr.from, tr.to))
	}
	t.Logf("the states of the reals during the update:\n%s", strings.Join(lines, "\n"))
	// The drain rules: a v1 real goes 1 -> 0, then 0 -> gone, never
	// straight from serving to gone; a v2 real appears serving, once its
	// check passes, and stays.
	for r := range v1 {
		var seq []int
		for _, tr := range log {
			if tr.real == r {
				seq = append(seq, tr.to)
			}
		}
		if !slices.Equal(seq, []int{1, 0, -1}) {
			t.Errorf("v1 real %s went through %v, want [1 0 -1] (serving, draining, gone)", r, seq)
		}
	}
	for _, tr := range log {
		if _, old := v1[tr.real]; !old && (tr.from != -1 || tr.to != 1) {
			t.Errorf("v2 real %s changed %d -> %d; want it to appear at weight 1 and stay", tr.real, tr.from, tr.to)
		}
	}
	// Nomad stops an old allocation before it places the new one, one at a
	// time (max_parallel = 1): once v1 is up, at least count - 1 = 2 reals
	// serve at every moment, so the VIP never lacks a server.
	serving := map[string]bool{}
	least := 3
	for i, tr := range log {
		serving[tr.real] = tr.to > 0
		n := 0
		for _, up := range serving {
			if up {
				n++
			}
		}
		if i >= 2 { // after v1's three reals came up
			least = min(least, n)
		}
	}
	t.Logf("at least %d reals served at every moment of the update", least)
	if least < 2 {
		t.Errorf("only %d reals served at one moment of the update, want at least 2", least)
	}
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

func TestMain(m *testing.M) {
	// Job files are read relative to this directory.
	if _, err := os.Stat("lvs-sync.nomad.hcl"); err != nil {
		fmt.Fprintln(os.Stderr, "run from the nomad directory:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// webJobOffLoopback is examples/web.nomad.hcl as a dev client can run it
// for lvs-sync: the dev client puts allocations on 127.0.0.1, which render
// rightly leaves out (no real server is on loopback), so the service
// advertises a documentation address instead (lvs-sync's kernel here is
// in memory: no packet goes there), and its check probes the server on
// 127.0.0.1 from a script, as Nomad forbids host checks beside a custom
// address; and its port is dynamic. The update block, the shutdown delay
// and the tags — what the rolling update is about — are the example's.
func webJobOffLoopback(t *testing.T, python string) string {
	t.Helper()
	b, err := os.ReadFile("../examples/web.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	check := regexp.MustCompile(`(?s)check \{\n\s*name\s*= "web http".*?\n      \}`)
	if !check.MatchString(src) {
		t.Fatal("the example's check block moved: update webJobOffLoopback")
	}
	src = check.ReplaceAllString(src, `check {
        name     = "web http"
        type     = "script"
        task     = "server"
        command  = "`+python+`"
        args     = ["-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ['NOMAD_PORT_http'], timeout=1)"]
        interval = "1s"
        timeout  = "2s"
      }`)
	src = strings.Replace(src, `      port     = "http"`, `      port     = "http"
      address  = "192.0.2.10"`, 1)
	// One dev client runs all three allocations: they cannot share the
	// example's static port 80 (the gate virtual port), so each takes a
	// dynamic one; this test's virtual service is masq.
	static := "      port \"http\" {\n        static = 80\n      }"
	if !strings.Contains(src, static) {
		t.Fatal("the example's static port moved: update webJobOffLoopback")
	}
	src = strings.Replace(src, static, `      port "http" {}`, 1)
	p := filepath.Join(t.TempDir(), "web.nomad.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
