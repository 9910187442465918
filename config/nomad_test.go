package config

import (
	"slices"
	"strings"
	"testing"
)

func TestNomadBlock(t *testing.T) {
	cfg, err := Parse([]byte(`
nomad {
  address         = "https://nomad.example:4646"
  token_file      = "/etc/lvs-sync/nomad.token"
  namespace       = "*"
  region          = ""
  ca_cert         = "/etc/nomad/ca.pem"
  client_cert     = "/etc/nomad/cli.pem"
  client_key      = "/etc/nomad/cli-key.pem"
  tls_server_name = "server.global.nomad"
  skip_verify     = false
  max_connections = 4
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  service    = "web"
  provider   = "nomad"
}
virtual_service "api" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
}
virtual_service "api-nomad" {
  address    = "10.10.10.62:80"
  forwarding = "gate"
  service    = "api"
  provider   = "nomad"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Nomad
	if n.Address != "https://nomad.example:4646" || n.TokenFile != "/etc/lvs-sync/nomad.token" || n.Namespace != "*" || n.Region != "" ||
		n.CACert != "/etc/nomad/ca.pem" || n.ClientCert != "/etc/nomad/cli.pem" || n.ClientKey != "/etc/nomad/cli-key.pem" ||
		n.TLSServerName != "server.global.nomad" || n.SkipVerify == nil || *n.SkipVerify || n.MaxConnections != 4 {
		t.Errorf("nomad = %+v", n)
	}
	if n.DeclRange.Start.Line != 2 {
		t.Errorf("nomad block declared at line %d, want 2", n.DeclRange.Start.Line)
	}
	// The default provider is Consul's; the same name in both catalogs is
	// two services, each with its own key.
	for _, c := range []struct{ vs, provider, key string }{{"web", "nomad", "nomad/web"}, {"api", "consul", "api"}, {"api-nomad", "nomad", "nomad/api"}} {
		vs := cfg.VirtualService(c.vs)
		if vs.Provider != c.provider || vs.CatalogKey() != c.key {
			t.Errorf("%s: provider %q key %q, want %q %q", c.vs, vs.Provider, vs.CatalogKey(), c.provider, c.key)
		}
		if p, name := ParseCatalogKey(vs.CatalogKey()); p != vs.Provider || name != vs.Service {
			t.Errorf("%s: ParseCatalogKey(%q) = %q, %q; want %q, %q", c.vs, vs.CatalogKey(), p, name, vs.Provider, vs.Service)
		}
	}
	if got, want := cfg.Services(), []string{"nomad/web", "api", "nomad/api"}; !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}
	if !cfg.Uses(ProviderNomad) || !cfg.Uses(ProviderConsul) {
		t.Errorf("Uses: nomad %v consul %v, want both", cfg.Uses(ProviderNomad), cfg.Uses(ProviderConsul))
	}
}

// TestNomadAlone: a config of Nomad services alone needs no block at all,
// and does not use Consul.
func TestNomadAlone(t *testing.T) {
	cfg, err := Parse([]byte(`
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  provider   = "nomad"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uses(ProviderConsul) || !cfg.Uses(ProviderNomad) || cfg.Warnings != nil {
		t.Errorf("uses consul %v nomad %v, warnings %v; want nomad alone, no warning", cfg.Uses(ProviderConsul), cfg.Uses(ProviderNomad), cfg.Warnings)
	}
	if cfg.Nomad.SkipVerify != nil || cfg.Nomad.Address != "" {
		t.Errorf("nomad = %+v, want the zero value: the environment's defaults", cfg.Nomad)
	}
}

// TestHANeedsConsulWithNomadAlone: the pair keeps its lease in Consul, so
// validate says a Nomad-only director with ha still needs Consul; one
// Consul service is reason enough to have it, and says nothing.
func TestHANeedsConsulWithNomadAlone(t *testing.T) {
	const ha = `
director {
  ha {
    lock_key  = "lvs-sync/pair"
    interface = "eth0"
  }
}
`
	for _, tt := range []struct {
		name, provider string
		warn           string
	}{
		{"nomad alone", "nomad", `t.hcl:3:3: warning: ha needs Consul; director.ha: every virtual service is Nomad's, but the ha pair keeps its lease in Consul`},
		{"consul", "consul", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(ha+`virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  provider   = "`+tt.provider+`"
}
`), "t.hcl")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.warn == "" && cfg.Warnings != nil:
				t.Errorf("warnings %v, want none", cfg.Warnings)
			case tt.warn != "" && (cfg.Warnings == nil || !strings.Contains(cfg.Warnings.Error(), tt.warn)):
				t.Errorf("warnings %v, want one containing %q", cfg.Warnings, tt.warn)
			}
		})
	}
}

