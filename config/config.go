// Package config reads lvs-sync's HCL configuration: the Consul and Nomad
// connections, the director's own settings and the virtual services to
// keep in the kernel. Every problem found is reported, each with its file,
// line, column and field, as hcl.Diagnostics.
//
// It is the first stage of the pipeline config → catalog → render → ipvs and
// knows nothing of the later ones: it may import the standard library,
// hashicorp/hcl, lvs-sync's leaf vocabulary package lvs and the leaf
// ha/timings (the HA pair's timing rules, so that validate refuses the
// timings ha would run unsafely), and nothing else of lvs-sync (not ipvs,
// catalog, render, ha or bgp itself: the bgp block is config's own BGP,
// which cmd maps onto the speaker's).
//
// The files: config.go the public types and their accessors, load.go
// reading files and ordering diagnostics, decode.go and blocks.go the HCL
// schema and the decoding of each block, values.go the parsing and
// validation of single values, diagnostics.go how problems are shown,
// bgp.go the bgp block and what an all-active tier warns of, nomad.go the
// nomad block, a virtual service's provider and its catalog key.
package config

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/lvs-sync/lvs-sync/ha/timings"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// Config is a validated lvs-sync configuration.
type Config struct {
	Consul Consul
	// Nomad is the nomad block; its zero value (no block) is the NOMAD_*
	// environment's defaults.
	Nomad    Nomad
	Director Director
	API      API
	// LogLevel and LogJSON, when set, are the default of run's -log-level
	// and -log-json.
	LogLevel string
	LogJSON  bool
	// VirtualServices in the order they were declared, files in name order.
	VirtualServices []*VirtualService
	// Warnings are what is valid but likely unwanted (sh without
	// sh-fallback), with the sources to show them; nil when none.
	Warnings *DiagnosticsError

	// index finds a virtual service by name and by key; built on first
	// use, as a config is never changed once loaded.
	index struct {
		once   sync.Once
		byName map[string]*VirtualService
		byKey  map[lvs.ServiceKey]*VirtualService
	}
}

func (c *Config) indexed() {
	c.index.once.Do(func() {
		c.index.byName = make(map[string]*VirtualService, len(c.VirtualServices))
		c.index.byKey = make(map[lvs.ServiceKey]*VirtualService, len(c.VirtualServices))
		for _, vs := range c.VirtualServices {
			c.index.byName[vs.Name] = vs
			c.index.byKey[vs.Key()] = vs
		}
	})
}

// Consul says how to reach the Consul agent. Empty fields fall back to the
// CONSUL_* environment variables, as the consul/api client does.
type Consul struct {
	Address    string
	TokenFile  string
	Datacenter string
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	// MaxConnections caps the TCP connections to the agent, whatever the
	// number of services watched (max_connections; 0 is the default, 8).
	MaxConnections int
}

// API is lvs-sync's local HTTP API: /v1/status, /v1/health, /metrics,
// and for an HA pair /v1/ha and POST /v1/ha/handover.
type API struct {
	// Address to listen on; "" turns the API off.
	Address string
	// ConsulUnreachableAfter is how long Consul may fail to answer before
	// /v1/health reports lvs-sync unhealthy.
	ConsulUnreachableAfter time.Duration
	// TokenFile holds the bearer token of the calls that change state
	// (POST /v1/ha/handover); without it they are refused.
	TokenFile string
}

// Director holds the settings of the director host itself.
type Director struct {
	// VIPInterface is the dummy link lvs-sync owns and puts its VIPs on;
	// empty means lvs-sync does not manage VIPs.
	VIPInterface string
	// ReconcileInterval is how often the whole kernel table is compared
	// with the desired state even when Consul is quiet, to repair drift
	// (a real deleted by hand); jitter of up to a tenth is added.
	ReconcileInterval time.Duration
	// StateFile records the virtual services lvs-sync made, so that one
	// removed from the config is deleted after a restart too.
	StateFile string
	// CleanupOnExit removes what lvs-sync made when it stops
	// (ldirectord's cleanstop); by default the kernel is left as it is.
	CleanupOnExit bool
	// TuneSysctls sets, at start, the kernel settings the virtual services
	// need (expire_nodest_conn, ...); by default lvs-sync only warns.
	TuneSysctls bool
	// HA, when set, makes this director one of an active/standby pair.
	HA *HA
	// BGP, when set, makes this director one of an all-active tier that
	// announces its VIPs to routers; exclusive with HA.
	BGP *BGP
}

