//go:build vmguest

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/vishvananda/netlink"

	"github.com/lvs-sync/lvs-sync/internal/testbird"
)

// The all-active tier of issue 20, apart from the other topologies and
// built on the first TestECMP:
//
//	eccl  eth0 10.8.0.100 ── ecrt eth1 10.8.0.1   the client, behind the router
//	ecrt  eth0 10.7.0.1   ─┐  the router: BIRD 2, one multipath route to the VIP
//	ecd1  eth0 10.7.0.11  ─┤  (bridge side ecd10: a cut sets it down)
//	ecd2  eth0 10.7.0.12  ─┤  (ecd20)
//	ecd3  eth0 10.7.0.13  ─┼─ brecmp (root ns, no address)
//	ecrs1 eth0 10.7.0.21  ─┤  gate reals: the VIP on lo (lvs-sync realserver),
//	ecrs2 eth0 10.7.0.22  ─┤  replies straight to the client through the router
//	ecrs3 eth0 10.7.0.23  ─┘
//	ecdN  eth1 10.9.N.2 ── ecdNm 10.9.N.1 (root): Consul at 10.9.N.1:8500
//
// The VIP is outside every subnet: the client's packets to it cross the
// router, which spreads them over the directors that announce it (ECMP,
// hashed on the 5-tuple), and each director sends them on to the real its
// mh table picks. The directors speak BGP to the router in AS 65010, the
// router is AS 65000 with BIRD's shortest timers (hold 3 s). Each director
// reaches Consul over a link of its own, through a proxy to the host's
// agent, as the HA pair's do.
const (
	ecmpVIP      = "10.70.0.50"
	ecmpService  = "ecmpweb"
	ecmpRouterNS = "ecrt"
	ecmpClientNS = "eccl"
	ecmpRouter   = "10.7.0.1"
	ecmpRouterAS = 65000
	ecmpDirAS    = 65010
	// ecmpHold is the router's BGP hold time: how long a director cut off
	// the segment stays in the route.
	ecmpHold = 3 * time.Second
	// ecmpRouterSlack is what the router may take, after its hold timer
	// expired, to take the dead director's next hop out of its kernel:
	// BIRD flushes a closed session's routes from its event loop, which
	// took 332 ms once on the emulated guest of a loaded host (the
	// hold timer expired 2.9 s after the cut, the route left at 3.25 s).
	ecmpRouterSlack = 500 * time.Millisecond
)

var ecmpDirs = []struct {
	ns, addr, bridgePort, mgmtRoot, mgmtAddr, consul string
}{
	{"ecd1", "10.7.0.11", "ecd10", "ecd1m", "10.9.1.2", "10.9.1.1:8500"},
	{"ecd2", "10.7.0.12", "ecd20", "ecd2m", "10.9.2.2", "10.9.2.1:8500"},
	{"ecd3", "10.7.0.13", "ecd30", "ecd3m", "10.9.3.2", "10.9.3.1:8500"},
}

var ecmpReals = []struct{ ns, addr string }{{"ecrs1", "10.7.0.21"}, {"ecrs2", "10.7.0.22"}, {"ecrs3", "10.7.0.23"}}

// ecmpStandIn says whether BIRD in each director's namespace announces the
// VIP in place of lvs-sync's own bgp block (LVS_SYNC_ECMP_STANDIN=1): the
// router and the topology proven before the speaker exists. lvs-sync still
// keeps each director's IPVS table; the case lines say speaker=bird-standin.
var ecmpStandIn = os.Getenv("LVS_SYNC_ECMP_STANDIN") == "1"

func ecmpSpeaker() string {
	if ecmpStandIn {
		return "bird-standin"
	}
	return "lvs-sync"
}

var (
	ecmpOnce sync.Once
	ecmpErr  error
)

// ecmpTopology builds the tier's topology and starts the router once; it
// returns why it could not.
func ecmpTopology() error {
	ecmpOnce.Do(func() { ecmpErr = buildECMPTopology() })
	if ecmpErr != nil {
		return fmt.Errorf("building the ECMP topology: %w", ecmpErr)
	}
	return nil
}

