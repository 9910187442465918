// Package config reads lvs-sync's HCL configuration: the Consul connection,
// the director's own settings and the virtual services to keep in the
// kernel. Every problem found is reported, each with its file, line, column
// and field, as hcl.Diagnostics.
package config

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"cmp"
	"fmt"
	"html/template"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Config is a validated lvs-sync configuration.
type Config struct {
	Consul   Consul
	Director Director
	API      API
	// LogLevel and LogJSON, when set, are the default of run's -log-level
	// and -log-json.
	LogLevel string
	LogJSON  bool
	// VirtualServices in the order they were declared, files in name order.
	VirtualServices []*VirtualService
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

// API is lvs-sync's local HTTP API: /v1/status, /v1/health, /metrics.
type API struct {
	// Address to listen on; "" turns the API off.
	Address string
	// ConsulUnreachableAfter is how long Consul may fail to answer before
	// /v1/health reports lvs-sync unhealthy.
	ConsulUnreachableAfter time.Duration
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
}

// VirtualService is one IPVS virtual service and the Consul service whose
// healthy instances are its real servers.
type VirtualService struct {
	Name        string
	Protocol    lvs.Protocol
	Address     netip.AddrPort
	Scheduler   string
	Forwarding  lvs.Forward
	Persistence time.Duration
	Service     string
	Tags        []string
	Quiescent   bool
	Fallback    Fallback
	// MaintenancePage is the html/template of the local fallback page, as
	// read from maintenance_page; empty for the built-in one.
	MaintenancePage     string
	MaintenancePagePath string
	// DrainTimeout bounds how long a leaving real server keeps weight 0
	// for its connections to finish before it is deleted.
	DrainTimeout time.Duration
	// Hold keeps an instance that was critical out until it has stayed
	// passing this long (flap damping); 0 is off.
	Hold time.Duration
	// SlowStart ramps a new or recovered instance's weight from 1 to its
	// full weight over this time; 0 is off.
	SlowStart time.Duration
	// OnWarning is what an instance in warning gets: serve (its Consul
	// warning weight), quiesce (weight 0) or remove.
	OnWarning string
	// DeclRange is where the block is declared, for messages about it.
	DeclRange hcl.Range
}

// VirtualService returns the virtual service of that name, or nil.
func (c *Config) VirtualService(name string) *VirtualService {
	for _, vs := range c.VirtualServices {
		if vs.Name == name {
			return vs
		}
	}
	return nil
}

// VirtualServiceAt returns the virtual service with that kernel key, or nil.
func (c *Config) VirtualServiceAt(k lvs.ServiceKey) *VirtualService {
	for _, vs := range c.VirtualServices {
		if vs.Key() == k {
			return vs
		}
	}
	return nil
}

// Services lists the Consul service of every virtual service, in order;
// a service two virtual services share is listed twice.
func (c *Config) Services() []string {
	names := make([]string, 0, len(c.VirtualServices))
	for _, vs := range c.VirtualServices {
		names = append(names, vs.Service)
	}
	return names
}

// Key is the identity of the virtual service in the kernel.
func (vs *VirtualService) Key() lvs.ServiceKey {
	return lvs.ServiceKey{Protocol: vs.Protocol, Addr: vs.Address.Addr(), Port: vs.Address.Port()}
}

// Fallback is the real server of last resort. The zero value is none.
type Fallback struct {
	// Local means lvs-sync's own maintenance page.
	Local bool
	// Addr is a remote fallback server, when not Local.
	Addr netip.AddrPort
}

// IsSet reports whether a fallback is configured.
func (f Fallback) IsSet() bool { return f.Local || f.Addr.IsValid() }

func (f Fallback) String() string {
	switch {
	case f.Local:
		return "local"
	case f.Addr.IsValid():
		return f.Addr.String()
	}
	return ""
}

// Defaults of optional attributes.
const (
	DefaultProtocol          = "tcp"
	DefaultScheduler         = "wlc"
	DefaultReconcileInterval = 60 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultAPIAddress        = "127.0.0.1:9337"
	DefaultConsulUnreachable = 30 * time.Second
	DefaultOnWarning         = "serve"
	DefaultStateFile         = "/var/lib/lvs-sync/state.json"
)

// The raw structs mirror the HCL schema; gohcl decodes into them and reports
// unknown attributes and blocks and type mismatches with their positions.
type rawFile struct {
	LogLevel        *string        `hcl:"log_level,optional"`
	LogJSON         *bool          `hcl:"log_json,optional"`
	API             []*rawAPI      `hcl:"api,block"`
	Consul          []*rawConsul   `hcl:"consul,block"`
	Director        []*rawDirector `hcl:"director,block"`
	VirtualServices []*rawVS       `hcl:"virtual_service,block"`
}

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
	Body              hcl.Body `hcl:",body"`
	Remain            hcl.Body `hcl:",remain"`
	DefRange          hcl.Range
}

