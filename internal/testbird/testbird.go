// Package testbird runs Debian's BIRD 2 as the router of a test: a real
// BGP implementation the speaker of package bgp talks to. The host's
// tests run it in the foreground on loopback with its config, control
// socket and log in the test's temporary directory; the VM's tests run
// the same config in a router namespace, and share its parser of
// `birdc show route all`.
package testbird

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// Need installs Debian's bird2 if bird is not on PATH (scripts/need.sh),
// and returns the paths of bird and birdc. A missing one fails the test:
// none is skipped.
func Need(t testing.TB) (bird, birdc string) {
	t.Helper()
	if out, err := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts", "need.sh"), "bird", "bird2").CombinedOutput(); err != nil {
		t.Fatalf("no bird: scripts/need.sh bird bird2: %v\n%s", err, out)
	}
	var err error
	if bird, err = exec.LookPath("bird"); err != nil {
		t.Fatalf("bird: %v", err)
	}
	if birdc, err = exec.LookPath("birdc"); err != nil {
		t.Fatalf("birdc: %v", err)
	}
	return bird, birdc
}

// Peer is one BGP neighbour of the router: the speaker under test.
type Peer struct {
	Name    string     // the BIRD protocol's name
	Local   netip.Addr // the router's address on the session
	Address netip.Addr // the speaker's address
	ASN     uint32     // the speaker's
	// LocalASN is the router's AS on this session; 0: Config.ASN. The
	// speaker's own AS here makes the session iBGP.
	LocalASN uint32
	Password string // TCP MD5, "" none
}

// Config is a router: BGP neighbours that it waits for (passive: the
// speaker dials), hold time 3 s unless HoldTime says, and the Static prefixes it exports to
// every neighbour (what the speaker must not import).
type Config struct {
	RouterID netip.Addr
	ASN      uint32
	// Port is the router's BGP port, on every address.
	Port  uint16
	Peers []Peer
	// Static prefixes are exported to the peers of their family.
	Static []netip.Prefix
	// Log is the log file; Start sets it in the test's directory.
	Log string
	// Debug logs the BGP protocols' routes and states, in order: what
	// shows a withdrawal arrived before the session closed.
	Debug bool
	// HoldTime is the router's hold time in seconds, 0: 3 (with a
	// keepalive every second); a session takes the smaller of both
	// sides'.
	HoldTime int
	// Direct makes the sessions single-hop, the speakers on the router's
	// segment (the VM's directors); else multihop, as loopback needs.
	Direct bool
	// Kernel installs the BGP routes in the kernel's table, the paths of
	// several speakers to one prefix merged into one ECMP route (the
	// VM's router; hash on the 5-tuple with
	// net.ipv4.fib_multipath_hash_policy=1).
	Kernel bool
}

