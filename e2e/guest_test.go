//go:build vmguest

package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/internal/ipvsread"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// consul is the host's agent, reached through qemu's forward. One client
// serves every test: each client keeps its own idle connections, and the
// agent allows 200 per client address, which all of the guest shares.
func consul(t testing.TB) *api.Client {
	t.Helper()
	c, err := sharedConsul()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var sharedConsul = sync.OnceValues(func() (*api.Client, error) {
	conf := api.DefaultConfig()
	conf.Address = os.Getenv("LVS_CONSUL")
	return api.NewClient(conf)
})

// registerReals registers web1..web3 with TTL checks, passing, with the
// given passing weights.
func registerReals(t *testing.T, weights ...int) {
	t.Helper()
	for i := range reals {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		registerReal(t, i, w)
	}
}

// registerReal registers web<i+1>, on reals[i], with a TTL check, passing.
func registerReal(t *testing.T, i, weight int) {
	t.Helper()
	r := reals[i]
	reg := &api.AgentServiceRegistration{
		ID: fmt.Sprintf("web%d", i+1), Name: "web", Address: r.addr, Port: r.port,
		Weights: &api.AgentWeights{Passing: weight, Warning: 1},
		Check:   &api.AgentServiceCheck{CheckID: fmt.Sprintf("web%d-ttl", i+1), TTL: "10m", Status: api.HealthPassing},
	}
	if err := consul(t).Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("registering %s: %v", reg.ID, err)
	}
	// Registering again keeps an existing check's status: set it.
	setCheck(t, reg.ID, api.HealthPassing)
}

func setCheck(t *testing.T, id, status string) {
	t.Helper()
	if err := consul(t).Agent().UpdateTTL(id+"-ttl", "set by the e2e test", status); err != nil {
		t.Fatalf("setting %s %s: %v", id, status, err)
	}
}

// directorConfig is the consul and director blocks a guest test's config
// starts with; %s is the host's Consul.
const directorConfig = `
consul {
  address = "%s"
}
director {
  vip_interface      = "lvs0"
  reconcile_interval = "2s"
  state_file         = "/tmp/lvs-sync/state.json"
}
`

// writeServicesConfig writes directorConfig and services to a file of the
// test's and returns its path.
func writeServicesConfig(t *testing.T, services string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(directorConfig, os.Getenv("LVS_CONSUL"))+services), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// registerPassing registers reg with a TTL check <ID>-ttl, passing,
// deregistered at the end of the test.
func registerPassing(t *testing.T, reg *api.AgentServiceRegistration) {
	t.Helper()
	reg.Check = &api.AgentServiceCheck{CheckID: reg.ID + "-ttl", TTL: "10m", Status: api.HealthPassing}
	if err := consul(t).Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("registering %s: %v", reg.ID, err)
	}
	// Registering again keeps an existing check's status: set it.
	setCheck(t, reg.ID, api.HealthPassing)
	id := reg.ID
	t.Cleanup(func() { _ = consul(t).Agent().ServiceDeregister(id) })
}

const baseConfig = directorConfig + `virtual_service "web-gate" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  scheduler  = "rr"
  service    = "web"
}
virtual_service "web-masq" {
  address    = "10.10.10.61:80"
  forwarding = "masq"
  scheduler  = "rr"
  service    = "web"
}
`

const ipipConfig = `
virtual_service "web-ipip" {
  address    = "10.10.10.62:80"
  forwarding = "ipip"
  scheduler  = "rr"
  service    = "web"
}
`

func writeConfig(t *testing.T, withIPIP bool) string {
	t.Helper()
	return writeConfigWith(t, withIPIP, "")
}

// writeConfigWith adds attributes to every virtual service.
func writeConfigWith(t *testing.T, withIPIP bool, attrs string) string {
	t.Helper()
	src := fmt.Sprintf(baseConfig, os.Getenv("LVS_CONSUL"))
	if withIPIP {
		src += ipipConfig
	}
	src = strings.ReplaceAll(src, "  service    = \"web\"\n", "  service    = \"web\"\n"+attrs+"\n")
	p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lvsSync is a running `lvs-sync run` process.
type lvsSync struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (l *lvsSync) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log.Write(p)
}