// HA is director's ha block: the pair contends for LockKey in Consul;
// the active puts the VIPs on Interface; both run the kernel's
// connection sync on SyncInterface with SyncID.
type HA struct {
	LockKey       string
	Interface     string
	SyncInterface string // default: Interface
	SyncID        uint8  // default 1
	// HeartbeatPort is where the heartbeat listens, on Interface's
	// address (heartbeat_port, default 7947).
	HeartbeatPort uint16
	// Name is this director's name in the pair (name; default: its Consul
	// agent's node name, which is unique when each director has its own).
	Name string
	// KeyFile holds the heartbeat's key (key_file: base64 of 16, 24 or
	// 32 bytes, as `consul keygen` prints); "" keeps it in Consul KV at
	// LockKey + "/heartbeat-key", made by the first director.
	KeyFile string
	// Timings are the pair's periods: heartbeat_interval, peer_timeout,
	// renew_interval and lease_ttl, each defaulting to the design's.
	Timings   timings.Timings
	DeclRange hcl.Range
}

// VirtualService is one IPVS virtual service and the catalog service
// (Consul's, or Nomad's) whose healthy instances are its real servers.
type VirtualService struct {
	Name string
	// Protocol and Address are what the service balances; for a
	// firewall-mark service Protocol is 0 and Address is its family's
	// unspecified address with port 0 (0.0.0.0:0 or [::]:0), as in its
	// lvs.ServiceKey.
	Protocol lvs.Protocol
	Address  netip.AddrPort
	// FWMark, when not 0, makes this a firewall-mark service (ipvsadm -f):
	// it takes the packets the operator's nftables or iptables rules mark,
	// and its reals keep each packet's destination port.
	FWMark uint32
	// VIPs are a firewall-mark service's vips, the addresses its rule
	// marks packets to (required with vip_interface or ha); nil for an
	// address service (see VIPAddrs).
	VIPs      []netip.Addr
	Scheduler string
	// SchedulerFlags are scheduler_flags, ipvsadm's -b: sh-fallback, ...
	SchedulerFlags lvs.SchedFlags
	Forwarding     lvs.Forward
	Persistence    time.Duration
	// PersistenceNetmask is persistence_netmask as a prefix length (ipvsadm
	// -M): clients within one such prefix share a persistence template,
	// and so a real. 0 is the host mask, each client on its own.
	PersistenceNetmask int
	// OnePacket is ops, one-packet scheduling (ipvsadm -o): each UDP
	// datagram is scheduled on its own, with no connection entry kept.
	OnePacket bool
	// UpperThreshold and LowerThreshold are upper_threshold and
	// lower_threshold (ipvsadm -x, -y): every real's connection thresholds
	// unless its instance's Consul meta lvs-upper-threshold or
	// lvs-lower-threshold says otherwise. 0 is none.
	UpperThreshold, LowerThreshold uint32
	// Service is the service's name in its provider's catalog; CatalogKey
	// is its name in a snapshot.
	Service string
	// Provider is the catalog Service is registered in: ProviderConsul
	// (the default) or ProviderNomad.
	Provider  string
	Tags      []string
	Quiescent bool
	// Adopt lets lvs-sync take over a virtual service at this address that
	// the kernel already has and lvs-sync did not make; without it such a
	// service is a conflict, left untouched.
	Adopt    bool
	Fallback Fallback
	// MaintenancePage is the html/template of the local fallback page, as
	// read from maintenance_page; empty for the built-in one.
	MaintenancePage     string
	MaintenancePagePath string
	// MaxRemoval is how much of a virtual service's reals one update may
	// remove because their instances vanished from the catalog (not for
	// their health) before those reals are held for RemovalHold.
	MaxRemoval Limit
	// RemovalHold is how long vanished reals over MaxRemoval are held as
	// they were; 0 turns the guard off.
	RemovalHold time.Duration
	// DrainTimeout bounds how long a leaving real server keeps weight 0
	// for its connections to finish before it is deleted.
	DrainTimeout time.Duration
	// Hold keeps an instance that was critical out until it has stayed
	// passing this long (flap damping); 0 is off.
	Hold time.Duration
	// SlowStart ramps a new or recovered instance's weight from 1 to its
	// full weight over this time; 0 is off.
	SlowStart time.Duration
	// OnWarning is what an instance in warning gets.
	OnWarning OnWarning
	// DeclRange is where the block is declared, for messages about it.
	DeclRange hcl.Range
}

// VirtualService returns the virtual service of that name, or nil.
func (c *Config) VirtualService(name string) *VirtualService {
	c.indexed()
	return c.index.byName[name]
}

// VirtualServiceAt returns the virtual service with that kernel key, or nil.
func (c *Config) VirtualServiceAt(k lvs.ServiceKey) *VirtualService {
	c.indexed()
	return c.index.byKey[k]
}