func TestNomadInvalid(t *testing.T) {
	vs := func(body string) string {
		return "virtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"gate\"\n" + body + "\n}\n"
	}
	for _, tt := range []struct {
		name, src string
		want      []string
	}{
		{"unknown provider", vs(`  provider = "kubernetes"`),
			[]string{`t.hcl:4:14: error: Invalid provider; virtual_service "web": provider: "kubernetes": want "consul" or "nomad"`}},
		{"provider not a string", vs(`  provider = ["nomad"]`), []string{`t.hcl:4:14: error: Unsuitable value type`}},
		{"nomad service name", vs(`  provider = "nomad"
  service = "web_admin"`), []string{`t.hcl:5:13: error: Invalid Nomad service name; virtual_service "web": service: "web_admin": a Nomad service name is letters, digits and dashes`}},
		{"a name no consul service can have", vs(`  service = "nomad/web"`), []string{`t.hcl:4:13: error: Invalid Consul service name`}},
		{"empty values", `nomad {
  address = ""
  token_file = ""
  namespace = ""
  ca_cert = ""
  tls_server_name = ""
}
`, []string{
			`t.hcl:2:13: error: Empty value; nomad: address: must not be empty`,
			`t.hcl:3:16: error: Empty value; nomad: token_file: must not be empty`,
			`t.hcl:4:15: error: Empty value; nomad: namespace: must not be empty`,
			`t.hcl:5:13: error: Empty value; nomad: ca_cert: must not be empty`,
			`t.hcl:6:21: error: Empty value; nomad: tls_server_name: must not be empty`,
		}},
		{"bad values", `nomad {
  address = "127.0.0.1:4646"
  namespace = "a b"
  max_connections = 0
  client_cert = "/c.pem"
}
`, []string{
			`t.hcl:2:13: error: Invalid address; nomad: address: "127.0.0.1:4646": want a URL`,
			`t.hcl:3:15: error: Invalid namespace; nomad: namespace: "a b"`,
			`t.hcl:4:21: error: Invalid connection budget; nomad: max_connections: 0: at least 1 connection is needed`,
			`t.hcl:5:17: error: Incomplete client certificate; nomad: client_cert: client_cert and client_key go together`,
		}},
		{"consul's names", `nomad {
  ca_file = "/ca.pem"
}
`, []string{`t.hcl:2:3: error: Unsupported argument; An argument named "ca_file" is not expected here.`}},
		{"two nomad blocks", "nomad {}\nnomad {}\n", []string{`t.hcl:2:1: error: Duplicate nomad block; Only one nomad block is allowed; the first is at t.hcl:1,1-6.`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "t.hcl")
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("diagnostic %d:\n  %s\nwant it to contain\n  %s", i, lines[i], w)
				}
			}
		})
	}
}

func TestNomadNeedsRestart(t *testing.T) {
	parse := func(nomad string) *Config {
		t.Helper()
		cfg, err := Parse([]byte(nomad+`
virtual_service "web" {
  address    = "10.0.0.1:80"
  forwarding = "gate"
  provider   = "nomad"
}
`), "t.hcl")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	old := parse(`nomad {
  address    = "http://127.0.0.1:4646"
  token_file = "/a"
}`)
	// A token_file is re-read on every reload, as consul's: no restart.
	if got := old.NeedsRestart(parse(`nomad {
  address    = "http://127.0.0.1:4646"
  token_file = "/b"
}`)); len(got) != 0 {
		t.Errorf("a new nomad token_file needs a restart of %v, want none", got)
	}
	got := old.NeedsRestart(parse(`nomad {
  address     = "http://10.0.0.9:4646"
  namespace   = "apps"
  region      = "eu"
  skip_verify = true
}`))
	want := []string{"nomad.address", "nomad.namespace", "nomad.region", "nomad.skip_verify"}
	if !slices.Equal(got, want) {
		t.Errorf("NeedsRestart = %v, want %v", got, want)
	}
}
