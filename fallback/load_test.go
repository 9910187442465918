package fallback

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// slowClients keeps n connections open against addr, all slow: a third
// send nothing, a third send a request line and trickle one header byte
// every 100 ms, a third trickle from the first byte. One the server
// closes is dialled again, so the pressure never lets up.
type slowClients struct {
	addr    string
	mu      sync.Mutex
	conns   []net.Conn
	redials atomic.Int64
	// letGo counts silent clients closed without an answer: served, then
	// let go at the header timeout (one turned away reads its 503 first).
	letGo atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func startSlowClients(t *testing.T, addr string, n int) *slowClients {
	t.Helper()
	c := &slowClients{addr: addr, conns: make([]net.Conn, n), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range n {
		conn, err := c.dial(i)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		c.conns[i] = conn
	}
	go c.trickle()
	return c
}

func (c *slowClients) dial(i int) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", c.addr, time.Second)
	if err != nil {
		return nil, err
	}
	if i%3 == 1 {
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: page\r\nX-Slow: "))
	}
	return conn, nil
}

func (c *slowClients) trickle() {
	defer close(c.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		for i, conn := range c.conns {
			if conn == nil {
				if conn, _ = c.dial(i); conn != nil {
					c.redials.Add(1)
				}
				c.conns[i] = conn
				continue
			}
			if i%3 == 0 {
				// Silent: notice a close without sending anything.
				_ = conn.SetReadDeadline(time.Now().Add(time.Microsecond))
				if n, err := conn.Read(make([]byte, 512)); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
					if n == 0 && errors.Is(err, io.EOF) {
						c.letGo.Add(1)
					}
					_ = conn.Close()
					c.conns[i] = nil
				}
				continue
			}
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
			if _, err := conn.Write([]byte("a")); err != nil {
				_ = conn.Close()
				c.conns[i] = nil
			}
		}
		c.mu.Unlock()
	}
}

