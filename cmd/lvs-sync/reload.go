package main

import (
	"errors"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
)

// reloader re-reads the config, on SIGHUP or a change of its files, and
// hands a valid one to the daemon, which takes it once its services have
// answered.
type reloader struct {
	path string
	// running is the config run started with, for the settings that need
	// a restart.
	running   *config.Config
	withFlags func(*config.Config) *config.Config
	// withToken is the running source with another token, for a reload
	// that reads a token_file: the token changes with the config, when it
	// takes over, or not at all.
	withToken func(token string) daemon.Source
	d         interface {
		Reload(*config.Config, daemon.Source, string)
	}
	metrics *metrics.Metrics
	log     hclog.Logger
}

// reload reads the config again; why is what asked for it, for the logs.
func (r *reloader) reload(why string) {
	log := r.log
	next, err := config.Load(r.path)
	var diags *config.DiagnosticsError
	switch {
	case errors.As(err, &diags):
		r.metrics.ConfigReload(false)
		log.Error("config reload rejected; the running config stays", "trigger", why, "config", r.path, "problems", len(diags.Diags))
		for _, line := range strings.Split(diags.Error(), "\n") {
			log.Error("config problem", "diagnostic", line)
		}
	case err != nil:
		r.metrics.ConfigReload(false)
		log.Error("config reload rejected; the running config stays", "trigger", why, "error", err)
	default:
		next = r.withFlags(next)
		var src daemon.Source // the running one
		if next.Consul.TokenFile != "" {
			token, err := config.ReadTokenFile("consul", next.Consul.TokenFile)
			if err != nil {
				r.metrics.ConfigReload(false)
				log.Error("config reload rejected; the running config stays", "trigger", why, "error", err)
				return
			}
			src = r.withToken(token)
		}
		for _, name := range r.running.NeedsRestart(next) {
			log.Warn("a changed setting takes effect only after a restart; the running value stays", "setting", name)
		}
		log.Info("config read; it takes over once its services answer", "trigger", why, "config", r.path,
			"virtual_services", len(next.VirtualServices))
		r.d.Reload(next, src, why)
	}
}
