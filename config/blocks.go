package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/lvs-sync/lvs-sync/ha/timings"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// The blocks of a config file: each one's raw struct, as gohcl decodes it,
// and its validation into the public type.

type rawConsul struct {
	Address    *string  `hcl:"address,optional"`
	TokenFile  *string  `hcl:"token_file,optional"`
	Datacenter *string  `hcl:"datacenter,optional"`
	CAFile     *string  `hcl:"ca_file,optional"`
	CertFile   *string  `hcl:"cert_file,optional"`
	KeyFile    *string  `hcl:"key_file,optional"`
	ServerName *string  `hcl:"server_name,optional"`
	MaxConns   *int     `hcl:"max_connections,optional"`
	Body       hcl.Body `hcl:",body"`
	Remain     hcl.Body `hcl:",remain"`
	DefRange   hcl.Range
}

type rawDirector struct {
	VIPInterface      *string  `hcl:"vip_interface,optional"`
	ReconcileInterval *string  `hcl:"reconcile_interval,optional"`
	StateFile         *string  `hcl:"state_file,optional"`
	CleanupOnExit     *bool    `hcl:"cleanup_on_exit,optional"`
	TuneSysctls       *bool    `hcl:"tune_sysctls,optional"`
	HA                *rawHA   `hcl:"ha,block"`
	BGP               *rawBGP  `hcl:"bgp,block"`
	Body              hcl.Body `hcl:",body"`
	Remain            hcl.Body `hcl:",remain"`
	DefRange          hcl.Range
}

// rawHA is director's ha block; gohcl reports its unknown attributes.
type rawHA struct {
	LockKey       string  `hcl:"lock_key"`
	Interface     string  `hcl:"interface"`
	SyncInterface *string `hcl:"sync_interface,optional"`
	SyncID        *int    `hcl:"sync_id,optional"`
	HeartbeatPort *int    `hcl:"heartbeat_port,optional"`
	Name          *string `hcl:"name,optional"`
	KeyFile       *string `hcl:"key_file,optional"`
	// The pair's timings (ha/timings); each defaults to the design's.
	HeartbeatInterval *string   `hcl:"heartbeat_interval,optional"`
	PeerTimeout       *string   `hcl:"peer_timeout,optional"`
	RenewInterval     *string   `hcl:"renew_interval,optional"`
	LeaseTTL          *string   `hcl:"lease_ttl,optional"`
	Body              hcl.Body  `hcl:",body"`
	DefRange          hcl.Range `hcl:",def_range"`
}

type rawAPI struct {
	Address                *string  `hcl:"address,optional"`
	TokenFile              *string  `hcl:"token_file,optional"`
	ConsulUnreachableAfter *string  `hcl:"consul_unreachable_after,optional"`
	Body                   hcl.Body `hcl:",body"`
	Remain                 hcl.Body `hcl:",remain"`
	DefRange               hcl.Range
}

type rawVS struct {
	Name            string   `hcl:"name,label"`
	Address         *string  `hcl:"address,optional"`
	FWMark          *int     `hcl:"fwmark,optional"`
	Family          *string  `hcl:"family,optional"`
	VIPs            []string `hcl:"vips,optional"`
	Protocol        *string  `hcl:"protocol,optional"`
	Scheduler       *string  `hcl:"scheduler,optional"`
	SchedulerFlags  []string `hcl:"scheduler_flags,optional"`
	Forwarding      string   `hcl:"forwarding"`
	Persistence     *string  `hcl:"persistence,optional"`
	PersistMask     *string  `hcl:"persistence_netmask,optional"`
	OnePacket       *bool    `hcl:"ops,optional"`
	UpperThreshold  *int     `hcl:"upper_threshold,optional"`
	LowerThreshold  *int     `hcl:"lower_threshold,optional"`
	Service         *string  `hcl:"service,optional"`
	Provider        *string  `hcl:"provider,optional"`
	Tags            []string `hcl:"tags,optional"`
	Quiescent       *bool    `hcl:"quiescent,optional"`
	Adopt           *bool    `hcl:"adopt,optional"`
	Fallback        *string  `hcl:"fallback,optional"`
	MaintenancePage *string  `hcl:"maintenance_page,optional"`
	DrainTimeout    *string  `hcl:"drain_timeout,optional"`
	MaxRemoval      *string  `hcl:"max_removal,optional"`
	RemovalHold     *string  `hcl:"removal_hold,optional"`
	Hold            *string  `hcl:"hold,optional"`
	SlowStart       *string  `hcl:"slow_start,optional"`
	OnWarning       *string  `hcl:"on_warning,optional"`
	Body            hcl.Body `hcl:",body"`
	Remain          hcl.Body `hcl:",remain"`
	DefRange        hcl.Range
}

