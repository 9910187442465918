package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// The nomad block, and a virtual service's provider: which catalog its
// service is registered in. Nomad (1.3 and later) keeps the services of
// the jobs that say `service { provider = "nomad" }` in its own catalog;
// a cluster without Consul has only that one.

// The providers of a virtual service's service, named as Nomad's service
// block names them.
const (
	ProviderConsul = "consul"
	ProviderNomad  = "nomad"
)

// DefaultProvider is provider's default: Consul, as before there was a
// choice.
const DefaultProvider = ProviderConsul

// Nomad says how to reach Nomad's HTTP API. Empty fields fall back to the
// NOMAD_* environment variables, as the nomad CLI reads them (cmd reads
// them); the attributes are named after those variables: NOMAD_CACERT is
// ca_cert, NOMAD_CLIENT_CERT client_cert, NOMAD_CLIENT_KEY client_key,
// NOMAD_TLS_SERVER_NAME tls_server_name, NOMAD_SKIP_VERIFY skip_verify.
type Nomad struct {
	Address   string // default NOMAD_ADDR, then http://127.0.0.1:4646
	TokenFile string // default: the token of NOMAD_TOKEN
	// Namespace is the namespace whose services are read; "*" is all of
	// them. Default NOMAD_NAMESPACE, then "default".
	Namespace     string
	Region        string // default NOMAD_REGION, then the agent's
	CACert        string
	ClientCert    string
	ClientKey     string
	TLSServerName string
	// SkipVerify is skip_verify; nil when unset, so that NOMAD_SKIP_VERIFY
	// decides.
	SkipVerify *bool
	// MaxConnections caps the TCP connections to Nomad (max_connections;
	// 0 is the source's default), as consul's does.
	MaxConnections int
	// DeclRange is where the block is, the zero range when there is none.
	DeclRange hcl.Range
}

type rawNomad struct {
	Address       *string  `hcl:"address,optional"`
	TokenFile     *string  `hcl:"token_file,optional"`
	Namespace     *string  `hcl:"namespace,optional"`
	Region        *string  `hcl:"region,optional"`
	CACert        *string  `hcl:"ca_cert,optional"`
	ClientCert    *string  `hcl:"client_cert,optional"`
	ClientKey     *string  `hcl:"client_key,optional"`
	TLSServerName *string  `hcl:"tls_server_name,optional"`
	SkipVerify    *bool    `hcl:"skip_verify,optional"`
	MaxConns      *int     `hcl:"max_connections,optional"`
	Body          hcl.Body `hcl:",body"`
	Remain        hcl.Body `hcl:",remain"`
	DefRange      hcl.Range
}

func decodeNomad(rn *rawNomad) (Nomad, hcl.Diagnostics) {
	at := newAttrs("nomad", rn.Body, rn.DefRange)
	var diags hcl.Diagnostics
	n := Nomad{
		Address:       deref(rn.Address),
		TokenFile:     deref(rn.TokenFile),
		Namespace:     deref(rn.Namespace),
		Region:        deref(rn.Region),
		CACert:        deref(rn.CACert),
		ClientCert:    deref(rn.ClientCert),
		ClientKey:     deref(rn.ClientKey),
		TLSServerName: deref(rn.TLSServerName),
		SkipVerify:    rn.SkipVerify,
		DeclRange:     rn.DefRange,
	}
	// region = "" is the contract's way of saying "the agent's": the one
	// attribute that may be empty.
	diags = append(diags, at.nonEmpty(setString{"address", rn.Address}, setString{"token_file", rn.TokenFile},
		setString{"namespace", rn.Namespace}, setString{"ca_cert", rn.CACert}, setString{"client_cert", rn.ClientCert},
		setString{"client_key", rn.ClientKey}, setString{"tls_server_name", rn.TLSServerName})...)
	if n.Address != "" && !strings.HasPrefix(n.Address, "http://") && !strings.HasPrefix(n.Address, "https://") {
		diags = append(diags, at.errorf("address", "Invalid address", "%q: want a URL, http://HOST:PORT or https://HOST:PORT, as NOMAD_ADDR", n.Address))
	}
	if n.Namespace != "" && n.Namespace != "*" && !nomadNameRE.MatchString(n.Namespace) {
		diags = append(diags, at.errorf("namespace", "Invalid namespace", "%q: a Nomad namespace is letters, digits, - and _, or \"*\" for all", n.Namespace))
	}
	var budgetDiags hcl.Diagnostics
	n.MaxConnections, budgetDiags = at.connBudget(rn.MaxConns)
	diags = append(diags, budgetDiags...)
	if (n.ClientCert == "") != (n.ClientKey == "") {
		diags = append(diags, at.errorf("client_cert", "Incomplete client certificate", "client_cert and client_key go together"))
	}
	return n, diags
}

