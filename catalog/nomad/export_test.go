package nomad

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// ConnCounter counts the source's open connections to the agent.
type ConnCounter struct {
	open, most atomic.Int64
}

// Most is the most connections that were open at once.
func (c *ConnCounter) Most() int { return int(c.most.Load()) }

// Open is how many are open now.
func (c *ConnCounter) Open() int { return int(c.open.Load()) }

// CountConns makes s's transport count the connections it dials.
func CountConns(s *Source) *ConnCounter {
	c := &ConnCounter{}
	t := s.c.transport()
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		n := c.open.Add(1)
		for {
			m := c.most.Load()
			if n <= m || c.most.CompareAndSwap(m, n) {
				break
			}
		}
		return &countedConn{Conn: conn, c: c}, nil
	}
	return c
}

type countedConn struct {
	net.Conn
	c    *ConnCounter
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() { cc.c.open.Add(-1) })
	return cc.Conn.Close()
}