// Text is the BIRD 2 configuration. On loopback the sessions are
// multihop (loopback is no directly connected network to BIRD) and a
// route's next hop is read from its BGP.next_hop attribute; with Direct
// its gateways (Route.Via) are the speakers too.
func (c Config) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\n", c.RouterID)
	if c.Log != "" {
		fmt.Fprintf(&b, "log %q all;\n", c.Log)
	}
	b.WriteString("protocol device {}\n")
	if c.Kernel {
		b.WriteString("protocol kernel kernel4 { ipv4 { export where source = RTS_BGP; }; merge paths on; }\n")
		b.WriteString("protocol kernel kernel6 { ipv6 { export where source = RTS_BGP; }; merge paths on; }\n")
	}
	var s4, s6 []string
	for _, p := range c.Static {
		line := fmt.Sprintf("  route %s blackhole;\n", p)
		if p.Addr().Is4() {
			s4 = append(s4, line)
		} else {
			s6 = append(s6, line)
		}
	}
	fmt.Fprintf(&b, "protocol static static4 {\n  ipv4;\n%s}\n", strings.Join(s4, ""))
	fmt.Fprintf(&b, "protocol static static6 {\n  ipv6;\n%s}\n", strings.Join(s6, ""))
	for _, p := range c.Peers {
		fam := "ipv4"
		if p.Address.Is6() {
			fam = "ipv6"
		}
		fmt.Fprintf(&b, "protocol bgp %s {\n", p.Name)
		local := c.ASN
		if p.LocalASN != 0 {
			local = p.LocalASN
		}
		fmt.Fprintf(&b, "  local %s port %d as %d;\n", p.Local, c.Port, local)
		fmt.Fprintf(&b, "  neighbor %s as %d;\n", p.Address, p.ASN)
		if c.Direct {
			b.WriteString("  direct; passive on;\n")
		} else {
			b.WriteString("  multihop; passive on;\n")
		}
		if c.HoldTime == 0 {
			b.WriteString("  hold time 3; keepalive time 1;\n")
		} else {
			fmt.Fprintf(&b, "  hold time %d;\n", c.HoldTime)
		}
		b.WriteString("  connect retry time 1; error wait time 1, 5;\n")
		if c.Debug {
			b.WriteString("  debug { states, routes, events };\n")
		}
		if p.Password != "" {
			fmt.Fprintf(&b, "  password %q;\n", p.Password)
		}
		fmt.Fprintf(&b, "  %s { import all; export where source = RTS_STATIC; };\n}\n", fam)
	}
	return b.String()
}

// Router is a running BIRD.
type Router struct {
	Config Config
	Sock   string
	birdc  string
	cmd    *exec.Cmd
	done   chan struct{}
}

