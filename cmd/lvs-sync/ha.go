package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ha"
	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/internal/api"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// The ha verb and the wiring of director.ha into run.

func runHA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "handover" {
		fmt.Fprintln(stderr, "Usage: lvs-sync ha handover [options]\n\n  hand the active role to the standby director, make-before-break (for maintenance); run it on the active")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return 0
		}
		return 1
	}
	fs := newFlagSet("ha handover", "hand the active role to the standby director; run it on the active", stderr)
	f := addAPIFlags(fs)
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	cfg, addr, ok := f.resolve(stderr, fs)
	if !ok {
		return 1
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/ha/handover", bytes.NewReader(nil))
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg != nil && cfg.API.TokenFile != "" {
		token, err := config.ReadTokenFile("api", cfg.API.TokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := apiClient.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		err = errNotRunning
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		fmt.Fprintln(stderr, "Error: this lvs-sync runs without director.ha")
		return 1
	default:
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		fmt.Fprintf(stderr, "Error: handover refused: %s\n", e.Error)
		return 1
	}
	var v status.HAView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if *f.json {
		printJSON(stdout, v)
		return 0
	}
	fmt.Fprintf(stdout, "handed over: %s is %s; %s takes over\n", v.Name, v.Role, v.Peer)
	return 0
}

// haPair is this director's part of an HA pair, as run wires it: the
// pair, and the host that follows its role.
type haPair struct {
	*ha.Pair
	host *ha.Host
}

var _ api.HA = (*haPair)(nil)

// startHA sets the director up as a standby of the pair of cfg's
// director.ha: registered in Consul, heartbeat listening, VIPs off the
// interface and the backup sync daemon running. run then calls run.
//
// The pair has its own client to the agent, with its own connection
// budget (ha.Connections), so that its renewals never queue behind the
// catalog's feeds and sweeps; its calls carry the catalog's token as it
// is at each call (token), so that a token rotated by a reload reaches
// the lease, the registration and the discovery too.
func startHA(cfg *config.Config, token func() string, kernel ipvs.Kernel, reg prometheus.Registerer, log hclog.Logger) (*haPair, error) {
	h := cfg.Director.HA
	client, err := newHAConsulClient(cfg.Consul)
	if err != nil {
		return nil, err
	}
	name := h.Name
	if name == "" {
		if name, err = client.Agent().NodeName(); err != nil {
			return nil, fmt.Errorf("asking consul for this node's name: %w", err)
		}
	}
	addr, err := ha.InterfaceAddr(h.Interface)
	if err != nil {
		return nil, err
	}
	bind := netip.AddrPortFrom(addr, h.HeartbeatPort)
	daemons, err := ha.KernelSyncDaemons(kernel, h.SyncInterface, uint32(h.SyncID), log.Named("sync"))
	if err != nil {
		return nil, err
	}
	// On the interface, the VIPs lapse unless the active keeps them
	// (ha.Timings.VIPLifetime): a director that dies active loses them.
	onInterface := hostnet.NewAddrSet(h.Interface, nil, log.Named("vip")).WithLifetime(h.Timings.VIPLifetime())
	host := &ha.Host{Interface: h.Interface, Daemons: daemons,
		OnInterface: onInterface, OnLo: hostnet.NewAddrSet("lo", nil, log.Named("vip")),
		Announcer: hostnet.NewAnnouncer(log.Named("announce")), Sysctl: hostnet.ProcSys{}, Log: log}
	host.SetVIPs(cfg.VIPs())
	if err := host.Prepare(); err != nil {
		log.Error("standby set-up incomplete", "error", err)
	}
	lease := ha.NewConsulLease(client, h.LockKey, log.Named("lease"))
	lease.Token = token
	pair, err := ha.JoinPair(lease, bind, h.KeyFile, ha.Options{Name: name, Roles: host,
		Carrier: func() (bool, error) { return hostnet.Carrier(h.Interface) }, Timings: h.Timings, Reporter: metrics.NewHA(reg), Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("ha pair set up", "name", name, "lock_key", h.LockKey, "interface", h.Interface, "heartbeat", bind,
		"sync_interface", h.SyncInterface, "sync_id", h.SyncID,
		"heartbeat_interval", h.Timings.Heartbeat, "peer_timeout", h.Timings.PeerTimeout, "lease_ttl", h.Timings.TTL)
	return &haPair{Pair: pair, host: host}, nil
}

// newHAConsulClient is the pair's own client to the agent of the consul
// block, with its own transport of ha.Connections connections: none of
// the catalog's budget, and never behind it.
func newHAConsulClient(c config.Consul) (*consulapi.Client, error) {
	c.MaxConnections = ha.Connections
	client, err := newConsulClient(c)
	if err != nil {
		return nil, fmt.Errorf("the ha pair's consul client: %w", err)
	}
	return client, nil
}

// Handover is the API's handover.
func (p *haPair) Handover() error { return p.Runner.Handover() }

// HAStatus is the pair's part of status.
func (p *haPair) HAStatus() status.HAView { return status.HAOf(p.Runner.State()) }

// printJSON prints v indented, for -json.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// printHA is status's line about the pair.
func printHA(w io.Writer, v *status.HAView) {
	if v == nil {
		return
	}
	fmt.Fprintf(w, "ha: %s is %s", v.Name, v.Role)
	if v.Epoch > 0 {
		fmt.Fprintf(w, " (epoch %d)", v.Epoch)
	}
	holder := v.LockHolder
	if holder == "" {
		holder = "nobody"
	}
	fmt.Fprintf(w, "; lock holder %s (epoch %d); sync daemons %s", holder, v.LeaseEpoch, v.SyncDaemons)
	if v.Peer != "" {
		fmt.Fprintf(w, "; peer %s %s, heard %s ago", v.Peer, v.PeerRole, time.Since(v.PeerHeard).Round(time.Millisecond))
	}
	if !v.LastTakeover.IsZero() {
		fmt.Fprintf(w, "; last takeover %s", v.LastTakeover.Format(time.RFC3339))
	}
	if !v.ConsulOK {
		fmt.Fprint(w, "; consul unreachable")
	}
	if !v.Carrier {
		fmt.Fprint(w, "; no carrier")
	}
	if v.LeaseError != "" {
		fmt.Fprintf(w, "; lease writes refused: %s", v.LeaseError)
	}
	if v.Unready != "" {
		fmt.Fprintf(w, "; not ready to serve: %s", v.Unready)
	}
	if v.PeerUnready != "" {
		fmt.Fprintf(w, "; peer not ready to serve: %s", v.PeerUnready)
	}
	fmt.Fprintln(w)
}