func (l *lvsSync) logText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log.String()
}

func startLVS(t testing.TB, config string) *lvsSync {
	t.Helper()
	l := &lvsSync{done: make(chan struct{})}
	l.cmd = exec.Command("/bin/lvs-sync", "run", "-config", config, "-log-level", "debug")
	l.cmd.Stdout, l.cmd.Stderr = l, l
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.cmd.Wait(); close(l.done) }()
	t.Cleanup(func() {
		l.stop(t, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("lvs-sync log:\n%s", l.logText())
		}
	})
	return l
}

func (l *lvsSync) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	select {
	case <-l.done:
		return
	default:
	}
	_ = l.cmd.Process.Signal(sig)
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		// SIGQUIT first: Go prints every goroutine's stack and exits, so
		// the log says where it hung (a CI run lost one after "drained").
		// Killed if even that fails, not left running: a stray lvs-sync
		// would hold the next test's lock, API port or VIP.
		_ = l.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-l.done:
		case <-time.After(5 * time.Second):
			_ = l.cmd.Process.Kill()
			<-l.done
		}
		t.Fatalf("lvs-sync did not stop on %v (quit); its log's end:\n%s", sig, tail(l.logText(), 400))
	}
}

// waitSynced waits for lvs-sync's first sync: until then, what the kernel
// holds may be a previous test's.
func (l *lvsSync) waitSynced(t *testing.T) {
	t.Helper()
	waitFor(t, "lvs-sync's first sync", 15*time.Second, func() bool { return strings.Contains(l.logText(), "synced: reason=") })
}

var kernel = func() *ipvsread.Netlink {
	k, err := ipvsread.Open(5*time.Second, nil)
	if err != nil {
		panic(err)
	}
	return k
}()

// realsOf returns the weights of the reals of the TCP service at vip:80.
func realsOf(t *testing.T, vip string) map[string]int {
	t.Helper()
	return weightsAt(t, lvs.TCP, vip, 80)
}

// weightsAt returns the weights of the reals of the service at vip:port,
// as the kernel has them.
func weightsAt(t *testing.T, proto lvs.Protocol, vip string, port uint16) map[string]int {
	t.Helper()
	key := lvs.ServiceKey{Protocol: proto, Addr: netip.MustParseAddr(vip), Port: port}
	st, err := ipvs.Read(kernel, func(k lvs.ServiceKey) bool { return k == key })
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Weights(st, key)
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return testenv.WaitFor(t, what, timeout, cond)
}

