package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// FuzzParse feeds arbitrary bytes to Parse: it must not panic, must return
// exactly one of a config and an error, the error must carry its
// diagnostics (or at least name the file), and a config it accepts must
// hold what validation promises.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.hcl")
	dir, _ := filepath.Glob("testdata/dir/*.hcl")
	for _, path := range append(seeds, dir...) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`log_level = "info"
api { address = "" }
virtual_service "shop" {
  address          = "10.10.10.70:443"
  forwarding       = "masq"
  fallback         = "local"
  maintenance_page = "page.html"
  on_warning       = "remove"
}
`))
	f.Add([]byte(`virtual_service "dns" {
  address             = "10.10.10.53:53"
  protocol            = "udp"
  forwarding          = "gate"
  persistence         = "60s"
  persistence_netmask = "255.255.255.0"
  ops                 = true
  upper_threshold     = 100
  lower_threshold     = 50
}
`))
	// The name puts relative maintenance pages in testdata, as a config
	// file there would have them.
	const name = "testdata/fuzz.hcl"
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse(src, name)
		if err != nil {
			if cfg != nil {
				t.Fatalf("both a config and an error: %v", err)
			}
			checkParseError(t, err, name)
			return
		}
		if cfg == nil {
			t.Fatal("neither a config nor an error")
		}
		checkValidConfig(t, cfg)
	})
}

func checkParseError(t *testing.T, err error, name string) {
	t.Helper()
	var diags *DiagnosticsError
	if !errors.As(err, &diags) {
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("error without diagnostics or file name: %v", err)
		}
		return
	}
	if len(diags.Diags) == 0 || !diags.Diags.HasErrors() {
		t.Fatalf("diagnostics error without an error in it: %#v", diags.Diags)
	}
	for _, d := range diags.Diags {
		if d.Subject != nil && d.Subject.Filename != name {
			t.Fatalf("diagnostic about file %q, want %q: %s", d.Subject.Filename, name, oneLine(d))
		}
	}
	if err := diags.Write(io.Discard, 80, false); err != nil {
		t.Fatalf("writing diagnostics: %v", err)
	}
}

// checkValidConfig asserts what every accepted config holds.
func checkValidConfig(t *testing.T, cfg *Config) {
	t.Helper()
	keys := map[lvs.ServiceKey]bool{}
	names := map[string]bool{}
	for _, vs := range cfg.VirtualServices {
		switch {
		case vs.Name == "" || names[vs.Name]:
			t.Fatalf("virtual service name %q empty or repeated", vs.Name)
		case !vs.Address.IsValid() || vs.Address.Port() == 0 || vs.Protocol == 0:
			t.Fatalf("%s: address %v protocol %v", vs.Name, vs.Address, vs.Protocol)
		case keys[vs.Key()]:
			t.Fatalf("%s: key %s repeated", vs.Name, vs.Key())
		case validScheduler(vs.Scheduler) != nil || validServiceName(vs.Service) != nil:
			t.Fatalf("%s: scheduler %q service %q", vs.Name, vs.Scheduler, vs.Service)
		case vs.OnWarning != OnWarningServe && vs.OnWarning != OnWarningQuiesce && vs.OnWarning != OnWarningRemove:
			t.Fatalf("%s: on_warning %q", vs.Name, vs.OnWarning)
		case vs.Persistence < 0 || vs.DrainTimeout < 0 || vs.Hold < 0 || vs.SlowStart < 0:
			t.Fatalf("%s: negative duration in %+v", vs.Name, vs)
		case vs.MaintenancePage != "" && !vs.Fallback.Local:
			t.Fatalf("%s: maintenance page without local fallback", vs.Name)
		case vs.LowerThreshold > vs.UpperThreshold || vs.UpperThreshold > lvs.MaxThreshold:
			t.Fatalf("%s: thresholds %d/%d the kernel refuses", vs.Name, vs.UpperThreshold, vs.LowerThreshold)
		case vs.OnePacket && vs.Protocol != lvs.UDP:
			t.Fatalf("%s: ops on %s", vs.Name, vs.Protocol)
		case vs.PersistenceNetmask != 0 && (vs.Persistence == 0 || vs.PersistenceNetmask > vs.Address.Addr().BitLen()):
			t.Fatalf("%s: persistence_netmask /%d with persistence %v", vs.Name, vs.PersistenceNetmask, vs.Persistence)
		}
		names[vs.Name], keys[vs.Key()] = true, true
	}
	if cfg.Director.ReconcileInterval < time.Second || cfg.API.ConsulUnreachableAfter <= 0 || validStateFile(cfg.Director.StateFile) != nil {
		t.Fatalf("director %+v api %+v", cfg.Director, cfg.API)
	}
}
