package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/ha"
	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/internal/ownership"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/ipvs/genl"
)

func runRun(args []string, stdout, stderr io.Writer) int {
	f, code, ok := parseRunFlags(args, stderr)
	if !ok {
		return code
	}
	cfg, ok := loadConfig(*f.path, f.fs, stderr)
	if !ok {
		return 1
	}
	cfg = f.over(cfg)
	log := f.logger(cfg, stderr)
	if cfg.Director.HA != nil && !*f.dryRun {
		startStandby(cfg, log) // first of all
	}

	src, err := newCatalogs(cfg, true, os.Getenv, log)
	if err != nil {
		log.Error("cannot set up the catalogs", "error", err)
		return 1
	}
	stateFile := cfg.Director.StateFile
	if *f.dryRun {
		stateFile = ""
	}
	own, ok := openOwnership(stateFile, log) // held, locked, until run returns
	if !ok {
		return 1
	}
	defer closeOwnership(own, stateFile, log)
	kernel, closeKernel, ok := openKernel(*f.dryRun, log)
	if !ok {
		return 1
	}
	defer closeKernel()
	checkAtStart(cfg, hostnet.ProcSys{}, *f.dryRun, log)
	registry := prometheus.NewRegistry()
	meters := metrics.New(registry, versionString())
	opts := daemon.Options{Config: cfg, Source: src, Kernel: kernel, Ownership: own, Metrics: meters, Logger: log,
		OnSync: newMemory(os.Getenv, time.AfterFunc).onSync}
	if !*f.dryRun {
		defer withHost(&opts, cfg, log)()
	}
	// The pair's calls carry the token of the source the running config is
	// watched through (the daemon's once it runs; Consul's of the two
	// catalogs): one token holder, so that the pair's token changes with
	// the config, as the catalog's.
	var d *daemon.Daemon
	token := func() string {
		if d == nil {
			return src.Token()
		}
		return d.Token()
	}
	var pair *haPair // with director.ha: VIP placement follows the role
	apiOpts := api.Options{Log: log.Named("api")}
	if cfg.API.TokenFile != "" {
		if apiOpts.Token, err = config.ReadTokenFile("api", cfg.API.TokenFile); err != nil {
			log.Error("cannot read the api token", "error", err)
			return 1
		}
	}
	if cfg.Director.HA != nil && *f.dryRun {
		log.Warn("dry run: director.ha is not started")
	} else if cfg.Director.HA != nil {
		if pair, err = startHA(cfg, token, kernel, registry, log.Named("ha")); err != nil {
			log.Error("cannot start the ha pair", "error", err)
			return 1
		}
		opts.VIPs, apiOpts.HA = pair.host, pair
	}
	if cfg.Director.BGP != nil && *f.dryRun {
		log.Warn("dry run: director.bgp is not started: nothing is announced")
	} else if cfg.Director.BGP != nil {
		sp, err := startSpeaker(context.Background(), cfg, log.Named("bgp")) // runs until stopSpeaker, after the daemon withdrew
		if err != nil {
			log.Error("cannot start the bgp speaker", "error", err)
			return 1
		}
		defer stopSpeaker(sp, log.Named("bgp"))
		opts.Speaker = sp
	}
	d, err = daemon.New(opts)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if pair != nil {
		pair.Runner.SetReady(d.Health) // the heartbeat says whether this director could serve
		pair.Runner.SetServesItself(d.ServesItself)
	}
	if opts.Speaker != nil {
		metrics.NewBGP(registry, d.BGP)
	}
	metrics.NewTraffic(registry, d.Services) // each scrape reads the table /v1/status reads, at most a second old
	closeAPI, ok := serveAPI(cfg, *f.apiAddr != "", api.Handler(d, registry, apiOpts), log.Named("api"))
	if !ok {
		return 1
	}
	defer closeAPI()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reloader := &daemon.Reloader{Path: *f.path, Running: cfg, Adjust: f.over, Daemon: d,
		WithTokens: src.withTokens, Metrics: meters, Log: log}
	defer reloadOn(ctx, *f.path, *f.autoreload, reloader.Reload)()

	log.Info("starting", "version", versionString(), "config", *f.path, "pid", os.Getpid())
	return runUntilStopped(ctx, stop, d, pair, cfg.Director.CleanupOnExit, log)
}

