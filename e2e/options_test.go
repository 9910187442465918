//go:build vmguest

package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// The virtual services of TestServiceOptions: three masq VIPs of their
// own, and two UDP ports of the gate VIP, whose address the real servers
// already hold (so they answer from it).
const (
	optsMaskVIP   = "10.10.10.70"
	optsHostVIP   = "10.10.10.71"
	optsThreshVIP = "10.10.10.72"
	optsClient2   = "10.2.0.101" // a second client address in 10.2.0.100's /24
)

const optsConfig = `
consul {
  address = %q
}
director {
  vip_interface      = "lvs0"
  reconcile_interval = "2s"
  state_file         = "/tmp/lvs-sync/state.json"
}
virtual_service "opt-mask" {
  address             = "10.10.10.70:80"
  forwarding          = "masq"
  scheduler           = "rr"
  persistence         = "300s"
  persistence_netmask = "255.255.255.0"
  service             = "web"
}
virtual_service "opt-host" {
  address     = "10.10.10.71:80"
  forwarding  = "masq"
  scheduler   = "rr"
  persistence = "300s"
  service     = "web"
}
virtual_service "opt-thresh" {
  address         = "10.10.10.72:80"
  forwarding      = "masq"
  scheduler       = "rr"
  upper_threshold = 1
  service         = "opts"
}
virtual_service "opt-ops" {
  address    = "10.10.10.60:53"
  protocol   = "udp"
  forwarding = "gate"
  scheduler  = "rr"
  ops        = true
  service    = "opts-dns"
}
virtual_service "opt-no-ops" {
  address    = "10.10.10.60:54"
  protocol   = "udp"
  forwarding = "gate"
  scheduler  = "rr"
  service    = "opts-dns"
}
`

