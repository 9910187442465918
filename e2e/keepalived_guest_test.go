//go:build vmguest

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/lvs-sync/lvs-sync/importer/importtest"
)

// importedKeepalivedConf has the three forwarding methods, keepalived's defaults
// (no lb_algo, no lb_kind: wlc and NAT), persistence, weights, a sorry
// server, a firewall mark and HTTP_GET and TCP_CHECK checks that the real servers of the
// topology pass.
const importedKeepalivedConf = `global_defs {
    router_id lvs_sync_e2e
}
virtual_server 10.10.20.1 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    persistence_timeout 300
    protocol TCP
    real_server 10.1.0.11 80 {
        weight 3
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            connect_timeout 2
        }
    }
    real_server 10.1.0.12 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
virtual_server 10.10.20.2 80 {
    delay_loop 1
    protocol TCP
    sorry_server 10.1.0.13 8083
    real_server 10.1.0.11 8081 {
        HTTP_GET {
            url {
                path /
            }
            connect_timeout 2
        }
    }
    real_server 10.1.0.12 8082 {
        weight 2
        TCP_CHECK {
            connect_port 8082
            connect_timeout 2
        }
    }
}
virtual_server 10.10.20.3 80 {
    delay_loop 1
    lb_algo sh
    lb_kind TUN
    real_server 10.1.0.13 80 {
        weight 4
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
virtual_server fwmark 7 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    persistence_timeout 600
    real_server 10.1.0.11 {
        TCP_CHECK {
            connect_port 80
            connect_timeout 2
        }
    }
    real_server 10.1.0.12 {
        weight 2
        TCP_CHECK {
            connect_port 80
            connect_timeout 2
        }
    }
}
`

// TestKeepalivedSameTable runs Debian's keepalived (its checker process)
// on importedKeepalivedConf, reads the table it programs into the kernel with
// ipvsadm -Sn, and compares it with what `lvs-sync render` makes of
// `lvs-sync import keepalived` once the imported services are registered
// on the host's Consul.
func TestKeepalivedSameTable(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(importedKeepalivedConf), 0o644); err != nil {
		t.Fatal(err)
	}
	ka := exec.Command("/sbin/keepalived", "--dont-fork", "--log-console", "--check", "--use-file="+conf,
		"--pid="+filepath.Join(dir, "keepalived.pid"), "--checkers_pid="+filepath.Join(dir, "checkers.pid"))
	ka.Stdout, ka.Stderr = os.Stderr, os.Stderr
	if err := ka.Start(); err != nil {
		t.Fatal(err)
	}
	kernel := settledTable(t)
	_ = ka.Process.Signal(syscall.SIGTERM)
	_ = ka.Wait()
	t.Logf("keepalived's table (ipvsadm -Sn):\n%s", kernel)

	out := filepath.Join(dir, "import")
	if b, err := exec.Command("/bin/lvs-sync", "import", "keepalived", "-out", out, conf).CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, b)
	} else {
		t.Logf("import: %s", b)
	}
	registerImported(t, filepath.Join(out, "consul-services.hcl"))
	render := exec.Command("/bin/lvs-sync", "render", "-config", filepath.Join(out, "lvs-sync.hcl"))
	render.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+os.Getenv("LVS_CONSUL"))
	b, err := render.Output()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	rendered, err := importtest.Parse(string(b))
	if err != nil {
		t.Fatalf("render: %v\n%s", err, b)
	}
	if rendered.String() != kernel.String() {
		t.Fatalf("lvs-sync renders\n%s\nkeepalived programmed\n%s", rendered, kernel)
	}
	reals := 0
	for _, s := range kernel {
		reals += len(s.Reals)
	}
	t.Logf("same table: %d virtual services, %d reals", len(kernel), reals)
}

// settledTable waits until the kernel's table has its services and has
// not changed for 3s (keepalived's first checks are done), and returns it.
func settledTable(t *testing.T) importtest.Table {
	t.Helper()
	last, since := "", time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := exec.Command("/sbin/ipvsadm", "-S", "-n").Output()
		if err != nil {
			t.Fatalf("ipvsadm -Sn: %v", err)
		}
		tab, err := importtest.Parse(string(b))
		if err != nil {
			t.Fatalf("ipvsadm -Sn: %v\n%s", err, b)
		}
		if s := tab.String(); s != last {
			last, since = s, time.Now()
		}
		if len(tab) == 4 && time.Since(since) > 3*time.Second {
			return tab
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalived's table did not settle within 60s:\n%s", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// importedServices is what the test reads of consul-services.hcl.
type importedServices struct {
	Services []struct {
		ID      string            `hcl:"id"`
		Name    string            `hcl:"name"`
		Address string            `hcl:"address"`
		Port    int               `hcl:"port"`
		Meta    map[string]string `hcl:"meta"`
		Weights struct {
			Passing int `cty:"passing"`
			Warning int `cty:"warning"`
		} `hcl:"weights"`
		Checks []struct {
			Remain hcl.Body `hcl:",remain"`
		} `hcl:"checks,block"`
	} `hcl:"services,block"`
}

// registerImported registers the imported instances on the host's agent,
// each with a passing TTL check in place of its imported checks: those
// are HTTP and TCP checks of addresses that exist only in this guest,
// which the host's agent cannot reach. (That the agent takes the file as
// it is, checks and all, the host's TestImportEveryTestdataConfig shows.)
func registerImported(t *testing.T, path string) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var file importedServices
	if diags := gohcl.DecodeBody(f.Body, nil, &file); diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, s := range file.Services {
		if len(s.Checks) == 0 {
			t.Errorf("imported instance %s has no check", s.ID)
		}
		reg := &api.AgentServiceRegistration{
			ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Meta: s.Meta,
			Weights: &api.AgentWeights{Passing: s.Weights.Passing, Warning: s.Weights.Warning},
			Check:   &api.AgentServiceCheck{CheckID: s.ID + "-ttl", TTL: "10m", Status: api.HealthPassing},
		}
		if err := consul(t).Agent().ServiceRegister(reg); err != nil {
			t.Fatalf("registering %s: %v", s.ID, err)
		}
		t.Cleanup(func() { _ = consul(t).Agent().ServiceDeregister(s.ID) })
		fmt.Fprintf(os.Stderr, "registered %s (%s:%d, weight %d, %d checks imported)\n", s.ID, s.Address, s.Port, s.Weights.Passing, len(s.Checks))
	}
}
