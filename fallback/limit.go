package fallback

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// shedLinger is how long a turned-away connection is kept after its
	// 503 and FIN: closing while the client's request is still arriving
	// would reset the connection and could lose the 503 under its reader.
	shedLinger = 100 * time.Millisecond
	// maxLingering caps the turned-away connections kept for shedLinger;
	// past it one is closed at once (after its 503).
	maxLingering = 1024
)

// capListener serves at most cap connections at once. One beyond the cap
// is not left waiting in the kernel's accept queue behind slow clients (as
// golang.org/x/net/netutil.LimitListener leaves it, until their timeouts
// free a slot): Accept answers it at once with a short 503, half-closes it
// and hands it to one reaper goroutine that closes it shedLinger later. No
// goroutine and no buffer per turned-away connection, so a flood costs
// file descriptors only, at most cap + maxLingering of them.
type capListener struct {
	net.Listener
	busy []byte // the whole 503 response a turned-away client gets

	slots     chan struct{} // served connections
	lingering chan lingerer // turned away, to be closed by reap
	stopReap  chan struct{}
	reaped    chan struct{}
	closeOnce sync.Once

	active atomic.Int64 // served now
	peak   atomic.Int64 // most served at once
	shed   atomic.Int64 // turned away, in all
}

type lingerer struct {
	conn     net.Conn
	until    time.Time
	answered bool
}

func newCapListener(l net.Listener, limit int, service string) *capListener {
	body := service + " is down for maintenance.\n"
	busy := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Retry-After: %d\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		RetryAfter, len(body), body)
	c := &capListener{
		Listener: l, busy: []byte(busy),
		slots: make(chan struct{}, limit), lingering: make(chan lingerer, maxLingering),
		stopReap: make(chan struct{}), reaped: make(chan struct{}),
	}
	go c.reap()
	return c
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			n := l.active.Add(1)
			for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
			}
			return &slotConn{Conn: c, release: func() { l.active.Add(-1); <-l.slots }}, nil
		default:
			l.shed.Add(1)
			l.turnAway(c)
		}
	}
}

// turnAway answers c with the 503 without ever blocking the accept loop
// (a fresh socket's send buffer takes the few hundred bytes at once). It
// answers once the request is there: a client that gets an answer before
// it has sent its request may take it for garbage (Go's does). So one whose
// request has arrived is answered now and closed shedLinger later; one
// whose request has not is answered and closed by reap, shedLinger later.
func (l *capListener) turnAway(c net.Conn) {
	answered := false
	if drain(c) > 0 {
		if !l.answer(c) {
			_ = c.Close()
			return
		}
		answered = true
	}
	select {
	case l.lingering <- lingerer{conn: c, until: time.Now().Add(shedLinger), answered: answered}:
	default:
		l.release(lingerer{conn: c, answered: answered})
	}
}

// answer writes the 503 and half-closes: the client reads it, then EOF.
func (l *capListener) answer(c net.Conn) bool {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := c.Write(l.busy); err != nil {
		return false
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	return true
}

// release ends a turned-away connection: what it sent is read, it is
// answered if it was not yet, and closed.
func (l *capListener) release(c lingerer) {
	drain(c.conn)
	if !c.answered {
		l.answer(c.conn)
	}
	_ = c.conn.Close()
}

// reap releases the turned-away connections once their linger is over;
// they come in the order they expire.
func (l *capListener) reap() {
	defer close(l.reaped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var c lingerer
		select {
		case c = <-l.lingering:
		case <-l.stopReap:
			for {
				select {
				case c := <-l.lingering:
					_ = c.conn.Close()
				default:
					return
				}
			}
		}
		timer.Reset(time.Until(c.until))
		select {
		case <-timer.C:
		case <-l.stopReap:
		}
		l.release(c)
	}
}

// drain reads, without waiting, what the client has sent so far: a socket
// closed with unread data sends a reset instead of a FIN.
// It returns how many bytes it read.
func drain(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var buf [4096]byte
	total := 0
	_ = rc.Read(func(fd uintptr) bool {
		for range 16 { // at most 64 KiB: a client cannot keep the loop here
			n, err := unix.Read(int(fd), buf[:])
			if n <= 0 || err != nil {
				break
			}
			total += n
		}
		return true // never wait for more
	})
	return total
}

// Close stops accepting and closes the turned-away connections still
// lingering.
func (l *capListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.stopReap); <-l.reaped })
	return err
}

// slotConn gives its slot back when closed, once.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// CloseWrite lets net/http half-close before its lingering close, as it
// does on a bare *net.TCPConn.
func (c *slotConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
