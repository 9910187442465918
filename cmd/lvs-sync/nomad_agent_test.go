package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/config"
	apipkg "github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// webNomadJob is examples/web-nomad.nomad.hcl as one dev client can run
// it: the three allocations cannot share the example's static port 80 (the
// gate virtual port), so each takes a dynamic one, for a masq virtual
// service. The service, its provider, tags and http check are the
// example's.
func webNomadJob(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "web-nomad.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	static := "      port \"http\" {\n        static = 80\n      }"
	if !strings.Contains(string(b), static) {
		t.Fatal("the example's static port moved: update webNomadJob")
	}
	p := filepath.Join(t.TempDir(), "web-nomad.nomad.hcl")
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), static, `      port "http" {}`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRealNomadRenderAndExplain runs examples/web-nomad.nomad.hcl (three
// allocations, an http check, provider = "nomad") on a real Nomad dev
// agent without Consul, its client on a non-loopback interface so that the
// services are renderable: `lvs-sync render` shows the three reals. Then
// one allocation's server is stopped (SIGSTOP: the allocation keeps
// running, its check times out): render leaves it out, and `lvs-sync
// explain` of a daemon watching Nomad names its allocation and its
// failing check.
func TestRealNomadRenderAndExplain(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("the example job serves HTTP with python3, which is not on PATH: %v", err)
	}
	iface, addr := testnomad.HostInterface(t)
	agent := testnomad.StartWith(t, "", testnomad.Options{NetworkInterface: iface})
	if code, out := agent.CLI(t, "job", "run", "-detach", "-var", "command="+python, webNomadJob(t)); code != 0 {
		t.Fatalf("nomad job run: exit %d\n%s", code, out)
	}
	cfgSrc := fmt.Sprintf(`
nomad {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
  tags       = ["prod"]
  provider   = "nomad"
}
`, agent.Addr)
	cfgPath := writeConfig(t, cfgSrc)
	realLine := regexp.MustCompile(`^-a -t 10\.10\.10\.60:80 -r ` + regexp.QuoteMeta(addr.String()) + `:(\d+) -m -w 1$`)
	// reals is what render shows now: each real's line, and the whole.
	reals := func() ([]string, string) {
		code, out, errOut := cli("render", "-config", cfgPath, "-timeout", "10s")
		if code != 0 {
			t.Fatalf("render exited %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if lines[0] != "-A -t 10.10.10.60:80 -s wlc" {
			t.Fatalf("render:\n%s", out)
		}
		for _, l := range lines[1:] {
			if !realLine.MatchString(l) {
				t.Fatalf("render shows a real other than the allocations' on %s:\n%s", addr, out)
			}
		}
		return lines[1:], out
	}
	// A daemon watching Nomad, for explain, and for waiting: render is
	// asked once each time the daemon has seen what it should show (each
	// in-process render makes a source of its own, whose idle connections
	// count against Nomad's per-client limit until they time out).
	cfg, err := config.Parse([]byte(cfgSrc), "lvs-sync.hcl")
	if err != nil {
		t.Fatal(err)
	}
	src, err := newCatalogs(cfg, false, func(string) string { return "" }, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	kernel := ipvstest.New(ipvs.State{})
	reg := prometheus.NewRegistry()
	d, err := daemon.New(daemon.Options{Config: cfg, Source: src, Kernel: kernel, Metrics: metrics.New(reg, "test")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(apipkg.Handler(d, reg, apipkg.Options{}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	api := strings.TrimPrefix(srv.URL, "http://")
	inKernel := func() int {
		n := 0
		for _, svc := range kernel.State() {
			for _, r := range svc.Reals {
				if r.Weight > 0 {
					n++
				}
			}
		}
		return n
	}

	took := testenv.WaitFor(t, "the daemon serves the three allocations", 90*time.Second, func() bool { return inKernel() == 3 })
	t.Logf("the daemon had 3 reals %d s after the job was submitted", int(took.Seconds()))
	three, out := reals()
	if len(three) != 3 {
		t.Fatalf("render shows %d reals, want the three allocations':\n%s", len(three), out)
	}

	// Stop one allocation's server: its check fails, the allocation runs.
	var allocs []struct{ ID, ClientStatus string }
	if err := agent.Get("/v1/job/web-nomad/allocations", &allocs); err != nil {
		t.Fatal(err)
	}
	allocs = slices.DeleteFunc(allocs, func(a struct{ ID, ClientStatus string }) bool { return a.ClientStatus != "running" })
	if len(allocs) != 3 {
		t.Fatalf("%d running allocations, want 3: %v", len(allocs), allocs)
	}
	victim := allocs[0].ID
	if code, out := agent.CLI(t, "alloc", "signal", "-s", "SIGSTOP", victim, "server"); code != 0 {
		t.Fatalf("nomad alloc signal: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { agent.CLI(t, "alloc", "signal", "-s", "SIGCONT", victim, "server") })
	took = testenv.WaitFor(t, "the daemon takes the stopped allocation's real out", 30*time.Second, func() bool { return inKernel() == 2 })
	t.Logf("the stopped allocation's real left the kernel %d ms after SIGSTOP (check interval 2s, timeout 1s)", took.Milliseconds())
	two, out := reals()
	if len(two) != 2 {
		t.Fatalf("render shows %d reals, want 2 with one allocation's check failing:\n%s", len(two), out)
	}
	for _, l := range two {
		if !slices.Contains(three, l) {
			t.Errorf("real %q was not among the three", l)
		}
	}
	waitUntil(t, "explain names the stopped allocation with its failing check", func() bool {
		var code int
		code, out, _ = cli("explain", "-api", api, "web")
		return code == 0 && strings.Contains(out, "allocation: "+victim+"\n  health: critical (failing: \"web http\" ")
	})
	if strings.Count(out, "allocation: ") != 3 || !strings.Contains(out, `Nomad service "web"`) {
		t.Errorf("explain:\n%s", out)
	}
	t.Logf("explain:\n%s", out)
}

// TestRunWithNomadAlone runs the built binary, `lvs-sync run -dry-run`,
// on a config of Nomad services alone against a real Nomad agent, with
// CONSUL_HTTP_ADDR at a listener that counts connections: `lvs-sync
// status` shows the three allocations' reals, and Consul was never
// contacted.
func TestRunWithNomadAlone(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("the example job serves HTTP with python3, which is not on PATH: %v", err)
	}
	iface, addr := testnomad.HostInterface(t)
	agent := testnomad.StartWith(t, "", testnomad.Options{NetworkInterface: iface})
	if code, out := agent.CLI(t, "job", "run", "-detach", "-var", "command="+python, webNomadJob(t)); code != 0 {
		t.Fatalf("nomad job run: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lvs-sync")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lvs-sync/lvs-sync/cmd/lvs-sync").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lvs-sync: %v\n%s", err, out)
	}
	consulAddr, consulConns := refusedListener(t)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testconsul.FreePorts(t, 1)[0])
	cfg := writeConfig(t, fmt.Sprintf(`
api {
  address = %q
}
nomad {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
  tags       = ["prod"]
  provider   = "nomad"
}
`, apiAddr, agent.Addr))
	logPath := filepath.Join(dir, "run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "-dry-run", "-config", cfg)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+consulAddr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("lvs-sync run: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("lvs-sync run's log:\n%s", b)
		}
	}()
	var out string
	testenv.WaitFor(t, "status shows the three allocations' reals", 90*time.Second, func() bool {
		var code int
		code, out, _ = cli("status", "-api", apiAddr)
		return code == 0 && strings.Count(out, "-> "+addr.String()+":") == 3
	})
	if n := consulConns.Load(); n != 0 {
		t.Errorf("lvs-sync run connected to consul %d times for a config of nomad services alone", n)
	}
	if !strings.Contains(out, "web (nomad: web)") {
		t.Errorf("status does not name the nomad service:\n%s", out)
	}
	t.Logf("status:\n%s", out)
}