// TestServiceOptions runs lvs-sync with persistence_netmask, ops and
// connection thresholds from the config and from Consul meta: plan and
// render print what the kernel then holds, in ipvsadm's syntax (ipvsadm
// -R loads it into the same table), and traffic shows each option at work.
func TestServiceOptions(t *testing.T) {
	registerReals(t, 1, 1, 1)
	meta := []map[string]string{
		nil, // opt-thresh's upper_threshold, 1
		{"lvs-upper-threshold": "1000", "lvs-lower-threshold": "500"},
		{"lvs-upper-threshold": "0"}, // none
	}
	for i, r := range reals {
		registerOpts(t, fmt.Sprintf("opts%d", i+1), "opts", r.addr, r.port, meta[i])
		dnsMeta := map[string]string(nil)
		if i == 2 {
			dnsMeta = map[string]string{"lvs-upper-threshold": "many"} // warned of, and the config's used
		}
		registerOpts(t, fmt.Sprintf("opts-dns%d", i+1), "opts-dns", r.addr, 53, dnsMeta)
		for _, port := range []int{53, 54} {
			srv, err := serveUDP(r.ns, netip.MustParseAddrPort(hostPort(vipGate, port)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
		}
	}
	for _, vip := range []string{optsMaskVIP, optsHostVIP, optsThreshVIP} {
		inNS("client", "/sbin/ip", "route", "add", vip+"/32", "via", "10.2.0.1", "dev", "eth1")
		t.Cleanup(func() { _, _ = sh("/sbin/ip", "netns", "exec", "client", "/sbin/ip", "route", "del", vip+"/32") })
	}
	inNS("client", "/sbin/ip", "addr", "add", optsClient2+"/24", "dev", "eth1")
	t.Cleanup(func() {
		_, _ = sh("/sbin/ip", "netns", "exec", "client", "/sbin/ip", "addr", "del", optsClient2+"/24", "dev", "eth1")
	})
	path := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(optsConfig, os.Getenv("LVS_CONSUL"))), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := optsKeys()
	mine := ipvs.State{}
	for _, k := range keys {
		mine[k] = &ipvs.Service{}
	}

	// What the kernel will hold, as render prints it.
	out, err := sh("/bin/lvs-sync", "render", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	render := saveBlocks(out, mine)
	for _, want := range []string{
		"-A -t 10.10.10.70:80 -s rr -p 300 -M 255.255.255.0",
		"-A -t 10.10.10.71:80 -s rr -p 300\n",
		"-a -t 10.10.10.72:80 -r 10.1.0.11:8081 -m -w 1 -x 1\n",
		"-a -t 10.10.10.72:80 -r 10.1.0.12:8082 -m -w 1 -x 1000 -y 500\n",
		"-a -t 10.10.10.72:80 -r 10.1.0.13:8083 -m -w 1\n",
		"-A -u 10.10.10.60:53 -s rr -o\n",
		"-A -u 10.10.10.60:54 -s rr\n",
	} {
		if !strings.Contains(render+"\n", want) {
			t.Errorf("render lacks %q:\n%s", want, render)
		}
	}
	// The plan of a kernel without them: the same lines, as commands.
	out, err = sh("/bin/lvs-sync", "plan", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	if plan, rendered := planLines(out, mine), sortedLines(render); !slices.Equal(plan, rendered) {
		t.Errorf("plan adds:\n%s\nrender:\n%s", strings.Join(plan, "\n"), strings.Join(rendered, "\n"))
	}

	l := startLVS(t, path)
	l.waitSynced(t)
	waitFor(t, "every service with its three reals", 15*time.Second, func() bool {
		st, err := ipvs.Read(kernel, func(k lvs.ServiceKey) bool { return mine[k] != nil })
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if st[k] == nil || len(st[k].Reals) != 3 {
				return false
			}
		}
		return true
	})
	// ipvsadm -S drops the thresholds; -Ln --thresholds shows them.
	kernelSave := saveBlocks(ipvsadm(t, "-Sn"), mine)
	if stripped := thresholdFlags.ReplaceAllString(render, ""); kernelSave != stripped {
		t.Errorf("ipvsadm -Sn:\n%s\nrender, thresholds aside:\n%s", kernelSave, stripped)
	}
	kernelThresholds := listedThresholds(ipvsadm(t, "-Ln", "--thresholds"), mine)
	if rendered := renderedThresholds(render); !maps.Equal(kernelThresholds, rendered) {
		t.Errorf("ipvsadm -Ln --thresholds: %v\nrender: %v", kernelThresholds, rendered)
	}
	t.Logf("render, as the kernel holds it:\n%s", render)
	if out, err := sh("/bin/lvs-sync", "plan", "-config", path); err != nil || planLines(out, mine) != nil {
		t.Errorf("plan once synced: %v\n%s", err, out)
	}
	roundTrip(t, render, kernelSave, kernelThresholds, mine)
	// Warned of once for each of its two virtual services, however many
	// syncs (one every 2s) render it again.
	syncs := strings.Count(l.logText(), "synced: reason=")
	waitFor(t, "two more syncs", 10*time.Second, func() bool { return strings.Count(l.logText(), "synced: reason=") >= syncs+2 })
	if n := strings.Count(l.logText(), `reason="meta lvs-upper-threshold = \"many\"`); n != 2 {
		t.Errorf("the bad meta warned of %d times, want twice:\n%s", n, l.logText())
	}

	t.Run("persistence netmask", func(t *testing.T) {
		// rr gives each new template the next real: two clients of one
		// /24 share opt-mask's template, and opt-host has one each.
		for _, c := range []struct {
			vip  string
			same bool
		}{{optsMaskVIP, true}, {optsHostVIP, false}} {
			a, b := getFromT(t, "10.2.0.100", c.vip), getFromT(t, optsClient2, c.vip)
			again := getFromT(t, optsClient2, c.vip)
			if (a == b) != c.same || again != b {
				t.Errorf("%s: 10.2.0.100 on %s, %s on %s then %s; want the same real: %v", c.vip, a, optsClient2, b, again, c.same)
			}
		}
		// The template is the masked client's: "TCP 04:59 ASSURED 10.2.0.0:0 10.10.10.70:80 ...".
		conns := ipvsadm(t, "-Lnc")
		if !regexp.MustCompile(`(?m)^TCP +\S+ +\S+ +10\.2\.0\.0:0 +10\.10\.10\.70:80 `).MatchString(conns) {
			t.Errorf("no persistence template for 10.2.0.0/24 on opt-mask:\n%s", conns)
		}
	})

	t.Run("upper threshold", func(t *testing.T) {
		// A connection held open on rs1 reaches its upper threshold of 1:
		// the kernel takes it out of scheduling and new connections go to
		// the other two.
		var held net.Conn
		for i := 0; i < 6 && held == nil; i++ {
			c, who := keepAlive(t, optsThreshVIP)
			if who == "rs1" {
				held = c
			} else {
				c.Close()
			}
		}
		if held == nil {
			t.Fatal("no connection landed on rs1")
		}
		defer held.Close()
		th := listedConns(ipvsadm(t, "-Ln", "--thresholds"), optsThreshVIP+":80", "10.1.0.11:8081")
		if th != "1 0 1" {
			t.Errorf("rs1 upper, lower, active: %q, want \"1 0 1\"", th)
		}
		got := answers(t, optsThreshVIP, 12)
		t.Logf("with rs1 at its threshold (%s): %v", th, got)
		if got["rs1"] != 0 || got["rs2"] == 0 || got["rs3"] == 0 {
			t.Errorf("answers %v: want none from rs1, the others sharing", got)
		}
	})

	t.Run("one-packet scheduling", func(t *testing.T) {
		// Datagrams from one socket: with ops each is scheduled anew (rr:
		// every real in turn); without, the kernel's connection entry
		// keeps them on one real.
		for _, c := range []struct {
			port  int
			reals int
		}{{53, 3}, {54, 1}} {
			got := datagrams(t, hostPort(vipGate, c.port), 9)
			t.Logf("udp %s:%d: %v", vipGate, c.port, got)
			if len(got) != c.reals {
				t.Errorf("udp %s:%d: 9 datagrams answered by %v; want %d real(s)", vipGate, c.port, got, c.reals)
			}
		}
	})
}

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, fmt.Sprint(port)) }

