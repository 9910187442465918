//go:build vmguest

package e2e

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

func apiHealth(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:9337/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// kernelOpsAfter returns the kernel changes lvs-sync logged after mark.
func kernelOpsAfter(log, mark string) []string {
	_, after, _ := strings.Cut(log, mark)
	var ops []string
	for _, line := range strings.Split(after, "\n") {
		if cmd, ok := logField(line, "command"); ok {
			ops = append(ops, cmd)
		}
	}
	return ops
}

// TestSighupReload: a broken config is rejected with its diagnostics while
// everything keeps serving; a good one that adds and removes services
// changes exactly those in the kernel.
func TestSighupReload(t *testing.T) {
	registerReals(t, 1, 1, 1)
	path := writeConfig(t, false)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := startLVS(t, path)
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 && len(realsOf(t, vipMasq)) == 3 })
	waitFor(t, "healthy", 5*time.Second, func() bool { return apiHealth(t) == 200 })
	before := ipvsadm(t, "-Sn")

	broken := strings.Replace(string(good), `forwarding = "masq"`, `forwarding = "nat"`, 1)
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = l.cmd.Process.Signal(syscall.SIGHUP)
	diag := regexp.MustCompile(`config problem: diagnostic="[^"]*lvs-sync.hcl:\d+:\d+: error: Invalid forwarding method`)
	waitFor(t, "the broken config rejected with its diagnostics", 5*time.Second, func() bool {
		return strings.Contains(l.logText(), "config reload rejected; the running config stays") && diag.MatchString(l.logText())
	})
	t.Logf("rejected: %s", diag.FindString(l.logText()))
	for _, vip := range []string{vipGate, vipMasq} {
		if _, err := get(vip); err != nil {
			t.Errorf("%s stopped serving after a broken reload: %v", vip, err)
		}
	}
	if after := ipvsadm(t, "-Sn"); after != before || apiHealth(t) != 200 {
		t.Errorf("a broken reload changed the kernel or the health:\n%s", after)
	}

	// web-masq leaves, web-ipip comes: exactly those change.
	mark := "reloading the config"
	next := strings.Replace(string(good), `virtual_service "web-masq"`, `virtual_service "web-ipip"`, 1)
	next = strings.Replace(next, `address    = "10.10.10.61:80"
  forwarding = "masq"`, `address    = "10.10.10.62:80"
  forwarding = "ipip"`, 1)
	if err := os.WriteFile(path, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = l.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the new services in the kernel", 10*time.Second, func() bool {
		return len(realsOf(t, vipIPIP)) == 3 && realsOf(t, vipMasq) == nil
	})
	waitFor(t, "the VIPs follow", 5*time.Second, func() bool {
		out, _ := sh("/sbin/ip", "-br", "addr", "show", "lvs0")
		return strings.Contains(out, vipIPIP+"/32") && !strings.Contains(out, vipMasq+"/32")
	})
	ops := kernelOpsAfter(l.logText(), mark)
	t.Logf("kernel changes after the reload:\n%s", strings.Join(ops, "\n"))
	for _, op := range ops {
		if strings.Contains(op, vipGate) {
			t.Errorf("the reload touched the unchanged web-gate: %s", op)
		}
	}
	want := []string{"ipvsadm -A -t 10.10.10.62:80 -s rr", "ipvsadm -D -t 10.10.10.61:80"}
	for _, w := range want {
		found := false
		for _, op := range ops {
			found = found || op == w
		}
		if !found {
			t.Errorf("no %q among the changes", w)
		}
	}
	if _, err := get(vipIPIP); err != nil {
		t.Errorf("the new ipip service does not answer: %v", err)
	}

	// And the CLI against the running daemon.
	out, err := sh("/bin/lvs-sync", "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lvs-sync status:\n%s", out)
	for _, w := range []string{"web-gate (web)", "web-ipip (web)", "/ web1 / passing / passing", "Tunnel"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q", w)
		}
	}
	out, err = sh("/bin/lvs-sync", "explain", "web-gate", "web2")
	if err != nil || !strings.Contains(out, "rule: passing: weight = Consul Weights.Passing (1)") {
		t.Errorf("explain: %v\n%s", err, out)
	}
}

// TestCleanupOnExit: with cleanup_on_exit, stopping lvs-sync removes its
// services and VIPs, and nothing else.
func TestCleanupOnExit(t *testing.T) {
	registerReals(t, 1, 1, 1)
	ipvsadm(t, "-A", "-t", "10.10.10.99:80", "-s", "sh")
	defer ipvsadm(t, "-D", "-t", "10.10.10.99:80")
	path := writeConfig(t, false)
	src, _ := os.ReadFile(path)
	src = []byte(strings.Replace(string(src), `state_file         = "/tmp/lvs-sync/state.json"`,
		"state_file         = \"/tmp/lvs-sync/state.json\"\n  cleanup_on_exit    = true", 1))
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLVS(t, path)
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	l.stop(t, syscall.SIGTERM)
	if realsOf(t, vipGate) != nil || realsOf(t, vipMasq) != nil {
		t.Errorf("services left after cleanup_on_exit:\n%s", ipvsadm(t, "-Ln"))
	}
	if !strings.Contains(ipvsadm(t, "-Ln"), "10.10.10.99:80") {
		t.Error("cleanup_on_exit removed a foreign service")
	}
	out, _ := sh("/sbin/ip", "-br", "addr", "show", "lvs0")
	if strings.Contains(out, vipGate) || strings.Contains(out, vipMasq) {
		t.Errorf("VIPs left on lvs0: %s", out)
	}
	if !strings.Contains(l.logText(), "cleaned up on exit") {
		t.Errorf("no cleanup logged:\n%s", l.logText())
	}
}