func buildECMPTopology() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	ip("link", "add", "brecmp", "type", "bridge")
	ip("link", "set", "brecmp", "up")
	port := func(ns, rootName, addr string) {
		ip("netns", "add", ns)
		ip("link", "add", rootName, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ip("link", "set", rootName, "master", "brecmp", "up")
		inNS(ns, "/sbin/ip", "link", "set", "lo", "up")
		inNS(ns, "/sbin/ip", "addr", "add", addr+"/24", "dev", "eth0")
		inNS(ns, "/sbin/ip", "link", "set", "eth0", "up")
	}
	// The router, and the client on a link of its own behind it.
	port(ecmpRouterNS, "ecrt0", ecmpRouter)
	ip("netns", "add", ecmpClientNS)
	ip("link", "add", "ecrtc", "type", "veth", "peer", "name", "eth0", "netns", ecmpClientNS)
	ip("link", "set", "ecrtc", "netns", ecmpRouterNS)
	inNS(ecmpRouterNS, "/sbin/ip", "link", "set", "ecrtc", "name", "eth1")
	inNS(ecmpRouterNS, "/sbin/ip", "addr", "add", "10.8.0.1/24", "dev", "eth1")
	inNS(ecmpRouterNS, "/sbin/ip", "link", "set", "eth1", "up")
	inNS(ecmpClientNS, "/sbin/ip", "link", "set", "lo", "up")
	inNS(ecmpClientNS, "/sbin/ip", "addr", "add", "10.8.0.100/24", "dev", "eth0")
	inNS(ecmpClientNS, "/sbin/ip", "link", "set", "eth0", "up")
	inNS(ecmpClientNS, "/sbin/ip", "route", "add", "default", "via", "10.8.0.1")
	sysctl(ecmpRouterNS, "net/ipv4/ip_forward", "1")
	// Hash forwarded packets on the 5-tuple: the default hashes on the
	// addresses alone, and one client would use one director.
	sysctl(ecmpRouterNS, "net/ipv4/fib_multipath_hash_policy", "1")
	for _, r := range ecmpReals {
		port(r.ns, r.ns+"0", r.addr)
		inNS(r.ns, "/sbin/ip", "route", "add", "default", "via", ecmpRouter)
		inNS(r.ns, "/bin/lvs-sync", "realserver", "-vip", ecmpVIP, "-mode", "gate", "-log-level", "warn")
		if _, err := serveReal(r.ns, 80); err != nil {
			return err
		}
	}
	for _, d := range ecmpDirs {
		port(d.ns, d.bridgePort, d.addr)
		// A director's own packets (a reset for the VIP from its stack,
		// when IPVS does not take a packet) reach the client, as they
		// would in production: the naive variants must be able to fail.
		inNS(d.ns, "/sbin/ip", "route", "add", "default", "via", ecmpRouter)
		mgmtLink(d.ns, d.mgmtRoot, d.consul, d.mgmtAddr)
		// A flow that ECMP moves to this director mid-way must be
		// scheduled from its first packet here, not only from a SYN:
		// lvs-sync's tune_sysctls sets sloppy_tcp for a bgp director. A
		// stand-in's lvs-sync has no bgp block: the harness sets it.
		sloppy := "0"
		if ecmpStandIn {
			sloppy = "1"
		}
		sysctl(d.ns, "net/ipv4/vs/sloppy_tcp", sloppy)
		if err := proxyConsul(d.consul); err != nil {
			return err
		}
	}
	return startRouter()
}

// birdProc is a running bird.
type birdProc struct {
	ns, sock string
	proc     *lvsSync // its process and log
}

var ecmpRouterBird *birdProc

// startRouter runs the router's BIRD with internal/testbird's config, the
// one the bgp package's tests run on the host: every director a passive
// single-hop neighbour (the directors dial), the paths they announce
// merged into one multipath kernel route, hold time 3 s and BIRD's
// shortest retry timers (a lost director leaves after the hold time, a
// returning one comes back at once: BIRD's default error wait is 60 s).
func startRouter() error {
	c := testbird.Config{RouterID: netip.MustParseAddr(ecmpRouter), ASN: ecmpRouterAS, Port: 179,
		Log: "/tmp/ecmp-bird/" + ecmpRouterNS + "/bird.log", Debug: true, Direct: true, Kernel: true}
	for i, d := range ecmpDirs {
		c.Peers = append(c.Peers, testbird.Peer{Name: fmt.Sprintf("d%d", i+1), Local: c.RouterID,
			Address: netip.MustParseAddr(d.addr), ASN: ecmpDirAS})
	}
	b, err := startBird(ecmpRouterNS, c.Text())
	ecmpRouterBird = b
	return err
}

// routerLog is the tail of the router's BIRD log, for a failed test.
func routerLog() string {
	b, _ := os.ReadFile("/tmp/ecmp-bird/" + ecmpRouterNS + "/bird.log")
	return tail(string(b), 60)
}

