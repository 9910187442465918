//go:build vmguest

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// The topology, built once in the guest by TestMain:
//
//	client ns ── eth1 10.2.0.100 ── cl1 10.2.0.1 ─┐
//	          ── eth0 10.1.0.100 ─┐              director (root ns), VIPs on lvs0
//	rs1..rs3 ns ─ eth0 10.1.0.1N ─┴─ br0 10.1.0.1 ┘
//
// gate and ipip: the client reaches the VIPs through the director over
// br0 and the real servers answer it directly on that L2, so replies from
// the VIP never cross the director. masq: the client comes in on its own
// link, 10.2.0.0/24, and the real servers' default route is the director,
// which un-NATs the replies.
const (
	vipGate = "10.10.10.60"
	vipMasq = "10.10.10.61"
	vipIPIP = "10.10.10.62"
)

var reals = []struct {
	ns, addr string
	port     int // the instance's port; gate and ipip use 80
}{
	{"rs1", "10.1.0.11", 8081},
	{"rs2", "10.1.0.12", 8082},
	{"rs3", "10.1.0.13", 8083},
}

// sh runs a command (the real /sbin/ip: busybox's own applet is not it).
func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func must(args ...string) {
	if out, err := sh(args...); err != nil {
		panic(fmt.Sprintf("%v\n%s", err, out))
	}
}

func ip(args ...string) { must(append([]string{"/sbin/ip"}, args...)...) }
func inNS(ns string, args ...string) {
	must(append([]string{"/sbin/ip", "netns", "exec", ns}, args...)...)
}
func sysctl(ns, key, value string) {
	inNS(ns, "/bin/sh", "-c", fmt.Sprintf("echo %s > /proc/sys/%s", value, key))
}

func buildTopology() {
	// The director: with gate and ipip it never sees the real server's FIN,
	// so IPVS keeps old connections in FIN_WAIT, and with the default
	// conn_reuse_mode=1 a new connection that reuses a client port goes to
	// the same real even when it is draining. Bit 2 reschedules it.
	must("/bin/sh", "-c", "echo 3 > /proc/sys/net/ipv4/vs/conn_reuse_mode")
	ip("link", "add", "br0", "type", "bridge")
	ip("addr", "add", "10.1.0.1/24", "dev", "br0")
	ip("link", "set", "br0", "up")
	for _, r := range reals {
		ip("netns", "add", r.ns)
		ip("link", "add", r.ns, "type", "veth", "peer", "name", "eth0", "netns", r.ns)
		ip("link", "set", r.ns, "master", "br0", "up")
		inNS(r.ns, "/sbin/ip", "link", "set", "lo", "up")
		inNS(r.ns, "/sbin/ip", "addr", "add", r.addr+"/24", "dev", "eth0")
		inNS(r.ns, "/sbin/ip", "link", "set", "eth0", "up")
		inNS(r.ns, "/sbin/ip", "route", "add", "default", "via", "10.1.0.1")
		// The ARP problem, solved by lvs-sync itself on each real server.
		inNS(r.ns, "/bin/lvs-sync", "realserver", "-vip", vipGate, "-mode", "gate", "-log-level", "warn")
		inNS(r.ns, "/bin/lvs-sync", "realserver", "-vip", vipIPIP, "-mode", "ipip", "-log-level", "warn")
	}
	ip("netns", "add", "client")
	ip("link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", "client")
	ip("link", "set", "cl0", "master", "br0", "up")
	ip("link", "add", "cl1", "type", "veth", "peer", "name", "eth1", "netns", "client")
	ip("addr", "add", "10.2.0.1/24", "dev", "cl1")
	ip("link", "set", "cl1", "up")
	inNS("client", "/sbin/ip", "link", "set", "lo", "up")
	inNS("client", "/sbin/ip", "addr", "add", "10.1.0.100/24", "dev", "eth0")
	inNS("client", "/sbin/ip", "addr", "add", "10.2.0.100/24", "dev", "eth1")
	inNS("client", "/sbin/ip", "link", "set", "eth0", "up")
	inNS("client", "/sbin/ip", "link", "set", "eth1", "up")
	inNS("client", "/sbin/ip", "route", "add", vipGate+"/32", "via", "10.1.0.1", "dev", "eth0")
	inNS("client", "/sbin/ip", "route", "add", vipIPIP+"/32", "via", "10.1.0.1", "dev", "eth0")
	inNS("client", "/sbin/ip", "route", "add", vipMasq+"/32", "via", "10.2.0.1", "dev", "eth1")
	sysctl("client", "net/ipv4/conf/all/rp_filter", "0")
}

// inNamespace runs fn on a thread switched into the named network
// namespace. Sockets keep the namespace they were made in, so a listener
// or connection made by fn can be used from any goroutine afterwards. The
// thread is never unlocked, so Go discards it instead of reusing it.
func inNamespace[T any](name string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err == nil {
			defer h.Close()
			err = netns.Set(h)
		}
		if err != nil {
			var zero T
			ch <- result{zero, fmt.Errorf("entering netns %s: %w", name, err)}
			return
		}
		v, err := fn()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// serveReal starts an HTTP server in a real server's namespace on port,
// answering with the namespace's name. /slow?ms=N trickles its answer in
// ten parts over N ms.
func serveReal(ns string, port int) (*http.Server, error) {
	l, err := inNamespace(ns, func() (net.Listener, error) {
		return net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s\n", ns) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		var ms int
		fmt.Sscanf(r.URL.Query().Get("ms"), "%d", &ms)
		fl, _ := w.(http.Flusher)
		for i := 0; i < 10; i++ {
			fmt.Fprintf(w, "%s %d\n", ns, i)
			if fl != nil {
				fl.Flush()
			}
			time.Sleep(time.Duration(ms/10) * time.Millisecond)
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	return srv, nil
}

// client is an HTTP client in the client namespace; one connection a
// request, so that each request is scheduled anew by IPVS.
var client = &http.Client{
	Timeout: 5 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return inNamespace("client", func() (net.Conn, error) {
				return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			})
		},
	},
}

// get fetches http://vip/ from the client and returns the body, trimmed.
func get(vip string) (string, error) { return getWith(client, "http://"+vip+"/") }

// getFrom fetches url from the client namespace with source address from,
// on a connection of its own.
func getFrom(from, url string) (string, error) {
	hc := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return inNamespace("client", func() (net.Conn, error) {
					d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
					return d.DialContext(ctx, network, addr)
				})
			},
		},
	}
	return getWith(hc, url)
}

// getWith gets url with hc and returns the body, trimmed.
func getWith(hc *http.Client, url string) (string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// answers counts which real server answered each of n requests.
func answers(t *testing.T, vip string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		body, err := get(vip)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i, vip, err)
		}
		seen[body]++
	}
	return seen
}

func TestMain(m *testing.M) {
	// A second run in the same boot (make bench runs the daemon's bench,
	// then the pair's takeover twice) finds the topology the first
	// built, and serves the reals again in it.
	if _, err := os.Stat("/sys/class/net/br0"); err != nil {
		buildTopology()
	}
	for _, r := range reals {
		for _, port := range []int{80, r.port} {
			if _, err := serveReal(r.ns, port); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}