// FreePort is a TCP port free on addr now.
func FreePort(t testing.TB, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// Start runs BIRD in the foreground with c, waits until its control
// socket answers, and stops it at the end of the test (its log is shown
// if the test failed).
func Start(t testing.TB, c Config) *Router {
	t.Helper()
	bird, birdc := Need(t)
	dir := t.TempDir()
	c.Log = filepath.Join(dir, "bird.log")
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(c.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Router{Config: c, Sock: filepath.Join(dir, "bird.ctl"), birdc: birdc, done: make(chan struct{})}
	r.cmd = exec.Command(bird, "-f", "-c", conf, "-s", r.Sock)
	out, err := os.Create(filepath.Join(dir, "bird.out"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = out, out
	// A test binary killed before its cleanup takes BIRD with it.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("bird: %v", err)
	}
	go func() { _ = r.cmd.Wait(); out.Close(); close(r.done) }()
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			for _, f := range []string{"bird.out", "bird.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	// Ready when every BGP protocol waits for its speaker: before that,
	// a speaker's connection may be refused, and it dials again only
	// after its connect retry.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := r.Birdc("show protocols"); err == nil && passive(out, c.Peers) {
			return r
		}
		select {
		case <-r.done:
			b, _ := os.ReadFile(filepath.Join(dir, "bird.out"))
			t.Fatalf("bird exited at start:\n%s\nconfig:\n%s", b, c.Text())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("bird's control socket did not answer within 10s")
		}
	}
}

// LogText is BIRD's log so far.
func (r *Router) LogText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(r.Config.Log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func passive(out string, peers []Peer) bool {
	for _, p := range peers {
		ok := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 && f[0] == p.Name && f[5] == "Passive" {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Stop ends BIRD and waits for it.
func (r *Router) Stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// Birdc runs one birdc command on the router's control socket.
func (r *Router) Birdc(command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := append([]string{"-s", r.Sock}, strings.Fields(command)...)
	out, err := exec.CommandContext(ctx, r.birdc, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", command, err, out)
	}
	return string(out), nil
}

// Routes are the router's routes (`show route all`), by prefix.
func (r *Router) Routes(t testing.TB) map[netip.Prefix][]Route {
	t.Helper()
	out, err := r.Birdc("show route all")
	if err != nil {
		t.Fatal(err)
	}
	return ParseRoutes(out)
}

// HoldTimer is the negotiated hold time of a BGP protocol's session, as
// `show protocols all` says it ("Hold timer: 1.2/9"), 0 if none.
func (r *Router) HoldTimer(t testing.TB, proto string) time.Duration {
	t.Helper()
	out, err := r.Birdc("show protocols all " + proto)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Hold timer:"); ok {
			_, total, _ := strings.Cut(strings.TrimSpace(v), "/")
			if n, err := strconv.Atoi(total); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}

// State is a BGP protocol's state as `show protocols` says it:
// "Established", "Passive", "Connect", "Active", "Idle", ...
func (r *Router) State(t testing.TB, proto string) string {
	t.Helper()
	out, err := r.Birdc("show protocols " + proto)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[0] == proto {
			return f[5]
		}
		if len(f) >= 4 && f[0] == proto {
			return f[3] // "down" and "start" with no Info
		}
	}
	return ""
}

// Route is one route of `show route all`.
type Route struct {
	Prefix netip.Prefix
	Type   string // "unicast", "unreachable", "blackhole", ...
	Proto  string // the protocol it came from
	From   netip.Addr
	// Via are the gateways (one per next hop of a multipath route).
	Via []netip.Addr
	// NextHop is the BGP.next_hop attribute (the announcing speaker's
	// choice), for a BGP route.
	NextHop []netip.Addr
	Primary bool // BIRD's "*": the selected route
}

// ParseRoutes reads the output of `birdc show route all` (or
// `show route`): a route line starts with the prefix (or, for a further
// route to the same prefix, with spaces), its attributes follow
// indented by a tab.
func ParseRoutes(out string) map[netip.Prefix][]Route {
	routes := map[netip.Prefix][]Route{}
	var cur *Route
	var prefix netip.Prefix
	flush := func() {
		if cur != nil {
			routes[cur.Prefix] = append(routes[cur.Prefix], *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "\t"):
			if cur == nil {
				continue
			}
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "via":
				if a, err := netip.ParseAddr(f[1]); err == nil {
					cur.Via = append(cur.Via, a)
				}
			case len(f) >= 2 && f[0] == "BGP.next_hop:":
				for _, s := range f[1:] {
					if a, err := netip.ParseAddr(s); err == nil {
						cur.NextHop = append(cur.NextHop, a)
					}
				}
			}
		case strings.HasPrefix(line, " "):
			if !prefix.IsValid() {
				continue
			}
			flush()
			cur = routeLine(prefix, strings.Fields(line))
		default:
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			p, err := netip.ParsePrefix(f[0])
			if err != nil {
				continue // "BIRD 2.0.12 ready.", "Table master4:"
			}
			flush()
			prefix = p
			cur = routeLine(p, f[1:])
		}
	}
	flush()
	return routes
}

// routeLine reads "unicast [proto 12:00:00.000 from 127.0.0.2] * (100) [AS65010i]".
func routeLine(p netip.Prefix, f []string) *Route {
	r := &Route{Prefix: p}
	if len(f) == 0 {
		return r
	}
	r.Type = f[0]
	for i := 1; i < len(f); i++ {
		switch {
		case strings.HasPrefix(f[i], "[") && r.Proto == "":
			r.Proto = strings.TrimPrefix(f[i], "[")
		case f[i] == "from" && i+1 < len(f):
			if a, err := netip.ParseAddr(strings.TrimSuffix(f[i+1], "]")); err == nil {
				r.From = a
			}
		case f[i] == "*":
			r.Primary = true
		}
	}
	return r
}

// NextHops are the BGP next hops of every route to p, sorted: one per
// speaker announcing it.
func NextHops(routes map[netip.Prefix][]Route, p netip.Prefix) []netip.Addr {
	var hops []netip.Addr
	for _, r := range routes[p] {
		hops = append(hops, r.NextHop...)
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return slices.Compact(hops)
}
