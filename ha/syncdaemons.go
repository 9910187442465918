package ha

// The pair's sync daemons over ipvs.SyncKernel (genl.Client,
// ipvs.MemKernel): which daemon is this director's is the pair's rule.

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// KernelSyncDaemons are the sync daemons of k, this director's being those
// on iface with sync id id. k must be an ipvs.SyncKernel.
func KernelSyncDaemons(k ipvs.Kernel, iface string, id uint32, log hclog.Logger) (SyncDaemons, error) {
	sk, ok := k.(ipvs.SyncKernel)
	if !ok {
		return nil, fmt.Errorf("the kernel client %T cannot run sync daemons", k)
	}
	return syncDaemons{k: sk, iface: iface, id: id, log: log}, nil
}

var _ SyncDaemons = syncDaemons{}

// syncDaemons is SyncDaemons over an ipvs.SyncKernel.
type syncDaemons struct {
	k     ipvs.SyncKernel
	iface string
	id    uint32
	log   hclog.Logger
}

// Start starts the daemon of role r. One of that role already running
// is this director's only with its interface and sync id: another (left
// by ipvsadm, keepalived, an earlier config) is replaced, and said so.
func (s syncDaemons) Start(r ipvs.SyncRole) error {
	want := ipvs.SyncDaemon{Role: r, Interface: s.iface, SyncID: s.id}
	err := s.k.StartDaemon(want)
	if err == nil || !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("starting the %s sync daemon on %s: %w", r, s.iface, err)
		}
		return nil
	}
	ds, err := s.k.Daemons()
	if err != nil {
		return fmt.Errorf("starting the %s sync daemon on %s: one runs, and listing it: %w", r, s.iface, err)
	}
	for _, d := range ds {
		if d.Role != r || d == want {
			continue
		}
		s.log.Warn("a sync daemon runs with another sync id or interface; replacing it", "role", r,
			"running_sync_id", d.SyncID, "running_interface", d.Interface, "sync_id", s.id, "sync_interface", s.iface)
		if err := s.k.StopDaemon(r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("the %s sync daemon runs with sync_id %d on %s, not this director's sync_id %d on %s; stopping it: %w",
				r, d.SyncID, d.Interface, s.id, s.iface, err)
		}
		if err := s.k.StartDaemon(want); err != nil {
			return fmt.Errorf("the %s sync daemon ran with sync_id %d on %s, not this director's sync_id %d on %s; starting this director's: %w",
				r, d.SyncID, d.Interface, s.id, s.iface, err)
		}
	}
	return nil
}

func (s syncDaemons) Stop(r ipvs.SyncRole) error {
	if err := s.k.StopDaemon(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stopping the %s sync daemon: %w", r, err)
	}
	return nil
}

func (s syncDaemons) Running() ([]ipvs.SyncRole, error) {
	ds, err := s.k.Daemons()
	if err != nil {
		return nil, err
	}
	roles := make([]ipvs.SyncRole, 0, len(ds))
	for _, d := range ds {
		roles = append(roles, d.Role)
	}
	return roles, nil
}