// ecmpStandInConf is a director's stand-in speaker: the VIP as a static
// /32, announced to the router with this director as its next hop.
const ecmpStandInConf = `log stderr all;
router id %[1]s;
protocol device {
  scan time 1;
}
protocol static {
  ipv4;
  route ` + ecmpVIP + `/32 blackhole;
}
protocol bgp uplink {
  local %[1]s as %[2]d;
  neighbor ` + ecmpRouter + ` as %[3]d;
  hold time 3;
  keepalive time 1;
  connect retry time 1;
  error wait time 1, 5;
  ipv4 {
    import none;
    export all;
  };
}
`

// startBird runs bird in the foreground in namespace ns with config conf.
func startBird(ns, conf string) (*birdProc, error) {
	dir := filepath.Join("/tmp/ecmp-bird", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	b := &birdProc{ns: ns, sock: filepath.Join(dir, "bird.ctl"), proc: &lvsSync{done: make(chan struct{})}}
	b.proc.cmd = exec.Command("/sbin/ip", "netns", "exec", ns, "/sbin/bird", "-f", "-c", path, "-s", b.sock)
	b.proc.cmd.Stdout, b.proc.cmd.Stderr = b.proc, b.proc
	if err := b.proc.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting bird in %s: %w", ns, err)
	}
	go func() { _ = b.proc.cmd.Wait(); close(b.proc.done) }()
	up := waitUntil(10*time.Second, func() bool {
		select {
		case <-b.proc.done:
			return true
		default:
		}
		return strings.Contains(b.birdc("show", "status"), "Daemon is up and running")
	})
	select {
	case <-b.proc.done:
		return b, fmt.Errorf("bird in %s exited: %s", ns, oneWord(b.proc.logText()))
	default:
	}
	if !up {
		return b, fmt.Errorf("bird in %s: not up after 10s: %s", ns, oneWord(b.proc.logText()))
	}
	return b, nil
}

// stop signals bird and waits for it to exit.
func (b *birdProc) stop(sig syscall.Signal) {
	_ = b.proc.cmd.Process.Signal(sig)
	select {
	case <-b.proc.done:
	case <-time.After(10 * time.Second):
		_ = b.proc.cmd.Process.Kill()
		<-b.proc.done
	}
}

// birdc asks bird a question ("show protocols"), for the logs.
func (b *birdProc) birdc(args ...string) string {
	out, err := exec.Command("/sbin/ip", append([]string{"netns", "exec", b.ns, "/sbin/birdc", "-s", b.sock}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("birdc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nextHops are the router's next hops to the VIP in its kernel's main
// table, sorted: the directors that announce it.
func nextHops() ([]string, error) {
	h, err := nsNetlink(ecmpRouterNS)
	if err != nil {
		return nil, err
	}
	dst := &net.IPNet{IP: net.ParseIP(ecmpVIP).To4(), Mask: net.CIDRMask(32, 32)}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst, Table: syscall.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("the router's route to %s: %w", ecmpVIP, err)
	}
	var hops []string
	for _, r := range routes {
		if r.Gw != nil {
			hops = append(hops, r.Gw.String())
		}
		for _, nh := range r.MultiPath {
			hops = append(hops, nh.Gw.String())
		}
	}
	slices.Sort(hops)
	return hops, nil
}

// dirAddrs are the addresses of the directors given by index, sorted.
func dirAddrs(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, ecmpDirs[i].addr)
	}
	slices.Sort(out)
	return out
}

// waitNextHops waits until the router's next hops to the VIP are exactly
// want; it returns how long that took and whether it came.
func waitNextHops(want []string, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	ok := waitUntil(timeout, func() bool {
		hops, err := nextHops()
		return err == nil && slices.Equal(hops, want)
	})
	return time.Since(start), ok
}

// ecmpDirConf is one director's lvs-sync config: Consul through its
// management link, the VIP's mh gate service, and (unless a stand-in
// speaks for it) its bgp block, as issue 20's contract spells it.
const ecmpDirConf = `consul {
  address = "%[1]s"
}
director {
  vip_interface      = "lvs0"
  reconcile_interval = "2s"
  state_file         = "%[2]s/state.json"
  tune_sysctls       = true # sloppy_tcp, with the bgp block
%[3]s}
virtual_service "ecmp-web" {
  address         = "` + ecmpVIP + `:80"
  forwarding      = "gate"
  scheduler       = "mh"
  scheduler_flags = ["mh-port"]
  service         = "` + ecmpService + `"
  drain_timeout   = "0s"
}
`

const ecmpBGPBlock = `  bgp {
    asn = %d
    neighbor "%s" {
      asn       = %d
      hold_time = "3s" # as the router's: each side notices a lost peer as soon
    }
  }
`

// ecmpDirector is one director of the tier: its lvs-sync and, with
// LVS_SYNC_ECMP_STANDIN=1, its stand-in speaker.
type ecmpDirector struct {
	i      int
	ns     string
	config string
	lvs    *lvsSync
	bird   *birdProc
}

// ecmpStateDir keeps a director's state file across its restarts.
func ecmpStateDir(ns string) string { return filepath.Join("/tmp/lvs-sync-ecmp", ns) }

// startECMPDirector runs director i's lvs-sync and waits for its first
// sync; with a stand-in, it then starts the director's BIRD (an announce
// after the first sync, as lvs-sync's own speaker does).
func startECMPDirector(t *testing.T, i int) (*ecmpDirector, error) {
	t.Helper()
	dir, err := launchECMPDirector(t, i)
	if err != nil {
		return dir, err
	}
	return dir, dir.awaitSync(20 * time.Second)
}

// launchECMPDirector runs director i's lvs-sync and returns at once.
func launchECMPDirector(t *testing.T, i int) (*ecmpDirector, error) {
	t.Helper()
	d := ecmpDirs[i]
	bgp := ""
	if !ecmpStandIn {
		bgp = fmt.Sprintf(ecmpBGPBlock, ecmpDirAS, ecmpRouter, ecmpRouterAS)
	}
	if err := os.MkdirAll(ecmpStateDir(d.ns), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(ecmpStateDir(d.ns), "lvs-sync.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(ecmpDirConf, d.consul, ecmpStateDir(d.ns), bgp)), 0o644); err != nil {
		return nil, err
	}
	l := &lvsSync{done: make(chan struct{})}
	l.cmd = exec.Command("/sbin/ip", "netns", "exec", d.ns, "/bin/lvs-sync", "run", "-config", cfg, "-log-level", "debug")
	l.cmd.Stdout, l.cmd.Stderr = l, l
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting lvs-sync in %s: %w", d.ns, err)
	}
	go func() { _ = l.cmd.Wait(); close(l.done) }()
	dir := &ecmpDirector{i: i, ns: d.ns, config: cfg, lvs: l}
	t.Cleanup(func() {
		dir.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("lvs-sync in %s:\n%s", d.ns, tail(l.logText(), 60))
		}
	})
	return dir, nil
}

