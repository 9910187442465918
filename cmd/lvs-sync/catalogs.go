package main

import (
	"cmp"
	"fmt"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/consul"
	"github.com/lvs-sync/lvs-sync/catalog/nomad"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
)

// The catalogs a config's virtual services are read from: Consul's and
// Nomad's, behind one catalog.Combined.

// nomadSource is what cmd uses of catalog/nomad's Source.
type nomadSource interface {
	catalog.Source
	Token() string
}

// nomadConn is how to reach Nomad: the config's nomad block over the
// NOMAD_* environment, as the nomad CLI reads it: catalog/nomad's Options
// that the config sets.
type nomadConn struct {
	Address, Token, Namespace, Region            string
	CACert, ClientCert, ClientKey, TLSServerName string
	SkipVerify                                   bool
	MaxConnections                               int
}

// newNomadSource makes the Nomad source: catalog/nomad's; tests put a
// fake in its place.
var newNomadSource = func(c nomadConn, log hclog.Logger) (nomadSource, error) {
	src, err := nomad.NewSource(nomad.Options{Address: c.Address, Token: c.Token, Namespace: c.Namespace, Region: c.Region,
		CACert: c.CACert, ClientCert: c.ClientCert, ClientKey: c.ClientKey, TLSServerName: c.TLSServerName,
		SkipVerify: c.SkipVerify, MaxConnections: c.MaxConnections, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("nomad at %s: %w", c.Address, err)
	}
	return src, nil
}

// Defaults of the nomad block where the environment says nothing either.
const (
	defaultNomadAddr      = "http://127.0.0.1:4646"
	defaultNomadNamespace = "default"
)

// nomadConnOf resolves the nomad block against the environment: each
// attribute set wins, else its NOMAD_* variable (token_file over
// NOMAD_TOKEN), else the default. It reads token_file.
func nomadConnOf(c config.Nomad, getenv func(string) string) (nomadConn, error) {
	n := nomadConn{
		Address:        cmp.Or(c.Address, getenv("NOMAD_ADDR"), defaultNomadAddr),
		Namespace:      cmp.Or(c.Namespace, getenv("NOMAD_NAMESPACE"), defaultNomadNamespace),
		Region:         cmp.Or(c.Region, getenv("NOMAD_REGION")),
		CACert:         cmp.Or(c.CACert, getenv("NOMAD_CACERT")),
		ClientCert:     cmp.Or(c.ClientCert, getenv("NOMAD_CLIENT_CERT")),
		ClientKey:      cmp.Or(c.ClientKey, getenv("NOMAD_CLIENT_KEY")),
		TLSServerName:  cmp.Or(c.TLSServerName, getenv("NOMAD_TLS_SERVER_NAME")),
		MaxConnections: c.MaxConnections,
	}
	switch v := getenv("NOMAD_SKIP_VERIFY"); {
	case c.SkipVerify != nil:
		n.SkipVerify = *c.SkipVerify
	case v != "":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nomadConn{}, fmt.Errorf("NOMAD_SKIP_VERIFY=%q: want true or false", v)
		}
		n.SkipVerify = b
	}
	if c.TokenFile != "" {
		t, err := config.ReadTokenFile("nomad", c.TokenFile)
		if err != nil {
			return nomadConn{}, err
		}
		n.Token = t
	} else {
		n.Token = getenv("NOMAD_TOKEN")
	}
	return n, nil
}

// catalogs is the combined source of the daemon, render and plan. Its
// token is Consul's: the one token holder that director.ha's calls ask
// too (daemon.Daemon.Token), Nomad having no part in the pair.
type catalogs struct {
	*catalog.Combined
	consul *consul.Source // nil when it could not be made and no service needs it
	nomad  nomadSource    // likewise
	conn   nomadConn      // how nomad was made, for another token
	log    hclog.Logger
}

// newCatalogs makes the sources of cfg's catalogs. Those its virtual
// services use must be made, or it fails. With all (run, whose reloads may
// bring the other catalog's first service), the other is made too if it
// can be, and left out, with a note in the debug log, if not; making a
// source contacts nothing: only watching or reading does, and only a key
// of its catalog starts that.
func newCatalogs(cfg *config.Config, all bool, getenv func(string) string, log hclog.Logger) (*catalogs, error) {
	c := &catalogs{Combined: &catalog.Combined{Sources: map[string]catalog.Source{}, Split: config.ParseCatalogKey}, log: log}
	needConsul, needNomad := cfg.Uses(config.ProviderConsul), cfg.Uses(config.ProviderNomad)
	if needConsul || all {
		client, err := newConsulClient(cfg.Consul)
		switch {
		case err != nil && needConsul:
			return nil, fmt.Errorf("setting up the consul client: %w", err)
		case err != nil:
			log.Debug("no consul catalog: no virtual service needs it, and its client cannot be set up", "error", err)
		default:
			c.consul = consul.NewSource(client, consul.Options{Datacenter: cfg.Consul.Datacenter, MaxConnections: cfg.Consul.MaxConnections,
				Logger: log.Named("catalog")})
			c.Sources[config.ProviderConsul] = c.consul
		}
	}
	if needNomad || all {
		conn, err := nomadConnOf(cfg.Nomad, getenv)
		var src nomadSource
		if err == nil {
			src, err = newNomadSource(conn, log.Named("nomad"))
		}
		switch {
		case err != nil && needNomad:
			return nil, fmt.Errorf("setting up the nomad catalog: %w", err)
		case err != nil:
			log.Debug("no nomad catalog: no virtual service needs it, and it cannot be set up", "error", err)
		default:
			c.nomad, c.conn = src, conn
			c.Sources[config.ProviderNomad] = src
		}
	}
	return c, nil
}

// Token is the Consul catalog's token ("" is its client's own).
func (c *catalogs) Token() string {
	if c.consul == nil {
		return ""
	}
	return c.consul.Token()
}

// withTokens is the catalogs with other tokens, for a reload: each source
// given one is a new one, which the running source is left alone by, so
// that the token changes with the config when it takes over; "" keeps a
// catalog's source as it is.
func (c *catalogs) withTokens(consulToken, nomadToken string) daemon.Source {
	n := &catalogs{Combined: &catalog.Combined{Sources: map[string]catalog.Source{}, Split: c.Split},
		consul: c.consul, nomad: c.nomad, conn: c.conn, log: c.log}
	if consulToken != "" && c.consul != nil {
		n.consul = c.consul.WithToken(consulToken)
	}
	if nomadToken != "" && c.nomad != nil {
		conn := c.conn
		conn.Token = nomadToken
		src, err := newNomadSource(conn, c.log.Named("nomad"))
		if err != nil {
			// The same options but the token made one before: keep it.
			c.log.Error("cannot set up the nomad catalog with the new token; the running token stays", "error", err)
		} else {
			n.nomad, n.conn = src, conn
		}
	}
	if n.consul != nil {
		n.Sources[config.ProviderConsul] = n.consul
	}
	if n.nomad != nil {
		n.Sources[config.ProviderNomad] = n.nomad
	}
	return n
}