func decodeConsul(rc *rawConsul) (Consul, hcl.Diagnostics) {
	at := newAttrs("consul", rc.Body, rc.DefRange)
	var diags hcl.Diagnostics
	c := Consul{
		Address:    deref(rc.Address),
		TokenFile:  deref(rc.TokenFile),
		Datacenter: deref(rc.Datacenter),
		CAFile:     deref(rc.CAFile),
		CertFile:   deref(rc.CertFile),
		KeyFile:    deref(rc.KeyFile),
		ServerName: deref(rc.ServerName),
	}
	diags = append(diags, at.nonEmpty(setString{"address", rc.Address}, setString{"token_file", rc.TokenFile},
		setString{"datacenter", rc.Datacenter}, setString{"ca_file", rc.CAFile}, setString{"cert_file", rc.CertFile},
		setString{"key_file", rc.KeyFile}, setString{"server_name", rc.ServerName})...)
	var budgetDiags hcl.Diagnostics
	c.MaxConnections, budgetDiags = at.connBudget(rc.MaxConns)
	diags = append(diags, budgetDiags...)
	if (c.CertFile == "") != (c.KeyFile == "") {
		diags = append(diags, at.errorf("cert_file", "Incomplete client certificate", "cert_file and key_file go together"))
	}
	return c, diags
}

func decodeDirector(rd *rawDirector) (Director, hcl.Diagnostics) {
	at := newAttrs("director", rd.Body, rd.DefRange)
	var diags hcl.Diagnostics
	d := Director{VIPInterface: deref(rd.VIPInterface), ReconcileInterval: DefaultReconcileInterval, StateFile: DefaultStateFile}
	if rd.VIPInterface != nil {
		if err := validInterfaceName(d.VIPInterface); err != nil {
			diags = append(diags, at.errorf("vip_interface", "Invalid interface name", "%s", err))
		}
	}
	if rd.ReconcileInterval != nil {
		var err error
		if d.ReconcileInterval, err = parseReconcileInterval(*rd.ReconcileInterval); err != nil {
			diags = append(diags, at.errorf("reconcile_interval", "Invalid reconcile interval", "%s", err))
		}
	}
	d.CleanupOnExit = rd.CleanupOnExit != nil && *rd.CleanupOnExit
	d.TuneSysctls = rd.TuneSysctls != nil && *rd.TuneSysctls
	if rd.StateFile != nil {
		d.StateFile = *rd.StateFile
		if err := validStateFile(d.StateFile); err != nil {
			diags = append(diags, at.errorf("state_file", "Invalid state file", "%s", err))
		}
	}
	if rd.HA != nil {
		var dd hcl.Diagnostics
		d.HA, dd = decodeHA(rd.HA)
		diags = append(diags, dd...)
		if rd.VIPInterface != nil {
			diags = append(diags, at.errorf("vip_interface", "VIP link with ha",
				"with an ha block the VIPs go on ha's interface (active) and lo; leave vip_interface out"))
		}
	}
	if rd.BGP != nil {
		var dd hcl.Diagnostics
		d.BGP, dd = decodeBGP(rd.BGP)
		diags = append(diags, dd...)
		if rd.HA != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "bgp with ha",
				Detail: fmt.Sprintf("director: bgp and ha are exclusive: ha (at %s) makes one director of a pair active, "+
					"bgp makes every director of a tier active behind ECMP; keep one", rd.HA.DefRange),
				Subject: rd.BGP.DefRange.Ptr()})
		}
	}
	return d, diags
}

