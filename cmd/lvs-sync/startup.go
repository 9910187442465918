package main

import (
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/hostnet"
)

// checkAtStart is what run checks once the kernel is open: the config's
// warnings, the director's kernel settings against what the config needs,
// and the scheduler modules it names (neither in a dry run, which touches
// nothing of the host).
func checkAtStart(cfg *config.Config, sys hostnet.Sysctl, dryRun bool, log hclog.Logger) {
	if cfg.Warnings != nil {
		for _, line := range strings.Split(cfg.Warnings.Error(), "\n") {
			log.Warn("config warning", "diagnostic", line)
		}
	}
	if !dryRun {
		hostnet.CheckDirector(sys, kernelNeeds(cfg), cfg.Director.TuneSysctls, log.Named("sysctl"))
		if m, err := hostnet.HostModules(); err == nil {
			hostnet.CheckSchedulers(m, schedulers(cfg), log.Named("modules"))
		}
	}
}

// schedulers lists the schedulers the config's virtual services use.
func schedulers(cfg *config.Config) []string {
	out := make([]string, 0, len(cfg.VirtualServices))
	for _, vs := range cfg.VirtualServices {
		out = append(out, vs.Scheduler)
	}
	return out
}

// kernelNeeds is what the config's virtual services ask of the director's
// kernel settings (hostnet decides what each asks). It is pure.
func kernelNeeds(cfg *config.Config) hostnet.DirectorNeeds {
	n := hostnet.DirectorNeeds{AllActive: cfg.Director.BGP != nil}
	for _, vs := range cfg.VirtualServices {
		n.Serve(vs.Address.Addr(), vs.Protocol, vs.Forwarding, vs.Persistence > 0)
	}
	return n
}
