package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
)

func TestKernelNeeds(t *testing.T) {
	vs := func(addr, fwd, extra string) string {
		return "virtual_service \"" + addr + "\" {\n  address = \"" + addr + "\"\n  forwarding = \"" + fwd + "\"\n" + extra + "}\n"
	}
	tests := []struct {
		name, src string
		want      hostnet.DirectorNeeds
	}{
		{"none", "", hostnet.DirectorNeeds{}},
		{"gate", vs("10.0.0.1:80", "gate", ""), hostnet.DirectorNeeds{Services: true, Direct: true}},
		{"ipip with persistence", vs("10.0.0.1:80", "ipip", "  persistence = \"300s\"\n"), hostnet.DirectorNeeds{Services: true, Direct: true, Persistence: true}},
		{"masq both families", vs("10.0.0.1:80", "masq", "") + vs("[2001:db8::1]:80", "masq", ""), hostnet.DirectorNeeds{Services: true, Masq4: true, Masq6: true}},
		{"masq v6 only", vs("[2001:db8::1]:80", "masq", ""), hostnet.DirectorNeeds{Services: true, Masq6: true}},
		{"all active", "director {\n  vip_interface = \"lvs0\"\n  bgp {\n    asn = 65010\n    neighbor \"10.7.0.1\" {\n      asn = 65000\n    }\n  }\n}\n" +
			vs("10.0.0.1:80", "gate", "  scheduler = \"mh\"\n"),
			hostnet.DirectorNeeds{Services: true, Direct: true, AllActive: true, SloppyTCP: true, SloppySCTP: false}},
	}
	for _, tt := range tests {
		cfg, err := config.Parse([]byte(tt.src), "t.hcl")
		if err != nil {
			t.Fatal(err)
		}
		if got := kernelNeeds(cfg); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestCheckSysctls: each setting the config needs and the director lacks
// is a warning with the exact sysctl -w line; tune_sysctls sets it instead.
func TestCheckSysctls(t *testing.T) {
	src := `
director {
  tune_sysctls = %s
}
virtual_service "web" {
  address     = "10.0.0.1:80"
  forwarding  = "masq"
  persistence = "300s"
}
`
	seed := map[string]string{
		"net/ipv4/vs/expire_nodest_conn":        "1",
		"net/ipv4/vs/expire_quiescent_template": "0",
		"net/ipv4/ip_forward":                   "1",
	}
	for _, tune := range []string{"false", "true"} {
		cfg, err := config.Parse([]byte(strings.Replace(src, "%s", tune, 1)), "t.hcl")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		log := hclog.New(&hclog.LoggerOptions{Name: "lvs-sync", Output: &buf})
		sys := hostnettest.NewSysctl(nil, seed)
		checkAtStart(cfg, sys, false, log)
		out := buf.String()
		if n := strings.Count(out, "\n"); n != 1 {
			t.Errorf("tune %s: %d lines, want 1:\n%s", tune, n, out)
		}
		if tune == "false" {
			want := `[WARN]  lvs-sync.sysctl: kernel setting unsafe for this config; set it, or director { tune_sysctls = true }: setting=net.ipv4.vs.expire_quiescent_template value=0 want=1`
			if !strings.Contains(out, want) || !strings.Contains(out, `fix="sysctl -w net.ipv4.vs.expire_quiescent_template=1"`) {
				t.Errorf("log:\n%s\nwant %s ... fix=\"sysctl -w net.ipv4.vs.expire_quiescent_template=1\"", out, want)
			}
			if sys.Writes("net/ipv4/vs/expire_quiescent_template") != 0 {
				t.Error("wrote without tune_sysctls")
			}
			continue
		}
		if !strings.Contains(out, `[INFO]  lvs-sync.sysctl: set a kernel setting the config needs: setting=net.ipv4.vs.expire_quiescent_template was=0 value=1`) {
			t.Errorf("log:\n%s", out)
		}
		if sys.Value("net/ipv4/vs/expire_quiescent_template") != "1" || sys.Writes("net/ipv4/vs/expire_nodest_conn") != 0 {
			t.Errorf("tuned: template %q, nodest written %d times", sys.Value("net/ipv4/vs/expire_quiescent_template"), sys.Writes("net/ipv4/vs/expire_nodest_conn"))
		}
	}

	// A dry run touches nothing of the host, and reads none of it either.
	cfg, _ := config.Parse([]byte(strings.Replace(src, "%s", "true", 1)), "t.hcl")
	sys := hostnettest.NewSysctl(nil, seed)
	checkAtStart(cfg, sys, true, hclog.NewNullLogger())
	if sys.Value("net/ipv4/vs/expire_quiescent_template") != "0" {
		t.Error("a dry run tuned the kernel")
	}
}