// startStandby takes the config's VIPs off the ha interface: a director
// starts standby (see ha.Unplace), before anything that can fail or wait.
func startStandby(cfg *config.Config, log hclog.Logger) {
	h := cfg.Director.HA
	if err := ha.Unplace(hostnet.NewAddrSet(h.Interface, nil, log.Named("vip")), cfg.VIPs()); err != nil {
		log.Error("cannot take the vips off the interface at start", "interface", h.Interface, "error", err)
	}
}

// withHost gives the daemon what it touches of the host besides the
// kernel's table (not in a dry run): the maintenance pages, and the VIP
// link of director.vip_interface. The func it returns stops the pages.
func withHost(opts *daemon.Options, cfg *config.Config, log hclog.Logger) func() {
	pages := &fallback.Server{Log: log.Named("fallback")}
	opts.Pages = pages
	if cfg.Director.VIPInterface != "" {
		opts.VIPs = hostnet.NewVIPLink(cfg.Director.VIPInterface, nil, log.Named("vip"))
	}
	return func() { pages.Close() }
}

// runUntilStopped runs the daemon, and the pair if any, until ctx ends
// (stop ends it too); the pair has stepped down when it returns, and with
// director.bgp the daemon has withdrawn every VIP and waited
// shutdown_delay (the speaker is stopped after it, by runRun). With
// cleanup (director.cleanup_on_exit) the daemon then takes down what it
// made.
func runUntilStopped(ctx context.Context, stop func(), d *daemon.Daemon, pair *haPair, cleanup bool, log hclog.Logger) int {
	if pair != nil {
		haDone := make(chan struct{})
		go func() { defer close(haDone); pair.Run(ctx) }()
		defer func() { stop(); <-haDone }() // stepped down before the process goes
	}
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	if cleanup {
		if err := d.Cleanup(); err != nil {
			log.Error("cleanup on exit failed", "error", err)
			return 1
		}
	}
	return 0
}

// runFlags are run's flags.
type runFlags struct {
	fs                           *flag.FlagSet
	path, level, apiAddr         *string
	jsonLogs, autoreload, dryRun *bool
}

func parseRunFlags(args []string, stderr io.Writer) (runFlags, int, bool) {
	fs := newFlagSet("run", commands()["run"].synopsis, stderr)
	f := runFlags{fs: fs,
		path:       fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)"),
		level:      fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error (default: the config's log_level, else info)"),
		jsonLogs:   fs.Bool("log-json", false, "log in JSON (default: the config's log_json)"),
		autoreload: fs.Bool("autoreload", false, "reload the config when its files change, as on SIGHUP"),
		apiAddr:    fs.String("api", "", "`ADDRESS` of the local API, over the config's api block (\"\" keeps the config's)"),
		dryRun:     fs.Bool("dry-run", false, "apply to an in-memory table instead of the kernel, and log the changes; touch no VIP, serve no page, write no state file"),
	}
	code, ok := parseFlags(fs, args)
	return f, code, ok
}

// over puts the flags that override a config's settings over cfg: the
// config run starts with, and each one a reload reads.
func (f runFlags) over(cfg *config.Config) *config.Config {
	if *f.apiAddr != "" {
		cfg.API.Address = *f.apiAddr
	}
	return cfg
}

// logger is the root logger: at the flags' level and format, else the
// config's.
func (f runFlags) logger(cfg *config.Config, stderr io.Writer) hclog.Logger {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	level, jsonLogs := *f.level, *f.jsonLogs
	if !set["log-level"] && cfg.LogLevel != "" {
		level = cfg.LogLevel
	}
	if !set["log-json"] && cfg.LogJSON {
		jsonLogs = true
	}
	return newLogger(stderr, level, jsonLogs)
}

// openOwnership opens the state file, locked until closeOwnership: before
// anything else touches the kernel, a second lvs-sync on the same state
// file stops here. An unreadable one is a record that owns nothing.
func openOwnership(stateFile string, log hclog.Logger) (*ownership.Record, bool) {
	own, err := ownership.Open(stateFile)
	var locked *ownership.LockedError
	switch {
	case errors.As(err, &locked):
		log.Error("another lvs-sync runs on this state file; not starting", "state_file", locked.Path, "holder_pid", locked.Pid, "error", err)
		return nil, false
	case errors.Is(err, ownership.ErrUnknown):
		log.Warn("state file unreadable: deleting no virtual service", "state_file", stateFile, "error", err)
	case err != nil:
		log.Error("cannot read which services lvs-sync owns", "error", err)
		return nil, false
	}
	return own, true
}

// closeOwnership saves which services lvs-sync owns and lets the state
// file go.
func closeOwnership(own *ownership.Record, stateFile string, log hclog.Logger) {
	if err := own.Close(); err != nil {
		log.Warn("cannot save which services lvs-sync owns", "state_file", stateFile, "error", err)
	}
}

