//go:build vmguest

package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// keepAliveClient keeps its connections, as a browser or a proxy in front
// of the VIP would: each connection is scheduled once, then reused.
var keepAliveClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 4, DialContext: client.Transport.(*http.Transport).DialContext},
}

// hogCPUs keeps every CPU of the guest busy until the test ends, as the
// second VM kept the machine busy in the run where restarts failed.
func hogCPUs(t *testing.T) {
	t.Helper()
	var hogs []*exec.Cmd
	for range runtime.NumCPU() {
		c := exec.Command("/bin/sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		hogs = append(hogs, c)
	}
	t.Cleanup(func() {
		for _, c := range hogs {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
}

// load sends requests to vip until stop is closed; it counts the answered
// and the failed ones.
type load struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(c *http.Client, vips ...string) *load {
	l := &load{stop: make(chan struct{})}
	for _, vip := range vips {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get("http://" + vip + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = &net.AddrError{Err: resp.Status, Addr: vip}
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) end() { close(l.stop); l.wg.Wait() }

// TestRestartsUnderLoadOnABusyMachine: with every CPU of the guest kept
// busy, lvs-sync is restarted 20 times under a keep-alive load on the masq
// VIP and a connection-per-request load on the gate VIP, alternately with
// SIGTERM and kill -9, twice while Consul cannot be reached. No request
// fails and no restart changes the kernel.
func TestRestartsUnderLoadOnABusyMachine(t *testing.T) {
	registerReals(t, 1, 1, 1)
	config := writeConfig(t, false)
	l := startLVS(t, config)
	l.waitSynced(t)
	waitFor(t, "converged", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 && len(realsOf(t, vipMasq)) == 3 })
	before := ipvsadm(t, "-Sn")

	// The same config with Consul out of reach: nothing answers on port 1.
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	unreachable := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	src := strings.Replace(string(b), os.Getenv("LVS_CONSUL"), "127.0.0.1:1", 1)
	if err := os.WriteFile(unreachable, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}

	hogCPUs(t)
	keep := startLoad(keepAliveClient, vipMasq)
	fresh := startLoad(client, vipGate)
	start := time.Now()
	for i := range 20 {
		sig := syscall.SIGTERM
		if i%2 == 1 {
			sig = syscall.SIGKILL
		}
		time.Sleep(200 * time.Millisecond)
		l.stop(t, sig)
		if i == 9 || i == 15 {
			// Consul down: lvs-sync never syncs, so it changes nothing.
			down := startLVS(t, unreachable)
			time.Sleep(2 * time.Second)
			down.stop(t, syscall.SIGKILL)
			if strings.Contains(down.logText(), "applied changes") {
				t.Errorf("restart %d, Consul down, changed the kernel:\n%s", i+1, down.logText())
			}
		}
		l = startLVS(t, config)
		waitFor(t, "lvs-sync's first sync", 60*time.Second, func() bool { return strings.Contains(l.logText(), "synced: reason=") })
		if strings.Contains(l.logText(), "applied changes") {
			t.Errorf("restart %d after %v changed the kernel:\n%s", i+1, sig, l.logText())
		}
	}
	time.Sleep(300 * time.Millisecond)
	keep.end()
	fresh.end()
	// Idle keep-alive connections are established ones: they would hold
	// a later test's draining real for its whole drain_timeout.
	keepAliveClient.CloseIdleConnections()
	t.Logf("20 restarts in %s on a busy guest: keep-alive %d answered, %d failed; per-request %d answered, %d failed",
		time.Since(start).Round(time.Millisecond), keep.ok.Load(), keep.failed.Load(), fresh.ok.Load(), fresh.failed.Load())
	for name, ld := range map[string]*load{"keep-alive": keep, "per-request": fresh} {
		if ld.failed.Load() != 0 || ld.ok.Load() < 20 {
			t.Errorf("%s load: %d failed (first: %v), %d answered", name, ld.failed.Load(), ld.firstErr.Load(), ld.ok.Load())
		}
	}
	if after := ipvsadm(t, "-Sn"); after != before {
		t.Errorf("the kernel table changed across the restarts:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRemovedServiceDrainsALiveDownload: a virtual service removed from
// the config by a reload keeps its service, its downloading real at weight
// 0 and its VIP until the download ends; then all three go.
func TestRemovedServiceDrainsALiveDownload(t *testing.T) {
	registerReals(t, 1, 1, 1)
	config := writeConfigWith(t, false, `  drain_timeout = "20s"`)
	l := startLVS(t, config)
	l.waitSynced(t)
	waitFor(t, "three reals", 15*time.Second, func() bool { return len(realsOf(t, vipMasq)) == 3 })

	dl := startDownload(t, vipMasq)
	// Drop web-masq from the config and reload.
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	i := strings.Index(src, `virtual_service "web-masq"`)
	if i < 0 {
		t.Fatal("no web-masq in the config")
	}
	if err := os.WriteFile(config, []byte(src[:i]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed service drains", 10*time.Second, func() bool {
		reals := realsOf(t, vipMasq)
		return len(reals) == 1 && reals[firstReal(t, vipMasq)] == 0
	})
	t.Logf("web-masq removed mid-download:\n%s", ipvsadm(t, "-Ln", "-t", vipMasq+":80"))
	if !hasAddr(t, vipMasq) {
		t.Error("the draining service's VIP left the VIP link")
	}
	if err := dl.finish(); err != nil {
		t.Fatalf("the download through the removed service broke: %v", err)
	}
	took := waitFor(t, "the removed service goes", 10*time.Second, func() bool {
		return !strings.Contains(ipvsadm(t, "-Ln"), vipMasq+":80")
	})
	t.Logf("the removed service left %v after its download ended", took.Round(time.Millisecond))
	waitFor(t, "its VIP goes", 5*time.Second, func() bool { return !hasAddr(t, vipMasq) })
}

// firstReal is the address of the first real of vip's service.
func firstReal(t *testing.T, vip string) string {
	t.Helper()
	for addr := range realsOf(t, vip) {
		return addr
	}
	return ""
}

// hasAddr reports whether the VIP link holds addr.
func hasAddr(t *testing.T, addr string) bool {
	t.Helper()
	out, err := sh("/sbin/ip", "-o", "addr", "show", "dev", "lvs0")
	if err != nil {
		t.Fatalf("listing lvs0's addresses: %v %s", err, out) // not "no VIP": that could not fail
	}
	return strings.Contains(out, " "+addr+"/")
}

// TestConflictIsLeftAlone: a virtual service made by hand on a VIP:port of
// the config is not lvs-sync's: it is left untouched, named a conflict in
// status, until the virtual service says adopt = true.
func TestConflictIsLeftAlone(t *testing.T) {
	registerReals(t, 1, 1, 1)
	const vip = "10.10.10.63:80"
	ipvsadm(t, "-A", "-t", vip, "-s", "sh")
	ipvsadm(t, "-a", "-t", vip, "-r", "10.99.1.1:80", "-m", "-w", "7")
	t.Cleanup(func() { _, _ = sh("/sbin/ipvsadm", "-D", "-t", vip) })
	theirs := ipvsadm(t, "-Ln", "-t", vip)

	withService := func(adopt string) string {
		src := "consul {\n  address = \"" + os.Getenv("LVS_CONSUL") + "\"\n}\n" +
			"director {\n  state_file = \"" + filepath.Join(t.TempDir(), "state.json") + "\"\n}\n" +
			"virtual_service \"shop\" {\n  address    = \"" + vip + "\"\n  forwarding = \"masq\"\n  service    = \"web\"\n" + adopt + "}\n"
		p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l := startLVS(t, withService(""))
	l.waitSynced(t)
	time.Sleep(500 * time.Millisecond)
	if got := ipvsadm(t, "-Ln", "-t", vip); got != theirs {
		t.Errorf("lvs-sync changed a service it did not make:\n%s\nwant:\n%s", got, theirs)
	}
	if !strings.Contains(l.logText(), "lvs-sync did not make it: left untouched") {
		t.Errorf("no conflict warning:\n%s", l.logText())
	}
	out, err := sh("/bin/lvs-sync", "status")
	if err != nil || !strings.Contains(out, "shop (web) (conflict") {
		t.Errorf("status does not show the conflict (%v):\n%s", err, out)
	}
	l.stop(t, syscall.SIGTERM)

	l = startLVS(t, withService("  adopt      = true\n"))
	l.waitSynced(t)
	waitFor(t, "adopted", 10*time.Second, func() bool {
		got := realsOf(t, strings.TrimSuffix(vip, ":80"))
		_, theirs := got["10.99.1.1:80"]
		return len(got) == 3 && !theirs
	})
	l.stop(t, syscall.SIGTERM)
}