// awaitSync waits for the director's first sync; with a stand-in, it then
// starts the director's BIRD.
func (dir *ecmpDirector) awaitSync(timeout time.Duration) error {
	l := dir.lvs
	synced := waitUntil(timeout, func() bool {
		select {
		case <-l.done:
			return true
		default:
		}
		return strings.Contains(l.logText(), "synced: reason=")
	})
	select {
	case <-l.done:
		return fmt.Errorf("lvs-sync in %s exited: %s", dir.ns, firstError(l.logText()))
	default:
	}
	if !synced {
		return fmt.Errorf("lvs-sync in %s: no first sync in %v", dir.ns, timeout)
	}
	if ecmpStandIn {
		d := ecmpDirs[dir.i]
		b, err := startBird(d.ns, fmt.Sprintf(ecmpStandInConf, d.addr, ecmpDirAS, ecmpRouterAS))
		if err != nil {
			return err
		}
		dir.bird = b
	}
	return nil
}

// firstError is the message of a log's first ERROR line, without its
// time and level ("" without one).
func firstError(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if _, msg, ok := strings.Cut(line, "[ERROR] "); ok {
			return msg
		}
	}
	return ""
}

// speakerSignal sends sig to what announces this director's VIP: its
// lvs-sync, or its stand-in BIRD.
func (d *ecmpDirector) speakerSignal(sig syscall.Signal) {
	if d.bird != nil {
		_ = d.bird.proc.cmd.Process.Signal(sig)
		return
	}
	_ = d.lvs.cmd.Process.Signal(sig)
}

