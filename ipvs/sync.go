package ipvs

import (
	"fmt"
	"slices"
	"syscall"
)

// SyncRole is a role of the kernel's connection sync daemon, as the
// kernel numbers it (IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP).
type SyncRole int

const (
	// SyncMaster sends the director's connections to the backups over
	// multicast.
	SyncMaster SyncRole = 1
	// SyncBackup receives them into this director's table.
	SyncBackup SyncRole = 2
)

func (r SyncRole) String() string {
	switch r {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("sync-role(%d)", int(r))
}

// SyncDaemon is one running sync daemon: its role, the link its multicast
// goes over, and the sync id it sends with (a master) or accepts (a
// backup; 0 accepts every id). A master and a backup can run at once.
type SyncDaemon struct {
	Role      SyncRole
	Interface string
	SyncID    uint32
}

func (d SyncDaemon) String() string {
	return fmt.Sprintf("%s (interface=%s sync_id=%d)", d.Role, d.Interface, d.SyncID)
}

// SyncKernel starts, stops and lists the kernel's connection sync daemons
// (IPVS_CMD_NEW_DAEMON, DEL_DAEMON, GET_DAEMON). ipvs/genl's Client is
// the kernel's; MemKernel keeps them in memory.
type SyncKernel interface {
	// StartDaemon starts a daemon of d's role: EEXIST if one runs.
	StartDaemon(d SyncDaemon) error
	// StopDaemon stops the daemon of that role: ESRCH if none runs.
	StopDaemon(role SyncRole) error
	// Daemons lists the running daemons, the master first.
	Daemons() ([]SyncDaemon, error)
}

var _ SyncKernel = (*MemKernel)(nil)

// validRole is the kernel's check of a daemon's state attribute.
func validRole(r SyncRole) bool { return r == SyncMaster || r == SyncBackup }

// ifNameSize is the kernel's IFNAMSIZ: a link's name is shorter.
const ifNameSize = 16

// StartDaemon answers as ipvs/genl's client does: EINVAL for an unknown
// role or a link name that cannot be one, EEXIST if a daemon of that role
// runs. MemKernel has no links, so it never answers ENODEV for a missing
// one as the kernel does.
func (m *MemKernel) StartDaemon(d SyncDaemon) error {
	if !validRole(d.Role) || d.Interface == "" || len(d.Interface) >= ifNameSize {
		return syscall.EINVAL
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.daemons[d.Role]; ok {
		return syscall.EEXIST
	}
	if m.daemons == nil {
		m.daemons = map[SyncRole]SyncDaemon{}
	}
	m.daemons[d.Role] = d
	return nil
}

// StopDaemon answers EINVAL for an unknown role and ESRCH if none runs.
func (m *MemKernel) StopDaemon(role SyncRole) error {
	if !validRole(role) {
		return syscall.EINVAL
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.daemons[role]; !ok {
		return syscall.ESRCH
	}
	delete(m.daemons, role)
	return nil
}

func (m *MemKernel) Daemons() ([]SyncDaemon, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SyncDaemon, 0, len(m.daemons))
	for _, d := range m.daemons {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b SyncDaemon) int { return int(a.Role) - int(b.Role) })
	return out, nil
}
