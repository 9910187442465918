//go:build vmguest

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

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
