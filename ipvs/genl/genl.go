// Package genl is lvs-sync's client of the kernel's IPVS over generic
// netlink: an ipvs.Kernel and ipvs.BatchKernel that sends a plan's changes
// many requests per sendmsg and reads the table with one dump for the
// services and one per service for its reals. It also starts, stops and
// lists the kernel's connection sync daemons (ipvs.SyncKernel, daemon.go).
//
// It is built on golang.org/x/sys/unix, not on vishvananda/netlink's nl
// package: a batch is one buffer written by one sendmsg and its answers
// are read into one small reused buffer, and nl has neither (its socket
// sends one request per call and allocates a 64 KiB buffer per receive,
// its requests allocate per attribute). The wire format is forty lines;
// the measured cost of moby/ipvs was its per-call syscalls, goroutine,
// timer and clock reads (in the guest, 1,000 services × 10 reals took
// 7.8–18.2 s through a moby/ipvs wrapper and 0.32–0.56 s batched; the
// `bench kernel:` lines of make bench measure it again), so none of those
// is made per change here: one clock read and one SO_RCVTIMEO per 256
// changes, blocking syscalls, no goroutine.
//
// Batches: every request asks for no ack but the last of each sendmsg; the
// kernel answers every refused one anyway, with its sequence number, so
// each refusal is the error of its own op and the other changes are made.
// An answer lost to a full receive buffer (ENOBUFS) or a batch past its
// deadline makes the unanswered changes' outcome unknown:
// ipvs.ErrOutcomeUnknown.
//
// It imports ipvs and lvs, and x/sys/unix.
package genl

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// Batch limits: a sendmsg larger than the socket's send buffer fails with
// EMSGSIZE; 256 requests of about 100 bytes stay far below it.
const (
	maxBatchMsgs  = 256
	maxBatchBytes = 64 << 10
	// A refused request's answer costs about 1 KiB of receive buffer
	// (skb truesize); the kernel doubles what is asked.
	writeRcvbuf = maxBatchMsgs * 2 << 10
	// Dumps are read 4 KiB at a time: the kernel sizes every dump skb
	// after the largest buffer a socket ever offered, and a per-service
	// dump of ten reals in a 32 KiB skb costs more than it carries.
	dumpBuf = 4 << 10
)

// Client is the kernel's IPVS through generic netlink. It is safe for
// concurrent use: writes and reads each have their socket, and calls of
// one kind are serialised.
type Client struct {
	family  uint16
	timeout time.Duration
	log     hclog.Logger
	seq     atomic.Uint32
	sends   atomic.Uint64
	// unanswered counts the daemon commands the kernel did without a word.
	unanswered atomic.Uint64

	wmu  sync.Mutex
	w    *sock
	wenc encoder
	wbuf []byte

	rmu  sync.Mutex
	r    *sock
	renc encoder
	rbuf []byte
}

var (
	_ ipvs.Kernel        = (*Client)(nil)
	_ ipvs.BatchKernel   = (*Client)(nil)
	_ ipvs.ServiceReader = (*Client)(nil)
)

