package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/lvs-sync/lvs-sync/importer/importtest"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

const netnsEnv = "LVS_SYNC_IMPORT_NETNS"

// ldirectordPath is Debian's ldirectord: $LVS_SYNC_LDIRECTORD, else what
// scripts/ldirectord.sh stages (installing its perl modules if needed).
func ldirectordPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LVS_SYNC_LDIRECTORD"); p != "" {
		return p
	}
	out, err := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts", "ldirectord.sh")).Output()
	if err != nil {
		t.Fatalf("no ldirectord: scripts/ldirectord.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// ldirectordCompared are the configs of the comparison, from
// importer/testdata/ldirectord: every seed article's config and every
// sample of ldirectord's examples but those ldirectord itself cannot run
// as written (host names sql01..sql03 that do not resolve; the sip
// sample's "192.168.6.2::5060", which it misreads as a host named 5060;
// typographic quotes, which it rejects like the importer does).
var ldirectordCompared = []string{
	"seed-001-masq.cf", "seed-002-dr-fallback.cf", "seed-003-centos-dr.cf", "seed-003-centos-dr-quiescent.cf",
	"manual-http.cf", "manual-fwmark.cf", "manual-range.cf", "manual-https.cf", "manual-ftp.cf",
	"manual-smtp.cf", "manual-submission.cf", "manual-pop.cf", "manual-imap.cf", "manual-ldap.cf",
	"manual-nntp.cf", "manual-dns.cf", "manual-telnet-on.cf", "manual-ping.cf", "manual-radius.cf",
	"manual-nntp6.cf",
}

// TestImportLdirectordSameTable proves the import is the same table: for
// each config, the table Debian's ldirectord programs (through a stand-in
// ipvsadm, ./importer/importtest/fakeipvsadm, that records and applies its
// commands) equals what `lvs-sync
// render` makes of the imported HCL once the imported Consul services are
// registered on a real agent and their checks pass. Both run in a network
// namespace of their own whose loopback has every address of the configs,
// with real servers answering the checks of both.
func TestImportLdirectordSameTable(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		runInNetns(t)
		return
	}
	dir := filepath.Join(testenv.RepoRoot(t), "importer", "testdata", "ldirectord")
	srcs := map[string]string{}
	for _, name := range ldirectordCompared {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		srcs[name] = string(b)
	}
	startRealServers(t, srcs)
	ld := os.Getenv("LVS_SYNC_LDIRECTORD")
	fake := filepath.Join(t.TempDir(), "fakeipvsadm")
	build := exec.Command("go", "build", "-o", fake, "./importer/importtest/fakeipvsadm")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in ipvsadm: %v\n%s", err, out)
	}

	// ldirectord, two configs at a time (the host has few cores): each
	// waits for its table to settle.
	tables := map[string]importtest.Table{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, 2)
	for _, name := range ldirectordCompared {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			tab, err := runLdirectord(ld, fake, t.TempDir(), srcs[name])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("%s: ldirectord: %v", name, err)
				return
			}
			tables[name] = tab
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	agent := testconsul.Start(t)
	t.Setenv("CONSUL_HTTP_ADDR", agent.HTTPAddr)
	consul := testenv.Tool(t, "consul")
	for _, name := range ldirectordCompared {
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			if code, _, stderr := cli("import", "ldirectord", "-out", out, filepath.Join(dir, name)); code != 0 {
				t.Fatalf("import: exit %d: %s", code, stderr)
			} else if strings.Contains(srcs[name], "protocol=fwm") && !strings.Contains(stderr, "firewall-mark service: the VIPs") {
				t.Errorf("import of a fwmark service does not warn that its VIPs are not in ldirectord.cf: %s", stderr)
			}
			services := filepath.Join(out, importServicesFile)
			consulCLI(t, consul, agent.HTTPAddr, "services", "register", services)
			defer consulCLI(t, consul, agent.HTTPAddr, "services", "deregister", services)
			waitPassing(t, agent)
			code, got, stderr := cli("render", "-config", filepath.Join(out, importConfigFile))
			if code != 0 {
				t.Fatalf("render: exit %d: %s", code, stderr)
			}
			rendered, err := importtest.Parse(got)
			if err != nil {
				t.Fatalf("render printed what ipvsadm would not take: %v\n%s", err, got)
			}
			want := tables[name]
			if len(want) == 0 {
				t.Fatalf("ldirectord programmed no service: %s", tables[name])
			}
			if rendered.String() != want.String() {
				t.Errorf("lvs-sync renders\n%s\nldirectord programs\n%s", rendered, tables[name])
				return
			}
			reals := 0
			for _, s := range want {
				reals += len(s.Reals)
			}
			t.Logf("same table: %d virtual services, %d reals", len(want), reals)
		})
	}
}

