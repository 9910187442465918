package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/daemon"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// fakeNomad stands in for catalog/nomad's Source where a test is about
// the wiring, not the source (which its own tests run against a real
// agent): it answers the services it has, and records how it was made.
type fakeNomad struct {
	conn     nomadConn
	services map[string]*catalog.Service
	fetches  atomic.Int32
}

func (f *fakeNomad) snapshot(names []string) catalog.Snapshot {
	s := catalog.Snapshot{Services: map[string]*catalog.Service{}}
	for _, n := range names {
		if svc := f.services[n]; svc != nil {
			s.Services[n] = svc
		} else {
			s.Services[n] = &catalog.Service{Name: n}
		}
	}
	return s
}

func (f *fakeNomad) Fetch(_ context.Context, names []string) (catalog.Snapshot, error) {
	f.fetches.Add(1)
	return f.snapshot(names), nil
}

func (f *fakeNomad) Watch(ctx context.Context, names []string, _ catalog.Observer) <-chan catalog.Snapshot {
	ch := make(chan catalog.Snapshot, 1)
	ch <- f.snapshot(names)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

func (f *fakeNomad) Token() string { return f.conn.Token }

// withFakeNomad makes newNomadSource return sources answering services,
// and returns the sources made.
func withFakeNomad(t *testing.T, services map[string]*catalog.Service) *[]*fakeNomad {
	t.Helper()
	var made []*fakeNomad
	prev := newNomadSource
	newNomadSource = func(c nomadConn, _ hclog.Logger) (nomadSource, error) {
		f := &fakeNomad{conn: c, services: services}
		made = append(made, f)
		return f, nil
	}
	t.Cleanup(func() { newNomadSource = prev })
	return &made
}

func nomadWeb(addrs ...string) *catalog.Service {
	svc := &catalog.Service{Name: "web"}
	for i, a := range addrs {
		svc.Instances = append(svc.Instances, &catalog.Instance{ID: fmt.Sprintf("_nomad-task-alloc%d-web", i), Node: fmt.Sprintf("node%d", i),
			Address: a, Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing})
	}
	return svc
}

// refusedListener is a Consul address that counts who connects to it.
func refusedListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), &n
}

// TestNomadAloneNeverAsksConsul: a config of Nomad services alone renders
// from Nomad, and render, plan's read and validate -catalog never connect
// to Consul, though its address is set and answers.
func TestNomadAloneNeverAsksConsul(t *testing.T) {
	consulAddr, consulConns := refusedListener(t)
	t.Setenv("CONSUL_HTTP_ADDR", consulAddr)
	made := withFakeNomad(t, map[string]*catalog.Service{"web": nomadWeb("10.2.0.11", "10.2.0.12", "10.2.0.13")})
	cfg := writeConfig(t, `
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  provider   = "nomad"
}
`)
	code, out, errOut := cli("render", "-config", cfg, "-timeout", "5s")
	if code != 0 {
		t.Fatalf("render exited %d: %s", code, errOut)
	}
	want := `-A -t 10.10.10.60:80 -s wlc
-a -t 10.10.10.60:80 -r 10.2.0.11:80 -g -w 1
-a -t 10.10.10.60:80 -r 10.2.0.12:80 -g -w 1
-a -t 10.10.10.60:80 -r 10.2.0.13:80 -g -w 1
`
	if out != want {
		t.Errorf("render:\n%s\nwant:\n%s\nstderr:\n%s", out, want, errOut)
	}
	code, out, errOut = cli("validate", "-config", cfg, "-catalog", "-timeout", "5s")
	if code != 0 || !strings.Contains(out, "catalog: 3 instances of 1 virtual services, 0 warnings") {
		t.Errorf("validate -catalog: exit %d, %q, %q", code, out, errOut)
	}
	if len(*made) != 2 || (*made)[0].fetches.Load() != 1 {
		t.Errorf("%d nomad sources made, the first fetched %d times; want one per command, one read each", len(*made), (*made)[0].fetches.Load())
	}
	if n := consulConns.Load(); n != 0 {
		t.Errorf("consul was connected to %d times for a config of nomad services alone", n)
	}
}