// openKernel opens the kernel's IPVS, or in a dry run an in-memory table.
func openKernel(dryRun bool, log hclog.Logger) (ipvs.Kernel, func(), bool) {
	if dryRun {
		log.Warn("dry run: changes go to an in-memory table, not the kernel; no vip, page or state file is touched")
		return ipvs.NewMemKernel(ipvs.State{}), func() {}, true
	}
	nl, err := genl.Open(5*time.Second, log.Named("netlink"))
	if err != nil {
		log.Error("cannot reach the kernel's ipvs", "error", err)
		return nil, nil, false
	}
	return nl, func() { nl.Close() }, true
}

// serveAPI serves h at the config's api address, if it has one; byFlag
// says that -api set it. close stops serving.
func serveAPI(cfg *config.Config, byFlag bool, h http.Handler, log hclog.Logger) (close func(), ok bool) {
	if cfg.API.Address == "" {
		return func() {}, true
	}
	if a := netip.MustParseAddrPort(cfg.API.Address); byFlag && !a.Addr().IsLoopback() {
		// The config's own address is warned about with its warnings.
		log.Warn("the api listens on an address other hosts can reach; listen on 127.0.0.1 unless they must", "address", a)
	}
	srv, err := api.Serve(cfg.API.Address, h, log)
	if err != nil {
		log.Error("cannot serve the api", "address", cfg.API.Address, "error", err)
		return nil, false
	}
	return func() { srv.Close() }, true
}

// reloadOn reloads on SIGHUP and, with autoreload, when the config's files
// change, until ctx ends; the func it returns stops taking SIGHUP.
func reloadOn(ctx context.Context, path string, autoreload bool, reload func(why string)) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var changes <-chan struct{}
	if autoreload {
		changes = watchFiles(ctx, path, time.Second)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload("SIGHUP")
			case <-changes:
				reload("file change")
			}
		}
	}()
	return func() { signal.Stop(hup) }
}

// watchFiles signals when the config's files change (checked every
// interval): their names, sizes or modification times.
func watchFiles(ctx context.Context, path string, interval time.Duration) <-chan struct{} {
	ch := make(chan struct{}, 1)
	fingerprint := func() string {
		var b strings.Builder
		files, _ := config.Files(path) // none when unreadable or empty: fingerprint ""
		for _, f := range files {
			if info, err := os.Stat(f); err == nil {
				fmt.Fprintf(&b, "%s %d %d\n", f, info.Size(), info.ModTime().UnixNano())
			}
		}
		return b.String()
	}
	last := fingerprint() // now, so that a change right after start counts
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if now := fingerprint(); now != last {
					last = now
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return ch
}

func runPlan(args []string, stdout, stderr io.Writer) int {
	c, code := renderCatalog("plan", args, stderr)
	if c == nil {
		return code
	}
	kernel, err := genl.Open(5*time.Second, c.log.Named("netlink"))
	if err != nil {
		c.log.Error("cannot reach the kernel's ipvs", "error", err)
		return 1
	}
	defer kernel.Close()
	own, err := ownership.Load(c.cfg.Director.StateFile) // a reader: no lock
	switch {
	case errors.Is(err, ownership.ErrUnknown):
		c.log.Warn("state file unreadable: deleting no virtual service", "state_file", c.cfg.Director.StateFile, "error", err)
	case err != nil:
		c.log.Error("cannot read which services lvs-sync owns", "error", err)
		return 1
	}
	// What a run starting now would do: a fresh drainer, as after a
	// restart, finds the leaving reals that still have connections and
	// drains them.
	in := ipvs.Input{Desired: c.res.State, Owned: own.Owns, Adopt: c.cfg.Adopts, Drains: daemon.NewDrainer(c.cfg), Now: time.Now()}
	in.Current, err = ipvs.Read(kernel, in.Owner().MayBeOurs) // every service, the reals of those that may be lvs-sync's
	if err != nil {
		c.log.Error("cannot read the kernel's ipvs table", "error", err)
		return 1
	}
	planned := ipvs.Changes(in)
	for _, k := range planned.Conflicts {
		c.log.Warn("the kernel already has this virtual service and lvs-sync did not make it: run leaves it untouched; set adopt = true to take it over",
			"virtual_service", c.cfg.VirtualServiceAt(k).Name, "service", k)
	}
	for _, op := range planned.Plan {
		fmt.Fprintln(stdout, op)
	}
	return 0
}