// runInNetns runs this test again in a network namespace of its own (as
// root; else in a user namespace too), with the paths of the tools it
// needs resolved here.
func runInNetns(t *testing.T) {
	ld := ldirectordPath(t)
	consul := testenv.Tool(t, "consul")
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportLdirectordSameTable$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"=1", "LVS_SYNC_LDIRECTORD="+ld, "LVS_SYNC_CONSUL="+consul)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if os.Getuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(l)
	}
	if err != nil {
		t.Fatalf("in its network namespace: %v", err)
	}
}

var (
	ipv4Re  = regexp.MustCompile(`\b(\d+\.\d+\.\d+\.\d+)(?::(\d+))?`)
	rangeRe = regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+)->(\d+\.\d+\.\d+\.\d+)`)
	ipv6Re  = regexp.MustCompile(`\[([0-9A-Fa-f:]+)\](?::(\d+))?`)
	portRe  = regexp.MustCompile(`(?m)^\s*checkport\s*=\s*(\d+)`)
	recvRe  = regexp.MustCompile(`(?m)^\s*receive\s*=\s*"(.*)"`)
	hostRe  = regexp.MustCompile(`(?m)^\s*virtualhost\s*=\s*"?([^"\s]+)`)
)

// startRealServers puts every address of the configs on the namespace's
// loopback and answers on each of their ports, TCP and UDP, with a body
// that every receive regexp of the configs matches.
func startRealServers(t *testing.T, srcs map[string]string) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	addrs := map[netip.Addr]bool{}
	ports := map[uint16]bool{}
	var receives, names []string
	for _, src := range srcs {
		for _, re := range []*regexp.Regexp{ipv4Re, ipv6Re} {
			for _, m := range re.FindAllStringSubmatch(src, -1) {
				a, err := netip.ParseAddr(m[1])
				if err != nil || a.IsUnspecified() || strings.HasPrefix(m[1], "255.") {
					continue
				}
				addrs[a] = true
				if p, err := netip.ParseAddrPort("0.0.0.0:" + m[2]); err == nil && m[2] != "" {
					ports[p.Port()] = true
				}
			}
		}
		for _, m := range rangeRe.FindAllStringSubmatch(src, -1) {
			first, err1 := netip.ParseAddr(m[1])
			last, err2 := netip.ParseAddr(m[2])
			for a := first; err1 == nil && err2 == nil && !last.Less(a); a = a.Next() {
				addrs[a] = true
			}
		}
		for _, m := range portRe.FindAllStringSubmatch(src, -1) {
			p, _ := netip.ParseAddrPort("0.0.0.0:" + m[1])
			ports[p.Port()] = true
		}
		for _, m := range recvRe.FindAllStringSubmatch(src, -1) {
			receives = append(receives, m[1])
		}
		for _, m := range hostRe.FindAllStringSubmatch(src, -1) {
			names = append(names, m[1])
		}
	}
	r := importtest.Responder{Body: strings.Join(receives, "\n") + "\n", DNSNames: names}
	for a := range addrs {
		if !a.IsLoopback() {
			bits := 32
			if a.Is6() {
				bits = 128
			}
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: netipPrefix(netip.PrefixFrom(a, bits))}); err != nil {
				t.Fatalf("address %s on lo: %v", a, err)
			}
		}
		for p := range ports {
			r.TCP = append(r.TCP, netip.AddrPortFrom(a, p))
			r.UDP = append(r.UDP, netip.AddrPortFrom(a, p))
		}
	}
	waitIPv6(t)
	// ldirectord (OpenSSL) and Consul (Go) both verify the HTTPS real
	// servers' certificate against the roots in SSL_CERT_FILE.
	t.Setenv("SSL_CERT_FILE", r.Start(t))
}

// waitIPv6 waits for the IPv6 addresses on lo to leave duplicate address
// detection, after which they can be bound.
func waitIPv6(t *testing.T) {
	testenv.WaitFor(t, "IPv6 addresses usable", 10*time.Second, func() bool {
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_V6)
		if err != nil {
			return false
		}
		for _, a := range addrs {
			if a.Flags&0x40 != 0 { // IFA_F_TENTATIVE
				return false
			}
		}
		return true
	})
}

var (
	ldCheckTypeRe = regexp.MustCompile(`^\s+checktype\s*=\s*(\S+)`)
	ldServiceRe   = regexp.MustCompile(`^\s+service\s*=\s*(\S+)`)
	ldProtocolRe  = regexp.MustCompile(`^\s+protocol\s*=\s*(\S+)`)
	ldVirtualRe   = regexp.MustCompile(`^virtual6?\s*=\s*\[?[^\]]*\]?:?(\d+)?`)
	ldLogfileRe   = regexp.MustCompile(`^logfile\s*=`)
	ldTimingRe    = regexp.MustCompile(`^(\s*)(checktimeout|negotiatetimeout|checkinterval)\s*=.*`)
)

// ldirectordVariant is src as ldirectord runs it here: the log in dir;
// checktype = on in blocks whose checks the real servers cannot answer
// (ftp, smtp, dns, ping...); and timeouts of 15s, checks every 3s, so that
// on a loaded host (several ldirectords, the race detector) no check
// times out and the table settles. The table of a config whose checks all
// pass is the same whatever checks it runs and however often; the
// imported Consul checks of the checktype = on blocks are TCP or UDP
// checks, which the real servers do answer.
func ldirectordVariant(src, dir string) string {
	lines := strings.Split(src, "\n")
	out := []string{"checktimeout=15", "negotiatetimeout=15", "checkinterval=3"}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := ldTimingRe.FindStringSubmatch(l); m != nil {
			if m[1] == "" {
				continue // the global ones are above
			}
			l = retimed(m)
		}
		if ldLogfileRe.MatchString(l) {
			out = append(out, fmt.Sprintf("logfile=%q", filepath.Join(dir, "ldirectord.log")))
			continue
		}
		m := ldVirtualRe.FindStringSubmatch(l)
		if m == nil {
			out = append(out, l)
			continue
		}
		block := []string{l}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], "\t") || strings.HasPrefix(lines[i+1], "    ")) {
			i++
			b := lines[i]
			if m := ldTimingRe.FindStringSubmatch(b); m != nil {
				b = retimed(m)
			}
			block = append(block, b)
		}
		checktype, service, proto := "negotiate", map[string]string{"80": "http", "443": "https"}[m[1]], "tcp"
		if m[1] == "" {
			service = "none"
		}
		for _, b := range block {
			if c := ldCheckTypeRe.FindStringSubmatch(b); c != nil {
				checktype = c[1]
			}
			if c := ldServiceRe.FindStringSubmatch(b); c != nil {
				service = c[1]
			}
			if c := ldProtocolRe.FindStringSubmatch(b); c != nil {
				proto = c[1]
			}
		}
		answerable := checktype == "on" || checktype == "off" ||
			checktype == "negotiate" && slices.Contains([]string{"http", "https", "none"}, service) ||
			checktype == "connect" && proto == "tcp"
		for _, b := range block {
			if !answerable && ldCheckTypeRe.MatchString(b) {
				continue
			}
			out = append(out, b)
		}
		if !answerable {
			out = append(out, "\tchecktype=on")
		}
	}
	return strings.Join(out, "\n")
}

// retimed is a timing directive's line with the variant's value.
func retimed(m []string) string {
	v := "15"
	if m[2] == "checkinterval" {
		v = "3"
	}
	return m[1] + m[2] + "=" + v
}

// runLdirectord runs ldirectord on src in dir with the stand-in ipvsadm
// until its table has not changed for 5s (its first round of checks is
// over), and returns that table.
func runLdirectord(ld, fake, dir, src string) (importtest.Table, error) {
	if err := os.WriteFile(filepath.Join(dir, "ld.cf"), []byte(ldirectordVariant(src, dir)), 0o644); err != nil {
		return nil, err
	}
	if err := importtest.InstallFake(dir, fake); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "ldirectord.out"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(ld, "-d", "ld.cf", "start")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PERLIO=perlio")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	last, since := "", time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("exited early (%v): %s", err, tail(filepath.Join(dir, "ldirectord.out")))
		case <-time.After(100 * time.Millisecond):
		}
		tab, err := importtest.LoadTable(dir)
		if err != nil {
			return nil, err
		}
		if s := tab.String(); s != last {
			last, since = s, time.Now()
		}
		if last != "" && time.Since(since) > 5*time.Second {
			return tab, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("its table did not settle within 60s: %s", tail(filepath.Join(dir, "ldirectord.out")))
		}
	}
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

func consulCLI(t *testing.T, consul, addr string, args ...string) {
	t.Helper()
	full := append([]string{args[0], args[1], "-http-addr=" + addr}, args[2:]...)
	if out, err := exec.Command(consul, full...).CombinedOutput(); err != nil {
		t.Fatalf("consul %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

// waitPassing waits until the agent has checks and all of them pass.
func waitPassing(t *testing.T, agent *testconsul.Agent) {
	t.Helper()
	testenv.WaitFor(t, "imported services' checks passing", 60*time.Second, func() bool {
		checks, err := agent.Client.Agent().Checks()
		if err != nil {
			return false
		}
		for _, c := range checks {
			if c.Status != "passing" {
				return false
			}
		}
		return true
	})
}

func netipPrefix(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
