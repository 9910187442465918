//go:build vmguest

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// probe is one new-connection request to the VIP.
type probe struct {
	start, end time.Time
	body       string
	err        error
}

func (p probe) reset() bool { return p.err != nil && errors.Is(p.err, syscall.ECONNRESET) }

// prober opens a new connection to the VIP every 50 ms, each request
// bounded by 300 ms, and keeps every outcome.
type prober struct {
	mu     sync.Mutex
	probes []probe
	stop   chan struct{}
	wg     sync.WaitGroup
}

const (
	probeEvery   = 50 * time.Millisecond
	probeTimeout = 300 * time.Millisecond
)

func startProber(vip string) *prober { return startProberIn("hacl", vip) }

// startProberIn probes the VIP from the client namespace ns.
func startProberIn(ns, vip string) *prober {
	p := &prober{stop: make(chan struct{})}
	c := nsClient(ns, probeTimeout)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				pr := probe{start: time.Now()}
				resp, err := c.Get("http://" + vip + "/")
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					pr.body = strings.TrimSpace(string(b))
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				pr.end, pr.err = time.Now(), err
				p.mu.Lock()
				p.probes = append(p.probes, pr)
				p.mu.Unlock()
			}()
		}
	}()
	return p
}

// end stops probing and waits for the probes in flight.
func (p *prober) end() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// outage is the window of a failure at cut: the probes in flight at the
// cut (started up to probeTimeout before it) count, as it may fail them,
// but the downtime, and when the first and last failed probes started,
// run from the cut itself.
func (p *prober) outage(cut, to time.Time) window { return p.span(cut.Add(-probeTimeout), cut, to) }

// window is what the probes that started in [from, to) saw; its times run
// from origin (from, for prober.window).
type window struct {
	probes, failed, resets int
	answers                map[string]int
	firstErr               error
	// downtime runs from origin to the end of the first success after the
	// last failure (0 without failures; -1 if no success came after it).
	downtime time.Duration
	// firstFail and lastFail are when the first and the last failed probe
	// started, from origin.
	firstFail, lastFail time.Duration
}

func (p *prober) window(from, to time.Time) window { return p.span(from, from, to) }

// span is the window of the probes that started in [from, to), its times
// from origin.
func (p *prober) span(from, origin, to time.Time) window {
	p.mu.Lock()
	ps := slices.Clone(p.probes)
	p.mu.Unlock()
	slices.SortFunc(ps, func(a, b probe) int { return a.start.Compare(b.start) })
	w := window{answers: map[string]int{}}
	var lastFail time.Time
	for _, pr := range ps {
		if pr.start.Before(from) || !pr.start.Before(to) {
			continue
		}
		w.probes++
		if pr.err != nil {
			w.failed++
			if pr.reset() {
				w.resets++
			}
			if w.firstErr == nil {
				w.firstErr = pr.err
				w.firstFail = pr.start.Sub(origin)
			}
			w.lastFail = pr.start.Sub(origin)
			lastFail = pr.start
			continue
		}
		w.answers[pr.body]++
	}
	if w.failed == 0 {
		return w
	}
	w.downtime = -1
	for _, pr := range ps {
		if pr.err == nil && pr.start.After(lastFail) {
			w.downtime = pr.end.Sub(origin)
			break
		}
	}
	return w
}

func (w window) String() string {
	return fmt.Sprintf("%d probes, %d failed (%d resets; first: %v), failures from %v to %v, answers %v, downtime %v",
		w.probes, w.failed, w.resets, w.firstErr, w.firstFail, w.lastFail, w.answers, w.downtime)
}

// haDownload is a slow download across a takeover.
type haDownload struct {
	done chan struct{}
	// got counts the parts received so far; parts is all of them, once
	// done.
	got   atomic.Int32
	parts int
	err   error
}

// startHADownload fetches /slow?ms=ms from the VIP on a connection of its
// own: ten parts, one every ms/10.
func startHADownload(vip string, ms int) *haDownload { return startDownloadIn("hacl", vip, ms) }

// startDownloadIn is startHADownload from the client namespace ns.
func startDownloadIn(ns, vip string, ms int) *haDownload {
	d := &haDownload{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		resp, err := nsClient(ns, time.Duration(ms)*time.Millisecond+20*time.Second).Get(fmt.Sprintf("http://%s/slow?ms=%d", vip, ms))
		if err != nil {
			d.err = err
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			d.got.Add(1)
		}
		d.parts, d.err = int(d.got.Load()), sc.Err()
	}()
	return d
}

// wait waits for the download's end; ok is all ten parts and no error.
func (d *haDownload) wait(t *testing.T, timeout time.Duration) (ok, reset bool) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Logf("the download has not ended after %v", timeout)
		return false, false
	}
	if d.err != nil {
		t.Logf("the download: %d parts, %v", d.parts, d.err)
	}
	return d.err == nil && d.parts == 10, errors.Is(d.err, syscall.ECONNRESET)
}

// syncLag opens n connections from the client to the VIP through the
// active director, each asking for a slow download, and returns how long
// each took from established to present in the standby's table (ipvsadm
// -Lnc, polled every 20 ms). The kernel syncs a TCP connection at its
// third packet (sync_threshold "3 50"), so the request is sent at once: a
// connection of a handshake alone is never synced.
func syncLag(t *testing.T, standby string, n int) []time.Duration {
	t.Helper()
	var lags []time.Duration
	for i := 0; i < n; i++ {
		c, err := inNamespace("hacl", func() (net.Conn, error) {
			return net.DialTimeout("tcp", haVIP+":80", 2*time.Second)
		})
		if err != nil {
			t.Logf("sync lag: dialing the vip: %v", err)
			continue
		}
		t0 := time.Now()
		_, err = io.WriteString(c, "GET /slow?ms=5000 HTTP/1.0\r\n\r\n")
		local := c.LocalAddr().String()
		var lag time.Duration = -1
		for err == nil && time.Since(t0) < 5*time.Second {
			out, _ := exec.Command("/sbin/ip", "netns", "exec", standby, "/sbin/ipvsadm", "-Lnc").CombinedOutput()
			if strings.Contains(string(out), local) {
				lag = time.Since(t0)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
		if lag < 0 {
			t.Logf("sync lag: %s never reached %s's table (%v)", local, standby, err)
			continue
		}
		lags = append(lags, lag)
	}
	return lags
}

// p50max is the median and the maximum, in ms; -1 for none.
func p50max(ds []time.Duration) (int64, int64) {
	if len(ds) == 0 {
		return -1, -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Milliseconds(), s[len(s)-1].Milliseconds()
}

// printSyncLag prints the measured sync lag on a line of its own.
func printSyncLag(variant string, lags []time.Duration, n int) {
	p50, mx := p50max(lags)
	fmt.Println("ha-measure: sync_lag variant=" + variant + " p50_ms=" + strconv.FormatInt(p50, 10) +
		" max_ms=" + strconv.FormatInt(mx, 10) + " synced=" + strconv.Itoa(len(lags)) + "/" + strconv.Itoa(n))
}
