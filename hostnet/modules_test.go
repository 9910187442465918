package hostnet_test

import (
	"testing"
	"testing/fstest"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/hostnet"
)

func TestModulesHas(t *testing.T) {
	const rel = "6.1.0-57-amd64"
	m := hostnet.Modules{Release: rel, FS: fstest.MapFS{
		"sys/module/ip_vs_wlc":                                             {Mode: 0o555 | 1<<31},
		"lib/modules/" + rel + "/modules.builtin":                          {Data: []byte("kernel/net/netfilter/ipvs/ip_vs_rr.ko\nkernel/net/ipv4/tcp_cubic.ko\n")},
		"lib/modules/" + rel + "/kernel/net/netfilter/ipvs/ip_vs_mh.ko":    {},
		"lib/modules/" + rel + "/kernel/net/netfilter/ipvs/ip_vs_sh.ko.xz": {},
		"lib/modules/other/kernel/net/netfilter/ipvs/ip_vs_lc.ko":          {},
	}}
	for _, c := range []struct {
		name string
		want bool
	}{
		{"ip_vs_wlc", true}, // loaded
		{"ip_vs_rr", true},  // built in
		{"ip_vs_mh", true},  // loadable
		{"ip_vs_sh", true},  // loadable, compressed
		{"ip_vs_lc", false}, // another kernel's
		{"ip_vs_m", false},  // a prefix of one is not it
		{"tcp_cubic", true}, // built in, though not a scheduler
	} {
		got, err := m.Has(c.name)
		if err != nil || got != c.want {
			t.Errorf("Has(%s) = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestCheckSchedulers(t *testing.T) {
	const rel = "6.1.0-57-amd64"
	m := hostnet.Modules{Release: rel, FS: fstest.MapFS{
		"lib/modules/" + rel + "/kernel/net/netfilter/ipvs/ip_vs_wlc.ko": {},
	}}
	got := hostnet.CheckSchedulers(m, []string{"wlc", "mh", "mh", "twos"}, hclog.NewNullLogger())
	if len(got) != 2 || got[0] != "mh" || got[1] != "twos" {
		t.Errorf("missing %q, want [mh twos]", got)
	}
	// Nothing readable: no warning, nothing said missing.
	if got := hostnet.CheckSchedulers(hostnet.Modules{Release: rel, FS: fstest.MapFS{}}, []string{"mh"}, hclog.NewNullLogger()); len(got) != 0 {
		t.Errorf("with no module files at all: missing %q, want none", got)
	}
}
