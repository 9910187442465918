//go:build vmguest

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The HA pair's topology, apart from the single director's and built on
// the first TestHA test:
//
//	hacl  eth0 10.5.0.100 ─┐
//	hars1 eth0 10.5.0.11  ─┤
//	hars2 eth0 10.5.0.12  ─┼─ brha (root ns, no address)
//	dir1  eth0 10.5.0.2   ─┤  (bridge side d1br: a link cut sets it down)
//	dir2  eth0 10.5.0.3   ─┘  (d2br)
//	dir1  eth1 10.6.1.2 ── d1m 10.6.1.1 (root): Consul at 10.6.1.1:8500
//	dir2  eth1 10.6.2.2 ── d2m 10.6.2.1 (root): Consul at 10.6.2.1:8500
//
// The VIP is in the bridge's subnet, so the client finds it by ARP: the
// director that has it on eth0 answers, and a takeover is seen by the
// client only through the new active's announcement. The real servers are
// gate (DR) reals (lvs-sync realserver); both directors have the real
// server's ARP sysctls, as a pair whose standby keeps the VIPs on lo
// needs. Each director reaches Consul over its own management link,
// through a proxy in the root namespace to the host's agent, so its
// bridge link and its Consul path are cut apart: a Consul partition is its
// management link's root side set down (packets vanish, as in a real
// partition).
const (
	haVIP       = "10.5.0.50"
	haService   = "haweb"
	haStreamSvc = "hastream" // streamline: the directors are its reals
	haAPI       = "127.0.0.1:9080"
)

var haDirs = []struct {
	ns, addr, bridgePort, mgmtRoot, mgmtAddr, consul string
}{
	{"dir1", "10.5.0.2", "d1br", "d1m", "10.6.1.2", "10.6.1.1:8500"},
	{"dir2", "10.5.0.3", "d2br", "d2m", "10.6.2.2", "10.6.2.1:8500"},
}

var haReals = []struct{ ns, addr string }{{"hars1", "10.5.0.11"}, {"hars2", "10.5.0.12"}}

var (
	haOnce sync.Once
	haErr  error
)

// haTopology builds the pair's topology once, or fails the test with why.
func haTopology(t *testing.T) {
	t.Helper()
	haOnce.Do(func() { haErr = buildHATopology() })
	if haErr != nil {
		t.Fatalf("building the HA topology: %v", haErr)
	}
}

func buildHATopology() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	// A second run in the same boot (make bench's takeover with two sets
	// of timings) finds the links and namespaces the first made; the
	// servers and proxies died with it and start again.
	_, statErr := os.Stat("/sys/class/net/brha")
	made := statErr == nil
	if !made {
		ip("link", "add", "brha", "type", "bridge")
		ip("link", "set", "brha", "up")
	}
	port := func(ns, rootName, addr string) {
		if made {
			return
		}
		ip("netns", "add", ns)
		ip("link", "add", rootName, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ip("link", "set", rootName, "master", "brha", "up")
		inNS(ns, "/sbin/ip", "link", "set", "lo", "up")
		inNS(ns, "/sbin/ip", "addr", "add", addr+"/24", "dev", "eth0")
		inNS(ns, "/sbin/ip", "link", "set", "eth0", "up")
	}
	port("hacl", "hacl0", "10.5.0.100")
	for _, r := range haReals {
		port(r.ns, r.ns+"0", r.addr)
		if !made {
			inNS(r.ns, "/bin/lvs-sync", "realserver", "-vip", haVIP, "-mode", "gate", "-log-level", "warn")
		}
		if _, err := serveReal(r.ns, 80); err != nil {
			return err
		}
	}
	for _, d := range haDirs {
		port(d.ns, d.bridgePort, d.addr)
		if !made {
			mgmtLink(d.ns, d.mgmtRoot, d.consul, d.mgmtAddr)
			// A real server's ARP sysctls: the VIP on lo is never announced
			// nor answered for on eth0.
			for _, k := range []string{"all", "eth0"} {
				sysctl(d.ns, "net/ipv4/conf/"+k+"/arp_ignore", "1")
				sysctl(d.ns, "net/ipv4/conf/"+k+"/arp_announce", "2")
			}
			sysctl(d.ns, "net/ipv4/vs/conn_reuse_mode", "3")
		}
		// Streamline: each director is a real server of hastream too.
		if _, err := serveReal(d.ns, 80); err != nil {
			return err
		}
		if err := proxyConsul(d.consul); err != nil {
			return err
		}
	}
	return nil
}

