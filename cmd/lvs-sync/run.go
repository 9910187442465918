package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/fallback"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/render"
)

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", commands()["run"].synopsis, stderr)
	path := fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)")
	level := fs.String("log-level", "info", "log `LEVEL`: trace, debug, info, warn or error")
	json := fs.Bool("log-json", false, "log in JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	log := newLogger(stderr, *level, *json)
	cfg, ok := loadConfig(*path, fs, stderr)
	if !ok {
		return 1
	}
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
	opts := daemon.Options{Config: cfg, Health: client.Health(), Kernel: kernel, Ownership: own, Pages: pages, Logger: log}
	if cfg.Director.VIPInterface != "" {
		opts.VIPs = &ipvs.VIPLink{Name: cfg.Director.VIPInterface, Log: log.Named("vip")}
	}
	d, err := daemon.New(opts)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("starting", "version", versionString(), "config", *path, "pid", os.Getpid())
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	return 0
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