func ipvsadm(t testing.TB, args ...string) string {
	t.Helper()
	out, err := sh(append([]string{"/sbin/ipvsadm"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// port is the real port of reals[i] for a forwarding method.
func port(fwd string, i int) string {
	if fwd == "masq" {
		return fmt.Sprint(reals[i].port)
	}
	return "80"
}

// realAddrs is the real servers of a VIP as lvs-sync renders them.
func realAddrs(fwd string, weights ...int) map[string]int {
	m := map[string]int{}
	for i, r := range reals {
		port := 80
		if fwd == "masq" {
			port = r.port
		}
		m[fmt.Sprintf("%s:%d", r.addr, port)] = weights[i]
	}
	return m
}

// TestForwardingWithRealTraffic drives every forwarding method through
// Consul and checks, with HTTP requests from the client namespace, who
// answers.
func TestForwardingWithRealTraffic(t *testing.T) {
	registerReals(t, 1, 1, 1)
	l := startLVS(t, writeConfig(t, true))
	for _, tc := range []struct{ fwd, vip string }{{"masq", vipMasq}, {"gate", vipGate}, {"ipip", vipIPIP}} {
		t.Run(tc.fwd, func(t *testing.T) {
			waitFor(t, "three reals", 15*time.Second, func() bool {
				return testenv.SameWeights(realsOf(t, tc.vip), realAddrs(tc.fwd, 1, 1, 1))
			})
			// rr: six new connections reach each real server twice.
			if got := answers(t, tc.vip, 6); got["rs1"] != 2 || got["rs2"] != 2 || got["rs3"] != 2 {
				t.Errorf("answers %v, want rs1, rs2 and rs3 twice each", got)
			}

			setCheck(t, "web2", api.HealthCritical)
			// Out of rotation (weight 0) at once; out of the table once its
			// connections settle (they are all closed here).
			out := waitFor(t, "rs2 out of rotation", 5*time.Second, func() bool { return realsOf(t, tc.vip)[reals[1].addr+":"+port(tc.fwd, 1)] == 0 })
			took := waitFor(t, "rs2 leaves", 5*time.Second, func() bool { return len(realsOf(t, tc.vip)) == 2 })
			t.Logf("%s: failed check took the real out of rotation %v and out of the table %v after the update", tc.fwd, out, took)
			if took > time.Second {
				t.Errorf("removal took %v, want within 1s", took)
			}
			if got := answers(t, tc.vip, 6); got["rs2"] != 0 || got["rs1"] != 3 || got["rs3"] != 3 {
				t.Errorf("answers with rs2 failing: %v", got)
			}

			setCheck(t, "web2", api.HealthPassing)
			took = waitFor(t, "rs2 returns", 5*time.Second, func() bool { return len(realsOf(t, tc.vip)) == 3 })
			t.Logf("%s: passing check brought the real back %v after the update", tc.fwd, took)
			if got := answers(t, tc.vip, 6); got["rs2"] != 2 {
				t.Errorf("answers with rs2 back: %v", got)
			}
			// The traffic shows on /metrics, by virtual service and
			// Consul service; a masq director sees the replies too.
			checkTrafficMetrics(t, "web-"+tc.fwd, tc.fwd == "masq")
		})
	}

	// Weights from Consul show in ipvsadm -Ln.
	registerReals(t, 5, 1, 3)
	waitFor(t, "weights 5, 1, 3", 5*time.Second, func() bool {
		return testenv.SameWeights(realsOf(t, vipGate), realAddrs("gate", 5, 1, 3))
	})
	out := ipvsadm(t, "-Ln", "-t", vipGate+":80")
	for _, want := range []string{"10.1.0.11:80                 Route   5", "10.1.0.12:80                 Route   1", "10.1.0.13:80                 Route   3"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvsadm -Ln lacks %q:\n%s", want, out)
		}
	}
	t.Logf("ipvsadm -Ln:\n%s", ipvsadm(t, "-Ln"))
	registerReals(t, 1, 1, 1)
	_ = l
}

// TestForeignServiceSurvives creates a virtual service by hand beside
// lvs-sync's; no sync, catalog-driven or periodic, touches it.
func TestForeignServiceSurvives(t *testing.T) {
	registerReals(t, 1, 1, 1)
	ipvsadm(t, "-A", "-t", "10.10.10.99:80", "-s", "sh")
	ipvsadm(t, "-a", "-t", "10.10.10.99:80", "-r", "10.1.0.11:80", "-g", "-w", "7")
	defer ipvsadm(t, "-D", "-t", "10.10.10.99:80")
	foreign := func() string {
		var lines []string
		for _, l := range strings.Split(ipvsadm(t, "-Sn"), "\n") {
			if strings.Contains(l, "10.10.10.99:80") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	before := foreign()

	l := startLVS(t, writeConfig(t, true))
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	setCheck(t, "web1", api.HealthCritical)
	waitFor(t, "web1 out", 5*time.Second, func() bool { return len(realsOf(t, vipGate)) == 2 })
	setCheck(t, "web1", api.HealthPassing)
	waitFor(t, "web1 back", 5*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	time.Sleep(2500 * time.Millisecond) // at least one reconcile period
	if !strings.Contains(l.logText(), "reason=reconcile") {
		t.Errorf("no periodic reconcile ran in 2.5s")
	}
	if after := foreign(); after != before || !strings.Contains(after, "-w 7") {
		t.Errorf("foreign service changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRestartDropsNothing restarts lvs-sync, gracefully and with kill -9,
// under a steady stream of requests: none fails, and the restarted
// lvs-sync changes nothing in the kernel.
func TestRestartDropsNothing(t *testing.T) {
	registerReals(t, 1, 1, 1)
	config := writeConfig(t, true)
	l := startLVS(t, config)
	// The table the last test left has as many reals: the first sync of
	// this lvs-sync is what sets their weights.
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool {
		return len(realsOf(t, vipGate)) == 3 && len(realsOf(t, vipMasq)) == 3 && len(realsOf(t, vipIPIP)) == 3
	})
	time.Sleep(200 * time.Millisecond)
	before := ipvsadm(t, "-Sn")

	ld := startLoad(client, vipGate, vipMasq, vipIPIP)
	restarts := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}
	for _, sig := range restarts {
		time.Sleep(500 * time.Millisecond)
		l.stop(t, sig)
		l = startLVS(t, config)
		l.waitSynced(t)
		if strings.Contains(l.logText(), "applied changes") {
			t.Errorf("restart after %v changed the kernel:\n%s", sig, l.logText())
		}
	}
	time.Sleep(500 * time.Millisecond)
	ld.end()
	t.Logf("requests during %d restarts: %d answered, %d failed", len(restarts), ld.ok.Load(), ld.failed.Load())
	if ld.failed.Load() != 0 || ld.ok.Load() < 30 {
		t.Errorf("%d requests failed (first: %v), %d answered", ld.failed.Load(), ld.firstErr.Load(), ld.ok.Load())
	}
	if after := ipvsadm(t, "-Sn"); after != before {
		t.Errorf("kernel table changed across restarts:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestDeletedRealComesBack deletes a real by hand: the periodic reconcile
// restores it within one period, with no catalog change.
func TestDeletedRealComesBack(t *testing.T) {
	registerReals(t, 1, 1, 1)
	l := startLVS(t, writeConfig(t, true))
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	ipvsadm(t, "-d", "-t", vipGate+":80", "-r", "10.1.0.12:80")
	if len(realsOf(t, vipGate)) != 2 {
		t.Fatal("ipvsadm -d did not delete the real")
	}
	took := waitFor(t, "real restored", 10*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	t.Logf("real deleted by hand restored after %v (reconcile_interval 2s + up to 10%% jitter)", took)
	if took > 2500*time.Millisecond {
		t.Errorf("restored after %v, want within one reconcile period", took)
	}
	// The log line follows the kernel change by a few milliseconds.
	waitFor(t, "restored by a periodic reconcile", time.Second, func() bool {
		return strings.Contains(l.logText(), "applied changes: reason=reconcile changes=1")
	})
}

// TestVIPsFollowTheConfig checks the VIPs on lvs0 as a virtual service
// leaves the config and comes back; an address added by hand stays.
func TestVIPsFollowTheConfig(t *testing.T) {
	registerReals(t, 1, 1, 1)
	link := hostnet.NewVIPLink("lvs0", nil, nil)
	// Run alone, no test before has made lvs0: a sync of no VIPs makes it.
	if _, _, err := link.Sync(nil, nil); err != nil {
		t.Fatal(err)
	}
	ip("addr", "add", "192.0.2.1/32", "dev", "lvs0")
	vips := func() string {
		addrs, err := link.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(addrs)
	}
	all := "[10.10.10.60 10.10.10.61 10.10.10.62 192.0.2.1]"

	l := startLVS(t, writeConfig(t, true))
	waitFor(t, "all VIPs on lvs0", 15*time.Second, func() bool { return vips() == all })
	l.stop(t, syscall.SIGTERM)

	// web-ipip leaves the config: its service and its VIP go, the rest stay.
	l = startLVS(t, writeConfig(t, false))
	waitFor(t, "ipip VIP gone", 15*time.Second, func() bool { return vips() == "[10.10.10.60 10.10.10.61 192.0.2.1]" })
	if realsOf(t, vipIPIP) != nil {
		t.Error("web-ipip still in the kernel")
	}
	l.stop(t, syscall.SIGTERM)

	l = startLVS(t, writeConfig(t, true))
	waitFor(t, "ipip VIP back", 15*time.Second, func() bool { return vips() == all && len(realsOf(t, vipIPIP)) == 3 })
	if _, err := get(vipIPIP); err != nil {
		t.Errorf("ipip VIP back but not answering: %v", err)
	}
	l.stop(t, syscall.SIGTERM)
	ip("addr", "del", "192.0.2.1/32", "dev", "lvs0")
}
