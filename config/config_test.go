package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/lvs"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestParseFull(t *testing.T) {
	src := `
consul {
  address    = "127.0.0.1:8500"
  token_file = "/etc/lvs-sync/consul.token"
  datacenter = "dc1"
  max_connections = 4
}
director {
  vip_interface = "lvs0"
}
virtual_service "web" {
  address     = "10.10.10.60:80"
  protocol    = "tcp"
  scheduler   = "wlc"
  forwarding  = "gate"
  persistence = "300s"
  service     = "web"
  tags        = ["prod"]
  quiescent   = false
  fallback    = "10.9.9.9:80"
}
virtual_service "dns" {
  address    = "[2001:db8::53]:53"
  protocol   = "udp"
  forwarding = "masq"
  fallback   = "[2001:db8::9]:5353"
}
virtual_service "shop" {
  address          = "10.10.10.70:443"
  forwarding       = "masq"
  fallback         = "local"
  maintenance_page = "testdata/page.html"
  drain_timeout    = "0s"
  hold             = "20s"
  slow_start       = "30s"
  on_warning       = "quiesce"
}
`
	cfg, err := Parse([]byte(src), "lvs.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Consul != (Consul{Address: "127.0.0.1:8500", TokenFile: "/etc/lvs-sync/consul.token", Datacenter: "dc1", MaxConnections: 4}) {
		t.Errorf("consul = %+v", cfg.Consul)
	}
	if cfg.Director != (Director{VIPInterface: "lvs0", ReconcileInterval: time.Minute, StateFile: "/var/lib/lvs-sync/state.json"}) {
		t.Errorf("director = %+v", cfg.Director)
	}
	if len(cfg.VirtualServices) != 3 {
		t.Fatalf("got %d virtual services", len(cfg.VirtualServices))
	}
	web, dns := cfg.VirtualServices[0], cfg.VirtualServices[1]
	want := VirtualService{
		Name: "web", Protocol: lvs.TCP, Address: netip.MustParseAddrPort("10.10.10.60:80"),
		Scheduler: "wlc", Forwarding: lvs.Route, Persistence: 300 * time.Second,
		Service: "web", Provider: "consul", Tags: []string{"prod"},
		Fallback:     Fallback{Addr: netip.MustParseAddrPort("10.9.9.9:80")},
		DrainTimeout: 30 * time.Second, OnWarning: "serve", MaxRemoval: DefaultMaxRemoval, RemovalHold: 10 * time.Second,
	}
	if got := *web; !equalIgnoringRange(got, want) {
		t.Errorf("web =\n%+v\nwant\n%+v", got, want)
	}
	// Defaults: scheduler wlc, service = label, no persistence.
	wantDNS := VirtualService{
		Name: "dns", Protocol: lvs.UDP, Address: netip.MustParseAddrPort("[2001:db8::53]:53"),
		Scheduler: "wlc", Forwarding: lvs.Masq, Service: "dns", Provider: "consul",
		Fallback:     Fallback{Addr: netip.MustParseAddrPort("[2001:db8::9]:5353")},
		DrainTimeout: 30 * time.Second, OnWarning: "serve", MaxRemoval: DefaultMaxRemoval, RemovalHold: 10 * time.Second,
	}
	if got := *dns; !equalIgnoringRange(got, wantDNS) {
		t.Errorf("dns =\n%+v\nwant\n%+v", got, wantDNS)
	}
	shop := cfg.VirtualServices[2]
	if !shop.Fallback.Local || shop.DrainTimeout != 0 || shop.Hold != 20*time.Second || shop.SlowStart != 30*time.Second ||
		shop.OnWarning != "quiesce" || !strings.Contains(shop.MaintenancePage, "{{.Service}}") {
		t.Errorf("shop = %+v", shop)
	}
	if dns.DeclRange.Start.Line != 22 {
		t.Errorf("dns declared at line %d, want 22", dns.DeclRange.Start.Line)
	}
}