// speakerExited says whether the speaker has exited.
func (d *ecmpDirector) speakerExited() bool {
	done := d.lvs.done
	if d.bird != nil {
		done = d.bird.proc.done
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// stop stops the director's speaker and lvs-sync; its kernel table stays.
func (d *ecmpDirector) stop(sig syscall.Signal) {
	if d.bird != nil {
		d.bird.stop(sig)
	}
	_ = d.lvs.cmd.Process.Signal(sig)
	select {
	case <-d.lvs.done:
	case <-time.After(10 * time.Second):
		_ = d.lvs.cmd.Process.Kill()
		<-d.lvs.done
	}
}

// registerECMPReal registers real i of the tier's service, passing.
func registerECMPReal(t *testing.T, i int) {
	t.Helper()
	r := ecmpReals[i]
	id := ecmpService + "-" + r.ns
	reg := &api.AgentServiceRegistration{ID: id, Name: ecmpService, Address: r.addr, Port: 80,
		Check: &api.AgentServiceCheck{CheckID: id + "-ttl", TTL: "10m", Status: api.HealthPassing}}
	if err := consul(t).Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("registering %s: %v", id, err)
	}
	setECMPReal(t, i, api.HealthPassing)
}

// setECMPReal sets real i's check.
func setECMPReal(t *testing.T, i int, status string) {
	t.Helper()
	id := ecmpService + "-" + ecmpReals[i].ns
	if err := consul(t).Agent().UpdateTTL(id+"-ttl", "set by the ecmp test", status); err != nil {
		t.Fatalf("setting %s %s: %v", id, status, err)
	}
}

// deregisterECMPReals takes every real of the tier's service out of Consul.
func deregisterECMPReals(t *testing.T) {
	t.Helper()
	for _, r := range ecmpReals {
		_ = consul(t).Agent().ServiceDeregister(ecmpService + "-" + r.ns)
	}
}

// procIPVS reads the VIP's service from the namespace's /proc/net/ip_vs:
// its reals ("10.7.0.21:80") in the kernel's own order (ipvsadm sorts what
// it prints; mh builds its table from this order).
func procIPVS(ns string) ([]string, error) {
	out, err := exec.Command("/sbin/ip", "netns", "exec", ns, "/bin/busybox", "cat", "/proc/net/ip_vs").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("/proc/net/ip_vs in %s: %w: %s", ns, err, out)
	}
	vip := netip.MustParseAddr(ecmpVIP).As4()
	key := fmt.Sprintf("%02X%02X%02X%02X:0050", vip[0], vip[1], vip[2], vip[3])
	var dests []string
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM"):
			in = f[0] == "TCP" && f[1] == key
		case in && len(f) >= 6 && f[0] == "->":
			a, err := hexAddrPort(f[1])
			if err != nil {
				return nil, fmt.Errorf("/proc/net/ip_vs in %s: %w", ns, err)
			}
			dests = append(dests, a)
		}
	}
	return dests, nil
}

// hexAddrPort turns /proc/net/ip_vs's "0A070015:0050" into "10.7.0.21:80".
func hexAddrPort(s string) (string, error) {
	a, p, ok := strings.Cut(s, ":")
	ip, err1 := strconv.ParseUint(a, 16, 32)
	port, err2 := strconv.ParseUint(p, 16, 16)
	if !ok || len(a) != 8 || err1 != nil || err2 != nil {
		return "", fmt.Errorf("not an IPv4 address:port in hex: %q", s)
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip), port), nil
}

// establishedFrom is the client address:ports (hex, as /proc/net/ip_vs_conn
// lists them) of the namespace's ESTABLISHED connection entries.
func establishedFrom(ns string) (map[string]bool, error) {
	out, err := exec.Command("/sbin/ip", "netns", "exec", ns, "/bin/busybox", "cat", "/proc/net/ip_vs_conn").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("/proc/net/ip_vs_conn in %s: %w: %s", ns, err, out)
	}
	from := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == "TCP" && f[7] == "ESTABLISHED" {
			from[f[1]+":"+f[2]] = true
		}
	}
	return from, nil
}

// ipvsConns is the namespace's count of connections IPVS scheduled since
// it began (/proc/net/ip_vs_stats, "Total Conns", in hex). The kernel
// sums its per-CPU counters into it every 2 s: a count read at once lags.
func ipvsConns(ns string) (int64, error) {
	out, err := exec.Command("/sbin/ip", "netns", "exec", ns, "/bin/busybox", "cat", "/proc/net/ip_vs_stats").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("/proc/net/ip_vs_stats in %s: %w: %s", ns, err, out)
	}
	lines := strings.Split(string(out), "\n")
	if len(lines) < 3 || len(strings.Fields(lines[2])) == 0 {
		return 0, fmt.Errorf("/proc/net/ip_vs_stats in %s: %q", ns, out)
	}
	return strconv.ParseInt(strings.Fields(lines[2])[0], 16, 64)
}

// ecmpLine prints a case's one result line, as the issue asks, and fails
// the test on fail.
func ecmpLine(t *testing.T, name string, pass bool, kv ...string) {
	t.Helper()
	result := "pass"
	if !pass {
		result = "fail"
		t.Errorf("case %s failed", name)
	}
	line := fmt.Sprintf("ecmp: case=%s result=%s speaker=%s", name, result, ecmpSpeaker())
	if len(kv) > 0 {
		line += " " + strings.Join(kv, " ")
	}
	fmt.Println(line)
}
