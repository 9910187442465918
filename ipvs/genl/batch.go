package genl

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// ApplyBatch makes the changes in order, up to 256 per sendmsg, and
// returns one error per op: nil for a change made, the kernel's errno for
// one it refused, an error wrapping ipvs.ErrOutcomeUnknown for one whose
// answer was lost. The batch has one deadline, the client's timeout.
func (c *Client) ApplyBatch(ops []ipvs.Op) []error {
	errs := make([]error, len(ops))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline := time.Now().Add(c.timeout)
	for i := 0; i < len(ops); {
		left := time.Until(deadline)
		if left <= 0 {
			for j := i; j < len(ops); j++ {
				errs[j] = fmt.Errorf("not sent: the batch of %d changes took more than %v: %w", len(ops), c.timeout, ipvs.ErrTimeout)
			}
			break
		}
		n, err := c.chunk(ops[i:], errs[i:], left)
		if err != nil {
			// Nothing of this sendmsg reached the kernel; the rest would
			// fare no better.
			for j := i; j < len(ops); j++ {
				if errs[j] == nil {
					errs[j] = err
				}
			}
			break
		}
		i += n
	}
	return errs
}

// chunk sends the first changes of ops in one sendmsg, the last asking for
// an ack, and collects the answers into errs. It returns how many it sent,
// or an error if the kernel took none.
func (c *Client) chunk(ops []ipvs.Op, errs []error, left time.Duration) (int, error) {
	k := uint32(min(len(ops), maxBatchMsgs))
	first := c.seq.Add(k) - k + 1
	c.wenc.b = c.wenc.b[:0]
	n, last := 0, -1
	for n < len(ops) && n < maxBatchMsgs && len(c.wenc.b) < maxBatchBytes {
		start := len(c.wenc.b)
		if err := c.wenc.op(c.family, unix.NLM_F_REQUEST, first+uint32(n), ops[n]); err != nil {
			errs[n] = err // never sent: the kernel would refuse it
			c.wenc.b = c.wenc.b[:start]
		} else {
			last = start
		}
		n++
	}
	if last < 0 {
		return n, nil
	}
	// The ack of the last request sent ends the chunk's answers.
	lastSeq := native.Uint32(c.wenc.b[last+8:])
	native.PutUint16(c.wenc.b[last+6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	if err := c.w.setTimeout(left); err != nil {
		return 0, err
	}
	c.sends.Add(1)
	if err := c.w.send(c.wenc.b); err != nil {
		return 0, fmt.Errorf("sending %d changes to the kernel: %w", n, err)
	}
	if unknown := c.collect(first, uint32(n), lastSeq, errs[:n]); unknown != nil {
		for j := range n {
			if errs[j] == nil {
				errs[j] = unknown
			}
		}
	}
	return n, nil
}

// collect reads the answers to requests first..first+n-1 until the ack of
// lastSeq, recording each refusal as the error of its op. It returns nil,
// or the error that every unanswered op gets: an answer lost (ENOBUFS) or
// not come in time, the outcome unknown.
func (c *Client) collect(first, n, lastSeq uint32, errs []error) error {
	var lost error
	flags := 0
	for {
		size, err := c.w.recv(c.wbuf, flags)
		switch {
		case err == unix.ENOBUFS:
			// Answers were dropped; the kernel was done with the whole
			// sendmsg before it returned, so what is queued is all there
			// is: read it without waiting.
			lost = fmt.Errorf("%w (%w)", ipvs.ErrOutcomeUnknown, err)
			flags = unix.MSG_DONTWAIT
			continue
		case err == unix.EAGAIN && lost != nil:
			return lost
		case err == errTimeout:
			return fmt.Errorf("%w: %w (%v)", ipvs.ErrOutcomeUnknown, ipvs.ErrTimeout, c.timeout)
		case err != nil:
			return fmt.Errorf("%w: reading the kernel's answers: %w", ipvs.ErrOutcomeUnknown, err)
		}
		b := c.wbuf[:size]
		for len(b) > 0 {
			h, payload, rest, err := nextMessage(b)
			if err != nil {
				return fmt.Errorf("%w: %w", ipvs.ErrOutcomeUnknown, err)
			}
			b = rest
			i := h.seq - first
			if h.typ != unix.NLMSG_ERROR || i >= n {
				continue // stale: a batch that timed out
			}
			if err := errorCode(payload); err != nil {
				errs[i] = err
			}
			if h.seq == lastSeq {
				return lost
			}
		}
	}
}
