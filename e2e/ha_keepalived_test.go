//go:build vmguest

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keepalivedConf is one director's keepalived: VRRP on eth0 with
// nopreempt (both start BACKUP; the higher priority becomes master), the
// kernel's sync daemon on eth0 following the VRRP instance, and the
// virtual service with both reals, no health checks (keepalived keeps the
// IPVS table of each director itself, as lvs-sync does).
const keepalivedConf = `global_defs {
  router_id %[1]s
  vrrp_version %[4]d
  lvs_sync_daemon eth0 VI_HA id 1
}
vrrp_instance VI_HA {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %[2]d
  advert_int %[3]s
  nopreempt
  virtual_ipaddress {
    ` + haVIP + `/32 dev eth0
  }
}
virtual_server ` + haVIP + ` 80 {
  delay_loop 10
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server 10.5.0.11 80 {
    weight 1
  }
  real_server 10.5.0.12 80 {
    weight 1
  }
}
`

// keepalived is one director's running keepalived.
type keepalived struct {
	ns  string
	cmd *exec.Cmd
	log *lvsSync // only its log buffer
}

func startKeepalived(t *testing.T, ns string, priority int, advert string, version int) *keepalived {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(keepalivedConf, ns, priority, advert, version)), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &keepalived{ns: ns, log: &lvsSync{}}
	k.cmd = exec.Command("/sbin/ip", "netns", "exec", ns, "/sbin/keepalived", "-n", "-l", "-D", "-f", conf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"), "-c", filepath.Join(dir, "checkers.pid"))
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("starting keepalived in %s: %v", ns, err)
	}
	done := make(chan struct{})
	go func() { _ = k.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = k.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("keepalived in %s:\n%s", ns, k.log.logText())
		}
		// What a killed keepalived may leave behind.
		_, _ = sh("/sbin/ip", "-n", ns, "addr", "del", haVIP+"/32", "dev", "eth0")
		_, _ = sh("/sbin/ip", "netns", "exec", ns, "/sbin/ipvsadm", "-C")
		for _, role := range []string{"master", "backup"} {
			_, _ = sh("/sbin/ip", "netns", "exec", ns, "/sbin/ipvsadm", "--stop-daemon", role)
		}
	})
	return k
}

// daemons is what ipvsadm lists of a namespace's sync daemons.
func daemons(ns string) string {
	out, _ := sh("/sbin/ip", "netns", "exec", ns, "/sbin/ipvsadm", "-L", "--daemon")
	return out
}

// TestHAKeepalivedAnchor is case (g): the same cut-link takeover with
// Debian's keepalived, with VRRP's default timers (advert_int 1) and tuned
// (VRRPv3, advert_int 0.1), in this harness and boot, for the ratio of
// lvs-sync's takeover to keepalived's. It also measures the kernel's sync
// lag, active to standby.
func TestHAKeepalivedAnchor(t *testing.T) {
	haTopology(t)
	if _, err := os.Stat("/sbin/keepalived"); err != nil {
		haLine(t, "keepalived-anchor", false, -1, 0, 0, "variant=default", "error=no-keepalived-in-the-guest")
		return
	}
	for _, v := range []struct {
		name    string
		advert  string
		version int
	}{{"default", "1", 2}, {"tuned", "0.1", 3}} {
		t.Run(v.name, func(t *testing.T) { keepalivedTakeover(t, v.name, v.advert, v.version) })
	}
}

func keepalivedTakeover(t *testing.T, variant, advert string, version int) {
	fail := func(why string) {
		t.Helper()
		haLine(t, "keepalived-anchor", false, -1, 0, 0, "variant="+variant, "error="+why)
	}
	k1 := startKeepalived(t, "dir1", 150, advert, version)
	var active string
	if !waitUntil(20*time.Second, func() bool { return len(withVIP(t)) == 1 }) {
		t.Logf("keepalived in dir1:\n%s", k1.log.logText())
		fail("dir1-never-master")
		return
	}
	active = withVIP(t)[0]
	startKeepalived(t, "dir2", 100, advert, version)
	standby := "dir2"
	if active == "dir2" {
		standby = "dir1"
	}
	if !waitUntil(20*time.Second, func() bool {
		return strings.Contains(daemons(active), "master sync daemon") && strings.Contains(daemons(standby), "backup sync daemon")
	}) {
		t.Logf("daemons: %s: %s; %s: %s", active, daemons(active), standby, daemons(standby))
		fail("no-sync-daemons")
		return
	}
	if got := withVIP(t); len(got) != 1 || got[0] != active {
		fail("vip-on-" + strings.Join(got, "+"))
		return
	}
	lags := syncLag(t, standby, 5)
	printSyncLag("keepalived-"+variant, lags, 5)

	p := startProber(haVIP)
	defer p.end()
	dl := startHADownload(haVIP, 8000)
	// Established and synced before the cut: the sync lag measured here
	// is about 3 s.
	time.Sleep(4 * time.Second)
	cutPort := bridgePort(active)
	setLink(t, cutPort, false)
	cut := time.Now() // the link is down: the failure starts
	defer setLink(t, cutPort, true)
	tookOver := waitUntil(15*time.Second, func() bool {
		got := withVIP(t)
		return len(got) == 2 || len(got) == 1 && got[0] == standby
	})
	dlOK, dlReset := dl.wait(t, 20*time.Second)
	time.Sleep(time.Second) // probes after the takeover
	p.end()
	w := p.outage(cut, time.Now())
	t.Logf("keepalived %s: %v; download ok=%v", variant, w, dlOK)
	resets := w.resets
	if dlReset {
		resets++
	}
	pass := tookOver && w.downtime >= 0 && w.downtime < 10*time.Second && dlOK
	haLine(t, "keepalived-anchor", pass, w.downtime.Milliseconds(), w.failed, resets,
		"variant="+variant, fmt.Sprintf("download=%v", okWord(dlOK)))
}

func bridgePort(ns string) string {
	for _, d := range haDirs {
		if d.ns == ns {
			return d.bridgePort
		}
	}
	panic("no director " + ns)
}

func okWord(ok bool) string {
	if ok {
		return "survived"
	}
	return "broken"
}

// waitUntil polls cond every 20 ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