type rawAPI struct {
	Address                *string  `hcl:"address,optional"`
	ConsulUnreachableAfter *string  `hcl:"consul_unreachable_after,optional"`
	Body                   hcl.Body `hcl:",body"`
	Remain                 hcl.Body `hcl:",remain"`
	DefRange               hcl.Range
}

type rawVS struct {
	Name            string   `hcl:"name,label"`
	Address         string   `hcl:"address"`
	Protocol        *string  `hcl:"protocol,optional"`
	Scheduler       *string  `hcl:"scheduler,optional"`
	Forwarding      string   `hcl:"forwarding"`
	Persistence     *string  `hcl:"persistence,optional"`
	Service         *string  `hcl:"service,optional"`
	Tags            []string `hcl:"tags,optional"`
	Quiescent       *bool    `hcl:"quiescent,optional"`
	Fallback        *string  `hcl:"fallback,optional"`
	MaintenancePage *string  `hcl:"maintenance_page,optional"`
	DrainTimeout    *string  `hcl:"drain_timeout,optional"`
	Hold            *string  `hcl:"hold,optional"`
	SlowStart       *string  `hcl:"slow_start,optional"`
	OnWarning       *string  `hcl:"on_warning,optional"`
	Body            hcl.Body `hcl:",body"`
	Remain          hcl.Body `hcl:",remain"`
	DefRange        hcl.Range
}

// Load reads a config file, or every *.hcl file of a directory merged in
// name order. On any problem it returns a *DiagnosticsError carrying all of
// them, and no config.
func Load(path string) (*Config, error) {
	files, err := configFiles(path)
	if err != nil {
		return nil, err
	}
	parser := hclparse.NewParser()
	var diags hcl.Diagnostics
	var bodies []hcl.Body
	for _, f := range files {
		file, d := parser.ParseHCLFile(f)
		diags = append(diags, d...)
		if file != nil {
			bodies = append(bodies, file.Body)
		}
	}
	var cfg *Config
	if !diags.HasErrors() {
		var d hcl.Diagnostics
		cfg, d = decode(bodies)
		diags = append(diags, d...)
	}
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: sortDiags(diags, files), Files: parser.Files()}
	}
	return cfg, nil
}

// sortDiags orders diagnostics as a reader meets them: by file, in the
// order the files are read, then by position.
func sortDiags(diags hcl.Diagnostics, files []string) hcl.Diagnostics {
	rank := func(d *hcl.Diagnostic) (int, int) {
		if d.Subject == nil {
			return len(files), 0
		}
		i := slices.Index(files, d.Subject.Filename)
		if i < 0 {
			i = len(files)
		}
		return i, d.Subject.Start.Byte
	}
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		fa, ba := rank(a)
		fb, bb := rank(b)
		return cmp.Or(cmp.Compare(fa, fb), cmp.Compare(ba, bb))
	})
	return diags
}