func equalIgnoringRange(a, b VirtualService) bool {
	a.DeclRange, b.DeclRange = hcl.Range{}, hcl.Range{}
	return reflect.DeepEqual(a, b)
}

func TestOperationalSettings(t *testing.T) {
	cfg, err := Parse([]byte(`log_level = "DEBUG"
log_json  = true
api {
  address                  = "127.0.0.1:9400"
  consul_unreachable_after = "10s"
}
director {
  cleanup_on_exit = true
  tune_sysctls    = true
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "debug" || !cfg.LogJSON || cfg.API != (API{Address: "127.0.0.1:9400", ConsulUnreachableAfter: 10 * time.Second}) || !cfg.Director.CleanupOnExit || !cfg.Director.TuneSysctls {
		t.Errorf("config %+v", cfg)
	}
	cfg, err = Parse([]byte(``), "empty.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Address != "127.0.0.1:9337" || cfg.API.ConsulUnreachableAfter != 30*time.Second || cfg.Director.CleanupOnExit || cfg.Director.TuneSysctls {
		t.Errorf("defaults %+v", cfg)
	}
}

// TestAPISettings: token_file is decoded; an address other hosts can
// reach is valid, with a warning at its position.
func TestAPISettings(t *testing.T) {
	cfg, err := Parse([]byte("api {\n  address    = \"127.0.0.1:9400\"\n  token_file = \"/etc/lvs-sync/api.token\"\n}\n"), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.TokenFile != "/etc/lvs-sync/api.token" || cfg.Warnings != nil {
		t.Errorf("api %+v, warnings %v", cfg.API, cfg.Warnings)
	}
	for _, addr := range []string{"0.0.0.0:9337", "10.0.0.5:9337", "[::]:9337"} {
		cfg, err := Parse([]byte("api {\n  address = \""+addr+"\"\n}\n"), "t.hcl")
		if err != nil {
			t.Fatal(err)
		}
		want := `t.hcl:2:13: warning: API reachable from other hosts; api: address: "` + addr + `" is not a loopback address`
		if cfg.Warnings == nil || !strings.HasPrefix(cfg.Warnings.Error(), want) {
			t.Errorf("%s: warnings %v, want %s", addr, cfg.Warnings, want)
		}
	}
	for _, addr := range []string{"127.0.0.1:9337", "[::1]:9337", ""} {
		cfg, err := Parse([]byte("api {\n  address = \""+addr+"\"\n}\n"), "t.hcl")
		if err != nil || cfg.Warnings != nil {
			t.Errorf("%q: %v, warnings %v; want neither", addr, err, cfg.Warnings)
		}
	}
}

func TestInvalid(t *testing.T) {
	vs := func(body string) string {
		return "virtual_service \"web\" {\n" + body + "\n}\n"
	}
	tests := []struct {
		name string
		src  string
		// want are substrings of the one-line diagnostics, in order.
		want []string
	}{
		{"unknown attribute", vs(`address = "10.0.0.1:80"
forwarding = "gate"
weight = 3`), []string{`t.hcl:4:1: error: Unsupported argument; An argument named "weight" is not expected here.`}},
		{"unknown block", `frontend "x" {}`, []string{`t.hcl:1:1: error: Unsupported block type`}},
		{"empty api token_file", "api {\n  token_file = \"\"\n}\n", []string{`t.hcl:2:16: error: Invalid token_file; api: token_file: empty`}},
		{"missing address", vs(`forwarding = "gate"`), []string{`t.hcl:1:23: error: Missing required argument; virtual_service "web" needs address (IP:PORT) or fwmark`}},
		{"missing forwarding", vs(`address = "10.0.0.1:80"`), []string{`Missing required argument; The argument "forwarding" is required`}},
		{"hostname address", vs(`address = "www.example.com:80"
forwarding = "gate"`), []string{`t.hcl:2:11: error: Invalid address; virtual_service "web": address: "www.example.com:80" is not IP:PORT`}},
		{"no port", vs(`address = "10.0.0.1"
forwarding = "gate"`), []string{`t.hcl:2:11: error: Invalid address`}},
		{"port zero", vs(`address = "10.0.0.1:0"
forwarding = "gate"`), []string{`address: "10.0.0.1:0": port must be 1 to 65535`}},
		{"port too big", vs(`address = "10.0.0.1:65536"
forwarding = "gate"`), []string{`t.hcl:2:11: error: Invalid address`}},
		{"unbracketed ipv6", vs(`address = "2001:db8::1:80"
forwarding = "gate"`), []string{`Invalid address`}},
		{"unspecified", vs(`address = "0.0.0.0:80"
forwarding = "gate"`), []string{`must be a unicast address`}},
		{"bad forwarding", vs(`address = "10.0.0.1:80"
forwarding = "nat"`), []string{`t.hcl:3:14: error: Invalid forwarding method; virtual_service "web": forwarding: unknown forwarding method "nat": want masq, gate or ipip`}},
		{"bad protocol", vs(`address = "10.0.0.1:80"
forwarding = "gate"
protocol = "icmp"`), []string{`t.hcl:4:12: error: Invalid protocol; virtual_service "web": protocol: unknown protocol "icmp"`}},
		{"bad scheduler", vs(`address = "10.0.0.1:80"
forwarding = "gate"
scheduler = "Round Robin"`), []string{`t.hcl:4:13: error: Invalid scheduler`}},
		{"bad duration", vs(`address = "10.0.0.1:80"
forwarding = "gate"
persistence = "five minutes"`), []string{`t.hcl:4:15: error: Invalid persistence; virtual_service "web": persistence: "five minutes" is not a duration`}},
		{"fractional persistence", vs(`address = "10.0.0.1:80"
forwarding = "gate"
persistence = "1.5s"`), []string{`must be whole seconds`}},
		{"negative persistence", vs(`address = "10.0.0.1:80"
forwarding = "gate"
persistence = "-5s"`), []string{`must not be negative`}},
		{"wrong type", vs(`address = "10.0.0.1:80"
forwarding = "gate"
quiescent = "sometimes"`), []string{`t.hcl:4:14: error: Unsuitable value type`}},
		{"tags not a list", vs(`address = "10.0.0.1:80"
forwarding = "gate"
tags = "prod"`), []string{`t.hcl:4:9: error: Unsuitable value type`}},
		{"empty tag", vs(`address = "10.0.0.1:80"
forwarding = "gate"
tags = ["prod", ""]`), []string{`tags: tags must not be empty`}},
		{"bad service name", vs(`address = "10.0.0.1:80"
forwarding = "gate"
service = "web/admin"`), []string{`t.hcl:4:11: error: Invalid Consul service name`}},
		{"bad fallback", vs(`address = "10.0.0.1:80"
forwarding = "gate"
fallback = "maintenance"`), []string{`t.hcl:4:12: error: Invalid fallback; virtual_service "web": fallback: want "local" or IP:PORT`}},
		{"mixed families", vs(`address = "10.0.0.1:80"
forwarding = "masq"
fallback = "[2001:db8::9]:80"`), []string{`t.hcl:4:12: error: Mixed address families`}},
		{"gate fallback on another port", vs(`address = "10.0.0.1:80"
forwarding = "gate"
fallback = "10.9.9.9:8080"`), []string{`t.hcl:4:12: error: Port cannot be changed`}},
		{"duplicate label", vs(`address = "10.0.0.1:80"
forwarding = "gate"`) + vs(`address = "10.0.0.2:80"
forwarding = "gate"`), []string{`t.hcl:5:1: error: Duplicate virtual service; virtual_service "web" is already declared at t.hcl:1,1-22.`}},
		{"duplicate address", vs(`address = "10.0.0.1:80"
forwarding = "gate"`) + `virtual_service "www" {
address = "10.0.0.1:80"
forwarding = "masq"
}`, []string{`t.hcl:5:1: error: Duplicate virtual address; virtual_service "www": tcp://10.0.0.1:80 is already served by virtual_service "web"`}},
		{"same address other protocol is fine but bad port", vs(`address = "10.0.0.1:80"
forwarding = "gate"`) + `virtual_service "dns" {
address = "10.0.0.1:80"
protocol = "udp"
forwarding = "masq"
fallback = "10.0.0.9:0"
}`, []string{`t.hcl:9:12: error: Invalid fallback`}},
		{"two consul blocks", "consul {}\nconsul {}\n", []string{`t.hcl:2:1: error: Duplicate consul block; Only one consul block is allowed; the first is at t.hcl:1,1-7.`}},
		{"empty consul address", "consul {\n  address = \"\"\n}\n", []string{`t.hcl:2:13: error: Empty value; consul: address: must not be empty`}},
		{"no connection budget", "consul {\n  max_connections = 0\n}\n", []string{`t.hcl:2:21: error: Invalid connection budget`}},
		{"cert without key", "consul {\n  cert_file = \"/c.pem\"\n}\n", []string{`Incomplete client certificate`}},
		{"bad vip interface", "director {\n  vip_interface = \"lvs 0\"\n}\n", []string{`t.hcl:2:19: error: Invalid interface name`}},
		{"long vip interface", "director {\n  vip_interface = \"a-very-long-link-name\"\n}\n", []string{`must be 1 to 15 characters`}},
		{"short reconcile interval", "director {\n  reconcile_interval = \"10ms\"\n}\n", []string{`t.hcl:2:24: error: Invalid reconcile interval`}},
		{"relative state file", "director {\n  state_file = \"state.json\"\n}\n", []string{`t.hcl:2:16: error: Invalid state file`}},
		{"bad drain timeout", vs(`address = "10.0.0.1:80"
forwarding = "gate"
drain_timeout = "-1s"`), []string{`t.hcl:4:17: error: Invalid duration; virtual_service "web": drain_timeout:`}},
		{"bad hold", vs(`address = "10.0.0.1:80"
forwarding = "gate"
hold = "often"`), []string{`t.hcl:4:8: error: Invalid duration`}},
		{"bad on_warning", vs(`address = "10.0.0.1:80"
forwarding = "gate"
on_warning = "ignore"`), []string{`t.hcl:4:14: error: Invalid warning policy`}},
		{"local fallback on udp", vs(`address = "10.0.0.1:53"
forwarding = "masq"
protocol = "udp"
fallback = "local"`), []string{`t.hcl:5:12: error: Local fallback needs tcp`}},
		{"page without local fallback", vs(`address = "10.0.0.1:80"
forwarding = "gate"
maintenance_page = "page.html"`), []string{`t.hcl:4:20: error: Maintenance page without local fallback`}},
		{"missing page", vs(`address = "10.0.0.1:80"
forwarding = "gate"
fallback = "local"
maintenance_page = "/nonexistent/page.html"`), []string{`t.hcl:5:20: error: Invalid maintenance page; virtual_service "web": maintenance_page: open /nonexistent/page.html`}},
		{"broken page template", vs(`address = "10.0.0.1:80"
forwarding = "gate"
fallback = "local"
maintenance_page = "testdata/broken-page.html"`), []string{`t.hcl:5:20: error: Invalid maintenance page`}},
		{"bad api address", "api {\n  address = \"localhost:9337\"\n}\n", []string{`t.hcl:2:13: error: Invalid address; api: address:`}},
		{"bad log level", "log_level = \"loud\"\n", []string{`t.hcl:1:13: error: Invalid log level`}},
		{"two api blocks", "api {}\napi {}\n", []string{`t.hcl:2:1: error: Duplicate api block`}},
		{"syntax error", "virtual_service \"web\" {\n  address = \n}\n", []string{`t.hcl:2:`}},
		{"unknown scheduler", vs(`address = "10.0.0.1:80"
forwarding = "gate"
scheduler = "fair"`), []string{`t.hcl:4:13: error: Invalid scheduler; virtual_service "web": scheduler: unknown scheduler "fair": the kernel has rr, wrr,`}},
		{"sh flag without sh", vs(`address = "10.0.0.1:80"
forwarding = "gate"
scheduler_flags = ["sh-fallback"]`), []string{`t.hcl:4:19: error: Invalid scheduler flag; virtual_service "web": scheduler_flags: sh-fallback is a flag of the sh scheduler, not of wlc`}},
		{"mh flag with sh", vs(`address = "10.0.0.1:80"
forwarding = "gate"
scheduler = "sh"
scheduler_flags = ["sh-fallback", "mh-port"]`), []string{`t.hcl:5:19: error: Invalid scheduler flag; virtual_service "web": scheduler_flags: mh-port is a flag of the mh scheduler, not of sh`}},
		{"unknown scheduler flag", vs(`address = "10.0.0.1:80"
forwarding = "gate"
scheduler = "mh"
scheduler_flags = ["mh-fallback", "flag-3"]`), []string{`scheduler_flags: unknown scheduler flag "flag-3": the mh scheduler has mh-fallback and mh-port`}},
		{"flags of no scheduler", vs(`address = "10.0.0.1:80"
forwarding = "gate"
scheduler = "rr"
scheduler_flags = ["port"]`), []string{`unknown scheduler flag "port": only sh (sh-fallback, sh-port) and mh (mh-fallback, mh-port) have flags`}},
		{"every problem at once", vs(`address = "10.0.0.1:0"
forwarding = "nat"
protocol = "icmp"
persistence = "soon"`), []string{
			`t.hcl:2:11: error: Invalid address`,
			`t.hcl:3:14: error: Invalid forwarding method`,
			`t.hcl:4:12: error: Invalid protocol`,
			`t.hcl:5:15: error: Invalid persistence`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantDiagnostics(t, tt.src, tt.want) })
	}
}

// wantDiagnostics parses src as t.hcl and checks that it fails with the
// one-line diagnostics want, in order, each a substring.
func wantDiagnostics(t *testing.T, src string, want []string) {
	t.Helper()
	cfg, err := Parse([]byte(src), "t.hcl")
	if err == nil {
		t.Fatalf("no error; config %+v", cfg)
	}
	var diags *DiagnosticsError
	if !errors.As(err, &diags) {
		t.Fatalf("error %v is not a *DiagnosticsError", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("diagnostic %d:\n  %s\nwant it to contain\n  %s", i, lines[i], w)
		}
	}
}

func TestLoadDirectoryMergesInNameOrder(t *testing.T) {
	cfg, err := Load("testdata/dir")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vs := range cfg.VirtualServices {
		names = append(names, vs.Name)
	}
	if got := strings.Join(names, ","); got != "web,api,dns" {
		t.Errorf("virtual services in order %s, want web,api,dns (files 10-, 20-, then their order)", got)
	}
	if cfg.Consul.Address != "127.0.0.1:8500" || cfg.Director.VIPInterface != "lvs0" {
		t.Errorf("blocks from other files not merged: %+v %+v", cfg.Consul, cfg.Director)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "has no *.hcl files") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.hcl")); err == nil || !strings.Contains(err.Error(), "missing.hcl") {
		t.Errorf("missing file: %v", err)
	}
	// A duplicate across files points at the second file.
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.hcl", "virtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"gate\"\n}\n")
	write("b.hcl", "\n\nvirtual_service \"web\" {\n  address = \"10.0.0.2:80\"\n  forwarding = \"gate\"\n}\n")
	_, err := Load(dir)
	want := filepath.Join(dir, "b.hcl") + ":3:1: error: Duplicate virtual service"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("duplicate across files: got %v, want %s", err, want)
	}
}

