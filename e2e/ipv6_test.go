//go:build vmguest

package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// The IPv6 side of the topology, over the same links (ULA addresses):
//
//	client ns ── eth1 fd00:2::100 ── cl1 fd00:2::1 ─┐
//	          ── eth0 fd00:1::100 ─┐               director (root ns), VIPs on lvs0
//	rs1..rs3 ns ─ eth0 fd00:1::1N ─┴─ br0 fd00:1::1 ┘
//
// routed as the IPv4 side is: gate and ipip through br0, masq through cl1.
const (
	vip6Gate = "fd00:10::60"
	vip6Masq = "fd00:10::61"
	vip6IPIP = "fd00:10::62"
)

// real6 is reals[i]'s IPv6 address.
func real6(i int) string { return fmt.Sprintf("fd00:1::1%d", i+1) }

// buildIPv6 adds the IPv6 addresses, routes and real-server setup, once
// per guest run. The real servers' HTTP servers of TestMain answer IPv6
// already: Go listens on 0.0.0.0 with a dual-stack socket.
var buildIPv6 = sync.OnceValue(func() error {
	addr := func(ns, a, dev string) []string {
		return []string{"/sbin/ip", "netns", "exec", ns, "/sbin/ip", "addr", "add", a, "dev", dev, "nodad"}
	}
	cmds := [][]string{
		{"/sbin/ip", "addr", "add", "fd00:1::1/64", "dev", "br0", "nodad"},
		{"/sbin/ip", "addr", "add", "fd00:2::1/64", "dev", "cl1", "nodad"},
		// masq: the director routes the real servers' replies back.
		{"/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"},
		addr("client", "fd00:1::100/64", "eth0"),
		addr("client", "fd00:2::100/64", "eth1"),
		{"/sbin/ip", "netns", "exec", "client", "/sbin/ip", "route", "add", vip6Gate + "/128", "via", "fd00:1::1", "dev", "eth0"},
		{"/sbin/ip", "netns", "exec", "client", "/sbin/ip", "route", "add", vip6IPIP + "/128", "via", "fd00:1::1", "dev", "eth0"},
		{"/sbin/ip", "netns", "exec", "client", "/sbin/ip", "route", "add", vip6Masq + "/128", "via", "fd00:2::1", "dev", "eth1"},
	}
	for i, r := range reals {
		cmds = append(cmds,
			addr(r.ns, real6(i)+"/64", "eth0"),
			[]string{"/sbin/ip", "netns", "exec", r.ns, "/sbin/ip", "-6", "route", "add", "default", "via", "fd00:1::1"},
			[]string{"/sbin/ip", "netns", "exec", r.ns, "/bin/lvs-sync", "realserver", "-vip", vip6Gate, "-mode", "gate", "-log-level", "warn"},
			[]string{"/sbin/ip", "netns", "exec", r.ns, "/bin/lvs-sync", "realserver", "-vip", vip6IPIP, "-mode", "ipip", "-log-level", "warn"})
	}
	for _, c := range cmds {
		if _, err := sh(c...); err != nil {
			return err
		}
	}
	return nil
})

// registerDual registers dual1..dual3 on reals[i] as Consul has most
// services: at an IPv4 address, with the IPv6 one as the lan_ipv6 tagged
// address, of the same port.
func registerDual(t *testing.T) {
	t.Helper()
	for i, r := range reals {
		id := fmt.Sprintf("dual%d", i+1)
		registerPassing(t, &api.AgentServiceRegistration{
			ID: id, Name: "dual", Address: r.addr, Port: r.port,
			TaggedAddresses: map[string]api.ServiceAddress{"lan_ipv6": {Address: real6(i), Port: r.port}},
		})
	}
}

const dualConfig = `virtual_service "dual4-masq" {
  address    = "10.10.10.61:80"
  forwarding = "masq"
  scheduler  = "rr"
  service    = "dual"
}
virtual_service "dual6-masq" {
  address    = "[fd00:10::61]:80"
  forwarding = "masq"
  scheduler  = "rr"
  service    = "dual"
}
virtual_service "dual6-gate" {
  address    = "[fd00:10::60]:80"
  forwarding = "gate"
  scheduler  = "rr"
  service    = "dual"
}
virtual_service "dual6-ipip" {
  address    = "[fd00:10::62]:80"
  forwarding = "ipip"
  scheduler  = "rr"
  service    = "dual"
}
`