// Parse reads a config from memory; filename is used in diagnostics.
func Parse(src []byte, filename string) (*Config, error) {
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	var cfg *Config
	if !diags.HasErrors() {
		var d hcl.Diagnostics
		cfg, d = decode([]hcl.Body{file.Body})
		diags = append(diags, d...)
	}
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: sortDiags(diags, []string{filename}), Files: parser.Files()}
	}
	return cfg, nil
}

// configFiles lists the files that make up the config at path.
func configFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.hcl"))
	if err != nil {
		return nil, fmt.Errorf("listing config directory %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("config directory %s has no *.hcl files", path)
	}
	slices.Sort(files)
	return files, nil
}

// fileSchema is the top level of a config file.
var fileSchema, _ = gohcl.ImpliedBodySchema(&rawFile{})

// decode turns the parsed files into a validated Config. Each block is
// decoded on its own, so that a problem in one hides none in the others.
func decode(bodies []hcl.Body) (*Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	cfg := &Config{
		Director: Director{ReconcileInterval: DefaultReconcileInterval, StateFile: DefaultStateFile},
		API:      API{Address: DefaultAPIAddress, ConsulUnreachableAfter: DefaultConsulUnreachable},
	}
	var consulAt, directorAt, apiAt *hcl.Range
	for _, body := range bodies {
		content, d := body.Content(fileSchema)
		diags = append(diags, d...)
		if content == nil {
			continue
		}
		for name, attr := range content.Attributes {
			diags = append(diags, decodeTopAttr(cfg, name, attr)...)
		}
		for _, blk := range content.Blocks {
			switch blk.Type {
			case "consul":
				if consulAt != nil {
					diags = append(diags, duplicateBlock("consul", blk.DefRange, *consulAt))
					continue
				}
				consulAt = blk.DefRange.Ptr()
				rc := rawConsul{DefRange: blk.DefRange}
				d, ok := decodeBlock(blk, &rc, &rc.Remain)
				diags = append(diags, d...)
				if !ok {
					continue
				}
				cfg.Consul, d = decodeConsul(&rc)
				diags = append(diags, d...)
			case "director":
				if directorAt != nil {
					diags = append(diags, duplicateBlock("director", blk.DefRange, *directorAt))
					continue
				}
				directorAt = blk.DefRange.Ptr()
				rd := rawDirector{DefRange: blk.DefRange}
				d, ok := decodeBlock(blk, &rd, &rd.Remain)
				diags = append(diags, d...)
				if !ok {
					continue
				}
				cfg.Director, d = decodeDirector(&rd)
				diags = append(diags, d...)
			case "api":
				if apiAt != nil {
					diags = append(diags, duplicateBlock("api", blk.DefRange, *apiAt))
					continue
				}
				apiAt = blk.DefRange.Ptr()
				ra := rawAPI{DefRange: blk.DefRange}
				d, ok := decodeBlock(blk, &ra, &ra.Remain)
				diags = append(diags, d...)
				if !ok {
					continue
				}
				cfg.API, d = decodeAPI(&ra)
				diags = append(diags, d...)
			case "virtual_service":
				rv := rawVS{Name: blk.Labels[0], DefRange: blk.DefRange}
				d, ok := decodeBlock(blk, &rv, &rv.Remain)
				diags = append(diags, d...)
				if !ok {
					// Still known by name, for the duplicate check.
					cfg.VirtualServices = append(cfg.VirtualServices, &VirtualService{Name: rv.Name, DeclRange: rv.DefRange})
					continue
				}
				vs, dd := decodeVS(&rv)
				diags = append(diags, dd...)
				cfg.VirtualServices = append(cfg.VirtualServices, vs)
			}
		}
	}
	diags = append(diags, checkUnique(cfg.VirtualServices)...)
	return cfg, diags
}