// TestDiagnosticsGolden pins the full output users see from `validate`.
func TestDiagnosticsGolden(t *testing.T) {
	_, err := Load("testdata/invalid.hcl")
	var diags *DiagnosticsError
	if !errors.As(err, &diags) {
		t.Fatalf("got %v, want diagnostics", err)
	}
	var b strings.Builder
	if err := diags.Write(&b, 100, false); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/invalid.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("diagnostics differ from %s (go test ./config -update to accept):\n%s", golden, b.String())
	}
}

// TestExamplesAreValid keeps the configs users copy from examples/ loading.
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../examples/lvs-sync*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSchedulerFlags: scheduler_flags become the kernel's bits, and a
// hashing scheduler that can see a real at weight 0 without its fallback
// flag is valid, with a warning at the attribute to change.
func TestSchedulerFlags(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		flags lvs.SchedFlags
		warn  []string // one-line warnings
	}{
		{"sh with both flags", `scheduler = "sh"
scheduler_flags = ["sh-fallback", "sh-port"]`, lvs.SchedFlag1 | lvs.SchedFlag2, nil},
		{"mh with its fallback", `scheduler = "mh"
scheduler_flags = ["mh-fallback"]`, lvs.SchedFlag1, nil},
		{"sh drains without its fallback", `scheduler = "sh"`, 0, []string{
			`t.hcl:4:13: warning: Weight 0 without sh-fallback; virtual_service "web": scheduler: with sh, a real at weight 0 (drain_timeout = "30s") keeps its hash share of new connections, and the clients that hash to it are sent nowhere; add "sh-fallback" to scheduler_flags`,
		}},
		{"mh quiesces without its fallback", `scheduler = "mh"
scheduler_flags = ["mh-port"]
quiescent = true
on_warning = "quiesce"
drain_timeout = "0s"`, lvs.SchedFlag2, []string{
			`t.hcl:5:19: warning: Weight 0 without mh-fallback; virtual_service "web": scheduler_flags: with mh, a real at weight 0 (quiescent = true, on_warning = "quiesce") keeps its hash share`,
		}},
		{"sh that never sees weight 0", `scheduler = "sh"
drain_timeout = "0s"`, 0, nil},
		{"wlc needs no flag", `quiescent = true`, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "virtual_service \"web\" {\naddress = \"10.0.0.1:80\"\nforwarding = \"gate\"\n" + tt.body + "\n}\n"
			cfg, err := Parse([]byte(src), "t.hcl")
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.VirtualServices[0].SchedulerFlags; got != tt.flags {
				t.Errorf("flags %#x, want %#x", got, tt.flags)
			}
			var got []string
			if cfg.Warnings != nil {
				got = strings.Split(cfg.Warnings.Error(), "\n")
			}
			if len(got) != len(tt.warn) {
				t.Fatalf("warnings %q, want %q", got, tt.warn)
			}
			for i, w := range tt.warn {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d:\n  %s\nwant it to start with\n  %s", i, got[i], w)
				}
			}
		})
	}
}

// TestSameDefinitionComparesEveryField changes each field of a virtual
// service in turn: every change but where it was declared makes another
// definition, which a reload renders anew.
func TestSameDefinitionComparesEveryField(t *testing.T) {
	base := VirtualService{Name: "web", Address: netip.MustParseAddrPort("10.0.0.1:80"), VIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
		Tags: []string{"a"}, Scheduler: "wlc"}
	typ := reflect.TypeFor[VirtualService]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		vs := base
		vs.VIPs, vs.Tags = slices.Clone(base.VIPs), slices.Clone(base.Tags)
		if !testenv.Change(reflect.ValueOf(&vs).Elem().Field(i)) {
			t.Fatalf("%s: testenv.Change cannot change it", f.Name)
		}
		if same, want := base.SameDefinition(&vs), f.Name == "DeclRange"; same != want {
			t.Errorf("%s changed: SameDefinition %v, want %v", f.Name, same, want)
		}
	}
}
