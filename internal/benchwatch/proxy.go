package benchwatch

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Proxy forwards TCP connections from a loopback listener to one target
// and counts what goes through: connections open at once (and the most
// ever), HTTP/1.1 requests client→target, bytes each way, and 429 answers
// target→client. Each direction is read as a stream of HTTP messages
// (net/http's parsers, bodies skipped by their framing), so a body that
// looks like a status line counts for nothing.
type Proxy struct {
	// Addr is the proxy's listening address, "127.0.0.1:PORT".
	Addr   string
	target string
	ln     net.Listener

	open, most, conns  atomic.Int64
	requests, tooMany  atomic.Int64
	agentClosed        atomic.Int64
	bytesUp, bytesDown atomic.Int64
	mu                 sync.Mutex
	byPath             map[string]int64
	wg                 sync.WaitGroup
	closing            atomic.Bool
	activeMu           sync.Mutex
	active             map[net.Conn]bool
}

// Counts is a snapshot of a proxy's counters. A message is counted by a
// parser reading beside the copy, so its count may land just after the
// bytes were forwarded.
type Counts struct {
	Open, Most, Conns int64
	// AgentClosed counts the connections the agent closed first.
	AgentClosed        int64
	Requests, TooMany  int64
	BytesUp, BytesDown int64
	// ByPath counts requests by path, with the last segment of
	// /v1/health/service/NAME, /v1/health/node/NODE and
	// /v1/catalog/node-services/NODE folded into "*".
	ByPath map[string]int64
}

// Sub returns c - o for the running totals (Open and Most stay c's).
func (c Counts) Sub(o Counts) Counts {
	d := c
	d.Conns -= o.Conns
	d.Requests -= o.Requests
	d.TooMany -= o.TooMany
	d.BytesUp -= o.BytesUp
	d.BytesDown -= o.BytesDown
	d.ByPath = map[string]int64{}
	for p, n := range c.ByPath {
		if n -= o.ByPath[p]; n != 0 {
			d.ByPath[p] = n
		}
	}
	return d
}

// NewProxy listens on 127.0.0.1 and forwards every connection to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln,
		byPath: map[string]int64{}, active: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Counts returns the counters now.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	byPath := make(map[string]int64, len(p.byPath))
	for k, v := range p.byPath {
		byPath[k] = v
	}
	p.mu.Unlock()
	return Counts{Open: p.open.Load(), Most: p.most.Load(), Conns: p.conns.Load(), AgentClosed: p.agentClosed.Load(),
		Requests: p.requests.Load(), TooMany: p.tooMany.Load(),
		BytesUp: p.bytesUp.Load(), BytesDown: p.bytesDown.Load(), ByPath: byPath}
}

// Close stops listening, closes every connection and waits for them.
func (p *Proxy) Close() error {
	p.closing.Store(true)
	err := p.ln.Close()
	p.activeMu.Lock()
	for c := range p.active {
		c.Close()
	}
	p.activeMu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) track(c net.Conn, on bool) bool {
	p.activeMu.Lock()
	defer p.activeMu.Unlock()
	if on && p.closing.Load() {
		return false
	}
	if on {
		p.active[c] = true
	} else {
		delete(p.active, c)
	}
	return true
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	if !p.track(client, true) {
		return
	}
	defer p.track(client, false)
	// A connection is open until the client closes it (its side reaches
	// EOF), not until the agent's side is done too: the client's budget is
	// what is measured.
	n := p.open.Add(1)
	var release sync.Once
	closed := func() { release.Do(func() { p.open.Add(-1) }) }
	defer closed()
	p.conns.Add(1)
	for {
		m := p.most.Load()
		if n <= m || p.most.CompareAndSwap(m, n) {
			break
		}
	}
	agent, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(agent, true) {
		agent.Close()
		return
	}
	defer p.track(agent, false)
	defer agent.Close()
	done := make(chan struct{})
	var first atomic.Int32 // 1: the client closed first, 2: the agent
	go func() {
		defer close(done)
		copyCounted(agent, client, &p.bytesUp, p.countRequests)
		first.CompareAndSwap(0, 1)
		closed()
		closeWrite(agent)
	}()
	copyCounted(client, agent, &p.bytesDown, p.countAnswers)
	first.CompareAndSwap(0, 2)
	closeWrite(client)
	<-done
	if first.Load() == 2 && !p.closing.Load() {
		p.agentClosed.Add(1)
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// countRequests reads client→target traffic as HTTP requests.
func (p *Proxy) countRequests(r *bufio.Reader) {
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		p.requests.Add(1)
		path := req.URL.Path
		for _, each := range []string{"/v1/health/service/", "/v1/health/node/", "/v1/catalog/node-services/"} {
			if rest, ok := strings.CutPrefix(path, each); ok && rest != "" {
				path = each + "*"
			}
		}
		p.mu.Lock()
		p.byPath[req.Method+" "+path]++
		p.mu.Unlock()
	}
}

// countAnswers reads target→client traffic as HTTP responses.
func (p *Proxy) countAnswers(r *bufio.Reader) {
	for {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusTooManyRequests {
			p.tooMany.Add(1)
		}
	}
}

// copyCounted copies src to dst, adds the bytes to n, and feeds a copy to
// parse, which reads HTTP messages from it (a parse that gives up is
// drained, so that it never holds the copy up).
func copyCounted(dst io.Writer, src io.Reader, n *atomic.Int64, parse func(*bufio.Reader)) {
	pr, pw := io.Pipe()
	parsed := make(chan struct{})
	go func() {
		defer close(parsed)
		parse(bufio.NewReaderSize(pr, 64<<10))
		_, _ = io.Copy(io.Discard, pr)
	}()
	defer func() { pw.Close(); <-parsed }()
	buf := make([]byte, 64<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			_, _ = pw.Write(buf[:k])
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil { // io.EOF or a closed connection: done either way
			return
		}
	}
}
