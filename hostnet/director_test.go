package hostnet_test

import (
	"errors"
	"io/fs"
	"net/netip"
	"slices"
	"testing"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
	"github.com/lvs-sync/lvs-sync/lvs"
)

func TestDirectorSettings(t *testing.T) {
	tests := []struct {
		name  string
		needs hostnet.DirectorNeeds
		want  []string // commands
	}{
		{"nothing served", hostnet.DirectorNeeds{}, nil},
		{"gate without persistence", hostnet.DirectorNeeds{Services: true, Direct: true}, []string{
			"sysctl -w net.ipv4.vs.expire_nodest_conn=1", "sysctl -w net.ipv4.vs.conn_reuse_mode=3",
		}},
		{"everything", hostnet.DirectorNeeds{Services: true, Persistence: true, Masq4: true, Masq6: true, Direct: true}, []string{
			"sysctl -w net.ipv4.vs.expire_nodest_conn=1", "sysctl -w net.ipv4.vs.expire_quiescent_template=1",
			"sysctl -w net.ipv4.vs.conn_reuse_mode=3", "sysctl -w net.ipv4.ip_forward=1", "sysctl -w net.ipv6.conf.all.forwarding=1",
		}},
		{"all active, tcp and sctp", hostnet.DirectorNeeds{Services: true, Direct: true, AllActive: true, SloppyTCP: true, SloppySCTP: true}, []string{
			"sysctl -w net.ipv4.vs.expire_nodest_conn=1", "sysctl -w net.ipv4.vs.conn_reuse_mode=3",
			"sysctl -w net.ipv4.vs.sloppy_tcp=1", "sysctl -w net.ipv4.vs.sloppy_sctp=1",
		}},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range hostnet.DirectorSettings(tt.needs) {
			got = append(got, s.Command())
			if s.Why == "" {
				t.Errorf("%s: %s has no reason", tt.name, s.Name())
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSettingSatisfied(t *testing.T) {
	byKey := map[string]hostnet.Setting{}
	for _, s := range hostnet.DirectorSettings(hostnet.DirectorNeeds{Services: true, Direct: true}) {
		byKey[s.Key] = s
	}
	nodest, reuse := byKey["net/ipv4/vs/expire_nodest_conn"], byKey["net/ipv4/vs/conn_reuse_mode"]
	for _, c := range []struct {
		s     hostnet.Setting
		value string
		ok    bool
	}{
		{nodest, "1", true}, {nodest, "0", false}, {nodest, "2", true}, {nodest, "", false}, {nodest, "x", false},
		{reuse, "3", true}, {reuse, "2", true}, {reuse, "1", false}, {reuse, "0", false}, {reuse, "7", true},
	} {
		if got := c.s.Satisfied(c.value); got != c.ok {
			t.Errorf("%s = %q satisfied: %v, want %v", c.s.Name(), c.value, got, c.ok)
		}
	}
}

// TestCheckSettings: read only, unless tune; only what is not as needed is
// written; a key the kernel lacks (ip_vs not loaded) is an error of its own.
func TestCheckSettings(t *testing.T) {
	want := hostnet.DirectorSettings(hostnet.DirectorNeeds{Services: true, Persistence: true, Masq4: true, Direct: true})
	seed := map[string]string{
		"net/ipv4/vs/expire_nodest_conn":        "0",
		"net/ipv4/vs/expire_quiescent_template": "0",
		"net/ipv4/vs/conn_reuse_mode":           "1",
		"net/ipv4/ip_forward":                   "1",
	}
	for _, tune := range []bool{false, true} {
		sys := hostnettest.NewSysctl(nil, seed)
		findings := hostnet.CheckSettings(sys, want, tune)
		var bad, set []string
		for _, f := range findings {
			if f.Err != nil {
				t.Errorf("tune %v: %s: %v", tune, f.Name(), f.Err)
			}
			if !f.OK() {
				bad = append(bad, f.Name()+"="+f.Current)
			}
			if f.Set {
				set = append(set, f.Name())
			}
		}
		got := map[string]string{}
		for k := range seed {
			got[k] = sys.Value(k)
		}
		if !tune {
			if want := []string{"net.ipv4.vs.expire_nodest_conn=0", "net.ipv4.vs.expire_quiescent_template=0", "net.ipv4.vs.conn_reuse_mode=1"}; !slices.Equal(bad, want) || set != nil {
				t.Errorf("check: not ok %q, set %q; want %q, none set", bad, set, want)
			}
			for k, v := range seed {
				if got[k] != v || sys.Writes(k) != 0 {
					t.Errorf("check wrote %s: %q", k, got[k])
				}
			}
			continue
		}
		wantSet := []string{"net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template", "net.ipv4.vs.conn_reuse_mode"}
		if bad != nil || !slices.Equal(set, wantSet) {
			t.Errorf("tune: not ok %q, set %q; want all ok, %q set", bad, set, wantSet)
		}
		wantValues := map[string]string{
			"net/ipv4/vs/expire_nodest_conn": "1", "net/ipv4/vs/expire_quiescent_template": "1",
			"net/ipv4/vs/conn_reuse_mode": "3", "net/ipv4/ip_forward": "1",
		}
		for k, v := range wantValues {
			if got[k] != v {
				t.Errorf("tune: %s = %q, want %q", k, got[k], v)
			}
		}
		if sys.Writes("net/ipv4/ip_forward") != 0 {
			t.Error("tune rewrote ip_forward, which was set already")
		}
	}

	// Without ip_vs loaded, its keys are not there.
	sys := hostnettest.NewSysctl(nil, map[string]string{"net/ipv4/ip_forward": "0"})
	findings := hostnet.CheckSettings(sys, want, true)
	for _, f := range findings {
		switch f.Key {
		case "net/ipv4/ip_forward":
			if !f.Set || !f.OK() || sys.Value(f.Key) != "1" {
				t.Errorf("ip_forward: %+v", f)
			}
		default:
			if !errors.Is(f.Err, fs.ErrNotExist) || f.OK() {
				t.Errorf("%s: %+v, want not there", f.Name(), f)
			}
		}
	}
}

// TestDirectorNeedsServe: what each virtual service asks of the kernel,
// by forwarding method, family and persistence.
func TestDirectorNeedsServe(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")
	type svc struct {
		addr       netip.Addr
		proto      lvs.Protocol
		fwd        lvs.Forward
		persistent bool
	}
	tcp, udp, sctp := lvs.TCP, lvs.UDP, lvs.SCTP
	tests := []struct {
		name      string
		allActive bool
		svcs      []svc
		want      hostnet.DirectorNeeds
	}{
		{"none", false, nil, hostnet.DirectorNeeds{}},
		{"gate", false, []svc{{v4, tcp, lvs.Route, false}}, hostnet.DirectorNeeds{Services: true, Direct: true}},
		{"ipip with persistence", false, []svc{{v4, tcp, lvs.Tunnel, true}}, hostnet.DirectorNeeds{Services: true, Direct: true, Persistence: true}},
		{"masq both families", false, []svc{{v4, tcp, lvs.Masq, false}, {v6, tcp, lvs.Masq, false}}, hostnet.DirectorNeeds{Services: true, Masq4: true, Masq6: true}},
		{"masq v6 only", false, []svc{{v6, tcp, lvs.Masq, false}}, hostnet.DirectorNeeds{Services: true, Masq6: true}},
		{"a pair is never sloppy", false, []svc{{v4, tcp, lvs.Route, false}, {v4, sctp, lvs.Route, false}}, hostnet.DirectorNeeds{Services: true, Direct: true}},
		{"all active tcp", true, []svc{{v4, tcp, lvs.Route, false}, {v4, udp, lvs.Route, false}},
			hostnet.DirectorNeeds{Services: true, Direct: true, AllActive: true, SloppyTCP: true}},
		{"all active sctp over ipv6", true, []svc{{v6, sctp, lvs.Tunnel, false}},
			hostnet.DirectorNeeds{Services: true, Direct: true, AllActive: true, SloppySCTP: true}},
		{"all active udp only", true, []svc{{v4, udp, lvs.Route, false}}, hostnet.DirectorNeeds{Services: true, Direct: true, AllActive: true}},
		{"all active firewall mark", true, []svc{{netip.IPv4Unspecified(), 0, lvs.Route, false}},
			hostnet.DirectorNeeds{Services: true, Direct: true, AllActive: true, SloppyTCP: true, SloppySCTP: true}},
	}
	for _, tt := range tests {
		got := hostnet.DirectorNeeds{AllActive: tt.allActive}
		for _, s := range tt.svcs {
			got.Serve(s.addr, s.proto, s.fwd, s.persistent)
		}
		if got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
