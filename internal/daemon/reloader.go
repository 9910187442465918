package daemon

// A reload's preparation: the config read again from its files, checked,
// given the flags run was started with and the token of its token_file,
// then handed to Reload.

import (
	"errors"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
)

// Reloader re-reads the config, on SIGHUP or a change of its files, and
// hands a valid one to the daemon, which takes it once its services have
// answered.
type Reloader struct {
	Path string
	// Running is the config run started with, for the settings that need
	// a restart.
	Running *config.Config
	// Adjust puts over a config read what run's flags set (-api).
	Adjust func(*config.Config) *config.Config
	// WithToken is the running source with another token, for a reload
	// that reads a token_file: the token changes with the config, when it
	// takes over, or not at all.
	WithToken func(token string) Source
	Daemon    interface {
		Reload(*config.Config, Source, string)
	}
	// Metrics counts the reloads rejected here; nil counts none.
	Metrics interface{ ConfigReload(ok bool) }
	Log     hclog.Logger
}

// rejected counts a reload that is rejected before the daemon sees it.
func (r *Reloader) rejected() {
	if r.Metrics != nil {
		r.Metrics.ConfigReload(false)
	}
}

// Reload reads the config again; why is what asked for it, for the logs.
func (r *Reloader) Reload(why string) {
	log := r.Log
	next, err := config.Load(r.Path)
	var diags *config.DiagnosticsError
	switch {
	case errors.As(err, &diags):
		r.rejected()
		log.Error("config reload rejected; the running config stays", "trigger", why, "config", r.Path, "problems", len(diags.Diags))
		for _, line := range strings.Split(diags.Error(), "\n") {
			log.Error("config problem", "diagnostic", line)
		}
	case err != nil:
		r.rejected()
		log.Error("config reload rejected; the running config stays", "trigger", why, "error", err)
	default:
		next = r.Adjust(next)
		var src Source // the running one
		if next.Consul.TokenFile != "" {
			token, err := config.ReadTokenFile("consul", next.Consul.TokenFile)
			if err != nil {
				r.rejected()
				log.Error("config reload rejected; the running config stays", "trigger", why, "error", err)
				return
			}
			src = r.WithToken(token)
		}
		for _, name := range r.Running.NeedsRestart(next) {
			log.Warn("a changed setting takes effect only after a restart; the running value stays", "setting", name)
		}
		log.Info("config read; it takes over once its services answer", "trigger", why, "config", r.Path,
			"virtual_services", len(next.VirtualServices))
		r.Daemon.Reload(next, src, why)
	}
}