func decodeHA(rh *rawHA) (*HA, hcl.Diagnostics) {
	at := newAttrs("director.ha", rh.Body, rh.DefRange)
	var diags hcl.Diagnostics
	h := &HA{LockKey: rh.LockKey, Interface: rh.Interface, SyncInterface: rh.Interface, SyncID: DefaultSyncID,
		HeartbeatPort: DefaultHeartbeatPort, Timings: timings.Default(), DeclRange: rh.DefRange}
	if err := validLockKey(h.LockKey); err != nil {
		diags = append(diags, at.errorf("lock_key", "Invalid lock key", "%s", err))
	}
	if err := validInterfaceName(h.Interface); err != nil {
		diags = append(diags, at.errorf("interface", "Invalid interface name", "%s", err))
	}
	if rh.SyncInterface != nil {
		h.SyncInterface = *rh.SyncInterface
		if err := validInterfaceName(h.SyncInterface); err != nil {
			diags = append(diags, at.errorf("sync_interface", "Invalid interface name", "%s", err))
		}
	}
	if rh.SyncID != nil {
		if *rh.SyncID < 0 || *rh.SyncID > 255 {
			diags = append(diags, at.errorf("sync_id", "Invalid sync id", "%d: the kernel's sync id is 0 to 255", *rh.SyncID))
		} else {
			h.SyncID = uint8(*rh.SyncID)
		}
	}
	if rh.Name != nil {
		if err := validServiceName(*rh.Name); err != nil {
			diags = append(diags, at.errorf("name", "Invalid director name", "%s", err))
		} else {
			h.Name = *rh.Name
		}
	}
	if rh.KeyFile != nil {
		if *rh.KeyFile == "" {
			diags = append(diags, at.errorf("key_file", "Empty value", "must not be empty; leave it out to keep the heartbeat key in consul next to lock_key"))
		} else {
			h.KeyFile = *rh.KeyFile
		}
	}
	if rh.HeartbeatPort != nil {
		if *rh.HeartbeatPort < 1 || *rh.HeartbeatPort > 65535 {
			diags = append(diags, at.errorf("heartbeat_port", "Invalid port", "%d: want 1 to 65535", *rh.HeartbeatPort))
		} else {
			h.HeartbeatPort = uint16(*rh.HeartbeatPort)
		}
	}
	timingsOK := true
	for _, d := range []struct {
		name string
		raw  *string
		to   *time.Duration
	}{{"heartbeat_interval", rh.HeartbeatInterval, &h.Timings.Heartbeat}, {"peer_timeout", rh.PeerTimeout, &h.Timings.PeerTimeout},
		{"renew_interval", rh.RenewInterval, &h.Timings.Renew}, {"lease_ttl", rh.LeaseTTL, &h.Timings.TTL}} {
		if d.raw == nil {
			continue
		}
		v, err := parsePositive(*d.raw)
		if err != nil {
			diags = append(diags, at.errorf(d.name, "Invalid duration", "%s", err))
			timingsOK = false
			continue
		}
		*d.to = v
	}
	if timingsOK {
		for _, p := range h.Timings.Problems() {
			diags = append(diags, at.errorf(p.Field, "Unsafe ha timings", "%s", p.Err))
		}
	}
	return h, diags
}

func decodeAPI(ra *rawAPI) (API, hcl.Diagnostics) {
	at := newAttrs("api", ra.Body, ra.DefRange)
	var diags hcl.Diagnostics
	a := API{Address: DefaultAPIAddress, ConsulUnreachableAfter: DefaultConsulUnreachable}
	if ra.Address != nil {
		a.Address = *ra.Address
		if err := validAPIAddress(a.Address); err != nil {
			diags = append(diags, at.errorf("address", "Invalid address", "%s", err))
		} else if a.Address != "" && !netip.MustParseAddrPort(a.Address).Addr().IsLoopback() {
			diags = append(diags, at.warnf("address", "API reachable from other hosts",
				"%q is not a loopback address: other hosts can read the director's state and, with the token, change it; "+
					"listen on 127.0.0.1 unless they must", a.Address))
		}
	}
	if ra.TokenFile != nil {
		a.TokenFile = *ra.TokenFile
		if a.TokenFile == "" {
			diags = append(diags, at.errorf("token_file", "Invalid token_file", "empty: name the file holding the token, or leave token_file out"))
		}
	}
	if ra.ConsulUnreachableAfter != nil {
		v, err := parsePositive(*ra.ConsulUnreachableAfter)
		if err != nil {
			diags = append(diags, at.errorf("consul_unreachable_after", "Invalid duration", "%s", err))
		}
		a.ConsulUnreachableAfter = v
	}
	return a, diags
}

