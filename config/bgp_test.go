package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const bgpVS = `
virtual_service "web" {
  address         = "10.10.10.60:80"
  scheduler       = "mh"
  scheduler_flags = ["mh-port", "mh-fallback"]
  forwarding      = "gate"
}
`

func TestBGPBlock(t *testing.T) {
	cfg, err := Parse([]byte(`director {
  vip_interface = "lvs0"
  bgp {
    asn = 65010
    neighbor "10.7.0.1" {
      asn = 65000
    }
  }
}
`+bgpVS), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Warnings != nil {
		t.Errorf("an mh gate service behind bgp: warnings %v, want none", cfg.Warnings)
	}
	b := cfg.Director.BGP
	want := BGP{ASN: 65010, ShutdownDelay: 2 * time.Second,
		Neighbors: []Neighbor{{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, Port: 179}}}
	if b == nil || !b.Equal(&want) || b.ShutdownDelay != want.ShutdownDelay || b.RouterID.IsValid() || b.DeclRange.Start.Line != 3 {
		t.Fatalf("bgp %+v, want the defaults %+v declared at line 3", b, want)
	}

	cfg, err = Parse([]byte(`director {
  vip_interface = "lvs0"
  bgp {
    asn            = 4200000000
    router_id      = "10.7.0.11"
    listen_port    = 1179
    shutdown_delay = "0s"
    neighbor "10.7.0.1" {
      asn       = 65000
      port      = 1790
      hold_time = "9s"
      password  = "s3cret"
    }
    neighbor "fd00:7::1" {
      asn = 65001
    }
  }
}
`+bgpVS), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want = BGP{ASN: 4200000000, RouterID: netip.MustParseAddr("10.7.0.11"), ListenPort: 1179, Neighbors: []Neighbor{
		{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, Port: 1790, HoldTime: 9 * time.Second, Password: "s3cret"},
		{Address: netip.MustParseAddr("fd00:7::1"), ASN: 65001, Port: 179},
	}}
	if b := cfg.Director.BGP; !b.Equal(&want) || b.ShutdownDelay != 0 {
		t.Fatalf("bgp %+v, want %+v with shutdown_delay 0", *b, want)
	}

	// The speaker is made at start: a changed bgp block needs a restart,
	// but shutdown_delay, read when lvs-sync stops, does not.
	without, err := Parse([]byte(bgpVS), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := without.NeedsRestart(cfg); !slices.Equal(got, []string{"director.vip_interface", "director.bgp"}) {
		t.Errorf("adding bgp needs a restart of %q", got)
	}
	other := *cfg.Director.BGP
	other.ShutdownDelay = 5 * time.Second
	if !other.Equal(cfg.Director.BGP) {
		t.Error("another shutdown_delay counts as another bgp block: it would need a restart")
	}
	other.Neighbors = slices.Clone(other.Neighbors)
	other.Neighbors[1].HoldTime = 30 * time.Second
	if other.Equal(cfg.Director.BGP) {
		t.Error("another hold_time is the same bgp block")
	}
}

func TestBGPInvalid(t *testing.T) {
	bgp := func(body string) string {
		return "director {\n  vip_interface = \"lvs0\"\n  bgp {\n" + body + "\n  }\n}\n" + bgpVS
	}
	for _, tt := range []struct {
		name, src string
		want      []string
	}{
		{"no asn", bgp(`neighbor "10.7.0.1" {
  asn = 65000
}`), []string{`t.hcl:3:7: error: Missing required argument; The argument "asn" is required`}},
		{"no neighbor", bgp(`asn = 65010`), []string{
			`t.hcl:3:3: error: Missing neighbor; director.bgp: neighbor: a bgp block needs a neighbor block for each router`}},
		{"bad values", bgp(`asn = 0
router_id = "fd00::1"
listen_port = 70000
shutdown_delay = "soon"
neighbor "10.7.0.1" {
  asn = 23456
  port = 0
  hold_time = "1s"
  password = ""
}`), []string{
			`t.hcl:4:7: error: Invalid AS number; director.bgp: asn: 0: an AS number is 1 to 4294967294`,
			`t.hcl:5:13: error: Invalid router id; director.bgp: router_id: "fd00::1": a BGP identifier is an IPv4 address`,
			`t.hcl:6:15: error: Invalid port; director.bgp: listen_port: 70000: want 1 to 65535`,
			`t.hcl:7:18: error: Invalid duration; director.bgp: shutdown_delay: "soon" is not a duration`,
			`t.hcl:9:9: error: Invalid AS number; director.bgp.neighbor "10.7.0.1": asn: 23456 is AS_TRANS`,
			`t.hcl:10:10: error: Invalid port; director.bgp.neighbor "10.7.0.1": port: 0: want 1 to 65535`,
			`t.hcl:11:15: error: Invalid hold time; director.bgp.neighbor "10.7.0.1": hold_time: 1s: BGP's hold time is whole seconds, from 3s to 65535s`,
			`t.hcl:12:14: error: Empty value; director.bgp.neighbor "10.7.0.1": password: must not be empty`,
		}},
		{"fractional hold time", bgp(`asn = 65010
neighbor "10.7.0.1" {
  asn = 65000
  hold_time = "4500ms"
}`), []string{`t.hcl:7:15: error: Invalid hold time; director.bgp.neighbor "10.7.0.1": hold_time: 4.5s: BGP's hold time is whole seconds`}},
		{"bad neighbors", bgp(`asn = 65010
neighbor "router1" {
  asn = 65000
}
neighbor "10.7.0.1" {
  asn = 65000
}
neighbor "10.7.0.1" {
  asn = 65001
}`), []string{
			`t.hcl:5:1: error: Invalid neighbor address; director.bgp: neighbor "router1": the label is the router's IP address`,
			`t.hcl:11:1: error: Duplicate neighbor; director.bgp: neighbor "10.7.0.1" is already declared at t.hcl:8,1-20.`,
		}},
		{"unknown attributes", bgp(`asn = 65010
bfd = true
neighbor "10.7.0.1" {
  asn = 65000
  multihop = 2
}`), []string{
			`t.hcl:5:1: error: Unsupported argument; An argument named "bfd" is not expected here.`,
			`t.hcl:8:3: error: Unsupported argument; An argument named "multihop" is not expected here.`,
		}},
		{"with ha", `director {
  ha {
    lock_key = "k"
    interface = "eth0"
  }
  bgp {
    asn = 65010
    neighbor "10.7.0.1" {
      asn = 65000
    }
  }
}
`, []string{`t.hcl:6:3: error: bgp with ha; director: bgp and ha are exclusive: ha (at t.hcl:2,3-5) makes one director of a pair active, bgp makes every director of a tier active`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "t.hcl")
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("diagnostic %d:\n  %s\nwant it to contain\n  %s", i, lines[i], w)
				}
			}
		})
	}
}

