//go:build vmguest

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// registerBad registers an instance of web, passing, on a node of its
// own at an address no real server can have (Consul refuses such a
// service address, not a node's); it is deregistered when the test ends.
func registerBad(t *testing.T, node, addr string) {
	t.Helper()
	reg := &api.CatalogRegistration{
		Node: node, Address: addr,
		Service: &api.AgentService{ID: node, Service: "web", Port: 8081},
		Check:   &api.AgentCheck{Node: node, CheckID: node + "-check", Name: "check", ServiceID: node, Status: api.HealthPassing},
	}
	if _, err := consul(t).Catalog().Register(reg, nil); err != nil {
		t.Fatalf("registering %s at %s: %v", node, addr, err)
	}
	t.Cleanup(func() { _, _ = consul(t).Catalog().Deregister(&api.CatalogDeregistration{Node: node}, nil) })
}

// TestBadInstancesNeverWedge registers instances at 0.0.0.0 and 224.0.0.1
// (the kernel refuses both as reals: EINVAL) beside good ones. They are
// skipped with a warning each, and every later change of the services
// still happens: a critical real leaves, a new one joins, traffic flows.
func TestBadInstancesNeverWedge(t *testing.T) {
	registerReals(t, 1, 1, 1)
	if err := consul(t).Agent().ServiceDeregister("web3"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { registerReals(t, 1, 1, 1) })
	registerBad(t, "bad-zero", "0.0.0.0")
	registerBad(t, "bad-multicast", "224.0.0.1")

	l := startLVS(t, writeConfig(t, false))
	l.waitSynced(t)
	for _, tc := range []struct{ fwd, vip string }{{"gate", vipGate}, {"masq", vipMasq}} {
		waitFor(t, tc.fwd+": rs1 and rs2", 15*time.Second, func() bool {
			return testenv.SameWeights(realsOf(t, tc.vip), map[string]int{
				reals[0].addr + ":" + port(tc.fwd, 0): 1, reals[1].addr + ":" + port(tc.fwd, 1): 1,
			})
		})
	}
	for _, vs := range []string{"web-gate", "web-masq"} {
		for _, bad := range [][2]string{{"bad-zero", "address 0.0.0.0 is unspecified"}, {"bad-multicast", "address 224.0.0.1 is multicast"}} {
			if n := countLines(l.logText(), "skipped catalog data", "virtual_service="+vs, "instance="+bad[0], `reason="`+bad[1]); n != 1 {
				t.Errorf("%s: %s warned %d times, want once", vs, bad[0], n)
			}
		}
	}

	// A new instance joins, a failing one leaves: the bad ones hold
	// nothing up.
	registerReal(t, 2, 1)
	setCheck(t, "web2", api.HealthCritical)
	for _, tc := range []struct{ fwd, vip string }{{"gate", vipGate}, {"masq", vipMasq}} {
		t.Run(tc.fwd, func(t *testing.T) {
			want := map[string]int{reals[0].addr + ":" + port(tc.fwd, 0): 1, reals[2].addr + ":" + port(tc.fwd, 2): 1}
			took := waitFor(t, "rs3 in, rs2 out", 5*time.Second, func() bool { return testenv.SameWeights(realsOf(t, tc.vip), want) })
			t.Logf("%s: rs3 joined and rs2 left %v after the catalog changed, beside instances at 0.0.0.0 and 224.0.0.1", tc.fwd, took)
			if got := answers(t, tc.vip, 6); got["rs1"] != 3 || got["rs3"] != 3 {
				t.Errorf("answers %v, want rs1 and rs3 three times each", got)
			}
		})
	}
	if strings.Contains(l.logText(), "kernel change failed") {
		t.Errorf("a kernel change failed:\n%s", l.logText())
	}
}

