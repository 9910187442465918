package main

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/ipvs"
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

	client, err := newConsulClient(cfg.Consul)
	if err != nil {
		log.Error("cannot set up the consul client", "error", err)
		return 1
	}
	var kernel ipvs.Kernel
	stateFile := cfg.Director.StateFile
	if *dryRun {
		log.Warn("dry run: changes go to an in-memory table, not the kernel; no vip, page or state file is touched")
		kernel = ipvs.NewFakeKernel(ipvs.State{})
		stateFile = ""
	} else {
		nl, err := ipvs.OpenNetlink(5*time.Second, log.Named("netlink"))
		if err != nil {
			log.Error("cannot reach the kernel's ipvs", "error", err)
			return 1
		}
		defer nl.Close()
		kernel = nl
	}
	own, err := daemon.LoadOwnership(stateFile)
	if err != nil {
		log.Error("cannot read which services lvs-sync owns", "error", err)
		return 1
	}
	registry := prometheus.NewRegistry()
	metrics := daemon.NewMetrics(registry, versionString())
	src := consul.NewSource(client, consul.Options{Datacenter: cfg.Consul.Datacenter, MaxConnections: cfg.Consul.MaxConnections, Logger: log.Named("catalog")})
	opts := daemon.Options{Config: cfg, Source: src, Kernel: kernel, Ownership: own, Metrics: metrics, Logger: log}
	if !*dryRun {
		pages := &fallback.Server{Log: log.Named("fallback")}
		defer pages.Close()
		opts.Pages = pages
		if cfg.Director.VIPInterface != "" {
			opts.VIPs = &ipvs.VIPLink{Name: cfg.Director.VIPInterface, Log: log.Named("vip")}
		}
	}
	d, err := daemon.New(opts)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if cfg.API.Address != "" {
		srv, err := api.Serve(cfg.API.Address, api.Handler(d, registry), log.Named("api"))
		if err != nil {
			log.Error("cannot serve the api", "address", cfg.API.Address, "error", err)
			return 1
		}
		defer srv.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reload := func(why string) {
		next, err := config.Load(*path)
		var diags *config.DiagnosticsError
		switch {
		case errors.As(err, &diags):
			metrics.ConfigReload(false)
			log.Error("config reload rejected; the running config stays", "trigger", why, "config", *path, "problems", len(diags.Diags))
			for _, line := range strings.Split(diags.Error(), "\n") {
				log.Error("config problem", "diagnostic", line)
			}
		case err != nil:
			metrics.ConfigReload(false)
			log.Error("config reload rejected; the running config stays", "trigger", why, "error", err)
		default:
			metrics.ConfigReload(true)
			log.Info("config reloaded", "trigger", why, "config", *path, "virtual_services", len(next.VirtualServices))
			d.Reload(withFlags(next))
		}
	}
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
		files := []string{path}
		if info, err := os.Stat(path); err == nil && info.IsDir() {
			files, _ = filepath.Glob(filepath.Join(path, "*.hcl"))
		}
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
	kernel, err := ipvs.OpenNetlink(5*time.Second, c.log.Named("netlink"))
	if err != nil {
		c.log.Error("cannot reach the kernel's ipvs", "error", err)
		return 1
	}
	defer kernel.Close()
	own, err := daemon.LoadOwnership(c.cfg.Director.StateFile)
	if err != nil {
		c.log.Error("cannot read which services lvs-sync owns", "error", err)
		return 1
	}
	owned := func(k lvs.ServiceKey) bool { return own.Owns(k) || c.res.State[k] != nil }
	current, err := ipvs.Read(kernel, owned)
	if err != nil {
		c.log.Error("cannot read the kernel's ipvs table", "error", err)
		return 1
	}
	for _, op := range ipvs.Diff(c.res.State, current.Filter(owned), owned) {
		fmt.Fprintln(stdout, op)
	}
	return 0
}

func runRealServer(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("realserver", commands()["realserver"].synopsis, stderr)
	var vips []netip.Addr
	fs.Func("vip", "a VIP this real server serves (repeat, or separate with commas)", func(s string) error {
		for _, p := range strings.Split(s, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("%q is not an IP address", p)
			}
			vips = append(vips, a.Unmap())
		}
		return nil
	})
	mode := fs.String("mode", "gate", "forwarding `METHOD` of the virtual services: gate or ipip")
	remove := fs.Bool("remove", false, "take the VIPs off again (the sysctls stay)")
	hold := fs.Bool("hold", false, "keep running: apply again every -interval, and take the VIPs off on SIGTERM (for a Nomad system job)")
	interval := fs.Duration("interval", 30*time.Second, "with -hold, how often to apply again")
	level := fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if len(vips) == 0 {
		fmt.Fprintln(stderr, "-vip is required")
		fs.Usage()
		return 1
	}
	fwd, err := lvs.ParseForward(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "-mode: %v\n", err)
		return 1
	}
	log := newLogger(stderr, *level, false).Named("realserver")
	if err := ipvs.RealServer(vips, fwd, *remove, log); err != nil {
		log.Error("cannot configure the real server", "error", err)
		return 1
	}
	if !*hold || *remove {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := ipvs.RealServer(vips, fwd, true, log); err != nil {
				log.Error("cannot take the vips off", "error", err)
				return 1
			}
			return 0
		case <-t.C:
			if err := ipvs.RealServer(vips, fwd, false, log.With("reapply", true)); err != nil {
				log.Error("cannot configure the real server", "error", err)
			}
		}
	}
}