// optsKeys are TestServiceOptions' virtual services.
func optsKeys() []lvs.ServiceKey {
	key := func(p lvs.Protocol, s string) lvs.ServiceKey {
		ap := netip.MustParseAddrPort(s)
		return lvs.ServiceKey{Protocol: p, Addr: ap.Addr(), Port: ap.Port()}
	}
	return []lvs.ServiceKey{
		key(lvs.TCP, optsMaskVIP+":80"), key(lvs.TCP, optsHostVIP+":80"), key(lvs.TCP, optsThreshVIP+":80"),
		key(lvs.UDP, vipGate+":53"), key(lvs.UDP, vipGate+":54"),
	}
}

func registerOpts(t *testing.T, id, name, addr string, port int, meta map[string]string) {
	t.Helper()
	registerPassing(t, &api.AgentServiceRegistration{ID: id, Name: name, Address: addr, Port: port, Meta: meta})
}

// datagrams sends n datagrams to addr from one client socket, one at a
// time, and counts who answered.
func datagrams(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	c, err := inNamespace("client", func() (net.Conn, error) { return net.Dial("udp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]int{}
	buf := make([]byte, 64)
	for i := range n {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("who")); err != nil {
			t.Fatalf("datagram %d to %s: %v", i, addr, err)
		}
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("answer %d from %s: %v", i, addr, err)
		}
		seen[strings.Fields(string(buf[:m]))[0]]++ // "<real> who"
	}
	return seen
}

// getFromT fetches http://vip/ as getFrom does, from the client address
// src; an error fails the test.
func getFromT(t *testing.T, src, vip string) string {
	t.Helper()
	body, err := getFrom(src, "http://"+vip+"/")
	if err != nil {
		t.Fatalf("from %s to %s: %v", src, vip, err)
	}
	return body
}

// keepAlive makes one request on a connection it leaves open, and says
// which real answered.
func keepAlive(t *testing.T, vip string) (net.Conn, string) {
	t.Helper()
	c, err := inNamespace("client", func() (net.Conn, error) { return net.DialTimeout("tcp", vip+":80", 3*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", vip)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 64)
	n, _ := resp.Body.Read(body)
	_ = c.SetDeadline(time.Time{})
	return c, strings.TrimSpace(string(body[:n]))
}

var thresholdFlags = regexp.MustCompile(` -[xy] \d+`)

// planLines are the commands of plan's output for the services of st,
// without "ipvsadm ", sorted; nil if none.
func planLines(out string, st ipvs.State) []string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 3 && ownedLine(f[2], f[3], st) {
			lines = append(lines, strings.TrimPrefix(line, "ipvsadm "))
		}
	}
	slices.Sort(lines)
	return lines
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return lines
}

func ownedLine(flag, addr string, st ipvs.State) bool {
	for k := range st {
		if k.Ipvsadm() == flag+" "+addr {
			return true
		}
	}
	return false
}

// renderedThresholds reads "service real" → "upper lower" from ipvsadm
// save lines.
func renderedThresholds(save string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(save, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "-a" {
			continue
		}
		upper, lower := "0", "0"
		for i := 5; i+1 < len(f); i++ {
			switch f[i] {
			case "-x":
				upper = f[i+1]
			case "-y":
				lower = f[i+1]
			}
		}
		m[f[2]+" "+f[4]] = upper + " " + lower
	}
	return m
}

// listedThresholds reads "service real" → "upper lower" from ipvsadm -Ln
// --thresholds, for the services of st.
func listedThresholds(list string, st ipvs.State) map[string]string {
	m := map[string]string{}
	for sr, v := range listedReals(list) {
		svc, _, _ := strings.Cut(sr, " ")
		for k := range st {
			if hostPort(k.Addr.String(), int(k.Port)) == svc {
				f := strings.Fields(v)
				m[sr] = f[0] + " " + f[1]
			}
		}
	}
	return m
}

// listedConns is one real's "upper lower active" in ipvsadm -Ln
// --thresholds.
func listedConns(list, svc, real string) string {
	f := strings.Fields(listedReals(list)[svc+" "+real])
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// listedReals reads "service real" → "upper lower active inactive" from
// ipvsadm -Ln --thresholds.
func listedReals(list string) map[string]string {
	m := map[string]string{}
	var svc string
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && f[0] == "->" && f[1] != "RemoteAddress:Port":
			m[svc+" "+f[1]] = strings.Join(f[2:6], " ")
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			svc = f[1]
		}
	}
	return m
}

// roundTrip loads render's lines with ipvsadm -R into a namespace of its
// own: ipvsadm must read them as the table lvs-sync made.
func roundTrip(t *testing.T, render, save string, thresholds map[string]string, st ipvs.State) {
	t.Helper()
	const ns = "opts-restore"
	must("/sbin/ip", "netns", "add", ns)
	t.Cleanup(func() { _, _ = sh("/sbin/ip", "netns", "del", ns) })
	must("/sbin/ip", "-n", ns, "link", "set", "lo", "up") // else no address is unicast there
	cmd := fmt.Sprintf("/sbin/ip netns exec %s /sbin/ipvsadm -R <<'EOF'\n%s\nEOF", ns, render)
	if out, err := sh("/bin/sh", "-c", cmd); err != nil {
		t.Errorf("ipvsadm -R of render's lines: %v\n%s", err, out)
		return
	}
	restoredSave, err := sh("/sbin/ip", "netns", "exec", ns, "/sbin/ipvsadm", "-Sn")
	if err != nil {
		t.Fatal(err)
	}
	list, err := sh("/sbin/ip", "netns", "exec", ns, "/sbin/ipvsadm", "-Ln", "--thresholds")
	if err != nil {
		t.Fatal(err)
	}
	if got := saveBlocks(restoredSave, st); got != save {
		t.Errorf("ipvsadm -R of render, then -Sn:\n%s\nwant:\n%s", got, save)
	}
	if got := listedThresholds(list, st); !maps.Equal(got, thresholds) {
		t.Errorf("ipvsadm -R of render, then -Ln --thresholds: %v\nwant %v", got, thresholds)
	}
}