// decodeBlock decodes a block into its raw struct and reports what is in
// *remain, the block's unknown attributes and blocks. ok is false when a
// known value is missing or mistyped: then the raw values are meaningless
// and the block must not be validated further. Unknown attributes alone
// leave ok true, so that the rest of the block is still checked.
func decodeBlock(blk *hcl.Block, raw any, remain *hcl.Body) (diags hcl.Diagnostics, ok bool) {
	diags = gohcl.DecodeBody(blk.Body, nil, raw)
	if diags.HasErrors() || *remain == nil {
		return diags, !diags.HasErrors()
	}
	attrs, d := (*remain).JustAttributes() // an unknown block is an error here
	diags = append(diags, d...)
	unknown := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		unknown = append(unknown, a)
	}
	slices.SortFunc(unknown, func(a, b *hcl.Attribute) int { return a.NameRange.Start.Byte - b.NameRange.Start.Byte })
	for _, a := range unknown {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unsupported argument",
			Detail:   fmt.Sprintf("An argument named %q is not expected here.", a.Name),
			Subject:  a.NameRange.Ptr(),
		})
	}
	return diags, true
}

// decodeTopAttr decodes a top-level attribute: log_level or log_json.
func decodeTopAttr(cfg *Config, name string, attr *hcl.Attribute) hcl.Diagnostics {
	switch name {
	case "log_level":
		var v string
		if d := gohcl.DecodeExpression(attr.Expr, nil, &v); d.HasErrors() {
			return d
		}
		switch strings.ToLower(v) {
		case "trace", "debug", "info", "warn", "error":
			cfg.LogLevel = strings.ToLower(v)
		default:
			return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid log level",
				Detail:  fmt.Sprintf("log_level: %q: want trace, debug, info, warn or error", v),
				Subject: attr.Expr.Range().Ptr()}}
		}
	case "log_json":
		if d := gohcl.DecodeExpression(attr.Expr, nil, &cfg.LogJSON); d.HasErrors() {
			return d
		}
	}
	return nil
}

func decodeAPI(ra *rawAPI) (API, hcl.Diagnostics) {
	at := newAttrs("api", ra.Body, ra.DefRange)
	var diags hcl.Diagnostics
	a := API{Address: DefaultAPIAddress, ConsulUnreachableAfter: DefaultConsulUnreachable}
	if ra.Address != nil {
		a.Address = *ra.Address
		if a.Address != "" {
			if _, err := netip.ParseAddrPort(a.Address); err != nil {
				diags = append(diags, at.errorf("address", "Invalid address", "%q is not IP:PORT (\"\" turns the API off)", a.Address))
			}
		}
	}
	if ra.ConsulUnreachableAfter != nil {
		v, err := time.ParseDuration(*ra.ConsulUnreachableAfter)
		if err != nil || v <= 0 {
			diags = append(diags, at.errorf("consul_unreachable_after", "Invalid duration", "%q is not a positive duration such as \"30s\"", *ra.ConsulUnreachableAfter))
		}
		a.ConsulUnreachableAfter = v
	}
	return a, diags
}

func duplicateBlock(kind string, at, first hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s block", kind),
		Detail:   fmt.Sprintf("Only one %s block is allowed; the first is at %s.", kind, first),
		Subject:  at.Ptr(),
	}
}

// attrs finds where each attribute of a block is, so that a message about a
// value can point at it. Only the native syntax is parsed, so the body is
// always an *hclsyntax.Body.
type attrs struct {
	block string
	body  *hclsyntax.Body
	def   hcl.Range
}

func newAttrs(block string, body hcl.Body, def hcl.Range) attrs {
	sb, _ := body.(*hclsyntax.Body)
	return attrs{block: block, body: sb, def: def}
}