func decodeVS(rv *rawVS) (*VirtualService, hcl.Diagnostics) {
	at := vsAttrs(rv)
	var diags hcl.Diagnostics
	vs := &VirtualService{
		Name:         rv.Name,
		Scheduler:    DefaultScheduler,
		Service:      rv.Name,
		Provider:     DefaultProvider,
		Tags:         rv.Tags,
		Quiescent:    rv.Quiescent != nil && *rv.Quiescent,
		Adopt:        rv.Adopt != nil && *rv.Adopt,
		DrainTimeout: DefaultDrainTimeout,
		MaxRemoval:   DefaultMaxRemoval,
		RemovalHold:  DefaultRemovalHold,
		OnWarning:    DefaultOnWarning,
		DeclRange:    rv.DefRange,
	}
	if rv.Name == "" {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Empty virtual service name",
			Detail: "virtual_service needs a non-empty label naming it.", Subject: rv.DefRange.Ptr(),
		})
	}

	diags = append(diags, decodeTarget(vs, rv, at)...)
	var err error
	if rv.Scheduler != nil {
		vs.Scheduler = *rv.Scheduler
		if err := validScheduler(vs.Scheduler); err != nil {
			diags = append(diags, at.errorf("scheduler", "Invalid scheduler", "%s", err))
		}
	}
	fwdOK := true
	if vs.Forwarding, err = lvs.ParseForward(rv.Forwarding); err != nil {
		diags = append(diags, at.errorf("forwarding", "Invalid forwarding method", "%s", err))
		fwdOK = false
	}
	if rv.Persistence != nil {
		if vs.Persistence, err = parsePersistence(*rv.Persistence); err != nil {
			diags = append(diags, at.errorf("persistence", "Invalid persistence", "%s", err))
		}
	}
	if rv.Service != nil {
		vs.Service = *rv.Service
	}
	providerOK := true
	if rv.Provider != nil {
		if vs.Provider, err = parseProvider(*rv.Provider); err != nil {
			diags = append(diags, at.errorf("provider", "Invalid provider", "%s", err))
			providerOK = false
		}
	}
	if err := validProviderService(vs.Provider, vs.Service); err != nil && providerOK {
		kind := "Consul"
		if vs.Provider == ProviderNomad {
			kind = "Nomad"
		}
		diags = append(diags, at.errorf("service", "Invalid "+kind+" service name", "%s", err))
	}
	for _, t := range vs.Tags {
		if t == "" {
			diags = append(diags, at.errorf("tags", "Invalid tag", "tags must not be empty strings"))
			break
		}
	}
	if rv.Fallback != nil && vs.FWMark != 0 {
		diags = append(diags, decodeMarkFallback(vs, *rv.Fallback, at)...)
	} else if rv.Fallback != nil {
		vs.Fallback, err = parseFallback(*rv.Fallback)
		switch {
		case err != nil:
			diags = append(diags, at.errorf("fallback", "Invalid fallback", "%s", err))
		case vs.Fallback.Local || !vs.Address.IsValid():
		case vs.Fallback.Addr.Addr().Is4() != vs.Address.Addr().Is4():
			diags = append(diags, at.errorf("fallback", "Mixed address families",
				"fallback %s and address %s must both be IPv4 or both IPv6", vs.Fallback.Addr, vs.Address))
		case fwdOK && !vs.Forwarding.TranslatesPort() && vs.Fallback.Addr.Port() != vs.Address.Port():
			diags = append(diags, at.errorf("fallback", "Port cannot be changed",
				"%s forwarding delivers packets to the virtual port %d unchanged; use port %d or masq forwarding",
				vs.Forwarding, vs.Address.Port(), vs.Address.Port()))
		}
	}
	for _, d := range []struct {
		name string
		raw  *string
		into *time.Duration
	}{{"drain_timeout", rv.DrainTimeout, &vs.DrainTimeout}, {"hold", rv.Hold, &vs.Hold}, {"slow_start", rv.SlowStart, &vs.SlowStart},
		{"removal_hold", rv.RemovalHold, &vs.RemovalHold}} {
		if d.raw == nil {
			continue
		}
		v, err := parseNonNegative(*d.raw)
		if err != nil {
			diags = append(diags, at.errorf(d.name, "Invalid duration", "%s", err))
			continue
		}
		*d.into = v
	}
	if rv.MaxRemoval != nil {
		if vs.MaxRemoval, err = parseMaxRemoval(*rv.MaxRemoval); err != nil {
			diags = append(diags, at.errorf("max_removal", "Invalid removal limit", "%s", err))
		}
	}
	if rv.OnWarning != nil {
		if vs.OnWarning, err = parseOnWarning(*rv.OnWarning); err != nil {
			diags = append(diags, at.errorf("on_warning", "Invalid warning policy", "%s", err))
		}
	}
	diags = append(diags, decodeSchedFlags(vs, rv, at)...)
	diags = append(diags, decodeOptions(vs, rv, at)...)
	if vs.Fallback.Local && vs.Protocol != lvs.TCP && vs.Protocol != 0 {
		diags = append(diags, at.errorf("fallback", "Local fallback needs tcp",
			"the local maintenance page is served over HTTP; protocol is %s", vs.Protocol))
	}
	if rv.MaintenancePage != nil {
		vs.MaintenancePagePath = *rv.MaintenancePage
		switch {
		case !vs.Fallback.Local:
			diags = append(diags, at.errorf("maintenance_page", "Maintenance page without local fallback",
				"maintenance_page is served only with fallback = \"local\""))
		default:
			page, err := loadPage(*rv.MaintenancePage, rv.DefRange.Filename)
			if err != nil {
				diags = append(diags, at.errorf("maintenance_page", "Invalid maintenance page", "%s", err))
			}
			vs.MaintenancePage = page
		}
	}
	return vs, diags
}