func (c *slowClients) close() {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		if conn != nil {
			_ = conn.Close()
		}
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// TestSlowClientsCannotHurtThePage holds 1,000 slow clients against a
// page with the default cap (256) for a few seconds. The bounds:
//   - the page never serves more than its cap at once, and reaches it;
//   - the clients beyond the cap are turned away, not queued behind the
//     slow ones;
//   - a normal request gets a 503 within normalBound all along: from the
//     page itself if a slot is free, else from the cap's short 503. The
//     bound is the header timeout, the spacing of the waves in which the
//     slow clients are let go: a request queued behind them waits for
//     several; one answered at once takes milliseconds, so a busy shared
//     machine stays far inside it;
//   - heap and stacks in use (clients' included, they share the process)
//     grow by less than memBound;
//   - Update (what each sync calls) still returns within normalBound;
//   - served silent clients are let go (at the header timeout, which the
//     page's server is given).
func TestSlowClientsCannotHurtThePage(t *testing.T) {
	const (
		clients       = 1000
		headerTimeout = 2 * time.Second
		normalBound   = headerTimeout
		memBound      = 16 << 20
		load          = 3 * time.Second
	)
	s := &Server{HeaderTimeout: headerTimeout}
	defer s.Close()
	addr := freeAddr(t)
	if err := s.Update([]Page{{Service: "web", Addr: addr}}); err != nil {
		t.Fatal(err)
	}
	if got := s.running[addr].srv.ReadHeaderTimeout; got != headerTimeout {
		t.Fatalf("the page's server has a header timeout of %v, want %v", got, headerTimeout)
	}
	ln := s.running[addr].ln
	base := heap()

	slow := startSlowClients(t, addr.String(), clients)
	testenv.WaitFor(t, "cap reached", 10*time.Second, func() bool { return ln.active.Load() == MaxConns })

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var worst time.Duration
	var maxMem uint64
	requests, fromPage := 0, 0
	other := freeAddr(t)
	for end := time.Now().Add(load); time.Now().Before(end); requests++ {
		start := time.Now()
		resp, err := client.Get("http://" + addr.String() + "/")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("normal request %d under load: %v after %v", requests, err, took)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "30" || !strings.Contains(string(body), "web is down for maintenance") {
			t.Fatalf("normal request %d under load: %d %v %q (%v)", requests, resp.StatusCode, resp.Header, body, err)
		}
		if strings.Contains(string(body), "<html") {
			fromPage++
		}
		worst = max(worst, took)
		if requests%10 == 0 {
			maxMem = max(maxMem, heap())
			// A sync's Update of the pages is not held up either.
			start := time.Now()
			pages := []Page{{Service: "web", Addr: addr}}
			if requests%20 == 0 {
				pages = append(pages, Page{Service: "api", Addr: other})
			}
			if err := s.Update(pages); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > normalBound {
				t.Errorf("update under load took %v", took)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	peak, shed := ln.peak.Load(), ln.shed.Load()
	// Served silent clients are let go (a turned-away one reads its 503
	// and is not counted): the header timeout acts, here or a little after
	// the load on a busy machine.
	testenv.WaitFor(t, "a served silent client let go", 4*headerTimeout, func() bool { return slow.letGo.Load() > 0 })
	slow.close()
	grew := int64(maxMem) - int64(base)
	t.Logf("%d slow clients (%d redials, %d silent ones let go), cap %d: peak %d served at once, %d turned away; %d normal requests, %d from the page, slowest %v; memory grew %.1f MiB",
		clients, slow.redials.Load(), slow.letGo.Load(), MaxConns, peak, shed, requests, fromPage, worst, float64(grew)/(1<<20))
	if peak > MaxConns {
		t.Errorf("served %d at once, cap %d", peak, MaxConns)
	}
	if shed < clients-MaxConns {
		t.Errorf("turned away %d, want at least %d", shed, clients-MaxConns)
	}
	if worst > normalBound {
		t.Errorf("slowest normal request %v, bound %v", worst, normalBound)
	}
	if grew > memBound {
		t.Errorf("memory grew %d bytes, bound %d", grew, memBound)
	}

	// Once they are gone, every slot comes back and the page itself answers.
	testenv.WaitFor(t, "slots released", 5*time.Second, func() bool { return ln.active.Load() == 0 })
	resp, err := client.Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "<html") {
		t.Errorf("after the load: %d %q", resp.StatusCode, body)
	}
}

func TestHeaderLimit(t *testing.T) {
	s := &Server{}
	defer s.Close()
	addr := freeAddr(t)
	if err := s.Update([]Page{{Service: "web", Addr: addr}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header int
		want   int
	}{
		{header: 6 << 10, want: 503},
		{header: 16 << 10, want: 431},
		{header: 1 << 20, want: 431},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr.String()+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("a", tc.header))
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Errorf("%d bytes of header: %v", tc.header, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d bytes of header: %d, want %d", tc.header, resp.StatusCode, tc.want)
		}
	}
}

// A page whose address is taken is not served, says so, and is tried
// again by the next Update; the other pages are served meanwhile.
func TestPageThatCannotBind(t *testing.T) {
	s := &Server{}
	defer s.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := netip.MustParseAddrPort(taken.Addr().String())
	free := freeAddr(t)
	pages := []Page{{Service: "web", Addr: free}, {Service: "shop", Addr: busy}}
	err = s.Update(pages)
	if err == nil || !strings.Contains(err.Error(), "maintenance page of shop: not served") || !strings.Contains(err.Error(), busy.String()) {
		t.Errorf("update with a taken address: %v", err)
	}
	if !s.Serving(free) || s.Serving(busy) {
		t.Errorf("serving web %v (want true), shop %v (want false)", s.Serving(free), s.Serving(busy))
	}
	taken.Close()
	if err := s.Update(pages); err != nil {
		t.Errorf("update once the address is free: %v", err)
	}
	if !s.Serving(busy) {
		t.Errorf("shop not served once its address is free")
	}
	if err := s.Update(pages[:1]); err != nil || s.Serving(busy) {
		t.Errorf("shop still served after it left the list (%v)", err)
	}
}

// With the cap taken by one client trickling its header, the next client
// is turned away with the short 503, not queued until the slot frees (it
// would then get the page); the trickler is let go at the header timeout,
// never before it, and trickling does not extend it (the trickler never
// stops, so it would be held for good); then the page answers.
func TestCapTurnsAwayAndHeaderTimeoutHolds(t *testing.T) {
	// The next client must come while the trickler holds the slot: the
	// timeout leaves a busy machine a second for it.
	const timeout = time.Second
	s := &Server{HeaderTimeout: timeout, MaxConns: 1}
	defer s.Close()
	addr := freeAddr(t)
	if err := s.Update([]Page{{Service: "web", Addr: addr}}); err != nil {
		t.Fatal(err)
	}
	if got := s.running[addr].srv.ReadHeaderTimeout; got != timeout {
		t.Fatalf("the page's server has a header timeout of %v, want %v", got, timeout)
	}
	ln := s.running[addr].ln
	slow, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	dialled := time.Now()
	let := make(chan time.Duration, 1)
	go func() {
		_, _ = slow.Write([]byte("GET / HTTP/1.1\r\nX-Slow: "))
		for {
			time.Sleep(50 * time.Millisecond)
			_ = slow.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := slow.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				let <- time.Since(dialled)
				return
			}
			_, _ = slow.Write([]byte("a"))
		}
	}()
	testenv.WaitFor(t, "slot taken", 5*time.Second, func() bool { return ln.active.Load() == 1 })

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + addr.String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	// Only the cap writes the short 503, and only to a client it turns
	// away: a client queued for the slot would get the page.
	if code, body := get(); code != 503 || body != "web is down for maintenance.\n" || ln.shed.Load() != 1 {
		t.Errorf("over the cap: %d %q, %d turned away; want the short 503 of the one turned away", code, body, ln.shed.Load())
	}
	// Let go never before the header timeout (the server's clock starts
	// after the dial), and at all: a trickle that extended the timeout
	// would hold the trickler as long as it trickles, here for ever.
	const held = 10 * timeout
	select {
	case got := <-let:
		if got < timeout {
			t.Errorf("trickling client let go after %v, before the header timeout %v", got, timeout)
		}
		t.Logf("trickling client let go after %v (header timeout %v)", got, timeout)
	case <-time.After(held):
		t.Fatalf("trickling client still held after %v: trickling extends the header timeout of %v", held, timeout)
	}
	testenv.WaitFor(t, "slot back", 5*time.Second, func() bool { return ln.active.Load() == 0 })
	if code, body := get(); code != 503 || !strings.Contains(body, "<h1>web is down for maintenance</h1>") {
		t.Errorf("under the cap: %d %q, want the page", code, body)
	}
}
