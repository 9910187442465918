//go:build vmguest

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// fetch does one request and returns status, body and the Retry-After.
func fetch(method, vip string) (int, string, http.Header, error) {
	req, err := http.NewRequest(method, "http://"+vip+"/", nil)
	if err != nil {
		return 0, "", nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header, err
}

// TestMaintenancePage fails every instance: clients of the VIP get the
// local maintenance page within a second, through masq and through gate;
// one instance passing again takes over within a second.
func TestMaintenancePage(t *testing.T) {
	registerReals(t, 1, 1, 1)
	l := startLVS(t, writeConfigWith(t, false, `  fallback   = "local"`))
	l.waitSynced(t)
	for _, tc := range []struct{ fwd, vip string }{{"masq", vipMasq}, {"gate", vipGate}} {
		t.Run(tc.fwd, func(t *testing.T) {
			waitFor(t, "three reals", 15*time.Second, func() bool { return testenv.SameWeights(realsOf(t, tc.vip), realAddrs(tc.fwd, 1, 1, 1)) })
			start := time.Now()
			for _, id := range []string{"web1", "web2", "web3"} {
				setCheck(t, id, api.HealthCritical)
			}
			var body string
			var lastErr error
			defer func() {
				if t.Failed() {
					t.Logf("last answer: %q, %v\n%s\n%s", body, lastErr, ipvsadm(t, "-Lnc"), l.logText())
				}
			}()
			took := waitFor(t, "the maintenance page", 5*time.Second, func() bool {
				code, b, h, err := fetch("GET", tc.vip)
				body, lastErr = fmt.Sprint(code, " ", b), err
				return err == nil && code == 503 && h.Get("Retry-After") == "30" && h.Get("Cache-Control") == "no-store"
			})
			t.Logf("%s: the maintenance page answered %v after the last check failed", tc.fwd, took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("maintenance page after %v, want within 1s", took)
			}
			if !strings.Contains(body, "web-"+tc.fwd+" is down for maintenance") {
				t.Errorf("page:\n%s", body)
			}
			if code, b, _, err := fetch("HEAD", tc.vip); err != nil || code != 503 || b != "" {
				t.Errorf("HEAD: %d %q %v", code, b, err)
			}
			fmt.Printf("    %s: ipvsadm -Ln -t %s:80 with every instance failing:\n%s", tc.fwd, tc.vip, ipvsadm(t, "-Ln", "-t", tc.vip+":80"))

			start = time.Now()
			setCheck(t, "web1", api.HealthPassing)
			took = waitFor(t, "rs1 answers again", 5*time.Second, func() bool {
				code, b, _, err := fetch("GET", tc.vip)
				return err == nil && code == 200 && b == "rs1"
			})
			t.Logf("%s: rs1 took over %v after its check passed", tc.fwd, took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("rs1 back after %v, want within 1s", took)
			}
			// The fallback leaves the pool once idle.
			waitFor(t, "fallback real gone", 5*time.Second, func() bool { return len(realsOf(t, tc.vip)) == 1 })
			for _, id := range []string{"web2", "web3"} {
				setCheck(t, id, api.HealthPassing)
			}
			_ = start
		})
	}
}

// TestLongConnectionSurvivesDeregistration: a slow download from an
// instance that is deregistered meanwhile completes; new connections go to
// the others; the real leaves the table once the download ends.
func TestLongConnectionSurvivesDeregistration(t *testing.T) {
	for _, tc := range []struct{ fwd, vip string }{{"masq", vipMasq}, {"gate", vipGate}} {
		t.Run(tc.fwd, func(t *testing.T) {
			registerReals(t, 1, 1, 1)
			l := startLVS(t, writeConfigWith(t, false, `  drain_timeout = "20s"`))
			l.waitSynced(t)
			waitFor(t, "three reals", 15*time.Second, func() bool { return len(realsOf(t, tc.vip)) == 3 })

			dl := startDownload(t, tc.vip)
			ns := reals[dl.real].ns // the real server of the download
			id := "web" + strings.TrimPrefix(ns, "rs")
			if err := consul(t).Agent().ServiceDeregister(id); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ns+" at weight 0", 5*time.Second, func() bool {
				for _, w := range realsOf(t, tc.vip) {
					if w == 0 {
						return true
					}
				}
				return false
			})
			t.Logf("%s: %s deregistered mid-download; draining:\n%s", tc.fwd, ns, ipvsadm(t, "-Ln", "-t", tc.vip+":80"))
			if got := answers(t, tc.vip, 6); got[ns] != 0 {
				t.Errorf("new connections reached the draining %s: %v", ns, got)
			}
			if err := dl.finish(); err != nil {
				t.Fatalf("the long download broke: %v", err)
			}
			took := waitFor(t, "the drained real leaves", 10*time.Second, func() bool { return len(realsOf(t, tc.vip)) == 2 })
			t.Logf("%s: the drained real left %v after the download ended", tc.fwd, took.Round(time.Millisecond))
			l.stop(t, syscall.SIGTERM)
		})
	}
	registerReals(t, 1, 1, 1)
}

