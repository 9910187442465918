package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/ownership"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/ipvs/genl"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// apiFlags are the flags of the commands that ask a running lvs-sync.
type apiFlags struct {
	api    *string
	config *string
	json   *bool
}

func addAPIFlags(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		api:    fs.String("api", "", "`ADDRESS` of the running lvs-sync's API (default: the config's api block, else "+config.DefaultAPIAddress+")"),
		config: fs.String("config", "", "config `PATH`, for the API address and token and, without a running lvs-sync, the names of its services"),
		json:   fs.Bool("json", false, "print JSON, for scripts"),
	}
}

// resolve loads the config if given and picks the API address.
func (f apiFlags) resolve(stderr io.Writer, fs *flag.FlagSet) (*config.Config, string, bool) {
	var cfg *config.Config
	if *f.config != "" {
		var ok bool
		if cfg, ok = loadConfig(*f.config, fs, stderr); !ok {
			return nil, "", false
		}
	}
	addr := *f.api
	if addr == "" && cfg != nil {
		addr = cfg.API.Address
	}
	if addr == "" {
		addr = config.DefaultAPIAddress
	}
	return cfg, addr, true
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

// getJSON fetches a path of the API into v. A refused connection is
// errNotRunning.
func getJSON(addr, path string, v any) error {
	resp, err := apiClient.Get("http://" + addr + path)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errNotRunning
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

var errNotRunning = errors.New("lvs-sync is not running (nothing listens on its API)")

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", commands()["status"].synopsis, stderr)
	f := addAPIFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, addr, ok := f.resolve(stderr, fs)
	if !ok {
		return 1
	}
	var st status.View
	err := getJSON(addr, "/v1/status", &st)
	live := err == nil
	if errors.Is(err, errNotRunning) {
		st, err = kernelStatus(cfg, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if *f.json {
		printJSON(stdout, st)
		return 0
	}
	printStatus(stdout, st, live)
	return 0
}

// kernelStatus is the status without a running lvs-sync: the kernel's
// table, named from the config and its state file when one is given.
func kernelStatus(cfg *config.Config, stderr io.Writer) (status.View, error) {
	k, err := genl.Open(5*time.Second, nil)
	if err != nil {
		return status.View{}, err
	}
	defer k.Close()
	current, err := ipvs.Read(k, nil)
	if err != nil {
		return status.View{}, err
	}
	in := status.Input{Config: cfg}
	if cfg != nil {
		own, err := ownership.Load(cfg.Director.StateFile) // a reader: no lock
		switch {
		case errors.Is(err, ownership.ErrUnknown):
			// Shown, and every service counts as foreign, as run treats them.
			fmt.Fprintf(stderr, "Warning: %v\n", err)
		case err != nil:
			return status.View{}, err
		}
		in.Owns = own.Owns
	}
	return status.View{Services: status.Services(current, in)}, nil
}

// ipvsadmForward names a method as ipvsadm -Ln does.
func ipvsadmForward(name string) string {
	if f, ok := lvs.ParseForwardName(name); ok {
		return f.IpvsadmName()
	}
	return name
}

func printStatus(w io.Writer, st status.View, live bool) {
	switch {
	case !live:
		fmt.Fprintln(w, "lvs-sync is not running: the kernel's table alone")
	case st.Synced.IsZero():
		fmt.Fprintln(w, "lvs-sync is running but has not synced yet")
	default:
		fmt.Fprintf(w, "lvs-sync: last sync %s ago", time.Since(st.LastSync).Round(time.Second))
		if st.LastError != "" {
			fmt.Fprintf(w, ", failed: %s", st.LastError)
		}
		fmt.Fprintln(w)
	}
	printHA(w, st.HA)
	printBGP(w, st.BGP, time.Now())
	for _, warning := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	if len(st.Pending) > 0 {
		fmt.Fprintf(w, "pending: %d changes the next sync makes:\n", len(st.Pending))
		for _, p := range st.Pending {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintf(w, "%-42s %s\n", "Prot LocalAddress:Port Scheduler Flags", "Virtual service (catalog service)")
	fmt.Fprintf(w, "  -> %-22s %-7s %-6s %-10s %-9s %s\n", "RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn", "Node / Instance / Health / Weight source")
	for _, s := range st.Services {
		flags := ""
		if s.Persistence > 0 {
			flags = fmt.Sprintf(" persistent %d", s.Persistence)
		}
		if s.Netmask != "" {
			flags += " mask " + s.Netmask
		}
		if s.OnePacket {
			flags += " ops"
		}
		if ipvs.OrderMatters(s.Scheduler) {
			// What directors of an all-active tier must agree on.
			flags += " fingerprint " + s.Fingerprint
		}
		head := fmt.Sprintf("%-4s %s %s%s", strings.ToUpper(s.Protocol), s.Address, s.Scheduler, flags)
		label := "(foreign: not lvs-sync's)"
		switch {
		case s.Conflict:
			label = fmt.Sprintf("%s (%s) (conflict: made by someone else, left untouched; adopt = true takes it over)", s.Name, serviceLabel(s))
		case s.Name != "":
			label = fmt.Sprintf("%s (%s)", s.Name, serviceLabel(s))
		case !s.Foreign:
			label = ""
		}
		fmt.Fprintf(w, "%-42s %s\n", head, label)
		for _, r := range s.Reals {
			who := ""
			if s.Name != "" {
				who = strings.Join(nonEmpty(r.Node, r.InstanceID, r.Health, string(r.Source)), " / ")
			}
			fmt.Fprintf(w, "  -> %-22s %-7s %-6d %-10d %-9d %s\n", r.Address, ipvsadmForward(r.Forwarding), r.Weight, r.ActiveConns, r.InactiveConns, who)
		}
	}
}

// printBGP is status's part about a bgp director: what it announces, each
// router's session, and each VIP not announced with why.
func printBGP(w io.Writer, v *status.BGPView, now time.Time) {
	if v == nil {
		return
	}
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Second).String() }
	fmt.Fprintf(w, "bgp: announcing %d of %d vips", len(v.Announced), len(v.VIPs))
	if len(v.Announced) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(v.Announced, ", "))
	}
	fmt.Fprintln(w)
	for _, n := range v.Neighbors {
		fmt.Fprintf(w, "  neighbor %s (AS %d): %s", n.Address, n.ASN, n.State)
		switch {
		case n.State == status.Established:
			fmt.Fprintf(w, " for %s", (time.Duration(n.Uptime) * time.Second).String())
		case !n.Since.IsZero():
			fmt.Fprintf(w, " since %s ago", ago(n.Since))
		}
		fmt.Fprintf(w, ", %d prefixes sent", n.Announced)
		if n.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", n.LastError)
		}
		fmt.Fprintln(w)
	}
	for _, vip := range v.VIPs {
		if vip.Announced {
			continue
		}
		fmt.Fprintf(w, "  vip %s not announced: %s", vip.Address, vip.Reason)
		if !vip.Since.IsZero() {
			fmt.Fprintf(w, " (for %s)", ago(vip.Since))
		}
		fmt.Fprintln(w)
	}
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", commands()["explain"].synopsis, stderr)
	f := addAPIFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lvs-sync explain [options] SERVICE [REAL]\n\n  %s\n\n"+
			"  SERVICE is a virtual_service label; REAL narrows it to one real server or instance:\n"+
			"  its address (IP:PORT), instance ID or node.\n\nOptions:\n", commands()["explain"].synopsis)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 1
	}
	_, addr, ok := f.resolve(stderr, fs)
	if !ok {
		return 1
	}
	var ex status.Explanation
	if err := getJSON(addr, "/v1/explain/"+fs.Arg(0), &ex); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if filter := fs.Arg(1); filter != "" {
		var kept []status.InstanceView
		for _, in := range ex.Instances {
			if in.Real == filter || in.ID == filter || in.Node == filter || fmt.Sprintf("%s:%d", in.Address, in.Port) == filter {
				kept = append(kept, in)
			}
		}
		var others []status.RealView
		for _, r := range ex.Others {
			if r.Address == filter {
				others = append(others, r)
			}
		}
		if len(kept)+len(others) == 0 {
			fmt.Fprintf(stderr, "Error: virtual_service %q has no real server or instance %q\n", ex.Name, filter)
			return 1
		}
		ex.Instances, ex.Others = kept, others
	}
	if *f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ex)
		return 0
	}
	printExplanation(stdout, ex)
	return 0
}

