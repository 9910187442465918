//go:build !hakernel

package main

// STUB for branch h/ha-core: ipvs.SyncKernel is built by helper
// ha-kernel; ha_kernel.go (build tag hakernel) adapts it. At merge the
// lead deletes this file and the tag line of ha_kernel.go.

import (
	"errors"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ha"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

func syncDaemonsOf(ipvs.Kernel, *config.HA) (ha.SyncDaemons, error) { return noSync{}, nil }

var errNoSync = errors.New("the kernel's sync daemon commands are not in this build")

type noSync struct{}

func (noSync) Start(ha.SyncRole) error         { return errNoSync }
func (noSync) Stop(ha.SyncRole) error          { return errNoSync }
func (noSync) Running() ([]ha.SyncRole, error) { return nil, errNoSync }
