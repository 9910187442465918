package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/catalog/consul"
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
	fs := newFlagSet("run", commands()["run"].synopsis, stderr)
	path := fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)")
	level := fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error (default: the config's log_level, else info)")
	jsonLogs := fs.Bool("log-json", false, "log in JSON (default: the config's log_json)")
	autoreload := fs.Bool("autoreload", false, "reload the config when its files change, as on SIGHUP")
	apiAddr := fs.String("api", "", "`ADDRESS` of the local API, over the config's api block (\"\" keeps the config's)")
	dryRun := fs.Bool("dry-run", false, "apply to an in-memory table instead of the kernel, and log the changes; touch no VIP, serve no page, write no state file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, ok := loadConfig(*path, fs, stderr)
	if !ok {
		return 1
	}
	withFlags := func(cfg *config.Config) *config.Config {
		if *apiAddr != "" {
			cfg.API.Address = *apiAddr
		}
		return cfg
	}
	cfg = withFlags(cfg)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["log-level"] && cfg.LogLevel != "" {
		*level = cfg.LogLevel
	}
	if !set["log-json"] && cfg.LogJSON {
		*jsonLogs = true
	}
	log := newLogger(stderr, *level, *jsonLogs)
	if h := cfg.Director.HA; h != nil && !*dryRun {
		// First of all: a director starts standby (see ha.Unplace).
		if err := ha.Unplace(hostnet.NewAddrSet(h.Interface, nil, log.Named("vip")), cfg.VIPs()); err != nil {
			log.Error("cannot take the vips off the interface at start", "interface", h.Interface, "error", err)
		}
	}

	client, err := newConsulClient(cfg.Consul)
	if err != nil {
		log.Error("cannot set up the consul client", "error", err)
		return 1
	}
	stateFile := cfg.Director.StateFile
	if *dryRun {
		stateFile = ""
	}
	// Before anything else touches the kernel: a second lvs-sync on the
	// same state file stops here.
	own, err := ownership.Open(stateFile) // held, locked, until run returns
	var locked *ownership.LockedError
	switch {
	case errors.As(err, &locked):
		log.Error("another lvs-sync runs on this state file; not starting", "state_file", locked.Path, "holder_pid", locked.Pid, "error", err)
		return 1
	case errors.Is(err, ownership.ErrUnknown):
		log.Warn("state file unreadable: deleting no virtual service", "state_file", stateFile, "error", err)
	case err != nil:
		log.Error("cannot read which services lvs-sync owns", "error", err)
		return 1
	}
	defer func() {
		if err := own.Close(); err != nil {
			log.Warn("cannot save which services lvs-sync owns", "state_file", stateFile, "error", err)
		}
	}()
	var kernel ipvs.Kernel
	if *dryRun {
		log.Warn("dry run: changes go to an in-memory table, not the kernel; no vip, page or state file is touched")
		kernel = ipvs.NewMemKernel(ipvs.State{})
	} else {
		nl, err := genl.Open(5*time.Second, log.Named("netlink"))
		if err != nil {
			log.Error("cannot reach the kernel's ipvs", "error", err)
			return 1
		}
		defer nl.Close()
		kernel = nl
	}
	checkAtStart(cfg, hostnet.ProcSys{}, *dryRun, log)
	registry := prometheus.NewRegistry()
	metrics := metrics.New(registry, versionString())
	src := consul.NewSource(client, consul.Options{Datacenter: cfg.Consul.Datacenter, MaxConnections: cfg.Consul.MaxConnections, Logger: log.Named("catalog")})
	opts := daemon.Options{Config: cfg, Source: src, Kernel: kernel, Ownership: own, Metrics: metrics, Logger: log}
	if !*dryRun {
		pages := &fallback.Server{Log: log.Named("fallback")}
		defer pages.Close()
		opts.Pages = pages
		if cfg.Director.VIPInterface != "" {
			opts.VIPs = hostnet.NewVIPLink(cfg.Director.VIPInterface, nil, log.Named("vip"))
		}
	}
	// The pair's calls carry the token of the source the running config is
	// watched through (the daemon's once it runs): one token holder, so
	// that the pair's token changes with the config, as the catalog's.
	var d *daemon.Daemon
	token := func() string {
		if d == nil {
			return src.Token()
		}
		return d.Token()
	}
	var pair *haPair // with director.ha: VIP placement follows the role
	apiOpts := api.Options{}
	if cfg.API.TokenFile != "" {
		if apiOpts.Token, err = config.ReadTokenFile("api", cfg.API.TokenFile); err != nil {
			log.Error("cannot read the api token", "error", err)
			return 1
		}
	}
	if cfg.Director.HA != nil && *dryRun {
		log.Warn("dry run: director.ha is not started")
	} else if cfg.Director.HA != nil {
		if pair, err = startHA(cfg, token, kernel, registry, log.Named("ha")); err != nil {
			log.Error("cannot start the ha pair", "error", err)
			return 1
		}
		opts.VIPs, apiOpts.HA = pair.host, pair
	}
	d, err = daemon.New(opts)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if pair != nil {
		pair.runner.SetReady(d.Health) // the heartbeat says whether this director could serve
	}
	if cfg.API.Address != "" {
		if a := netip.MustParseAddrPort(cfg.API.Address); *apiAddr != "" && !a.Addr().IsLoopback() {
			// The config's own address is warned about with its warnings.
			log.Named("api").Warn("the api listens on an address other hosts can reach; listen on 127.0.0.1 unless they must", "address", a)
		}
		srv, err := api.Serve(cfg.API.Address, api.Handler(d, registry, apiOpts), log.Named("api"))
		if err != nil {
			log.Error("cannot serve the api", "address", cfg.API.Address, "error", err)
			return 1
		}
		defer srv.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reload := (&daemon.Reloader{Path: *path, Running: cfg, Adjust: withFlags, Daemon: d,
		WithToken: func(t string) daemon.Source { return src.WithToken(t) }, Metrics: metrics, Log: log}).Reload
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var changes <-chan struct{}
	if *autoreload {
		changes = watchFiles(ctx, *path, time.Second)
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

	log.Info("starting", "version", versionString(), "config", *path, "pid", os.Getpid())
	if pair != nil {
		haDone := make(chan struct{})
		go func() { defer close(haDone); pair.run(ctx) }()
		defer func() { stop(); <-haDone }() // stepped down before the process goes
	}
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	if cfg.Director.CleanupOnExit {
		if err := d.Cleanup(); err != nil {
			log.Error("cleanup on exit failed", "error", err)
			return 1
		}
	}
	return 0
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
