package main

// The sync daemons of director.ha over ipvs.SyncKernel (genl.Client,
// ipvs.MemKernel).

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ha"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

func syncDaemonsOf(k ipvs.Kernel, h *config.HA) (ha.SyncDaemons, error) {
	sk, ok := k.(ipvs.SyncKernel)
	if !ok {
		return nil, fmt.Errorf("the kernel client %T cannot run sync daemons", k)
	}
	return syncDaemons{k: sk, iface: h.SyncInterface, id: uint32(h.SyncID)}, nil
}

type syncDaemons struct {
	k     ipvs.SyncKernel
	iface string
	id    uint32
}

func (s syncDaemons) Start(r ipvs.SyncRole) error {
	err := s.k.StartDaemon(ipvs.SyncDaemon{Role: r, Interface: s.iface, SyncID: s.id})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("starting the %s sync daemon on %s: %w", r, s.iface, err)
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