// Services lists the catalog key (CatalogKey) of every virtual service's
// service, in order: what a source watches; a service two virtual
// services share is listed twice.
func (c *Config) Services() []string {
	names := make([]string, 0, len(c.VirtualServices))
	for _, vs := range c.VirtualServices {
		names = append(names, vs.CatalogKey())
	}
	return names
}

// Key is the identity of the virtual service in the kernel.
func (vs *VirtualService) Key() lvs.ServiceKey {
	if vs.FWMark != 0 {
		return lvs.ServiceKey{FWMark: vs.FWMark, Addr: vs.Address.Addr()}
	}
	return lvs.ServiceKey{Protocol: vs.Protocol, Addr: vs.Address.Addr(), Port: vs.Address.Port()}
}

// VirtualName is the virtual address as messages name it: "10.0.0.1", or
// "fwmark:1 (IPv4)" for a mark, whose Address is only its family's.
func (vs *VirtualService) VirtualName() string {
	switch {
	case vs.FWMark != 0 && vs.Address.Addr().Is6():
		return vs.Key().String() + " (IPv6)"
	case vs.FWMark != 0:
		return vs.Key().String() + " (IPv4)"
	}
	return vs.Address.Addr().String()
}

// VIPAddrs are the addresses clients reach the service at, which the
// director must have: an address service's address, a firewall-mark
// service's vips.
func (vs *VirtualService) VIPAddrs() []netip.Addr {
	if vs.FWMark != 0 {
		return vs.VIPs
	}
	return []netip.Addr{vs.Address.Addr()}
}

// SameDefinition reports whether two virtual services are defined alike,
// field for field, wherever in the files they were declared: what a
// reload leaves as it was. TestSameDefinitionComparesEveryField changes
// each field in turn, so that a field added later is not forgotten here.
func (vs *VirtualService) SameDefinition(o *VirtualService) bool {
	return vs == o || vs.Name == o.Name && vs.Protocol == o.Protocol && vs.Address == o.Address && vs.FWMark == o.FWMark &&
		slices.Equal(vs.VIPs, o.VIPs) && vs.Scheduler == o.Scheduler && vs.SchedulerFlags == o.SchedulerFlags &&
		vs.Forwarding == o.Forwarding && vs.Persistence == o.Persistence && vs.PersistenceNetmask == o.PersistenceNetmask &&
		vs.OnePacket == o.OnePacket && vs.UpperThreshold == o.UpperThreshold && vs.LowerThreshold == o.LowerThreshold &&
		vs.Service == o.Service && vs.Provider == o.Provider && slices.Equal(vs.Tags, o.Tags) && vs.Quiescent == o.Quiescent &&
		vs.Adopt == o.Adopt && vs.Fallback == o.Fallback && vs.MaintenancePage == o.MaintenancePage &&
		vs.MaintenancePagePath == o.MaintenancePagePath && vs.MaxRemoval == o.MaxRemoval && vs.RemovalHold == o.RemovalHold &&
		vs.DrainTimeout == o.DrainTimeout && vs.Hold == o.Hold && vs.SlowStart == o.SlowStart && vs.OnWarning == o.OnWarning
}