// TestIPv6DualStackTraffic: one Consul service, registered at IPv4
// addresses with IPv6 tagged addresses, backs an IPv4 and three IPv6
// virtual services (masq, gate, ipip); IPv6 requests from the client reach
// every real server through each, and the IPv4 one still works. A real
// going critical leaves both families.
func TestIPv6DualStackTraffic(t *testing.T) {
	if err := buildIPv6(); err != nil {
		t.Fatal(err)
	}
	registerDual(t)
	cfg := writeServicesConfig(t, dualConfig)
	// Once lvs-sync has stopped (cleanups run last first), the IPv6
	// services and VIPs go, so that later tests find the table they know.
	t.Cleanup(func() {
		for _, vip := range []string{vip6Masq, vip6Gate, vip6IPIP} {
			_, _ = sh("/sbin/ipvsadm", "-D", "-t", "["+vip+"]:80")
			_, _ = sh("/sbin/ip", "addr", "del", vip+"/128", "dev", "lvs0")
		}
	})
	startLVS(t, cfg)

	// want is the reals of a forwarding method's VIP, by family.
	want := func(fwd string, v6 bool, skip int) map[string]int {
		m := map[string]int{}
		for i, r := range reals {
			if i == skip {
				continue
			}
			a := r.addr
			if v6 {
				a = "[" + real6(i) + "]"
			}
			m[fmt.Sprintf("%s:%s", a, port(fwd, i))] = 1
		}
		return m
	}
	vss := []struct {
		name, fwd, vip string
		v6             bool
	}{
		{"ipv4-masq", "masq", vipMasq, false},
		{"ipv6-masq", "masq", vip6Masq, true},
		{"ipv6-gate", "gate", vip6Gate, true},
		{"ipv6-ipip", "ipip", vip6IPIP, true},
	}
	url := func(vip string, v6 bool) string {
		if v6 {
			return "[" + vip + "]"
		}
		return vip
	}
	for _, vs := range vss {
		t.Run(vs.name, func(t *testing.T) {
			waitFor(t, "three reals", 15*time.Second, func() bool {
				return testenv.SameWeights(realsOf(t, vs.vip), want(vs.fwd, vs.v6, -1))
			})
			// The first request may meet neighbour discovery still settling.
			waitFor(t, "a first answer", 10*time.Second, func() bool { _, err := get(url(vs.vip, vs.v6)); return err == nil })
			before := tunnelRx(t)
			// rr: nine new connections reach each real server three times.
			if got := answers(t, url(vs.vip, vs.v6), 9); got["rs1"] != 3 || got["rs2"] != 3 || got["rs3"] != 3 {
				t.Errorf("answers %v, want rs1, rs2 and rs3 three times each", got)
			}
			// ipip: what came in is IPv6-in-IPv6, through each ip6tnl0
			// (a SYN, the request and ACKs: several packets a connection).
			after := tunnelRx(t)
			if vs.fwd == "ipip" {
				t.Logf("packets in through ip6tnl0 of rs1..rs3: %d, %d, %d", after[0]-before[0], after[1]-before[1], after[2]-before[2])
			}
			for i := range reals {
				if moved := after[i] - before[i]; vs.fwd == "ipip" && moved < 9 || vs.fwd != "ipip" && moved != 0 {
					t.Errorf("%s: %d packets in through %s's ip6tnl0", vs.name, moved, reals[i].ns)
				}
			}
		})
	}
	t.Logf("ipvsadm -Ln:\n%s", ipvsadm(t, "-Ln"))

	setCheck(t, "dual2", api.HealthCritical)
	for _, vs := range vss {
		waitFor(t, vs.name+" without rs2", 5*time.Second, func() bool {
			return testenv.SameWeights(realsOf(t, vs.vip), want(vs.fwd, vs.v6, 1))
		})
		if got := answers(t, url(vs.vip, vs.v6), 6); got["rs2"] != 0 || got["rs1"] != 3 || got["rs3"] != 3 {
			t.Errorf("%s: answers with rs2 critical %v, want rs1 and rs3 three times each", vs.name, got)
		}
	}
	setCheck(t, "dual2", api.HealthPassing)

	t.Run("no-ndp-for-the-gate-vip", func(t *testing.T) { noNDPForVIP(t) })
}

// noNDPForVIP: with the gate VIP on their lo, the real servers do not
// answer neighbour solicitations for it on their link (IPv6's side of the
// ARP problem, which has no arp_ignore): a client told the VIP is on-link
// gets no neighbour for it.
func noNDPForVIP(t *testing.T) {
	inNS("client", "/sbin/ip", "-6", "route", "replace", vip6Gate+"/128", "dev", "eth0")
	defer inNS("client", "/sbin/ip", "-6", "route", "replace", vip6Gate+"/128", "via", "fd00:1::1", "dev", "eth0")
	if body, err := get("[" + vip6Gate + "]"); err == nil {
		t.Errorf("the gate VIP answered on-link (%q): someone answers neighbour solicitations for it", body)
	}
	out, err := sh("/sbin/ip", "netns", "exec", "client", "/sbin/ip", "-6", "neigh", "show", vip6Gate, "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client's neighbour entry for the gate VIP: %q", strings.TrimSpace(out))
	if strings.Contains(out, "lladdr") {
		t.Errorf("a link-layer address answered for the gate VIP: %s", out)
	}
	if _, err := sh("/sbin/ip", "netns", "exec", "client", "/sbin/ip", "-6", "neigh", "flush", "dev", "eth0"); err != nil {
		t.Error(err)
	}
}

// tunnelRx is the packets each real server received through its ip6tnl0.
func tunnelRx(t *testing.T) []int {
	t.Helper()
	out := make([]int, len(reals))
	for i, r := range reals {
		s, err := sh("/sbin/ip", "netns", "exec", r.ns, "/bin/cat", "/sys/class/net/ip6tnl0/statistics/rx_packets")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(s, &out[i]); err != nil {
			t.Fatalf("%s: rx_packets %q: %v", r.ns, s, err)
		}
	}
	return out
}
