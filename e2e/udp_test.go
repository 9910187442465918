//go:build vmguest

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// UDP through the VIPs: a DNS-like service on port 53, request and answer
// one datagram each. Each real server answers "<its namespace> <request>"
// from a socket bound to the address the request was sent to: the VIP for
// gate (on the real's lo), its own address for masq. An unbound (0.0.0.0)
// UDP socket would answer a gate request from the real's own address,
// which the client's connected socket does not take.
const udpPort = 53

// udpServers start once per guest run; they live as long as the guest.
var udpServers = sync.OnceValue(func() error {
	for _, r := range reals {
		for _, addr := range []string{vipGate, r.addr} {
			if _, err := serveUDP(r.ns, netip.AddrPortFrom(netip.MustParseAddr(addr), udpPort)); err != nil {
				return err
			}
		}
	}
	return nil
})

// serveUDP answers each datagram to addr, in namespace ns, with the
// namespace's name and the request, until it is closed.
func serveUDP(ns string, addr netip.AddrPort) (io.Closer, error) {
	c, err := inNamespace(ns, func() (*net.UDPConn, error) { return net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr)) })
	if err != nil {
		return nil, fmt.Errorf("udp server of %s on %s: %w", ns, addr, err)
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort([]byte(ns+" "+string(buf[:n])), from)
		}
	}()
	return c, nil
}

// udpTimeout is how long a client waits for an answer before it counts
// the request lost. No request is sent again: a retry would hide a loss.
const udpTimeout = time.Second

// nextPort is the client's next source port. Each socket takes one no
// socket had before in this guest run: an ephemeral port the kernel picks
// may be one an earlier request had, whose IPVS connection entry (300s)
// still points at a real that has since been deleted, and that packet is
// dropped (measured: one such loss in 75 requests). The ports are below
// the kernel's ephemeral range (32768 and up), which they never meet.
var nextPort atomic.Int32

func init() { nextPort.Store(10000) }

// dialUDP is a socket in the client namespace connected to vip:53, at a
// source port of its own.
func dialUDP(vip string) (*net.UDPConn, error) {
	port := int(nextPort.Add(1))
	if port >= 32768 {
		return nil, fmt.Errorf("the client ran out of fresh source ports")
	}
	return inNamespace("client", func() (*net.UDPConn, error) {
		return net.DialUDP("udp", &net.UDPAddr{Port: port}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(vip), udpPort)))
	})
}

// ask sends request q on c and returns which real server answered it; an
// error for no answer within udpTimeout (a loss) or a wrong one.
func ask(c *net.UDPConn, q string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(udpTimeout)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(q)); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	ns, got, _ := strings.Cut(string(buf[:n]), " ")
	if got != q {
		return "", fmt.Errorf("answer %q to request %q", buf[:n], q)
	}
	return ns, nil
}

// askOnce sends one request from a fresh socket: a new source port, so a
// new IPVS connection entry, scheduled anew (UDP has no connection to
// end: an entry lives until its timeout, 300s by default, however many
// requests reuse its port).
func askOnce(vip, q string) (string, error) {
	c, err := dialUDP(vip)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return ask(c, q)
}

// udpAnswer is one request of a load: when it was sent and who answered.
type udpAnswer struct {
	at   time.Time
	real string // "" for a loss
	err  error
}

// udpLoad sends requests from fresh sockets one after another, every 5ms
// or so, until stopped.
type udpLoad struct {
	stop    chan struct{}
	done    chan struct{}
	answers []udpAnswer
}

func startUDPLoad(vip string) *udpLoad {
	l := &udpLoad{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			at := time.Now()
			real, err := askOnce(vip, fmt.Sprintf("q%d", i))
			l.answers = append(l.answers, udpAnswer{at: at, real: real, err: err})
		}
	}()
	return l
}

// end stops the load and returns its answers.
func (l *udpLoad) end() []udpAnswer {
	close(l.stop)
	<-l.done
	return l.answers
}

// realsOfUDP returns the weights of the reals of the UDP service at vip:53.
func realsOfUDP(t *testing.T, vip string) map[string]int {
	t.Helper()
	return weightsAt(t, lvs.UDP, vip, udpPort)
}

