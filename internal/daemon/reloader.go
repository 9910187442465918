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
	// WithTokens is the running source with other tokens, for a reload
	// that reads a token_file (consul's, nomad's, or both; "" keeps the
	// running source's for that catalog): the tokens change with the
	// config, when it takes over, or not at all.
	WithTokens func(consul, nomad string) Source
	Daemon     interface {
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
		var tokens [2]string
		for i, f := range []struct{ block, path string }{{"consul", next.Consul.TokenFile}, {"nomad", next.Nomad.TokenFile}} {
			if f.path == "" {
				continue
			}
			token, err := config.ReadTokenFile(f.block, f.path)
			if err != nil {
				r.rejected()
				log.Error("config reload rejected; the running config stays", "trigger", why, "error", err)
				return
			}
			tokens[i] = token
		}
		if tokens != [2]string{} {
			src = r.WithTokens(tokens[0], tokens[1])
		}
		for _, name := range r.Running.NeedsRestart(next) {
			log.Warn("a changed setting takes effect only after a restart; the running value stays", "setting", name)
		}
		log.Info("config read; it takes over once its services answer", "trigger", why, "config", r.Path,
			"virtual_services", len(next.VirtualServices))
		r.Daemon.Reload(next, src, why)
	}
}