// VIPs are the addresses of every virtual service (VIPAddrs), sorted,
// each once: what an HA director puts on its interface while active.
func (c *Config) VIPs() []netip.Addr {
	var out []netip.Addr
	for _, vs := range c.VirtualServices {
		for _, a := range vs.VIPAddrs() {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Fallback is the real server of last resort. The zero value is none.
type Fallback struct {
	// Local means lvs-sync's own maintenance page.
	Local bool
	// Addr is a remote fallback server, when not Local; port 0 (a
	// firewall-mark service's) keeps each packet's destination port.
	Addr netip.AddrPort
}

// IsSet reports whether a fallback is configured.
func (f Fallback) IsSet() bool { return f.Local || f.Addr.IsValid() }

func (f Fallback) String() string {
	switch {
	case f.Local:
		return "local"
	case f.Addr.IsValid() && f.Addr.Port() == 0:
		return f.Addr.Addr().String() // a fwmark service's: the packet's port
	case f.Addr.IsValid():
		return f.Addr.String()
	}
	return ""
}

// Limit is a share of a whole ("50%") or a count ("3").
type Limit struct {
	// Percent, or Count when Percent is false.
	Value   int
	Percent bool
}

// DefaultMaxRemoval is max_removal's default: half of a service's reals.
var DefaultMaxRemoval = Limit{Value: 50, Percent: true}

// Exceeded reports whether n of total goes over the limit.
func (l Limit) Exceeded(n, total int) bool {
	if l.Percent {
		return n*100 > l.Value*total
	}
	return n > l.Value
}

func (l Limit) String() string {
	if l.Percent {
		return fmt.Sprintf("%d%%", l.Value)
	}
	return fmt.Sprint(l.Value)
}

// Defaults of optional attributes.
const (
	DefaultProtocol          = "tcp"
	DefaultScheduler         = "wlc"
	DefaultReconcileInterval = 60 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultRemovalHold       = 10 * time.Second
	DefaultAPIAddress        = "127.0.0.1:9337"
	DefaultConsulUnreachable = 30 * time.Second
	DefaultOnWarning         = OnWarningServe
	DefaultStateFile         = "/var/lib/lvs-sync/state.json"
	DefaultSyncID            = 1
	DefaultHeartbeatPort     = 7947
)

// OnWarning is the policy of on_warning: what an instance whose Consul
// checks are in warning gets.
type OnWarning string

// The values of on_warning.
const (
	// OnWarningServe keeps the instance in with its Consul warning weight.
	OnWarningServe OnWarning = "serve"
	// OnWarningQuiesce keeps the instance in with weight 0.
	OnWarningQuiesce OnWarning = "quiesce"
	// OnWarningRemove takes the instance out.
	OnWarningRemove OnWarning = "remove"
)

// NeedsRestart names the settings that differ in next and that a running
// lvs-sync cannot take on a reload: the API listener, the state file, the
// VIP link, the Consul and Nomad connections (but their token_files,
// re-read on every reload) and the logger. A reload applies the rest and logs these.
func (c *Config) NeedsRestart(next *Config) []string {
	var names []string
	check := func(name string, changed bool) {
		if changed {
			names = append(names, name)
		}
	}
	check("log_level", c.LogLevel != next.LogLevel)
	check("log_json", c.LogJSON != next.LogJSON)
	check("api.address", c.API.Address != next.API.Address)
	check("api.token_file", c.API.TokenFile != next.API.TokenFile)
	check("director.state_file", c.Director.StateFile != next.Director.StateFile)
	check("director.vip_interface", c.Director.VIPInterface != next.Director.VIPInterface)
	check("director.cleanup_on_exit", c.Director.CleanupOnExit != next.Director.CleanupOnExit)
	check("director.ha", !c.Director.HA.Equal(next.Director.HA))
	check("director.bgp", !c.Director.BGP.Equal(next.Director.BGP))
	check("consul.address", c.Consul.Address != next.Consul.Address)
	check("consul.datacenter", c.Consul.Datacenter != next.Consul.Datacenter)
	check("consul.max_connections", c.Consul.MaxConnections != next.Consul.MaxConnections)
	check("consul.ca_file", c.Consul.CAFile != next.Consul.CAFile)
	check("consul.cert_file", c.Consul.CertFile != next.Consul.CertFile)
	check("consul.key_file", c.Consul.KeyFile != next.Consul.KeyFile)
	check("consul.server_name", c.Consul.ServerName != next.Consul.ServerName)
	n, m := c.Nomad, next.Nomad
	check("nomad.address", n.Address != m.Address)
	check("nomad.namespace", n.Namespace != m.Namespace)
	check("nomad.region", n.Region != m.Region)
	check("nomad.max_connections", n.MaxConnections != m.MaxConnections)
	check("nomad.ca_cert", n.CACert != m.CACert)
	check("nomad.client_cert", n.ClientCert != m.ClientCert)
	check("nomad.client_key", n.ClientKey != m.ClientKey)
	check("nomad.tls_server_name", n.TLSServerName != m.TLSServerName)
	check("nomad.skip_verify", (n.SkipVerify == nil) != (m.SkipVerify == nil) || n.SkipVerify != nil && *n.SkipVerify != *m.SkipVerify)
	return names
}

// Equal reports whether two ha blocks say the same, nil being none.
func (h *HA) Equal(o *HA) bool {
	if h == nil || o == nil {
		return h == o
	}
	return h.LockKey == o.LockKey && h.Interface == o.Interface && h.SyncInterface == o.SyncInterface &&
		h.SyncID == o.SyncID && h.HeartbeatPort == o.HeartbeatPort && h.Name == o.Name && h.KeyFile == o.KeyFile && h.Timings == o.Timings
}

// Adopts reports whether the virtual service at k may take over a service
// the kernel has and lvs-sync did not make (adopt = true).
func (c *Config) Adopts(k lvs.ServiceKey) bool {
	vs := c.VirtualServiceAt(k)
	return vs != nil && vs.Adopt
}