// registerDNS registers dns1..dns3 on the real servers, at port 53 (the
// virtual port: gate cannot translate it), with TTL checks, passing.
func registerDNS(t *testing.T) {
	t.Helper()
	for i, r := range reals {
		id := fmt.Sprintf("dns%d", i+1)
		registerPassing(t, &api.AgentServiceRegistration{ID: id, Name: "dns", Address: r.addr, Port: udpPort})
	}
}

const udpConfig = `virtual_service "dns-masq" {
  address    = "10.10.10.61:53"
  protocol   = "udp"
  forwarding = "masq"
  scheduler  = "rr"
  service    = "dns"
}
virtual_service "dns-gate" {
  address    = "10.10.10.60:53"
  protocol   = "udp"
  forwarding = "gate"
  scheduler  = "rr"
  service    = "dns"
}
`

// udpFlipBound is how soon after a health change in Consul no new request
// may reach the real any more: the bound the TCP tests hold removal to.
const udpFlipBound = time.Second

// TestUDPTraffic sends DNS-like requests through a masq and a gate UDP
// virtual service, each from a fresh source port: rr spreads them evenly;
// a real going critical, then a real put in maintenance (a drain), takes
// no new request within udpFlipBound of the change in Consul, while a
// steady load loses none. One long-lived client socket whose real is
// deleted loses every request with expire_nodest_conn = 0, and is
// rescheduled to another real with 1, as the README's kernel settings say.
func TestUDPTraffic(t *testing.T) {
	if err := udpServers(); err != nil {
		t.Fatal(err)
	}
	registerDNS(t)
	cfg := writeServicesConfig(t, udpConfig)
	// Once lvs-sync has stopped (cleanups run last first), the UDP
	// services go, so that later tests find the table they know.
	t.Cleanup(func() {
		for _, vip := range []string{vipMasq, vipGate} {
			_, _ = sh("/sbin/ipvsadm", "-D", "-u", fmt.Sprintf("%s:%d", vip, udpPort))
		}
	})
	l := startLVS(t, cfg)
	l.waitSynced(t)

	all := map[string]int{}
	for _, r := range reals {
		all[fmt.Sprintf("%s:%d", r.addr, udpPort)] = 1
	}
	for _, tc := range []struct{ fwd, vip string }{{"masq", vipMasq}, {"gate", vipGate}} {
		t.Run(tc.fwd, func(t *testing.T) {
			waitFor(t, "three reals", 15*time.Second, func() bool { return testenv.SameWeights(realsOfUDP(t, tc.vip), all) })
			// rr: nine requests from nine source ports reach each real thrice.
			seen := map[string]int{}
			for i := range 9 {
				real, err := askOnce(tc.vip, fmt.Sprintf("first%d", i))
				if err != nil {
					t.Fatalf("request %d to %s: %v", i, tc.vip, err)
				}
				seen[real]++
			}
			if seen["rs1"] != 3 || seen["rs2"] != 3 || seen["rs3"] != 3 {
				t.Errorf("answers %v, want rs1, rs2 and rs3 three times each", seen)
			}

			flip := func(what, ns string, change, undo func()) {
				t.Helper()
				addr := reals[nsIndex(ns)].addr + fmt.Sprintf(":%d", udpPort)
				ld := startUDPLoad(tc.vip)
				time.Sleep(300 * time.Millisecond)
				at := time.Now()
				change()
				out := waitFor(t, ns+" out of the table", 5*time.Second, func() bool { _, in := realsOfUDP(t, tc.vip)[addr]; return !in })
				time.Sleep(udpFlipBound + 300*time.Millisecond)
				got := ld.end()
				lost, before, after, late := 0, map[string]int{}, map[string]int{}, 0
				for _, a := range got {
					switch {
					case a.err != nil:
						lost++
						t.Errorf("%s: request sent %v after the change lost: %v", what, a.at.Sub(at).Round(time.Millisecond), a.err)
					case a.at.Before(at):
						before[a.real]++
					default:
						after[a.real]++
						if a.real == ns && a.at.Sub(at) >= udpFlipBound {
							late++
						}
					}
				}
				t.Logf("%s %s: out of the kernel %v after the change; %d requests, %d lost; answers before %v, after %v",
					tc.fwd, what, out.Round(time.Millisecond), len(got), lost, before, after)
				if out > udpFlipBound {
					t.Errorf("%s: %s left the table %v after the change, want within %v", what, ns, out, udpFlipBound)
				}
				if late != 0 {
					t.Errorf("%s: %d requests sent %v or more after the change reached %s", what, late, udpFlipBound, ns)
				}
				if before[ns] == 0 || len(got) < 50 {
					t.Errorf("%s: %d requests, %d to %s before the change: the load did not run", what, len(got), before[ns], ns)
				}
				undo()
				waitFor(t, "three reals again", 5*time.Second, func() bool { return testenv.SameWeights(realsOfUDP(t, tc.vip), all) })
			}
			flip("critical", "rs2",
				func() { setCheck(t, "dns2", api.HealthCritical) },
				func() { setCheck(t, "dns2", api.HealthPassing) })
			flip("maintenance", "rs3",
				func() {
					if err := consul(t).Agent().EnableServiceMaintenance("dns3", "drain"); err != nil {
						t.Fatal(err)
					}
				},
				func() {
					if err := consul(t).Agent().DisableServiceMaintenance("dns3"); err != nil {
						t.Fatal(err)
					}
				})

			longLived(t, tc.vip, "0")
			longLived(t, tc.vip, "1")
		})
	}
	t.Logf("ipvsadm -Ln:\n%s", ipvsadm(t, "-Ln"))
}

