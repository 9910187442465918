package main

import (
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// checkAtStart is what run checks once the kernel is open: the config's
// warnings, and the director's kernel settings against what the config
// needs (not in a dry run, which touches nothing of the host).
func checkAtStart(cfg *config.Config, sys hostnet.Sysctl, dryRun bool, log hclog.Logger) {
	if cfg.Warnings != nil {
		for _, line := range strings.Split(cfg.Warnings.Error(), "\n") {
			log.Warn("config warning", "diagnostic", line)
		}
	}
	if !dryRun {
		checkSysctls(cfg, sys, log.Named("sysctl"))
	}
}

// kernelNeeds is what the config's virtual services ask of the director's
// kernel settings. It is pure.
func kernelNeeds(cfg *config.Config) hostnet.DirectorNeeds {
	var n hostnet.DirectorNeeds
	for _, vs := range cfg.VirtualServices {
		n.Services = true
		n.Persistence = n.Persistence || vs.Persistence > 0
		switch vs.Forwarding {
		case lvs.Masq:
			n.Masq4 = n.Masq4 || vs.Address.Addr().Is4()
			n.Masq6 = n.Masq6 || vs.Address.Addr().Is6()
		case lvs.Route, lvs.Tunnel:
			n.Direct = true
		}
	}
	return n
}

// checkSysctls warns of each kernel setting that is not as the config
// needs, with the line that sets it; with tune_sysctls it sets them.
func checkSysctls(cfg *config.Config, sys hostnet.Sysctl, log hclog.Logger) []hostnet.Finding {
	tune := cfg.Director.TuneSysctls
	findings := hostnet.CheckSettings(sys, hostnet.DirectorSettings(kernelNeeds(cfg)), tune)
	for _, f := range findings {
		switch {
		case f.Err != nil && tune && f.Current != "":
			log.Error("cannot set a kernel setting the config needs", "setting", f.Name(), "value", f.Current, "want", f.Value, "why", f.Why, "error", f.Err)
		case f.Err != nil:
			log.Warn("cannot read a kernel setting the config needs", "setting", f.Name(), "want", f.Value, "why", f.Why, "error", f.Err)
		case f.Set:
			log.Info("set a kernel setting the config needs", "setting", f.Name(), "was", f.Current, "value", f.Value)
		case !f.OK():
			log.Warn("kernel setting unsafe for this config; set it, or director { tune_sysctls = true }", "setting", f.Name(),
				"value", f.Current, "want", f.Value, "why", f.Why, "fix", f.Command())
		}
	}
	return findings
}
