package genl

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// The sync daemon commands and their nested attributes
// (include/uapi/linux/ip_vs.h, IPVS_DAEMON_ATTR_*).
const (
	cmdNewDaemon = 9
	cmdDelDaemon = 10
	cmdGetDaemon = 11 // a dump: the answers are NEW_DAEMON messages

	attrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested

	daemonState    = 1 // u32: IP_VS_STATE_MASTER 1, IP_VS_STATE_BACKUP 2
	daemonMcastIfn = 2 // NUL-terminated interface name
	daemonSyncID   = 3 // u32
)

var _ ipvs.SyncKernel = (*Client)(nil)

// daemon writes the daemon attribute: the role, and when d is not nil the
// interface and sync id, which the kernel requires to start one.
func (e *encoder) daemon(role ipvs.SyncRole, d *ipvs.SyncDaemon) {
	n := e.attr(attrDaemon | nlaNested)
	e.u32(daemonState, uint32(role))
	if d != nil {
		e.str(daemonMcastIfn, d.Interface)
		e.u32(daemonSyncID, d.SyncID)
	}
	e.attrEnd(n)
}

// parseDaemon reads one daemon of a GET_DAEMON dump; the attributes of
// Linux 4.3 and later (group, port, ttl, maxlen) are not kept.
func parseDaemon(payload []byte) (ipvs.SyncDaemon, error) {
	var d ipvs.SyncDaemon
	v, ok := nested(payload, attrDaemon)
	if !ok {
		return d, fmt.Errorf("a daemon message without a daemon")
	}
	it := attrs{v}
	for t, v, ok := it.next(); ok; t, v, ok = it.next() {
		switch t {
		case daemonState:
			d.Role = ipvs.SyncRole(u32(v))
		case daemonMcastIfn:
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i]
			}
			d.Interface = string(v)
		case daemonSyncID:
			d.SyncID = u32(v)
		}
	}
	return d, nil
}

// checkDaemon refuses, as MemKernel does, what the kernel would refuse or
// misread: an unknown role, no interface.
func checkDaemon(role ipvs.SyncRole, ifname *string) error {
	if role != ipvs.SyncMaster && role != ipvs.SyncBackup {
		return syscall.EINVAL
	}
	if ifname != nil && (*ifname == "" || len(*ifname) >= unix.IFNAMSIZ) {
		return syscall.EINVAL
	}
	return nil
}

// errNoAnswer is a command the kernel handled without answering: its
// answer would have been queued before the send returned.
var errNoAnswer = errors.New("the kernel gave no answer")

// daemonCall sends one daemon command and reads its ack, queued by the
// time the send returns: the kernel runs the command inside it. Linux
// sends no ack at all for a stop that catches the daemon's thread before
// it first ran (kthread_stop answers -EINTR, which netlink_rcv_skb takes
// as "answer nothing"); errNoAnswer says so at once, not after a timeout.
func (c *Client) daemonCall(cmd uint8, role ipvs.SyncRole, d *ipvs.SyncDaemon) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	seq := c.seq.Add(1)
	c.renc.b = c.renc.b[:0]
	m := c.renc.begin(c.family, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, cmd, ipvsGenlVersion)
	c.renc.daemon(role, d)
	c.renc.end(m)
	return c.exchange(seq, unix.MSG_DONTWAIT, func([]byte) error { return nil })
}

// settled reads, after a command that got no answer, whether the kernel
// did it: the daemons it lists say.
func (c *Client) settled(role ipvs.SyncRole, want *ipvs.SyncDaemon) error {
	c.unanswered.Add(1)
	ds, err := c.Daemons()
	if err != nil {
		return fmt.Errorf("%w; then %w", errNoAnswer, err)
	}
	i := slices.IndexFunc(ds, func(d ipvs.SyncDaemon) bool { return d.Role == role })
	switch {
	case want == nil && i < 0, want != nil && i >= 0 && ds[i] == *want:
		return nil
	}
	return fmt.Errorf("%w, and the daemons are %v", errNoAnswer, ds)
}

// StartDaemon starts the kernel's sync daemon of d's role on d.Interface:
// EEXIST if one of that role runs, ENODEV if there is no such link.
func (c *Client) StartDaemon(d ipvs.SyncDaemon) error {
	err := checkDaemon(d.Role, &d.Interface)
	if err == nil {
		err = c.daemonCall(cmdNewDaemon, d.Role, &d)
		if errors.Is(err, errNoAnswer) {
			err = c.settled(d.Role, &d)
		}
	}
	if err != nil {
		return fmt.Errorf("starting the sync daemon %s: %w", d, err)
	}
	return nil
}

// StopDaemon stops the sync daemon of that role: ESRCH if none runs. A
// master stopped discards the connections it had not sent yet.
func (c *Client) StopDaemon(role ipvs.SyncRole) error {
	err := checkDaemon(role, nil)
	if err == nil {
		err = c.daemonCall(cmdDelDaemon, role, nil)
		if errors.Is(err, errNoAnswer) {
			err = c.settled(role, nil)
		}
	}
	if err != nil {
		return fmt.Errorf("stopping the %s sync daemon: %w", role, err)
	}
	return nil
}

// Daemons lists the running sync daemons, the master first: one dump.
func (c *Client) Daemons() ([]ipvs.SyncDaemon, error) {
	var out []ipvs.SyncDaemon
	c.rmu.Lock()
	defer c.rmu.Unlock()
	seq := c.seq.Add(1)
	c.renc.b = c.renc.b[:0]
	m := c.renc.begin(c.family, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, cmdGetDaemon, ipvsGenlVersion)
	c.renc.end(m)
	err := c.exchange(seq, 0, func(payload []byte) error {
		d, err := parseDaemon(payload)
		if err == nil {
			out = append(out, d)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the sync daemons: %w", err)
	}
	slices.SortFunc(out, func(a, b ipvs.SyncDaemon) int { return int(a.Role) - int(b.Role) })
	return out, nil
}