// TestPlanChangesNothing: with lvs-sync stopped and Consul changed, plan
// prints the ipvsadm commands run would make, and the kernel stays as is.
func TestPlanChangesNothing(t *testing.T) {
	registerReals(t, 1, 1, 1)
	path := writeConfig(t, false)
	l := startLVS(t, path)
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	l.stop(t, syscall.SIGTERM)
	setCheck(t, "web1", "critical")
	defer setCheck(t, "web1", "passing")
	before := ipvsadm(t, "-Sn")
	// -log-level error: sh mixes in stderr, where plan warns that the
	// instances' ports (8081...) are not web-gate's virtual port.
	out, err := sh("/bin/lvs-sync", "plan", "-config", path, "-log-level", "error")
	if err != nil {
		t.Fatal(err)
	}
	// web1 leaves: deleted, or drained at weight 0 if the kernel still
	// counts connections to it (earlier tests sent it traffic).
	want := ""
	for _, r := range []struct{ key, real, flag string }{
		{"10.10.10.60:80", "10.1.0.11:80", "-g"}, {"10.10.10.61:80", "10.1.0.11:8081", "-m"},
	} {
		ap := netip.MustParseAddrPort(r.key)
		key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: ap.Addr(), Port: ap.Port()}
		st, err := ipvs.Read(kernel, func(k lvs.ServiceKey) bool { return k == key })
		if err != nil {
			t.Fatal(err)
		}
		if real := st[key].Reals[lvs.RealKey{Addr: netip.MustParseAddrPort(r.real).Addr(), Port: netip.MustParseAddrPort(r.real).Port()}]; real.ActiveConns+real.InactiveConns > 0 {
			want += fmt.Sprintf("ipvsadm -e -t %s -r %s %s -w 0\n", r.key, r.real, r.flag)
		} else {
			want += fmt.Sprintf("ipvsadm -d -t %s -r %s\n", r.key, r.real)
		}
	}
	if out != want {
		t.Errorf("plan printed:\n%s\nwant:\n%s", out, want)
	}
	if after := ipvsadm(t, "-Sn"); after != before {
		t.Errorf("plan changed the kernel:\n%s", after)
	}

	// With lvs-sync stopped, status shows the kernel alone, named from the
	// config and its state file.
	out, err = sh("/bin/lvs-sync", "status", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"lvs-sync is not running: the kernel's table alone", "TCP  10.10.10.60:80 rr", "web-gate (web)", "10.1.0.11:80"} {
		if !strings.Contains(out, w) {
			t.Errorf("status without a daemon lacks %q:\n%s", w, out)
		}
	}
}

// TestRealServerSysctls: lvs-sync realserver set the ARP sysctls in each
// real server's namespace (TestMain ran it), and the VIPs.
func TestRealServerSysctls(t *testing.T) {
	for _, r := range reals {
		for key, want := range map[string]string{
			"net/ipv4/conf/all/arp_ignore":     "1",
			"net/ipv4/conf/all/arp_announce":   "2",
			"net/ipv4/conf/lo/arp_ignore":      "1",
			"net/ipv4/conf/lo/arp_announce":    "2",
			"net/ipv4/conf/all/rp_filter":      "0",
			"net/ipv4/conf/tunl0/rp_filter":    "0",
			"net/ipv4/conf/tunl0/arp_announce": "2",
		} {
			out, err := sh("/sbin/ip", "netns", "exec", r.ns, "cat", "/proc/sys/"+key)
			if err != nil || strings.TrimSpace(out) != want {
				t.Errorf("%s: %s = %q (%v), want %s", r.ns, key, strings.TrimSpace(out), err, want)
			}
		}
		for dev, vip := range map[string]string{"lo": vipGate, "tunl0": vipIPIP} {
			out, _ := sh("/sbin/ip", "netns", "exec", r.ns, "/sbin/ip", "-br", "addr", "show", dev)
			if !strings.Contains(out, vip+"/32") {
				t.Errorf("%s: %s has no %s: %s", r.ns, dev, vip, out)
			}
		}
	}
}

// TestAutoreload: with -autoreload, editing the config file reloads it.
func TestAutoreload(t *testing.T) {
	registerReals(t, 1, 1, 1)
	path := writeConfig(t, false)
	l := &lvsSync{done: make(chan struct{})}
	l.cmd = exec.Command("/bin/lvs-sync", "run", "-config", path, "-autoreload", "-log-level", "debug")
	l.cmd.Stdout, l.cmd.Stderr = l, l
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.cmd.Wait(); close(l.done) }()
	defer l.stop(t, syscall.SIGTERM)
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipMasq)) == 3 })
	src, _ := os.ReadFile(path)
	next := strings.Replace(string(src), `scheduler  = "rr"`, `scheduler  = "wrr"`, 1)
	if err := os.WriteFile(path, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("lvs-sync log:\n%s", l.logText())
		}
	}()
	waitFor(t, "reloaded on the file change", 10*time.Second, func() bool {
		return strings.Contains(l.logText(), "config reloaded: trigger=\"file change\"") && strings.Contains(ipvsadm(t, "-Ln", "-t", vipGate+":80"), "wrr")
	})
}