// vsAttrs finds the attributes of a virtual_service block.
func vsAttrs(rv *rawVS) attrs {
	return newAttrs(fmt.Sprintf("virtual_service %q", rv.Name), rv.Body, rv.DefRange)
}

// decodeSchedFlags checks scheduler_flags against the scheduler, and warns
// when sh or mh can see a real at weight 0 without its fallback flag: the
// clients that hash to that real are then sent nowhere.
func decodeSchedFlags(vs *VirtualService, rv *rawVS, at attrs) hcl.Diagnostics {
	if !lvs.KnownScheduler(vs.Scheduler) {
		return nil // reported
	}
	flags, err := lvs.ParseSchedFlags(vs.Scheduler, rv.SchedulerFlags)
	if err != nil {
		return hcl.Diagnostics{at.errorf("scheduler_flags", "Invalid scheduler flag", "%s", err)}
	}
	vs.SchedulerFlags = flags
	if !lvs.HashesByClient(vs.Scheduler) || flags&lvs.SchedFlag1 != 0 {
		return nil
	}
	var why []string
	if vs.Quiescent {
		why = append(why, "quiescent = true")
	}
	if vs.OnWarning == OnWarningQuiesce {
		why = append(why, `on_warning = "quiesce"`)
	}
	if vs.DrainTimeout > 0 {
		why = append(why, fmt.Sprintf("drain_timeout = %q", vs.DrainTimeout))
	}
	if len(why) == 0 {
		return nil
	}
	name := "scheduler_flags"
	if rv.SchedulerFlags == nil {
		name = "scheduler"
	}
	fb := lvs.FallbackFlag(vs.Scheduler)
	return hcl.Diagnostics{at.warnf(name, "Weight 0 without "+fb,
		"with %s, a real at weight 0 (%s) keeps its hash share of new connections, and the clients that hash to it are sent nowhere; add %q to scheduler_flags",
		vs.Scheduler, strings.Join(why, ", "), fb)}
}
