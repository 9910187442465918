package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/config"
	apipkg "github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// operated is a daemon over a real Consul and the fake kernel, with its
// API served on loopback, as `lvs-sync run` wires it.
type operated struct {
	agent  *testconsul.Agent
	kernel *ipvstest.Kernel
	addr   string
	stop   func()
}

var foreignKey = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.99.0.1"), Port: 80}

func operate(t *testing.T, agent *testconsul.Agent, src string) *operated {
	t.Helper()
	cfg, err := config.Parse([]byte(src), "lvs-sync.hcl")
	if err != nil {
		t.Fatal(err)
	}
	kernel := ipvstest.New(ipvs.State{foreignKey: {Scheduler: "sh", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{
		{Addr: netip.MustParseAddr("10.99.1.1"), Port: 80}: {Weight: 7, Forward: lvs.Route},
	}}})
	reg := prometheus.NewRegistry()
	d, err := daemon.New(daemon.Options{Config: cfg, Source: consul.NewSource(agent.Client, daemonWatch()), Kernel: kernel,
		Metrics: metrics.New(reg, "test")})
	if err != nil {
		t.Fatal(err)
	}
	metrics.NewTraffic(reg, d.Services) // as run wires it
	srv := httptest.NewServer(apipkg.Handler(d, reg, apipkg.Options{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	o := &operated{agent: agent, kernel: kernel, addr: strings.TrimPrefix(srv.URL, "http://")}
	o.stop = func() { cancel(); <-done; srv.Close() }
	t.Cleanup(o.stop)
	return o
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 10*time.Second, cond)
}

const operatedConfig = `
api {
  consul_unreachable_after = "1s"
}
virtual_service "web" {
  address       = "10.10.10.60:80"
  forwarding    = "gate"
  quiescent     = true
  drain_timeout = "30s"
}
virtual_service "shop" {
  address    = "10.10.10.61:80"
  forwarding = "masq"
  fallback   = "local"
}
`

// TestStatusAndExplain runs a daemon with a real of every kind — passing,
// warning, quiesced, draining, fallback — beside a foreign service, and
// checks what `lvs-sync status` and `lvs-sync explain` say of them.
func TestStatusAndExplain(t *testing.T) {
	agent := testconsul.Start(t)
	reg := func(id, addr string, w int, status string) {
		agent.Register(t, &api.AgentServiceRegistration{ID: id, Name: "web", Address: addr, Port: 8080,
			Weights: &api.AgentWeights{Passing: w, Warning: 1}}, status)
	}
	reg("web1", "10.1.0.11", 5, api.HealthPassing)
	reg("web2", "10.1.0.12", 5, api.HealthWarning)
	reg("web3", "10.1.0.13", 5, api.HealthPassing)
	reg("web4", "10.1.0.14", 5, api.HealthPassing)
	// Consul defers an output-only change to the catalog: change the status too.
	agent.SetStatus(t, "web3", api.HealthCritical, "HTTP GET http://10.1.0.13:8080/health: 503 Service Unavailable")
	o := operate(t, agent, operatedConfig)
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.60"), Port: 80}
	waitUntil(t, "web synced", func() bool { svc := o.kernel.State()[web]; return svc != nil && len(svc.Reals) == 4 })
	// web4 has a connection open and is deregistered: it drains.
	if err := o.kernel.SetConns(web, lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.14"), Port: 80}, 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := agent.Client.Agent().ServiceDeregister("web4"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "web4 draining", func() bool {
		return o.kernel.State()[web].Reals[lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.14"), Port: 80}].Weight == 0
	})

	code, out, errOut := cli("status", "-api", o.addr)
	if code != 0 {
		t.Fatalf("status exited %d: %s", code, errOut)
	}
	t.Logf("lvs-sync status:\n%s", out)
	for _, want := range []string{
		"Prot LocalAddress:Port Scheduler Flags",
		"TCP  10.10.10.60:80 wlc",
		"web (web)",
		"  -> 10.1.0.11:80           Route   5      0          0         lvs-sync-test / web1 / passing / passing",
		"  -> 10.1.0.12:80           Route   1      0          0         lvs-sync-test / web2 / warning / warning",
		"  -> 10.1.0.13:80           Route   0      0          0         lvs-sync-test / web3 / critical / quiescent",
		"  -> 10.1.0.14:80           Route   0      2          1         draining",
		"TCP  10.10.10.61:80 wlc",
		"shop (shop)",
		"  -> 10.10.10.61:80         Masq    1      0          0         fallback",
		"TCP  10.99.0.1:80 sh fingerprint 480f640ce796", // as the README shows it
		"(foreign: not lvs-sync's)",
		"  -> 10.99.1.1:80           Route   7",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}

	code, out, _ = cli("status", "-api", o.addr, "-json")
	var st status.View
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st.Services) != 3 || st.Synced.IsZero() {
		t.Errorf("status -json: exit %d, %v, %+v", code, err, st)
	}

	code, out, errOut = cli("explain", "-api", o.addr, "web", "10.1.0.13:80")
	if code != 0 {
		t.Fatalf("explain exited %d: %s", code, errOut)
	}
	t.Logf("lvs-sync explain web 10.1.0.13:80:\n%s", out)
	for _, want := range []string{
		`virtual_service "web": tcp://10.10.10.60:80, Consul service "web", forwarding gate, scheduler wlc`,
		"instance web3 on node lvs-sync-test (10.1.0.13:8080): IN as real 10.1.0.13:80, weight 0",
		"health: critical",
		`critical   web3-ttl                 "web3 ttl": "HTTP GET http://10.1.0.13:8080/health: 503 Service Unavailable"`,
		`passing    serfHealth`,
		"rule: critical, quiescent = true: kept at weight 0",
		// The instances listen on 8080, which gate cannot reach.
		"warning: port 8080 is not the virtual port 80: gate cannot translate ports",
		"in the kernel: Route weight 0 (quiescent)",
		"last changed: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q", want)
		}
	}
	code, out, _ = cli("explain", "-api", o.addr, "web", "10.1.0.14:80")
	if code != 0 || !strings.Contains(out, "real 10.1.0.14:80, no instance: draining: its instance left") {
		t.Errorf("explain of the draining real: exit %d\n%s", code, out)
	}
	code, out, _ = cli("explain", "-api", o.addr, "shop")
	if code != 0 || !strings.Contains(out, "real 10.10.10.61:80, no instance: the fallback") || !strings.Contains(out, "Consul has no instance") {
		t.Errorf("explain of the fallback: exit %d\n%s", code, out)
	}
	if code, _, errOut := cli("explain", "-api", o.addr, "nope"); code != 1 || !strings.Contains(errOut, `no virtual_service "nope"`) {
		t.Errorf("explain of an unknown service: exit %d %s", code, errOut)
	}
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// value returns the metric with the given labels, -1 if absent.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := families[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsAndHealth parses /metrics with the Prometheus text parser and
// watches the counters move as a check flips; /v1/health turns 503 when
// Consul has been unreachable longer than consul_unreachable_after.
func TestMetricsAndHealth(t *testing.T) {
	agent := testconsul.Start(t)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 8080}, api.HealthPassing)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web2", Name: "web", Address: "10.1.0.12", Port: 8080}, api.HealthPassing)
	o := operate(t, agent, operatedConfig)
	health := func() (int, apipkg.Health) {
		resp, err := http.Get("http://" + o.addr + "/v1/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h apipkg.Health
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return resp.StatusCode, h
	}
	waitUntil(t, "healthy", func() bool { code, _ := health(); return code == 200 })

	before := scrape(t, o.addr)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lvs_sync_reals", []string{"virtual_service", "web", "state", "serving"}, 2},
		{"lvs_sync_reals", []string{"virtual_service", "shop", "state", "fallback"}, 1},
		{"lvs_sync_reals_desired", []string{"virtual_service", "web"}, 2},
		{"lvs_sync_reals_applied", []string{"virtual_service", "web"}, 2},
		{"lvs_sync_foreign_services", nil, 1},
		{"lvs_sync_build_info", []string{"version", "test"}, 1},
		// The traffic metrics are wired: present, by identity, and 0 in
		// the dry run's in-memory kernel.
		{"lvs_sync_virtual_service_connections_total", []string{"virtual_service", "web", "service", "web"}, 0},
		{"lvs_sync_virtual_service_bytes_total", []string{"virtual_service", "web", "service", "web", "direction", "in"}, 0},
	} {
		if got := value(before, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if mf := before["lvs_sync_real_active_connections"]; mf == nil || len(mf.Metric) < 2 {
		t.Errorf("lvs_sync_real_active_connections: %v, want a series for each real", mf)
	}
	if value(before, "lvs_sync_catalog_queries_total", "service", "web") < 1 || value(before, "lvs_sync_catalog_last_index", "service", "web") < 1 ||
		value(before, "lvs_sync_kernel_operations_total", "op", "add_real", "result", "ok") != 3 {
		t.Errorf("catalog and kernel counters: %v %v %v", value(before, "lvs_sync_catalog_queries_total", "service", "web"),
			value(before, "lvs_sync_catalog_last_index", "service", "web"), value(before, "lvs_sync_kernel_operations_total", "op", "add_real", "result", "ok"))
	}

	// The API reads what the loop writes: ask for the status all along, for
	// the race detector to see both sides.
	stopPolling := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stopPolling:
				return
			default:
			}
			for _, path := range []string{"/v1/status", "/v1/explain/web", "/v1/health", "/metrics"} {
				if resp, err := http.Get("http://" + o.addr + path); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	agent.SetStatus(t, "web2", api.HealthCritical, "down")
	waitUntil(t, "counters move", func() bool {
		after := scrape(t, o.addr)
		return value(after, "lvs_sync_kernel_operations_total", "op", "update_real", "result", "ok") >= 1 &&
			value(after, "lvs_sync_catalog_queries_total", "service", "web") > value(before, "lvs_sync_catalog_queries_total", "service", "web") &&
			value(after, "lvs_sync_reals", "virtual_service", "web", "state", "quiesced") == 1 &&
			value(after, "lvs_sync_catalog_to_kernel_seconds") > value(before, "lvs_sync_catalog_to_kernel_seconds")
	})

	close(stopPolling)
	<-polled
	agent.Stop()
	waitUntil(t, "unhealthy once Consul is gone for 1s", func() bool {
		code, h := health()
		return code == 503 && strings.Contains(h.Reason, "consul unreachable")
	})
	// With Consul gone the change feeds fail: their errors are counted
	// under the feed's path (per-service reads happen only on changes).
	if after := scrape(t, o.addr); value(after, "lvs_sync_catalog_query_errors_total", "service", "/v1/catalog/services") < 1 {
		t.Error("no catalog errors counted with Consul gone")
	}
}

func TestHealthBeforeTheFirstSync(t *testing.T) {
	port := testconsul.FreePorts(t, 1)[0]
	conf := api.DefaultConfig()
	conf.Address = fmt.Sprintf("127.0.0.1:%d", port)
	client, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := config.Parse([]byte(operatedConfig), "t.hcl")
	d, err := daemon.New(daemon.Options{Config: cfg, Source: consul.NewSource(client, consul.Options{}), Kernel: ipvstest.New(ipvs.State{})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(apipkg.Handler(d, prometheus.NewRegistry(), apipkg.Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("health before any sync: %d, want 503", resp.StatusCode)
	}
}

func TestStatusWithoutADaemon(t *testing.T) {
	port := testconsul.FreePorts(t, 1)[0]
	code, _, errOut := cli("explain", "-api", fmt.Sprintf("127.0.0.1:%d", port), "web")
	if code != 1 || !strings.Contains(errOut, "lvs-sync is not running") {
		t.Errorf("explain without a daemon: exit %d %q", code, errOut)
	}
}

func daemonWatch() consul.Options {
	return consul.Options{MinInterval: 10 * time.Millisecond, WaitTime: 5 * time.Second}
}