// Open opens the IPVS family of the current network namespace (loading
// ip_vs if it is not). A batch or a read must finish within timeout
// (default 5s).
func Open(timeout time.Duration, log hclog.Logger) (*Client, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	c := &Client{timeout: timeout, log: log, wbuf: make([]byte, dumpBuf), rbuf: make([]byte, dumpBuf)}
	c.seq.Store(uint32(time.Now().UnixNano()))
	var err error
	if c.r, err = openSock(0, timeout); err != nil {
		return nil, err
	}
	id, err := c.resolve()
	if errors.Is(err, unix.ENOENT) {
		// The family exists once the module is loaded, as moby/ipvs does.
		if out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput(); merr == nil {
			id, err = c.resolve()
		} else {
			log.Debug("modprobe ip_vs failed", "error", merr, "output", string(out))
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("resolving the generic netlink family IPVS (is the ip_vs module loaded?): %w", err)
	}
	c.family = id
	if c.w, err = openSock(writeRcvbuf, timeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the sockets.
func (c *Client) Close() {
	c.wmu.Lock()
	if c.w != nil {
		c.w.close()
	}
	c.wmu.Unlock()
	c.rmu.Lock()
	if c.r != nil {
		c.r.close()
	}
	c.rmu.Unlock()
}

// Sends is how many sendmsg calls the client made: one per batch of up to
// 256 changes, one per dump.
func (c *Client) Sends() uint64 { return c.sends.Load() }

// resolve asks the generic netlink controller for the IPVS family's id.
func (c *Client) resolve() (uint16, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	seq := c.seq.Add(1)
	c.renc.b = c.renc.b[:0]
	m := c.renc.begin(unix.GENL_ID_CTRL, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, ctrlCmdGetFamily, 1)
	c.renc.str(ctrlAttrFamilyNam, "IPVS")
	c.renc.end(m)
	var id uint16
	err := c.exchange(seq, 0, func(payload []byte) error {
		if len(payload) < genlHdrLen {
			return nil
		}
		it := attrs{payload[genlHdrLen:]}
		for t, v, ok := it.next(); ok; t, v, ok = it.next() {
			if t == ctrlAttrFamilyID {
				id = u16(v)
			}
		}
		return nil
	})
	if err == nil && id == 0 {
		err = errors.New("no family id in the answer")
	}
	return id, err
}

// exchange sends the read encoder's one request and hands each answer's
// payload to fn until the request is done: NLMSG_DONE of a dump, the ack,
// or an error. Answers of other sequence numbers are stale and skipped.
// The caller holds rmu. flags are the receive's: MSG_DONTWAIT for a
// command the kernel answers inside the send (not a dump), so that no
// answer queued is known at once to be none.
func (c *Client) exchange(seq uint32, flags int, fn func(payload []byte) error) error {
	c.sends.Add(1)
	if err := c.r.send(c.renc.b); err != nil {
		return fmt.Errorf("sending to the kernel: %w", err)
	}
	var fnErr error
	for {
		n, err := c.r.recv(c.rbuf, flags)
		if err == unix.EAGAIN {
			return errNoAnswer
		}
		if err != nil {
			return fmt.Errorf("reading the kernel's answer: %w", err)
		}
		b := c.rbuf[:n]
		for len(b) > 0 {
			h, payload, rest, err := nextMessage(b)
			if err != nil {
				return err
			}
			b = rest
			if h.seq != seq {
				continue
			}
			switch h.typ {
			case unix.NLMSG_ERROR, unix.NLMSG_DONE:
				if err := errorCode(payload); err != nil {
					return err
				}
				return fnErr
			case unix.NLMSG_NOOP, unix.NLMSG_OVERRUN:
				continue
			}
			if fnErr == nil {
				fnErr = fn(payload)
			}
			if h.flags&unix.NLM_F_MULTI == 0 {
				return fnErr
			}
		}
	}
}

// dump reads every entry of a dump: the services, or with a key the reals
// of that service.
func (c *Client) dump(cmd uint8, key *lvs.ServiceKey, fn func(payload []byte) error) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	seq := c.seq.Add(1)
	c.renc.b = c.renc.b[:0]
	m := c.renc.begin(c.family, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, cmd, ipvsGenlVersion)
	if key != nil {
		c.renc.service(*key, nil)
	}
	c.renc.end(m)
	return c.exchange(seq, 0, fn)
}

// Services lists every virtual service, without reals: one dump.
func (c *Client) Services() (ipvs.State, error) {
	st := ipvs.State{}
	err := c.dump(cmdGetService, nil, func(payload []byte) error {
		k, s, err := parseService(payload)
		if err != nil {
			c.log.Warn("ignoring a virtual service lvs-sync cannot read", "error", err)
			return nil
		}
		st[k] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	return st, nil
}

// Service reads one virtual service, without its reals, by its key: one
// request, not a dump of every service. ESRCH if the kernel has none.
func (c *Client) Service(k lvs.ServiceKey) (*ipvs.Service, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	seq := c.seq.Add(1)
	c.renc.b = c.renc.b[:0]
	m := c.renc.begin(c.family, unix.NLM_F_REQUEST, seq, cmdGetService, ipvsGenlVersion)
	c.renc.service(k, nil)
	c.renc.end(m)
	var svc *ipvs.Service
	err := c.exchange(seq, 0, func(payload []byte) error {
		_, s, err := parseService(payload)
		svc = s
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading service %s: %w", k, err)
	}
	if svc == nil {
		return nil, fmt.Errorf("reading service %s: %w", k, unix.ESRCH)
	}
	return svc, nil
}

// Reals lists the real servers of one service: one dump. A service that
// is not there has none, as the kernel answers. The dump walks the
// service's list of destinations (ip_vs_genl_dump_dests), so each real's
// Position is its place in that list, which mh and sh build their table
// from (ipvs/order.go).
func (c *Client) Reals(k lvs.ServiceKey) (map[lvs.RealKey]Real, error) {
	reals := map[lvs.RealKey]Real{}
	af := family(k.Addr)
	err := c.dump(cmdGetDest, &k, func(payload []byte) error {
		rk, r, err := parseReal(payload, af)
		if err != nil {
			return err
		}
		r.Position = len(reals) + 1
		reals[rk] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing reals of %s: %w", k, err)
	}
	return reals, nil
}

// Real is ipvs.Real, for brevity.
type Real = ipvs.Real

func (c *Client) AddService(k lvs.ServiceKey, s *ipvs.Service) error {
	return c.one(ipvs.Op{Kind: ipvs.AddService, Service: k, Spec: s})
}

func (c *Client) UpdateService(k lvs.ServiceKey, s *ipvs.Service) error {
	return c.one(ipvs.Op{Kind: ipvs.UpdateService, Service: k, Spec: s})
}

func (c *Client) DelService(k lvs.ServiceKey) error {
	return c.one(ipvs.Op{Kind: ipvs.DeleteService, Service: k})
}

func (c *Client) AddReal(k lvs.ServiceKey, rk lvs.RealKey, r Real) error {
	return c.one(ipvs.Op{Kind: ipvs.AddReal, Service: k, Real: rk, RealSpec: r})
}

func (c *Client) UpdateReal(k lvs.ServiceKey, rk lvs.RealKey, r Real) error {
	return c.one(ipvs.Op{Kind: ipvs.UpdateReal, Service: k, Real: rk, RealSpec: r})
}

func (c *Client) DelReal(k lvs.ServiceKey, rk lvs.RealKey) error {
	return c.one(ipvs.Op{Kind: ipvs.DeleteReal, Service: k, Real: rk})
}

// one is a batch of one change: one sendmsg, one answer.
func (c *Client) one(op ipvs.Op) error {
	return c.ApplyBatch([]ipvs.Op{op})[0]
}
