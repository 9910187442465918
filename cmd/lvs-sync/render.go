package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/render"
)

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", commands()["validate"].synopsis, stderr)
	path := fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)")
	withCatalog := fs.Bool("catalog", false, "also read the catalog once and warn about each instance render would leave out or change, "+
		"or keep at a port it does not listen on (gate and ipip)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the catalogs (Consul, Nomad), with -catalog")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, ok := loadConfig(*path, fs, stderr)
	if !ok {
		return 1
	}
	if cfg.Warnings != nil {
		_ = cfg.Warnings.Write(stderr, 100, false) // valid all the same: exit 0
	}
	fmt.Fprintf(stdout, "config %s is valid: %d virtual services\n", *path, len(cfg.VirtualServices))
	if !*withCatalog {
		return 0
	}
	// At info: a long read of the catalog says how far it is (catalog
	// sources log nothing else at info while they read once).
	log := newLogger(stderr, "info", false)
	res, ok := readAndRender(cfg, log, *timeout)
	if !ok {
		return 1
	}
	instances := 0
	for _, ds := range res.Decisions {
		instances += len(ds)
	}
	// Warnings, not errors: the catalog changes, the config stays valid.
	notes := res.Notes()
	for _, n := range notes {
		fmt.Fprintf(stderr, "warning: %s\n", n)
	}
	fmt.Fprintf(stdout, "catalog: %d instances of %d virtual services, %d warnings\n", instances, len(cfg.VirtualServices), len(notes))
	return 0
}

func runRender(args []string, stdout, stderr io.Writer) int {
	c, code := renderCatalog("render", args, stderr)
	if c == nil {
		return code
	}
	fmt.Fprint(stdout, c.res.State.String())
	return 0
}

// rendered is what render and plan start from: the config and the desired
// state rendered from one read of the catalog.
type rendered struct {
	cfg *config.Config
	res render.Result
	log hclog.Logger
}

// renderCatalog parses the flags render and plan share, loads the config,
// reads the catalog once and renders it. On failure it returns nil and the
// exit code.
func renderCatalog(name string, args []string, stderr io.Writer) (*rendered, int) {
	fs := newFlagSet(name, commands()[name].synopsis, stderr)
	path := fs.String("config", "", "config `PATH`: a file, or a directory of *.hcl files (required)")
	level := fs.String("log-level", "warn", "log `LEVEL`: trace, debug, info, warn or error")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the catalogs (Consul, Nomad)")
	if code, ok := parseFlags(fs, args); !ok {
		return nil, code
	}
	log := newLogger(stderr, *level, false)
	cfg, ok := loadConfig(*path, fs, stderr)
	if !ok {
		return nil, 1
	}
	res, ok := readAndRender(cfg, log, *timeout)
	if !ok {
		return nil, 1
	}
	logNotes(log.Named("render"), res.Notes())
	return &rendered{cfg: cfg, res: res, log: log}, 0
}

// readAndRender reads the catalogs the config's services are in once
// (only those: a config of Nomad services never asks Consul) and renders
// them; it logs why not.
func readAndRender(cfg *config.Config, log hclog.Logger, timeout time.Duration) (render.Result, bool) {
	src, err := newCatalogs(cfg, false, os.Getenv, log)
	if err != nil {
		log.Error("cannot set up the catalogs", "error", err)
		return render.Result{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	snap, err := src.Fetch(ctx, cfg.Services())
	if err != nil {
		log.Error("cannot read the catalog", "error", err)
		return render.Result{}, false
	}
	return render.Render(cfg, snap), true
}

// loadConfig loads the config at path and prints its diagnostics if any.
func loadConfig(path string, fs *flag.FlagSet, stderr io.Writer) (*config.Config, bool) {
	if path == "" {
		fmt.Fprintln(stderr, "-config is required")
		fs.Usage()
		return nil, false
	}
	cfg, err := config.Load(path)
	var diags *config.DiagnosticsError
	switch {
	case errors.As(err, &diags):
		_ = diags.Write(stderr, 100, false)
		return nil, false
	case err != nil:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return nil, false
	}
	return cfg, true
}

func logNotes(log hclog.Logger, notes []render.Note) {
	for _, n := range notes {
		msg, kv := n.Log()
		log.Warn(msg, kv...)
	}
}

// newConsulClient builds a client from the CONSUL_* environment, as the
// consul CLI does, with the config's consul block on top.
func newConsulClient(c config.Consul) (*api.Client, error) {
	conf := api.DefaultConfig()
	if c.Address != "" {
		conf.Address = c.Address
	}
	if c.Datacenter != "" {
		conf.Datacenter = c.Datacenter
	}
	if c.TokenFile != "" {
		conf.TokenFile = c.TokenFile
		conf.Token = "" // the file wins over $CONSUL_HTTP_TOKEN, as in consul/api
	}
	if c.CAFile != "" {
		conf.TLSConfig.CAFile = c.CAFile
	}
	if c.CertFile != "" {
		conf.TLSConfig.CertFile = c.CertFile
		conf.TLSConfig.KeyFile = c.KeyFile
	}
	if c.ServerName != "" {
		conf.TLSConfig.Address = c.ServerName
	}
	if c.CAFile != "" || c.CertFile != "" {
		conf.Scheme = "https"
	}
	consul.LimitConnections(conf, c.MaxConnections)
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("consul at %s: %w", conf.Address, err)
	}
	return client, nil
}

func newLogger(w io.Writer, level string, json bool) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "lvs-sync",
		Level:      hclog.LevelFromString(level),
		Output:     w,
		JSONFormat: json,
	})
}
