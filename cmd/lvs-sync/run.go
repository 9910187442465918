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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/render"
)

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", commands()["run"].synopsis, stderr)
	path := fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)")
	level := fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error (default: the config's log_level, else info)")
	jsonLogs := fs.Bool("log-json", false, "log in JSON (default: the config's log_json)")
	autoreload := fs.Bool("autoreload", false, "reload the config when its files change, as on SIGHUP")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, ok := loadConfig(*path, fs, stderr)
	if !ok {
		return 1
	}
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
	kernel, err := ipvs.OpenNetlink(5*time.Second, log.Named("netlink"))
	if err != nil {
		log.Error("cannot reach the kernel's ipvs", "error", err)
		return 1
	}
	defer kernel.Close()
	own, err := daemon.LoadOwnership(cfg.Director.StateFile)
	if err != nil {
		log.Error("cannot read which services lvs-sync owns", "error", err)
		return 1
	}
	pages := &fallback.Server{Log: log.Named("fallback")}
	defer pages.Close()
	registry := prometheus.NewRegistry()
	metrics := daemon.NewMetrics(registry, versionString())
	opts := daemon.Options{Config: cfg, Health: client.Health(), Kernel: kernel, Ownership: own, Pages: pages,
		Metrics: metrics, Logger: log}
	if cfg.Director.VIPInterface != "" {
		opts.VIPs = &ipvs.VIPLink{Name: cfg.Director.VIPInterface, Log: log.Named("vip")}
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
			d.Reload(next)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		var changes <-chan struct{}
		if *autoreload {
			changes = watchFiles(ctx, *path, time.Second)
		}
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
	go func() {
		last := fingerprint()
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
	fs := newFlagSet("plan", commands()["plan"].synopsis, stderr)
	path := fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)")
	level := fs.String("log-level", "warn", "log `LEVEL`: trace, debug, info, warn or error")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for Consul")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	log := newLogger(stderr, *level, false)
	cfg, ok := loadConfig(*path, fs, stderr)
	if !ok {
		return 1
	}
	client, err := newConsulClient(cfg.Consul)
	if err != nil {
		log.Error("cannot set up the consul client", "error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	snap, err := catalog.Fetch(ctx, client.Health(), watchedServices(cfg), catalog.Options{
		Datacenter: cfg.Consul.Datacenter, Logger: log.Named("catalog"),
	})
	if err != nil {
		log.Error("cannot read the catalog", "error", err)
		return 1
	}
	res := render.Render(cfg, snap)
	logNotes(log.Named("render"), res.Notes)
	kernel, err := ipvs.OpenNetlink(5*time.Second, log.Named("netlink"))
	if err != nil {
		log.Error("cannot reach the kernel's ipvs", "error", err)
		return 1
	}
	defer kernel.Close()
	own, err := daemon.LoadOwnership(cfg.Director.StateFile)
	if err != nil {
		log.Error("cannot read which services lvs-sync owns", "error", err)
		return 1
	}
	owned := func(k ipvs.ServiceKey) bool { return own.Owns(k) || res.State[k] != nil }
	current, err := ipvs.Read(kernel, owned)
	if err != nil {
		log.Error("cannot read the kernel's ipvs table", "error", err)
		return 1
	}
	for _, op := range ipvs.Diff(res.State, current, owned) {
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
	level := fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if len(vips) == 0 {
		fmt.Fprintln(stderr, "-vip is required")
		fs.Usage()
		return 1
	}
	fwd, err := ipvs.ParseForward(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "-mode: %v\n", err)
		return 1
	}
	log := newLogger(stderr, *level, false)
	if err := ipvs.RealServer(vips, fwd, *remove, log.Named("realserver")); err != nil {
		log.Error("cannot configure the real server", "error", err)
		return 1
	}
	return 0
}
