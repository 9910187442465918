//go:build vmguest

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// TestDemo is `make demo`: it narrates, on the VM's console, what a user
// of lvs-sync sees, and asserts each step, so the demo cannot rot.
func TestDemo(t *testing.T) {
	say := func(format string, args ...any) { fmt.Printf("\n\033[1m== "+format+"\033[0m\n", args...) }
	show := func(cmd string, args ...string) {
		out, err := sh(append([]string{cmd}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("$ %s %s\n%s", strings.TrimPrefix(cmd, "/sbin/"), strings.Join(args, " "), out)
	}
	requests := func(vip string, n int) map[string]int {
		fmt.Printf("$ for i in $(seq %d); do wget -qO- http://%s/; done   # from the client namespace\n", n, vip)
		seen := map[string]int{}
		var line []string
		for range n {
			body, err := get(vip)
			if err != nil {
				t.Fatalf("request to %s: %v", vip, err)
			}
			seen[body]++
			line = append(line, body)
		}
		fmt.Println(strings.Join(line, " "))
		return seen
	}

	say("a director (this VM's kernel, with IPVS), a client and three real servers rs1..rs3 in network namespaces")
	fmt.Printf("Consul runs on the host at %s; the real servers set up the VIPs with `lvs-sync realserver`.\n", os.Getenv("LVS_CONSUL"))
	registerReals(t, 1, 2, 1)
	say("web1..web3 registered in Consul with TTL checks, all passing; web2 with Weights.Passing = 2")
	// wrr, so that the Consul weights show in who answers.
	config := writeConfig(t, false)
	src, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	src = []byte(strings.ReplaceAll(string(src), `"rr"`, `"wrr"`))
	src = []byte(strings.Replace(string(src), `  service    = "web"`+"\n", `  service    = "web"`+"\n"+`  fallback   = "local"`+"\n", 1))
	if err := os.WriteFile(config, src, 0o644); err != nil {
		t.Fatal(err)
	}
	say("lvs-sync run -config lvs-sync.hcl")
	fmt.Print(strings.TrimSpace(string(src)), "\n")
	l := startLVS(t, config)
	waitFor(t, "converged", 15*time.Second, func() bool {
		return testenv.SameWeights(realsOf(t, vipGate), realAddrs("gate", 1, 2, 1)) && testenv.SameWeights(realsOf(t, vipMasq), realAddrs("masq", 1, 2, 1))
	})
	show("/sbin/ipvsadm", "-Ln")
	show("/sbin/ip", "-br", "addr", "show", "lvs0")

	say("requests to the gate VIP are answered by every real server in turn, by weight (wrr)")
	if got := requests(vipGate, 8); got["rs1"] != 2 || got["rs2"] != 4 || got["rs3"] != 2 {
		t.Errorf("answers %v", got)
	}

	say("web2's check fails in Consul: lvs-sync takes rs2 out")
	start := time.Now()
	setCheck(t, "web2", api.HealthCritical)
	waitFor(t, "rs2 out", 5*time.Second, func() bool { return len(realsOf(t, vipGate)) == 2 })
	fmt.Printf("(rs2 left the kernel table %v after the check failed)\n", time.Since(start).Round(time.Millisecond))
	show("/sbin/ipvsadm", "-Ln", "-t", vipGate+":80")
	if got := requests(vipGate, 6); got["rs2"] != 0 {
		t.Errorf("rs2 answered while failing: %v", got)
	}

	say("web2's check passes again: rs2 returns")
	setCheck(t, "web2", api.HealthPassing)
	waitFor(t, "rs2 back", 5*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	show("/sbin/ipvsadm", "-Ln", "-t", vipGate+":80")
	if got := requests(vipGate, 8); got["rs2"] != 4 {
		t.Errorf("answers with rs2 back: %v", got)
	}

	say("every check fails: nothing can serve, so lvs-sync's own maintenance page does (fallback = \"local\")")
	start = time.Now()
	for _, id := range []string{"web1", "web2", "web3"} {
		setCheck(t, id, api.HealthCritical)
	}
	var page string
	var hdr http.Header
	waitFor(t, "the maintenance page", 5*time.Second, func() bool {
		code, b, h, err := fetch("GET", vipGate)
		page, hdr = b, h
		return err == nil && code == 503
	})
	fmt.Printf("(the page answered %v after the last check failed)\n", time.Since(start).Round(time.Millisecond))
	show("/sbin/ipvsadm", "-Ln", "-t", vipGate+":80")
	fmt.Printf("$ curl -i http://%s/\nHTTP/1.1 503 Service Unavailable\nRetry-After: %s\nCache-Control: %s\n\n", vipGate, hdr.Get("Retry-After"), hdr.Get("Cache-Control"))
	for _, line := range strings.Split(page, "\n") {
		if strings.Contains(line, "<h1>") || strings.Contains(line, "<p>We") {
			fmt.Println(line)
		}
	}
	if !strings.Contains(page, "web-gate is down for maintenance") {
		t.Errorf("page: %s", page)
	}
	say("web1 passes again: it takes over, the page leaves the pool")
	for _, id := range []string{"web1", "web2", "web3"} {
		setCheck(t, id, api.HealthPassing)
	}
	waitFor(t, "all back", 5*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	show("/sbin/ipvsadm", "-Ln", "-t", vipGate+":80")

	say("what lvs-sync logged")
	for _, line := range strings.Split(l.logText(), "\n") {
		if strings.Contains(line, "[INFO]") {
			fmt.Println(line)
		}
	}
	l.stop(t, syscall.SIGTERM) // the kernel table stays as it is
	say("lvs-sync stopped (SIGTERM); the kernel table stays and keeps serving")
	if got := requests(vipGate, 4); got["rs1"] != 1 || got["rs2"] != 2 || got["rs3"] != 1 {
		t.Errorf("answers after lvs-sync stopped: %v, want the same wrr table: rs1 once, rs2 twice, rs3 once", got)
	}
}