// TestRenderBothCatalogs: Consul's web (a real agent) and Nomad's web in
// one config are two services, each its own virtual service's.
func TestRenderBothCatalogs(t *testing.T) {
	agent := testconsul.Start(t)
	withFakeNomad(t, map[string]*catalog.Service{"web": nomadWeb("10.2.0.11", "10.2.0.12")})
	cfg := writeConfig(t, fmt.Sprintf(`
consul {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
virtual_service "web-nomad" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  service    = "web"
  provider   = "nomad"
}
`, agent.HTTPAddr))
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthPassing)
	code, out, errOut := cli("render", "-config", cfg, "-timeout", "20s")
	if code != 0 {
		t.Fatalf("render exited %d: %s", code, errOut)
	}
	want := `-A -t 10.10.10.60:80 -s wlc
-a -t 10.10.10.60:80 -r 10.1.0.11:80 -g -w 1
-A -t 10.10.10.61:80 -s wlc
-a -t 10.10.10.61:80 -r 10.2.0.11:80 -g -w 1
-a -t 10.10.10.61:80 -r 10.2.0.12:80 -g -w 1
`
	if out != want {
		t.Errorf("render:\n%s\nwant:\n%s\nstderr:\n%s", out, want, errOut)
	}
}

// TestNomadSourceUnavailable: a config that needs Nomad fails, saying
// why, when its source cannot be made; one that does not need it is not
// troubled.
func TestNomadSourceUnavailable(t *testing.T) {
	cfg := writeConfig(t, `
nomad {
  token_file = "/nonexistent/nomad.token"
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  provider   = "nomad"
}
`)
	code, out, errOut := cli("render", "-config", cfg, "-timeout", "5s")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot set up the catalogs") || !strings.Contains(errOut, "nomad token_file /nonexistent/nomad.token") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	parsed, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parsed.VirtualServices[0].Provider = config.ProviderConsul
	c, err := newCatalogs(parsed, true, func(string) string { return "" }, hclog.NewNullLogger())
	if err != nil || c.Sources[config.ProviderConsul] == nil || c.Sources[config.ProviderNomad] != nil {
		t.Errorf("a config of consul services with an unusable nomad block: %v, sources %v; want consul's alone", err, c.Sources)
	}
}