// A bgp director warns, at validate, of what an all-active tier cannot
// keep: a scheduler other than mh or sh (a flow moved to another director
// meets another real) and masq (its replies must come back through the
// director with the NAT state); and of VIPs it announces but does not put
// on the director.
func TestBGPWarnings(t *testing.T) {
	src := `director {
  bgp {
    asn = 65010
    neighbor "10.7.0.1" {
      asn = 65000
    }
  }
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  scheduler  = "wlc"
  forwarding = "gate"
}
virtual_service "api" {
  address    = "10.10.10.61:80"
  scheduler  = "sh"
  scheduler_flags = ["sh-fallback"]
  forwarding = "masq"
}
virtual_service "dns" {
  address    = "10.10.10.62:53"
  protocol   = "udp"
  forwarding = "ipip"
}
`
	cfg, err := Parse([]byte(src), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Warnings == nil {
		t.Fatal("no warnings")
	}
	got := strings.Split(cfg.Warnings.Error(), "\n")
	want := []string{
		`t.hcl:2:3: warning: BGP without vip_interface; director.bgp: the VIPs are announced, but without vip_interface lvs-sync does not put them on the director`,
		`t.hcl:11:16: warning: Scheduler not consistent across directors; virtual_service "web": scheduler: wlc picks the real from this director's own state`,
		`t.hcl:18:16: warning: masq behind ECMP; virtual_service "api": forwarding: with director.bgp, masq's replies must come back through the director`,
		`t.hcl:20:1: warning: Scheduler not consistent across directors; virtual_service "dns": scheduler: wlc picks the real`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d warnings, want %d:\n%s", len(got), len(want), cfg.Warnings)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("warning %d:\n  %s\nwant it to start with\n  %s", i, got[i], w)
		}
	}
	// Without bgp, none of it is a warning.
	cfg, err = Parse([]byte(src[strings.Index(src, "virtual_service"):]), "t.hcl")
	if err != nil || cfg.Warnings != nil {
		t.Errorf("without bgp: %v, warnings %v", err, cfg.Warnings)
	}
}