// mgmtLink gives director namespace ns its management link: eth1, a /30
// to root-side link root, whose end is consul's address (where the
// namespace's Consul proxy listens), addr the director's end.
func mgmtLink(ns, root, consul, addr string) {
	mgmtIP, _, _ := strings.Cut(consul, ":")
	ip("link", "add", root, "type", "veth", "peer", "name", "eth1", "netns", ns)
	ip("addr", "add", mgmtIP+"/30", "dev", root)
	ip("link", "set", root, "up")
	inNS(ns, "/sbin/ip", "addr", "add", addr+"/30", "dev", "eth1")
	inNS(ns, "/sbin/ip", "link", "set", "eth1", "up")
}

// consulUpstream is where the directors' Consul proxies connect: the
// host's dev agent, or for a case that restarts Consul, the host's server
// (useConsulServer).
var consulUpstream atomic.Pointer[string]

// useConsulServer points new proxied connections at the server Consul
// until the test ends.
func useConsulServer(t *testing.T) {
	server := os.Getenv("LVS_CONSUL_SERVER")
	consulUpstream.Store(&server)
	t.Cleanup(func() { consulUpstream.Store(nil) })
}

// proxyConsul forwards TCP connections from listen (in the root
// namespace) to the host's agent (consulUpstream).
func proxyConsul(listen string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("the consul proxy on %s: %w", listen, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent := os.Getenv("LVS_CONSUL")
				if p := consulUpstream.Load(); p != nil {
					agent = *p
				}
				up, err := net.DialTimeout("tcp", agent, 3*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return nil
}

// cut sets a root-side link down (the director's bridge port: its eth0
// loses carrier; its management link: it loses Consul) or up again.
func setLink(t *testing.T, name string, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := sh("/sbin/ip", "link", "set", name, state); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// setHeartbeatCut blackholes, or not, each director's unicast to the
// other on the bridge: their heartbeat goes, the multicast of the sync
// daemons, the client's traffic and Consul stay.
func setHeartbeatCut(t *testing.T, cut bool) {
	t.Helper()
	verb := "del"
	if cut {
		verb = "add"
	}
	for i, d := range haDirs {
		peer := haDirs[1-i]
		if out, err := sh("/sbin/ip", "-n", d.ns, "route", verb, "blackhole", peer.addr+"/32"); err != nil && cut {
			t.Fatalf("%v\n%s", err, out)
		}
	}
}

var (
	nsHandlesMu sync.Mutex
	nsHandles   = map[string]*netlink.Handle{}
)

// nsNetlink is an rtnetlink handle in the namespace, kept for the run.
func nsNetlink(ns string) (*netlink.Handle, error) {
	nsHandlesMu.Lock()
	defer nsHandlesMu.Unlock()
	if h := nsHandles[ns]; h != nil {
		return h, nil
	}
	n, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(n, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	nsHandles[ns] = h
	return h, nil
}

// hasVIP says whether the namespace has the VIP on the link (eth0: the
// director that answers for it).
func hasVIP(ns, link string) (bool, error) {
	h, err := nsNetlink(ns)
	if err != nil {
		return false, err
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", ns, link, err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", ns, link, err)
	}
	vip := netip.MustParseAddr(haVIP)
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == vip {
			return true, nil
		}
	}
	return false, nil
}

// withVIP lists the directors that have the VIP on eth0.
func withVIP(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, d := range haDirs {
		has, err := hasVIP(d.ns, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if has {
			out = append(out, d.ns)
		}
	}
	return out
}

// haClient is an HTTP client in the client namespace, one connection a
// request, each request bounded by timeout.
func haClient(timeout time.Duration) *http.Client { return nsClient("hacl", timeout) }

// nsClient is an HTTP client in the namespace ns, one connection a
// request, each request bounded by timeout.
func nsClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return inNamespace(ns, func() (net.Conn, error) {
					return (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
				})
			},
		},
	}
}

// haLine prints a case's one result line, as the issue asks.
func haLine(t *testing.T, name string, pass bool, takeoverMS int64, failed, resets int, extra ...string) {
	t.Helper()
	result := "pass"
	if !pass {
		result = "fail"
		t.Errorf("case %s failed", name)
	}
	line := fmt.Sprintf("ha: case=%s result=%s takeover_ms=%d failed=%d resets=%d", name, result, takeoverMS, failed, resets)
	if len(extra) > 0 {
		line += " " + strings.Join(extra, " ")
	}
	fmt.Println(line)
}