func TestNomadConnOf(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "nomad.token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"NOMAD_ADDR": "https://env:4646", "NOMAD_TOKEN": "env-token", "NOMAD_NAMESPACE": "env-ns", "NOMAD_REGION": "env-region",
		"NOMAD_CACERT": "/env/ca.pem", "NOMAD_CLIENT_CERT": "/env/cert.pem", "NOMAD_CLIENT_KEY": "/env/key.pem",
		"NOMAD_TLS_SERVER_NAME": "env.nomad", "NOMAD_SKIP_VERIFY": "true",
	}
	no := false
	for _, tt := range []struct {
		name string
		cfg  config.Nomad
		env  map[string]string
		want nomadConn
	}{
		{"defaults", config.Nomad{}, nil, nomadConn{Address: "http://127.0.0.1:4646", Namespace: "default"}},
		{"environment", config.Nomad{}, env, nomadConn{Address: "https://env:4646", Token: "env-token", Namespace: "env-ns", Region: "env-region",
			CACert: "/env/ca.pem", ClientCert: "/env/cert.pem", ClientKey: "/env/key.pem", TLSServerName: "env.nomad", SkipVerify: true}},
		{"the block over the environment", config.Nomad{Address: "https://cfg:4646", TokenFile: tokenFile, Namespace: "*", Region: "eu",
			CACert: "/cfg/ca.pem", ClientCert: "/cfg/cert.pem", ClientKey: "/cfg/key.pem", TLSServerName: "cfg.nomad", SkipVerify: &no, MaxConnections: 3}, env,
			nomadConn{Address: "https://cfg:4646", Token: "file-token", Namespace: "*", Region: "eu",
				CACert: "/cfg/ca.pem", ClientCert: "/cfg/cert.pem", ClientKey: "/cfg/key.pem", TLSServerName: "cfg.nomad", MaxConnections: 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nomadConnOf(tt.cfg, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if _, err := nomadConnOf(config.Nomad{}, func(k string) string { return map[string]string{"NOMAD_SKIP_VERIFY": "maybe"}[k] }); err == nil ||
		!strings.Contains(err.Error(), "NOMAD_SKIP_VERIFY") {
		t.Errorf("a bad NOMAD_SKIP_VERIFY: %v, want an error naming it", err)
	}
}

// TestCatalogsTokens: the pair's token is Consul's; a reload's tokens
// make new sources and leave the running ones alone.
func TestCatalogsTokens(t *testing.T) {
	made := withFakeNomad(t, nil)
	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  provider   = "nomad"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NOMAD_TOKEN": "nomad-old", "CONSUL_HTTP_TOKEN": "consul-old"}
	t.Setenv("CONSUL_HTTP_TOKEN", "consul-old")
	c, err := newCatalogs(cfg, true, func(k string) string { return env[k] }, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if c.consul == nil {
		t.Fatal("run's catalogs have no consul source, for a reload that brings a consul service")
	}
	next := c.withTokens("consul-new", "nomad-new").(*catalogs)
	if c.nomad.Token() != "nomad-old" || (*made)[0] != c.nomad {
		t.Errorf("the running nomad source's token is %q, want nomad-old", c.nomad.Token())
	}
	if next.nomad.Token() != "nomad-new" || next.Sources[config.ProviderNomad] != next.nomad {
		t.Errorf("the reload's nomad token is %q, want nomad-new", next.nomad.Token())
	}
	if next.Token() != "consul-new" || next.Sources[config.ProviderConsul] != next.consul || c.consul == next.consul {
		t.Errorf("the reload's token (the pair's) is %q, want consul's new one", next.Token())
	}
	// "" keeps a catalog's running source.
	if kept := c.withTokens("", "nomad-new").(*catalogs); kept.consul != c.consul {
		t.Error("a reload with no consul token made a new consul source")
	}
}

// TestDaemonWatchesBothCatalogs: the daemon, given run's catalogs, keeps
// the kernel in step with a real Consul's web and Nomad's web at once,
// each in its own virtual service; and the token it holds for the pair
// is Consul's.
func TestDaemonWatchesBothCatalogs(t *testing.T) {
	agent := testconsul.Start(t)
	withFakeNomad(t, map[string]*catalog.Service{"web": nomadWeb("10.2.0.11", "10.2.0.12")})
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
consul {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
virtual_service "web-nomad" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  service    = "web"
  provider   = "nomad"
}
`, agent.HTTPAddr)), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	src, err := newCatalogs(cfg, true, func(string) string { return "" }, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	src = src.withTokens("consul-token", "").(*catalogs) // the pair's token, as a reload gives it
	kernel := ipvstest.New(ipvs.State{})
	d, err := daemon.New(daemon.Options{Config: cfg, Source: src, Kernel: kernel})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	reals := func(vip string) []string {
		var out []string
		for k, svc := range kernel.State() {
			if k.Addr.String() == vip {
				for rk := range svc.Reals {
					out = append(out, rk.String())
				}
			}
		}
		slices.Sort(out)
		return out
	}
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthPassing)
	waitUntil(t, "both catalogs' reals in the kernel", func() bool {
		return slices.Equal(reals("10.10.10.60"), []string{"10.1.0.11:80"}) &&
			slices.Equal(reals("10.10.10.61"), []string{"10.2.0.11:80", "10.2.0.12:80"})
	})
	// A change in Consul reaches its virtual service alone.
	agent.Register(t, &api.AgentServiceRegistration{ID: "web2", Name: "web", Address: "10.1.0.12", Port: 80}, api.HealthPassing)
	waitUntil(t, "consul's new instance in the kernel", func() bool {
		return slices.Equal(reals("10.10.10.60"), []string{"10.1.0.11:80", "10.1.0.12:80"})
	})
	if got := reals("10.10.10.61"); !slices.Equal(got, []string{"10.2.0.11:80", "10.2.0.12:80"}) {
		t.Errorf("nomad's virtual service has %v after a consul change", got)
	}
	if d.Token() != "consul-token" {
		t.Errorf("the daemon's token (the pair's) is %q, want consul's", d.Token())
	}
}