// errorf returns an error diagnostic about attribute name of the block.
func (a attrs) errorf(name, summary, format string, args ...any) *hcl.Diagnostic {
	subject := a.def
	if a.body != nil {
		if attr, ok := a.body.Attributes[name]; ok {
			subject = attr.Expr.Range()
		}
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf("%s: %s: %s", a.block, name, fmt.Sprintf(format, args...)),
		Subject:  subject.Ptr(),
	}
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
	for _, f := range []struct {
		name  string
		value *string
	}{
		{"address", rc.Address}, {"token_file", rc.TokenFile}, {"datacenter", rc.Datacenter},
		{"ca_file", rc.CAFile}, {"cert_file", rc.CertFile}, {"key_file", rc.KeyFile},
		{"server_name", rc.ServerName},
	} {
		if f.value != nil && *f.value == "" {
			diags = append(diags, at.errorf(f.name, "Empty value", "must not be empty; leave it out for the default"))
		}
	}
	if rc.MaxConns != nil {
		c.MaxConnections = *rc.MaxConns
		if c.MaxConnections < 1 {
			diags = append(diags, at.errorf("max_connections", "Invalid connection budget", "%d: at least 1 connection is needed", c.MaxConnections))
		}
	}
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
		d.ReconcileInterval, err = time.ParseDuration(*rd.ReconcileInterval)
		if err != nil || d.ReconcileInterval < time.Second {
			diags = append(diags, at.errorf("reconcile_interval", "Invalid reconcile interval",
				"%q must be a duration of at least 1s, such as \"60s\"", *rd.ReconcileInterval))
		}
	}
	d.CleanupOnExit = rd.CleanupOnExit != nil && *rd.CleanupOnExit
	if rd.StateFile != nil {
		d.StateFile = *rd.StateFile
		if !filepath.IsAbs(d.StateFile) {
			diags = append(diags, at.errorf("state_file", "Invalid state file", "%q must be an absolute path", d.StateFile))
		}
	}
	return d, diags
}

// validInterfaceName applies the kernel's rules for link names.
func validInterfaceName(s string) error {
	if s == "" || len(s) > 15 {
		return fmt.Errorf("%q must be 1 to 15 characters long", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a valid link name", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Errorf("%q has %q, which a link name cannot have", s, r)
		}
	}
	return nil
}

