package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// cli runs lvs-sync in-process and returns its exit code and output.
func cli(args ...string) (int, string, string) {
	var stdout, stderr strings.Builder
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeConfig(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRenderAgainstRealConsul registers instances with TTL checks on a real
// agent, flips them, and checks `lvs-sync render` output line for line.
func TestRenderAgainstRealConsul(t *testing.T) {
	agent := testconsul.Start(t)
	cfg := writeConfig(t, fmt.Sprintf(`
consul {
  address = %q
}
virtual_service "web" {
  address     = "10.10.10.60:80"
  forwarding  = "gate"
  persistence = "300s"
  tags        = ["prod"]
  fallback    = "10.9.9.9:80"
}
virtual_service "api" {
  address    = "10.10.10.61:8080"
  forwarding = "masq"
  scheduler  = "rr"
  service    = "web"
  quiescent  = true
}
virtual_service "web6" {
  address    = "[2001:db8::60]:53"
  protocol   = "udp"
  forwarding = "ipip"
  service    = "dns"
}
`, agent.HTTPAddr))
	reg := func(id, addr string, port int, status string, tags []string, w *api.AgentWeights) {
		agent.Register(t, &api.AgentServiceRegistration{ID: id, Name: "web", Address: addr, Port: port, Tags: tags, Weights: w}, status)
	}
	reg("web1", "10.1.0.11", 8001, api.HealthPassing, []string{"prod"}, &api.AgentWeights{Passing: 5, Warning: 2})
	reg("web2", "10.1.0.12", 8002, api.HealthWarning, []string{"prod"}, &api.AgentWeights{Passing: 5, Warning: 2})
	reg("web3", "10.1.0.13", 8003, api.HealthPassing, []string{"canary"}, nil)
	agent.Register(t, &api.AgentServiceRegistration{ID: "dns1", Name: "dns", Address: "2001:db8::11", Port: 53}, api.HealthPassing)

	render := func(want string) {
		t.Helper()
		code, out, errOut := cli("render", "-config", cfg)
		if code != 0 {
			t.Fatalf("render exited %d: %s", code, errOut)
		}
		if out != want {
			t.Errorf("render output:\n%s\nwant:\n%s\nstderr:\n%s", out, want, errOut)
		}
	}

	render(`-A -t 10.10.10.60:80 -s wlc -p 300
-a -t 10.10.10.60:80 -r 10.1.0.11:80 -g -w 5
-a -t 10.10.10.60:80 -r 10.1.0.12:80 -g -w 2
-A -t 10.10.10.61:8080 -s rr
-a -t 10.10.10.61:8080 -r 10.1.0.11:8001 -m -w 5
-a -t 10.10.10.61:8080 -r 10.1.0.12:8002 -m -w 2
-a -t 10.10.10.61:8080 -r 10.1.0.13:8003 -m -w 1
-A -u [2001:db8::60]:53 -s wlc
-a -u [2001:db8::60]:53 -r [2001:db8::11]:53 -i -w 1
`)

	// Critical: removed from web, quiesced (weight 0) in api.
	agent.SetStatus(t, "web1", api.HealthCritical, "down")
	agent.SetStatus(t, "web3", api.HealthCritical, "down")
	// Maintenance: out of the desired state everywhere, whatever the check
	// says (run drains its reals; render shows what run wants).
	if err := agent.Client.Agent().EnableServiceMaintenance("web2", "deploy"); err != nil {
		t.Fatal(err)
	}
	render(`-A -t 10.10.10.60:80 -s wlc -p 300
-a -t 10.10.10.60:80 -r 10.9.9.9:80 -g -w 1
-A -t 10.10.10.61:8080 -s rr
-a -t 10.10.10.61:8080 -r 10.1.0.11:8001 -m -w 0
-a -t 10.10.10.61:8080 -r 10.1.0.13:8003 -m -w 0
-A -u [2001:db8::60]:53 -s wlc
-a -u [2001:db8::60]:53 -r [2001:db8::11]:53 -i -w 1
`)

	// Back to passing: the fallback leaves.
	agent.SetStatus(t, "web1", api.HealthPassing, "")
	if err := agent.Client.Agent().ServiceDeregister("web2"); err != nil {
		t.Fatal(err)
	}
	render(`-A -t 10.10.10.60:80 -s wlc -p 300
-a -t 10.10.10.60:80 -r 10.1.0.11:80 -g -w 5
-A -t 10.10.10.61:8080 -s rr
-a -t 10.10.10.61:8080 -r 10.1.0.11:8001 -m -w 5
-a -t 10.10.10.61:8080 -r 10.1.0.13:8003 -m -w 0
-A -u [2001:db8::60]:53 -s wlc
-a -u [2001:db8::60]:53 -r [2001:db8::11]:53 -i -w 1
`)
}

func TestRenderWithoutConsul(t *testing.T) {
	port := testconsul.FreePorts(t, 1)[0]
	cfg := writeConfig(t, fmt.Sprintf("consul {\n  address = \"127.0.0.1:%d\"\n}\nvirtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"gate\"\n}\n", port))
	code, out, errOut := cli("render", "-config", cfg, "-timeout", "5s")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot read the catalog") || !strings.Contains(errOut, `service \"web\"`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestValidate(t *testing.T) {
	good := writeConfig(t, "virtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"gate\"\n}\n")
	if code, out, errOut := cli("validate", "-config", good); code != 0 || !strings.Contains(out, "valid: 1 virtual services") {
		t.Errorf("good config: exit %d, %q %q", code, out, errOut)
	}
	bad := writeConfig(t, "virtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"nat\"\n  weight = 1\n}\n")
	code, out, errOut := cli("validate", "-config", bad)
	if code != 1 || out != "" {
		t.Errorf("bad config: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		bad + ":3:16: error: Invalid forwarding method",
		bad + ":4:3: error: Unsupported argument",
		`  3:   forwarding = "nat"`, // the snippet
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// A warning is shown with its position and snippet; the config is valid.
	warned := writeConfig(t, "virtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"gate\"\n  scheduler = \"sh\"\n}\n")
	code, out, errOut = cli("validate", "-config", warned)
	if code != 0 || !strings.Contains(out, "valid: 1 virtual services") {
		t.Errorf("config with a warning: exit %d, %q %q", code, out, errOut)
	}
	for _, want := range []string{
		warned + `:4:15: warning: Weight 0 without sh-fallback; virtual_service "web": scheduler: with sh, a real at weight 0`,
		`Warning: Weight 0 without sh-fallback`,
		`  4:   scheduler = "sh"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, errOut := cli("validate"); code != 1 || !strings.Contains(errOut, "-config is required") {
		t.Errorf("no -config: exit %d %q", code, errOut)
	}
	if code, _, errOut := cli("validate", "-config", filepath.Join(t.TempDir(), "nope.hcl")); code != 1 || !strings.Contains(errOut, "nope.hcl") {
		t.Errorf("missing file: exit %d %q", code, errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, c := range []string{"plan", "realserver", "render", "run", "validate", "version"} {
		code, _, errOut := cli(c, "-help")
		if code != 0 || !strings.Contains(errOut, "Usage: lvs-sync "+c) {
			t.Errorf("%s -help: exit %d, %q", c, code, errOut)
		}
	}
	if code, out, _ := cli("-help"); code != 0 || !strings.Contains(out, "render") || !strings.Contains(out, "validate") {
		t.Errorf("-help: exit %d %q", code, out)
	}
	if code, _, errOut := cli("frobnicate"); code != 1 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d %q", code, errOut)
	}
	if code, out, _ := cli("version"); code != 0 || !strings.HasPrefix(out, "lvs-sync ") {
		t.Errorf("version: exit %d %q", code, out)
	}
	if code, _, _ := cli("render", "-bogus"); code != 1 {
		t.Errorf("bad flag: exit %d", code)
	}
}

// TestValidateCatalog: validate -catalog reads a real agent once and warns
// about each gate or ipip instance at another port than the virtual port
// (once per instance and virtual service), not about masq or matching
// ones or one with no port; as about any catalog data render leaves out
// (masq with no port). The config is valid all the same (exit 0).
func TestValidateCatalog(t *testing.T) {
	agent := testconsul.Start(t)
	cfg := writeConfig(t, fmt.Sprintf(`
consul {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
virtual_service "web-tunnel" {
  address    = "10.10.10.62:80"
  forwarding = "ipip"
  service    = "web"
}
virtual_service "web-nat" {
  address    = "10.10.10.61:80"
  forwarding = "masq"
  service    = "web"
}
`, agent.HTTPAddr))
	agent.Register(t, &api.AgentServiceRegistration{ID: "web1", Name: "web", Address: "10.1.0.11", Port: 80}, api.HealthPassing)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web2", Name: "web", Address: "10.1.0.12", Port: 23456}, api.HealthPassing)
	agent.Register(t, &api.AgentServiceRegistration{ID: "web3", Name: "web", Address: "10.1.0.13"}, api.HealthPassing)

	code, out, errOut := cli("validate", "-config", cfg, "-catalog", "-timeout", "20s")
	if code != 0 {
		t.Fatalf("validate -catalog exited %d: %s", code, errOut)
	}
	if !strings.Contains(out, "catalog: 9 instances of 3 virtual services, 3 warnings") {
		t.Errorf("stdout %q", out)
	}
	node := agentNode(t, agent)
	want := fmt.Sprintf(`warning: virtual_service "web": instance "web2" on node %q: port 23456 is not the virtual port 80: gate cannot translate ports, so the real server gets the traffic on 80
warning: virtual_service "web-tunnel": instance "web2" on node %q: port 23456 is not the virtual port 80: ipip cannot translate ports, so the real server gets the traffic on 80
warning: virtual_service "web-nat": instance "web3" on node %q: port 0 cannot be a real server's port
`, node, node, node)
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
	// Without -catalog, validate does not ask Consul.
	if code, out, errOut := cli("validate", "-config", cfg); code != 0 || strings.Contains(out, "catalog") || errOut != "" {
		t.Errorf("validate without -catalog: exit %d, %q, %q", code, out, errOut)
	}
}

func agentNode(t *testing.T, agent *testconsul.Agent) string {
	t.Helper()
	name, err := agent.Client.Agent().NodeName()
	if err != nil {
		t.Fatal(err)
	}
	return name
}