// longLived: one client socket, one source port, so one IPVS connection
// entry that each request refreshes. Its real going critical is deleted at
// once (UDP reals are not drained). What its next requests meet is the
// kernel's expire_nodest_conn, as the README's kernel settings say: with
// 0, they are dropped (until the entry times out, 300s after the last);
// with 1, the entry expires and they go to another real.
func longLived(t *testing.T, vip, expire string) {
	t.Helper()
	const key = "net/ipv4/vs/expire_nodest_conn"
	old, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/sys/"+key, []byte(expire), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.WriteFile("/proc/sys/"+key, old, 0o644) }()

	c, err := dialUDP(vip)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := ask(c, "long0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if real, err := ask(c, fmt.Sprintf("long%d", i)); err != nil || real != first {
			t.Fatalf("request %d of one socket: %s, %v; want %s again (one entry)", i, real, err, first)
		}
	}
	i := nsIndex(first)
	id := fmt.Sprintf("dns%d", i+1)
	setCheck(t, id, api.HealthCritical)
	addr := fmt.Sprintf("%s:%d", reals[i].addr, udpPort)
	waitFor(t, first+" out of the table", 5*time.Second, func() bool { _, in := realsOfUDP(t, vip)[addr]; return !in })
	var seq []string
	lost := 0
	for n := range 5 {
		real, err := ask(c, fmt.Sprintf("after%d", n))
		if err != nil {
			lost++
			real = "lost"
		}
		seq = append(seq, real)
	}
	t.Logf("one socket first answered by %s; after %s's deletion, with %s = %s: %v", first, first, key, expire, seq)
	switch expire {
	case "0":
		if lost != len(seq) {
			t.Errorf("with %s = 0, %d of %d requests of the socket answered after its real was deleted (%v), want none", key, len(seq)-lost, len(seq), seq)
		}
	default:
		if lost != 0 || slices.Contains(seq, first) {
			t.Errorf("with %s = 1, the socket's requests after its real was deleted: %v; want every one answered by another real", key, seq)
		}
	}
	setCheck(t, id, api.HealthPassing)
	waitFor(t, first+" back", 5*time.Second, func() bool { _, in := realsOfUDP(t, vip)[addr]; return in })
}

// nsIndex is the index in reals of the real server of namespace ns.
func nsIndex(ns string) int {
	for i, r := range reals {
		if r.ns == ns {
			return i
		}
	}
	panic("no real server " + ns)
}