func decodeVS(rv *rawVS) (*VirtualService, hcl.Diagnostics) {
	at := newAttrs(fmt.Sprintf("virtual_service %q", rv.Name), rv.Body, rv.DefRange)
	var diags hcl.Diagnostics
	vs := &VirtualService{
		Name:         rv.Name,
		Scheduler:    DefaultScheduler,
		Service:      rv.Name,
		Tags:         rv.Tags,
		Quiescent:    rv.Quiescent != nil && *rv.Quiescent,
		DrainTimeout: DefaultDrainTimeout,
		OnWarning:    DefaultOnWarning,
		DeclRange:    rv.DefRange,
	}
	if rv.Name == "" {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Empty virtual service name",
			Detail: "virtual_service needs a non-empty label naming it.", Subject: rv.DefRange.Ptr(),
		})
	}

	proto := DefaultProtocol
	if rv.Protocol != nil {
		proto = *rv.Protocol
	}
	var err error
	if vs.Protocol, err = lvs.ParseProtocol(proto); err != nil {
		diags = append(diags, at.errorf("protocol", "Invalid protocol", "%s", err))
	}
	if vs.Address, err = parseAddrPort(rv.Address); err != nil {
		diags = append(diags, at.errorf("address", "Invalid address", "%s", err))
	}
	if rv.Scheduler != nil {
		vs.Scheduler = *rv.Scheduler
		if !validScheduler(vs.Scheduler) {
			diags = append(diags, at.errorf("scheduler", "Invalid scheduler",
				"%q is not an IPVS scheduler name (such as rr, wrr, lc, wlc, sh, mh)", vs.Scheduler))
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
	if err := validServiceName(vs.Service); err != nil {
		diags = append(diags, at.errorf("service", "Invalid Consul service name", "%s", err))
	}
	for _, t := range vs.Tags {
		if t == "" {
			diags = append(diags, at.errorf("tags", "Invalid tag", "tags must not be empty strings"))
			break
		}
	}
	if rv.Fallback != nil {
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
	}{{"drain_timeout", rv.DrainTimeout, &vs.DrainTimeout}, {"hold", rv.Hold, &vs.Hold}, {"slow_start", rv.SlowStart, &vs.SlowStart}} {
		if d.raw == nil {
			continue
		}
		v, err := time.ParseDuration(*d.raw)
		if err != nil || v < 0 {
			diags = append(diags, at.errorf(d.name, "Invalid duration", "%q is not a duration of 0s or more, such as \"30s\"", *d.raw))
			continue
		}
		*d.into = v
	}
	if rv.OnWarning != nil {
		vs.OnWarning = *rv.OnWarning
		if vs.OnWarning != "serve" && vs.OnWarning != "quiesce" && vs.OnWarning != "remove" {
			diags = append(diags, at.errorf("on_warning", "Invalid warning policy", "%q: want serve, quiesce or remove", vs.OnWarning))
		}
	}
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

// loadPage reads a maintenance page template, relative paths from the
// config file's directory, and checks that it parses.
func loadPage(path, configFile string) (string, error) {
	if !filepath.IsAbs(path) && configFile != "" {
		path = filepath.Join(filepath.Dir(configFile), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if _, err := template.New(path).Parse(string(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

// checkUnique reports virtual services that share a label or a kernel key.
func checkUnique(vss []*VirtualService) hcl.Diagnostics {
	var diags hcl.Diagnostics
	byName := map[string]*VirtualService{}
	byKey := map[lvs.ServiceKey]*VirtualService{}
	for _, vs := range vss {
		if first, ok := byName[vs.Name]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate virtual service",
				Detail:   fmt.Sprintf("virtual_service %q is already declared at %s.", vs.Name, first.DeclRange),
				Subject:  vs.DeclRange.Ptr(),
			})
			continue
		}
		byName[vs.Name] = vs
		if !vs.Address.IsValid() || vs.Protocol == 0 {
			continue // already reported
		}
		if first, ok := byKey[vs.Key()]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate virtual address",
				Detail: fmt.Sprintf("virtual_service %q: %s is already served by virtual_service %q at %s.",
					vs.Name, vs.Key(), first.Name, first.DeclRange),
				Subject: vs.DeclRange.Ptr(),
			})
			continue
		}
		byKey[vs.Key()] = vs
	}
	return diags
}

// parseAddrPort parses "10.0.0.1:80" or "[2001:db8::1]:80" as an address a
// virtual or real server can have.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP:PORT (use [IPv6]:PORT for IPv6; host names are not allowed)", s)
	}
	addr := ap.Addr().Unmap()
	switch {
	case ap.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("%q: port must be 1 to 65535", s)
	case addr.Zone() != "":
		return netip.AddrPort{}, fmt.Errorf("%q: an address with a zone cannot be balanced", s)
	case addr.IsUnspecified(), addr.IsMulticast():
		return netip.AddrPort{}, fmt.Errorf("%q: address must be a unicast address", s)
	}
	return netip.AddrPortFrom(addr, ap.Port()), nil
}

func parseFallback(s string) (Fallback, error) {
	if s == "local" {
		return Fallback{Local: true}, nil
	}
	ap, err := parseAddrPort(s)
	if err != nil {
		return Fallback{}, fmt.Errorf("want \"local\" or IP:PORT: %w", err)
	}
	return Fallback{Addr: ap}, nil
}

// maxPersistence is the longest timeout the kernel's u32 field can hold.
const maxPersistence = time.Duration(1<<32-1) * time.Second

func parsePersistence(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration such as \"300s\" or \"5m\"", s)
	case d < 0:
		return 0, fmt.Errorf("%q must not be negative", s)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%q must be whole seconds: IPVS keeps persistence in seconds", s)
	case d > maxPersistence:
		return 0, fmt.Errorf("%q is longer than IPVS can keep", s)
	}
	return d, nil
}

// validScheduler accepts any name the kernel could know: IPVS schedulers are
// modules named ip_vs_<name>, and names are at most 15 characters.
func validScheduler(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// validServiceName rejects names that cannot be put in a Consul API path.
func validServiceName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == '?' || r == '#' || r == '%' || r > '~' {
			return fmt.Errorf("%q has %q, which a Consul service name cannot have", s, r)
		}
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