// countLines counts the lines of text that hold every one of parts.
func countLines(text string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// TestPersistenceAndWeightZero: a client holding a persistence template
// keeps reaching its real after that real goes to weight 0 (critical, with
// quiescent = true) while net.ipv4.vs.expire_quiescent_template is 0, of
// which lvs-sync warns at start with the line that fixes it; with
// tune_sysctls = true lvs-sync sets it, and the client's new connections
// go to the other reals.
func TestPersistenceAndWeightZero(t *testing.T) {
	sys := hostnet.ProcSys{}
	const tmpl = "net/ipv4/vs/expire_quiescent_template"
	for _, key := range []string{tmpl, "net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/conn_reuse_mode", "net/ipv4/ip_forward"} {
		was, err := sys.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sys.Set(key, was) })
	}
	if err := sys.Set(tmpl, "0"); err != nil {
		t.Fatal(err)
	}
	registerReals(t, 1, 1, 1)
	t.Cleanup(func() { registerReals(t, 1, 1, 1) })
	config := func(tune bool) string {
		src := fmt.Sprintf(`
consul {
  address = %q
}
director {
  vip_interface = "lvs0"
  state_file    = "/tmp/lvs-sync/state.json"
  tune_sysctls  = %v
}
virtual_service "web-masq" {
  address     = "10.10.10.61:80"
  forwarding  = "masq"
  scheduler   = "rr"
  persistence = "300s"
  quiescent   = true
  service     = "web"
}
`, os.Getenv("LVS_CONSUL"), tune)
		p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// quiesce starts lvs-sync, finds the real the client's template holds
	// and fails its check; it returns that real and who answers next.
	quiesce := func(l *lvsSync) (string, map[string]int) {
		t.Helper()
		l.waitSynced(t)
		waitFor(t, "three reals at weight 1", 15*time.Second, func() bool {
			return testenv.SameWeights(realsOf(t, vipMasq), realAddrs("masq", 1, 1, 1))
		})
		held, err := get(vipMasq)
		if err != nil || !strings.HasPrefix(held, "rs") {
			t.Fatalf("first request: %q %v", held, err)
		}
		i := int(held[2] - '1')
		setCheck(t, fmt.Sprintf("web%d", i+1), api.HealthCritical)
		t.Cleanup(func() { setCheck(t, fmt.Sprintf("web%d", i+1), api.HealthPassing) })
		waitFor(t, held+" at weight 0", 5*time.Second, func() bool {
			w, ok := realsOf(t, vipMasq)[reals[i].addr+":"+port("masq", i)]
			return ok && w == 0
		})
		return held, answers(t, vipMasq, 6)
	}

	l := startLVS(t, config(false))
	fix := `fix="sysctl -w net.ipv4.vs.expire_quiescent_template=1"`
	waitFor(t, "the warning", 10*time.Second, func() bool { return strings.Contains(l.logText(), fix) })
	held, got := quiesce(l)
	t.Logf("expire_quiescent_template=0: %s at weight 0; the client's next 6 connections: %v", held, got)
	if got[held] != 6 {
		t.Errorf("with expire_quiescent_template=0, answers %v; want all 6 from %s, the template's real at weight 0", got, held)
	}
	l.stop(t, syscall.SIGTERM)
	setCheck(t, fmt.Sprintf("web%c", held[2]), api.HealthPassing)

	l = startLVS(t, config(true))
	waitFor(t, "the setting tuned", 10*time.Second, func() bool {
		return strings.Contains(l.logText(), "set a kernel setting the config needs: setting=net.ipv4.vs.expire_quiescent_template was=0 value=1")
	})
	if v, _ := sys.Get(tmpl); v != "1" {
		t.Fatalf("tune_sysctls: %s = %q", tmpl, v)
	}
	if strings.Contains(l.logText(), "kernel setting unsafe") {
		t.Errorf("warned with tune_sysctls:\n%s", l.logText())
	}
	held, got = quiesce(l)
	t.Logf("expire_quiescent_template=1: %s at weight 0; the client's next 6 connections: %v", held, got)
	if got[held] != 0 || got["rs1"]+got["rs2"]+got["rs3"] != 6 {
		t.Errorf("with expire_quiescent_template=1, answers %v; want none from %s", got, held)
	}
}
