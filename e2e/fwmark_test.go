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
)

// vipMark is the VIP of the firewall-mark test, on none of the other
// services, so that its nftables rule marks only its own traffic.
const vipMark = "10.10.10.63"

// TestFirewallMarkPersistenceAcrossPorts is the classic http + https case:
// an nftables rule on the director marks packets to the VIP's ports 80 and
// 443 with mark 1, one persistent gate virtual service takes mark 1, and a
// client's connections to either port go to the same real server, while
// several clients are spread over both.
func TestFirewallMarkPersistenceAcrossPorts(t *testing.T) {
	// The real servers: the VIP on their lo (gate), and a second port.
	for _, r := range reals[:2] {
		inNS(r.ns, "/bin/lvs-sync", "realserver", "-vip", vipMark, "-mode", "gate", "-log-level", "warn")
		t.Cleanup(func() {
			inNS(r.ns, "/bin/lvs-sync", "realserver", "-remove", "-vip", vipMark, "-mode", "gate", "-log-level", "warn")
		})
		srv, err := serveReal(r.ns, 443)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
	}
	// The clients: six source addresses, reaching the VIP over br0.
	var clients []string
	for i := 1; i <= 6; i++ {
		a := fmt.Sprintf("10.1.0.%d", 100+i)
		inNS("client", "/sbin/ip", "addr", "add", a+"/24", "dev", "eth0")
		t.Cleanup(func() { inNS("client", "/sbin/ip", "addr", "del", a+"/24", "dev", "eth0") })
		clients = append(clients, a)
	}
	inNS("client", "/sbin/ip", "route", "add", vipMark+"/32", "via", "10.1.0.1", "dev", "eth0")
	t.Cleanup(func() { inNS("client", "/sbin/ip", "route", "del", vipMark+"/32") })
	// The operator's mark, on the director.
	must("/sbin/nft", "add", "table", "ip", "lvs")
	t.Cleanup(func() { must("/sbin/nft", "delete", "table", "ip", "lvs") })
	must("/sbin/nft", "add", "chain", "ip", "lvs", "pre", "{ type filter hook prerouting priority -150; }")
	must("/sbin/nft", "add", "rule", "ip", "lvs", "pre", "ip", "daddr", vipMark, "tcp", "dport", "{ 80, 443 }", "meta", "mark", "set", "1")

	for i, r := range reals[:2] {
		id := fmt.Sprintf("fw%d", i+1)
		// The port is Consul's, not the kernel's: the mark's reals keep
		// each packet's port.
		registerPassing(t, &api.AgentServiceRegistration{ID: id, Name: "fw", Address: r.addr, Port: 8443})
	}
	src := fmt.Sprintf(`
consul {
  address = %q
}
director {
  vip_interface   = "lvs0"
  state_file      = "/tmp/lvs-sync/state.json"
  cleanup_on_exit = true
}
virtual_service "web-mark" {
  fwmark      = 1
  vips        = [%q]
  forwarding  = "gate"
  scheduler   = "rr"
  persistence = "300s"
  service     = "fw"
}
`, os.Getenv("LVS_CONSUL"), vipMark)
	p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLVS(t, p)
	l.waitSynced(t)
	want := []string{"-A -f 1 -s rr -p 300", "-a -f 1 -r 10.1.0.11:0 -g -w 1", "-a -f 1 -r 10.1.0.12:0 -g -w 1"}
	var table string
	waitFor(t, "the mark's service and both reals", 15*time.Second, func() bool {
		table = ipvsadm(t, "-S", "-n")
		for _, w := range want {
			if !strings.Contains(table, w) {
				return false
			}
		}
		return true
	})
	t.Logf("ipvsadm -S -n:\n%s", table)
	if out, _ := sh("/sbin/ip", "-o", "addr", "show", "dev", "lvs0"); !strings.Contains(out, vipMark+"/32") {
		t.Fatalf("the mark's VIP is not on lvs0:\n%s", out)
	}

	served := map[string]int{}
	realOf := map[string]string{} // client -> the real's address
	for _, from := range clients {
		var got []string
		for _, port := range []int{80, 443, 80, 443} {
			body, err := getFrom(from, fmt.Sprintf("http://%s:%d/", vipMark, port))
			if err != nil {
				t.Fatalf("%s to port %d: %v", from, port, err)
			}
			got = append(got, body)
		}
		t.Logf("client %s, ports 80, 443, 80, 443: %v", from, got)
		for _, b := range got[1:] {
			if b != got[0] {
				t.Errorf("client %s was not kept on one real across ports 80 and 443: %v", from, got)
				break
			}
		}
		served[got[0]]++
		for _, r := range reals {
			if r.ns == got[0] {
				realOf[from] = r.addr
			}
		}
	}
	t.Logf("clients per real: %v", served)
	if served["rs1"] == 0 || served["rs2"] == 0 || served["rs1"]+served["rs2"] != len(clients) {
		t.Errorf("clients per real %v: want both rs1 and rs2 used by the %d clients", served, len(clients))
	}
	// What kept each client on its real is one persistence template of
	// the mark (the kernel shows it as virtual address 0.0.0.1:0, the
	// mark), on port 0 of the real: not one per port.
	conns := ipvsadm(t, "-L", "-n", "-c")
	for _, from := range clients {
		tmpl := fmt.Sprintf("%s:0 0.0.0.1:0 %s:0", from, realOf[from])
		n := 0
		for _, line := range strings.Split(conns, "\n") {
			if f := strings.Fields(line); len(f) == 6 && f[0] == "IP" && strings.Join(f[3:], " ") == tmpl {
				n++
			}
		}
		if n != 1 {
			t.Errorf("client %s: %d templates %q of the mark, want 1, in:\n%s", from, n, tmpl, conns)
		}
	}

	// cleanup_on_exit takes the mark's service and its VIP away: the VIP
	// is known from vips alone, the kernel's key has none.
	l.stop(t, syscall.SIGTERM)
	if table := ipvsadm(t, "-S", "-n"); strings.Contains(table, "-f 1 ") {
		t.Errorf("the mark's service is left after cleanup_on_exit:\n%s", table)
	}
	if out, _ := sh("/sbin/ip", "-o", "addr", "show", "dev", "lvs0"); strings.Contains(out, vipMark+"/32") {
		t.Errorf("the mark's VIP is left on lvs0 after cleanup_on_exit:\n%s", out)
	}
}