// serviceLabel names a service's catalog service: Consul's by its name,
// Nomad's as such.
func serviceLabel(s status.ServiceView) string {
	if s.NomadService != "" {
		return "nomad: " + s.NomadService
	}
	return s.ConsulService
}

// failingChecks names the checks that are not passing, for the health
// line: what took the instance out. Consul calls a good check passing,
// Nomad success.
func failingChecks(checks []catalog.Check) string {
	var names []string
	for _, c := range checks {
		if c.Status != string(catalog.Passing) && c.Status != "success" {
			names = append(names, fmt.Sprintf("%q %s", cmp.Or(c.Name, c.CheckID), c.Status))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (failing: " + strings.Join(names, ", ") + ")"
}

func printExplanation(w io.Writer, ex status.Explanation) {
	catalogName, service := "Consul", ex.ConsulService
	if ex.NomadService != "" {
		catalogName, service = "Nomad", ex.NomadService
	}
	fmt.Fprintf(w, "virtual_service %q: %s, %s service %q, forwarding %s, scheduler %s\n",
		ex.Name, ex.Key, catalogName, service, ex.Forwarding, ex.Scheduler)
	if len(ex.Instances) == 0 {
		fmt.Fprintf(w, "\n%s has no instance of it.\n", catalogName)
	}
	for _, in := range ex.Instances {
		state := "OUT"
		if in.In {
			state = fmt.Sprintf("IN as real %s, weight %d", in.Real, in.Weight)
		}
		fmt.Fprintf(w, "\ninstance %s on node %s (%s:%d): %s\n", in.ID, in.Node, in.Address, in.Port, state)
		if in.Allocation != "" {
			fmt.Fprintf(w, "  allocation: %s\n", in.Allocation)
		}
		fmt.Fprintf(w, "  health: %s%s\n", in.Health, failingChecks(in.Checks))
		if len(in.Checks) > 0 {
			fmt.Fprintln(w, "  checks:")
			for _, c := range in.Checks {
				fmt.Fprintf(w, "    %-10s %-24s %q: %q\n", c.Status, c.CheckID, c.Name, strings.TrimSpace(c.Output))
			}
		}
		fmt.Fprintf(w, "  rule: %s\n", in.Rule)
		if in.Warning != "" {
			fmt.Fprintf(w, "  warning: %s\n", in.Warning)
		}
		if k := in.Kernel; k != nil {
			fmt.Fprintf(w, "  in the kernel: %s weight %d (%s), %d active and %d inactive connections\n",
				ipvsadmForward(k.Forwarding), k.Weight, k.Source, k.ActiveConns, k.InactiveConns)
		} else if in.In {
			fmt.Fprintln(w, "  in the kernel: not yet")
		}
		if !in.Changed.IsZero() {
			fmt.Fprintf(w, "  last changed: %s (%s ago)\n", in.Changed.UTC().Format(time.RFC3339), time.Since(in.Changed).Round(time.Second))
		}
	}
	for _, r := range ex.Others {
		why := string(r.Source)
		switch r.Source {
		case render.SourceFallback:
			why = "the fallback: no instance has a weight above 0"
		case render.SourceDraining:
			why = "draining: its instance left; deleted when its connections end or drain_timeout passes"
			if !r.DrainingSince.IsZero() {
				why += fmt.Sprintf(" (since %s)", r.DrainingSince.UTC().Format(time.RFC3339))
			}
		}
		fmt.Fprintf(w, "\nreal %s, no instance: %s\n  in the kernel: %s weight %d, %d active and %d inactive connections\n",
			r.Address, why, ipvsadmForward(r.Forwarding), r.Weight, r.ActiveConns, r.InactiveConns)
	}
}