// nomadNameRE is what Nomad takes as a namespace name.
var nomadNameRE = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,128}$`)

// nomadServiceRE is Nomad's rule for a service name (structs.Service's
// validServiceNameRe): an RFC 1123 label, which has no "/".
var nomadServiceRE = regexp.MustCompile(`^(?i:[a-z0-9]|[a-z0-9][a-z0-9\-]{0,61}[a-z0-9])$`)

func parseProvider(s string) (string, error) {
	switch s {
	case ProviderConsul, ProviderNomad:
		return s, nil
	}
	return "", fmt.Errorf("%q: want %q or %q", s, ProviderConsul, ProviderNomad)
}

// validProviderService checks a service name by its provider's rules.
func validProviderService(provider, name string) error {
	if provider == ProviderNomad {
		if !nomadServiceRE.MatchString(name) {
			return fmt.Errorf("%q: a Nomad service name is letters, digits and dashes, at most 63, not beginning or ending with a dash", name)
		}
		return nil
	}
	return validServiceName(name)
}

// nomadKeyPrefix begins the catalog key of a Nomad service: a "/", which
// no Consul service name can have (validServiceName), so that the two
// catalogs' names never meet in one snapshot.
const nomadKeyPrefix = ProviderNomad + "/"

// CatalogKey is the one name of the virtual service's service in a
// catalog snapshot: the service's name for Consul's ("web"), and
// "nomad/web" for Nomad's. Whatever looks a service up in a snapshot, or
// names one to watch, uses it; ParseCatalogKey reads it back.
func (vs *VirtualService) CatalogKey() string {
	if vs.Provider == ProviderNomad {
		return nomadKeyPrefix + vs.Service
	}
	return vs.Service
}

// ParseCatalogKey splits a CatalogKey into its provider and the service's
// name in that provider's catalog.
func ParseCatalogKey(key string) (provider, service string) {
	if name, ok := strings.CutPrefix(key, nomadKeyPrefix); ok {
		return ProviderNomad, name
	}
	return ProviderConsul, key
}

// Uses reports whether some virtual service's service is in provider's
// catalog: without one, that catalog is never read.
func (c *Config) Uses(provider string) bool {
	for _, vs := range c.VirtualServices {
		if vs.Provider == provider {
			return true
		}
	}
	return false
}

// checkConsulForHA warns when director.ha is set and no virtual service
// is Consul's: the pair's lease and heartbeat key live in Consul, so this
// director still needs it, though its catalog is not read.
func checkConsulForHA(cfg *Config) hcl.Diagnostics {
	h := cfg.Director.HA
	if h == nil || cfg.Uses(ProviderConsul) || len(cfg.VirtualServices) == 0 {
		return nil
	}
	return hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "ha needs Consul",
		Detail: "director.ha: every virtual service is Nomad's, but the ha pair keeps its lease in Consul: " +
			"this director still reaches Consul (the consul block, else CONSUL_HTTP_ADDR)",
		Subject: h.DeclRange.Ptr()}}
}
