//go:build vmguest

package e2e

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/ipvsread"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestMhOrderIsTheSameWhateverTheHistory: mh builds its table from the
// kernel's list of the service's reals, which the kernel keeps in the
// order of its history. One lvs-sync sees the reals join one by one in
// Consul, highest address first (each joining at the head of the list,
// they would end lowest first), then one leave and come back (at the
// head again); a second lvs-sync, started afresh on an empty table with
// every real present, adds them at once. /proc/net/ip_vs lists them in
// the same order after both, the canonical one (descending), and
// /v1/status shows the same fingerprint.
func TestMhOrderIsTheSameWhateverTheHistory(t *testing.T) {
	key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr(vipGate), Port: 80}
	flush := func() { _, _ = sh("/sbin/ipvsadm", "-D", "-t", vipGate+":80") }
	flush()
	c := consul(t)
	for i := range reals {
		_ = c.Agent().ServiceDeregister(webID(i)) // not there on a fresh agent
	}
	waitCatalog(t, "no web instance", func(in map[string]*api.ServiceEntry) bool { return len(in) == 0 })
	t.Cleanup(func() { flush(); registerReals(t, 1, 1, 1) })
	path := writeServicesConfig(t, `
virtual_service "web-mh" {
  address         = "10.10.10.60:80"
  forwarding      = "gate"
  scheduler       = "mh"
  scheduler_flags = ["mh-port", "mh-fallback"]
  service         = "web"
}
`)
	rk := func(i int) lvs.RealKey { return lvs.RealKey{Addr: netip.MustParseAddr(reals[i].addr), Port: 80} }
	canonical := []lvs.RealKey{rk(2), rk(1), rk(0)} // descending, from the head
	listed := func() []lvs.RealKey {
		got, err := ipvsread.ProcOrder(key)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	has := func(n int) func() bool { return func() bool { return len(realsOf(t, vipGate)) == n } }

	// 1. One lvs-sync throughout: rs3, rs2, rs1 join one by one, then rs2
	// leaves and comes back.
	l := startLVS(t, path)
	l.waitSynced(t)
	for n, i := range []int{2, 1, 0} {
		registerReal(t, i, 1)
		waitFor(t, webID(i)+" in the kernel", 15*time.Second, has(n+1))
		if got := listed(); !slices.Equal(got, canonical[:n+1]) {
			t.Errorf("after %s joined: /proc/net/ip_vs lists %v, want %v", webID(i), got, canonical[:n+1])
		}
	}
	if err := c.Agent().ServiceDeregister(webID(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web2 gone", 15*time.Second, has(2))
	registerReal(t, 1, 1)
	waitFor(t, "web2 back", 15*time.Second, has(3))
	history := listed()
	fpHistory := fingerprint(t, key)
	requeues := strings.Count(l.logText(), "requeue=true")
	l.stop(t, syscall.SIGTERM)

	// 2. A second lvs-sync, afresh, with every real present.
	flush()
	l = startLVS(t, path)
	l.waitSynced(t)
	waitFor(t, "three reals", 15*time.Second, has(3))
	fresh := listed()
	fpFresh := fingerprint(t, key)
	freshRequeues := strings.Count(l.logText(), "requeue=true")
	l.stop(t, syscall.SIGTERM)

	t.Logf("mh order: after joins and a return %v (%d reals deleted to be added again), afresh %v (%d); fingerprints %s, %s",
		history, requeues, fresh, freshRequeues, fpHistory, fpFresh)
	if !slices.Equal(history, canonical) || !slices.Equal(fresh, canonical) {
		t.Errorf("/proc/net/ip_vs lists %v after the joins and a return, %v afresh; want %v for both", history, fresh, canonical)
	}
	if fpHistory == "" || fpHistory != fpFresh {
		t.Errorf("fingerprints: %q after the joins and a return, %q afresh", fpHistory, fpFresh)
	}
	// Joining below the others (rs2 under rs3, rs1 under both) and coming
	// back (rs2) is what the kernel would list out of order: lvs-sync did
	// put reals round again, and the fresh start had nothing to put round.
	if requeues == 0 || freshRequeues != 0 {
		t.Errorf("requeues: %d in the history, %d afresh; want some, then none", requeues, freshRequeues)
	}
}

func webID(i int) string { return "web" + string(rune('1'+i)) }

// fingerprint is the service's fingerprint as the running lvs-sync's
// /v1/status shows it.
func fingerprint(t *testing.T, key lvs.ServiceKey) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:9337/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Services []struct {
			Key         string `json:"key"`
			Fingerprint string `json:"fingerprint"`
		} `json:"services"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	for _, s := range v.Services {
		if s.Key == key.String() {
			return s.Fingerprint
		}
	}
	t.Fatalf("/v1/status has no %s", key)
	return ""
}
