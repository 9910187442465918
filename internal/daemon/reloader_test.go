package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
)

// tokenSource is a catalog source and the tokens it carries.
type tokenSource struct {
	Source
	token, nomadToken string
}

// withTokens is s with other tokens, "" keeping s's, as cmd's catalogs.
func (s *tokenSource) withTokens(consul, nomad string) Source {
	n := &tokenSource{token: s.token, nomadToken: s.nomadToken}
	if consul != "" {
		n.token = consul
	}
	if nomad != "" {
		n.nomadToken = nomad
	}
	return n
}

// pendingReloads is a daemon that takes no reload: the new config's
// services never answer, and it gives the reload up.
type pendingReloads struct {
	reqs []*config.Config
	srcs []Source
}

func (d *pendingReloads) Reload(cfg *config.Config, src Source, _ string) {
	d.reqs, d.srcs = append(d.reqs, cfg), append(d.srcs, src)
}

// TestReloadKeepsTheTokenUntilTheConfigTakesOver: a reload with a new
// token_file must not switch the running source to the new token before
// the new config takes over; one the daemon gives up leaves the old token.
func TestReloadKeepsTheTokenUntilTheConfigTakesOver(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	cfgPath := filepath.Join(dir, "lvs-sync.hcl")
	writeFile(t, cfgPath, fmt.Sprintf(`
consul {
  token_file = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}`, tokenFile))
	if err := os.WriteFile(tokenFile, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	running := &tokenSource{token: "old"}
	d := &pendingReloads{}
	r := &Reloader{Path: cfgPath, Running: cfg, Adjust: func(c *config.Config) *config.Config { return c },
		WithTokens: running.withTokens, Daemon: d, Log: hclog.NewNullLogger()}
	if err := os.WriteFile(tokenFile, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Reload("SIGHUP")
	if len(d.reqs) != 1 {
		t.Fatalf("%d reloads handed to the daemon, want 1", len(d.reqs))
	}
	if running.token != "old" {
		t.Errorf("a reload the daemon has not taken (and will give up) switched the running source to token %q, want %q", running.token, "old")
	}
	// The new token goes with the config: its watch carries it.
	if src, ok := d.srcs[0].(*tokenSource); !ok || src.token != "new" {
		t.Errorf("the reload's source is %#v, want one with token %q", d.srcs[0], "new")
	}
	// Without token_file, the running source stays.
	if err := os.WriteFile(cfgPath, []byte(`virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Reload("SIGHUP")
	if len(d.srcs) != 2 || d.srcs[1] != nil {
		t.Errorf("a reload without token_file watches through %#v, want the running source (nil)", d.srcs[len(d.srcs)-1])
	}
}

// TestReloadTakesNomadsTokenWithTheConfig: nomad's token_file is read
// again on a reload as consul's is, and goes with the config; Consul's
// token stays the running one's.
func TestReloadTakesNomadsTokenWithTheConfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "nomad.token")
	cfgPath := filepath.Join(dir, "lvs-sync.hcl")
	writeFile(t, cfgPath, fmt.Sprintf(`
nomad {
  token_file = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  provider   = "nomad"
}`, tokenFile))
	writeFile(t, tokenFile, "old\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	running := &tokenSource{token: "consul", nomadToken: "old"}
	d := &pendingReloads{}
	r := &Reloader{Path: cfgPath, Running: cfg, Adjust: func(c *config.Config) *config.Config { return c },
		WithTokens: running.withTokens, Daemon: d, Log: hclog.NewNullLogger()}
	writeFile(t, tokenFile, "new\n")
	r.Reload("SIGHUP")
	if len(d.reqs) != 1 {
		t.Fatalf("%d reloads handed to the daemon, want 1", len(d.reqs))
	}
	if running.nomadToken != "old" {
		t.Errorf("the running source's nomad token is %q before the config took over, want %q", running.nomadToken, "old")
	}
	if src, ok := d.srcs[0].(*tokenSource); !ok || src.nomadToken != "new" || src.token != "consul" {
		t.Errorf("the reload's source is %#v, want nomad token %q and consul's kept", d.srcs[0], "new")
	}
	// An unreadable token_file rejects the reload.
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	r.Reload("SIGHUP")
	if len(d.reqs) != 1 {
		t.Errorf("a reload with an unreadable nomad token_file was handed to the daemon")
	}
}

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}