// TestRollingUpdateDropsNothing plays Nomad's rolling update of three
// instances under a steady load: each new instance registers critical on a
// new port, passes, then the old one is deregistered and stopped after a
// shutdown delay. No request may fail.
func TestRollingUpdateDropsNothing(t *testing.T) {
	c := consul(t)
	registerReals(t, 1, 1, 1)
	l := startLVS(t, writeConfig(t, false))
	l.waitSynced(t)
	waitFor(t, "three reals", 15*time.Second, func() bool { return len(realsOf(t, vipMasq)) == 3 })
	old := map[string]*http.Server{}
	for i, r := range reals {
		srv, err := serveReal(r.ns, 9000+r.port) // the "v1" allocations
		if err != nil {
			t.Fatal(err)
		}
		old[fmt.Sprintf("web%d", i+1)] = srv
	}
	// Move v1 to its own ports first, as if it had been deployed that way.
	for i, r := range reals {
		id := fmt.Sprintf("web%d", i+1)
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "web", Address: r.addr, Port: 9000 + r.port,
			Check: &api.AgentServiceCheck{CheckID: id + "-ttl", TTL: "10m", Status: api.HealthPassing}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "v1 on its ports", 10*time.Second, func() bool {
		rs := realsOf(t, vipMasq)
		return len(rs) == 3 && rs["10.1.0.11:17081"] == 1
	})

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	t0 := time.Now()
	var evMu sync.Mutex
	var events []string
	event := func(format string, args ...any) {
		evMu.Lock()
		defer evMu.Unlock()
		events = append(events, fmt.Sprintf("%6dms ", time.Since(t0).Milliseconds())+fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// A steady load: three clients, each a request every 5ms or so.
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
				begin := time.Since(t0).Milliseconds()
				if _, err := get(vipMasq); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					event("request begun at %dms failed: %v", begin, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	const shutdownDelay = 2 * time.Second
	var worst time.Duration
	for i, r := range reals {
		oldID, newID := fmt.Sprintf("web%d", i+1), fmt.Sprintf("web%d-v2", i+1)
		newPort := 10000 + r.port
		if _, err := serveReal(r.ns, newPort); err != nil {
			t.Fatal(err)
		}
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: newID, Name: "web", Address: r.addr, Port: newPort,
			Check: &api.AgentServiceCheck{CheckID: newID + "-ttl", TTL: "10m", Status: api.HealthCritical}}); err != nil {
			t.Fatal(err)
		}
		event("registered %s, critical", newID)
		time.Sleep(300 * time.Millisecond) // the check runs
		setCheck(t, newID, api.HealthPassing)
		event("%s passing", newID)
		waitFor(t, newID+" serving", 5*time.Second, func() bool { _, in := realsOf(t, vipMasq)[fmt.Sprintf("%s:%d", r.addr, newPort)]; return in })
		// Nomad deregisters the old allocation, waits shutdown_delay, stops it.
		event("%s in the kernel", newID)
		if err := c.Agent().ServiceDeregister(oldID); err != nil {
			t.Fatal(err)
		}
		event("deregistered %s", oldID)
		deregistered := time.Now()
		oldReal := fmt.Sprintf("%s:%d", r.addr, 9000+r.port)
		out := waitFor(t, oldID+" takes no new connections", shutdownDelay, func() bool {
			w, in := realsOf(t, vipMasq)[oldReal]
			return !in || w == 0
		})
		worst = max(worst, out)
		event("%s out of rotation after %v", oldID, out.Round(time.Millisecond))
		time.Sleep(shutdownDelay - time.Since(deregistered))
		if err := old[oldID].Close(); err != nil {
			t.Fatal(err)
		}
		event("stopped %s", oldID)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("rolling update of 3 instances: %d requests answered, %d failed; deregistration to out of rotation at worst %v",
		ok.Load(), failed.Load(), worst.Round(time.Millisecond))
	if failed.Load() != 0 || ok.Load() < 50 {
		t.Errorf("%d requests failed (first: %v), %d answered; events:\n%s\n%s", failed.Load(), firstErr.Load(), ok.Load(),
			strings.Join(events, "\n"), l.logText())
	}
	t.Logf("after the update:\n%s", ipvsadm(t, "-Ln", "-t", vipMasq+":80"))
	for i := range reals {
		if err := c.Agent().ServiceDeregister(fmt.Sprintf("web%d-v2", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	registerReals(t, 1, 1, 1)
}

// TestFlapDampingAndSlowStart: a flapping instance (fail, pass, fail, pass
// a second apart) stays out until it has passed for the whole hold since
// its last pass, then its weight ramps up over slow_start.
func TestFlapDampingAndSlowStart(t *testing.T) {
	registerReals(t, 10, 10, 10)
	l := startLVS(t, writeConfigWith(t, false, `  hold       = "4s"
  slow_start = "3s"`))
	l.waitSynced(t)
	waitFor(t, "full weights", 15*time.Second, func() bool { return testenv.SameWeights(realsOf(t, vipGate), realAddrs("gate", 10, 10, 10)) })
	var lastPass time.Time // lvs-sync cannot see a pass before it is sent
	for i, s := range []string{api.HealthCritical, api.HealthPassing, api.HealthCritical, api.HealthPassing} {
		if s == api.HealthPassing {
			lastPass = time.Now()
		}
		setCheck(t, "web1", s)
		if i < 3 {
			time.Sleep(time.Second)
		}
	}
	waitFor(t, "web1 held out", 2*time.Second, func() bool { return len(realsOf(t, vipGate)) == 2 })
	var weights []int
	var back time.Duration
	waitFor(t, "web1 at full weight", 15*time.Second, func() bool {
		w, in := realsOf(t, vipGate)["10.1.0.11:80"]
		if in && len(weights) == 0 {
			back = time.Since(lastPass)
		}
		if in && (len(weights) == 0 || weights[len(weights)-1] != w) {
			weights = append(weights, w)
		}
		return w == 10
	})
	if got := answers(t, vipGate, 6); got["rs1"] != 2 {
		t.Errorf("rs1 back at full weight answers %d of 6 requests (rr): %v", got["rs1"], got)
	}
	t.Logf("web1 back %v after its last pass (hold 4s); weights as it ramped: %v", back.Round(10*time.Millisecond), weights)
	if back < 4*time.Second {
		t.Errorf("web1 back %v after its last pass, inside its 4s hold", back)
	}
	if len(weights) < 4 || weights[0] > 2 {
		t.Errorf("weights %v: want a ramp from 1 in several steps", weights)
	}
	for i := 1; i < len(weights); i++ {
		if weights[i] <= weights[i-1] {
			t.Errorf("weights %v do not increase", weights)
		}
	}
	registerReals(t, 1, 1, 1)
}
