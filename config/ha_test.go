package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ha/timings"
)

func TestHABlock(t *testing.T) {
	cfg, err := Parse([]byte(`director {
  ha {
    lock_key = "lvs-sync/ha/edge"
    interface = "eth0"
  }
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Director.HA
	if h == nil {
		t.Fatal("no ha")
	}
	want := HA{LockKey: "lvs-sync/ha/edge", Interface: "eth0", SyncInterface: "eth0", SyncID: 1, HeartbeatPort: 7947,
		Timings: timings.Default()}
	if !h.Equal(&want) || h.DeclRange.Start.Line != 2 {
		t.Fatalf("ha %+v, want the defaults %+v declared at line 2", *h, want)
	}
	cfg, err = Parse([]byte(`director {
  ha {
    lock_key = "k"
    interface = "eth0"
    sync_interface = "eth1"
    sync_id = 0
    heartbeat_port = 8000
    key_file = "/etc/lvs-sync/ha.key"
    heartbeat_interval = "20ms"
    peer_timeout = "100ms"
    renew_interval = "50ms"
    lease_ttl = "250ms"
  }
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	tm := timings.Default()
	tm.Heartbeat, tm.PeerTimeout, tm.Renew, tm.TTL = 20*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond, 250*time.Millisecond
	if want := (HA{LockKey: "k", Interface: "eth0", SyncInterface: "eth1", SyncID: 0, HeartbeatPort: 8000, KeyFile: "/etc/lvs-sync/ha.key", Timings: tm}); !cfg.Director.HA.Equal(&want) {
		t.Fatalf("ha %+v, want %+v", *cfg.Director.HA, want)
	}
	cfg, err = Parse([]byte("director {}\n"), "t.hcl")
	if err != nil || cfg.Director.HA != nil {
		t.Fatalf("without ha: %v, %+v", err, cfg.Director.HA)
	}
	with, err := Parse([]byte("director {\n  ha {\n    lock_key = \"k\"\n    interface = \"eth0\"\n  }\n}\n"), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.NeedsRestart(with); !slices.Equal(got, []string{"director.ha"}) {
		t.Fatalf("adding ha needs a restart of %q, want director.ha", got)
	}
	slower, err := Parse([]byte("director {\n  ha {\n    lock_key = \"k\"\n    interface = \"eth0\"\n    lease_ttl = \"1s\"\n  }\n}\n"), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := with.NeedsRestart(slower); !slices.Equal(got, []string{"director.ha"}) {
		t.Fatalf("another lease_ttl needs a restart of %q, want director.ha", got)
	}
}

func TestHAInvalid(t *testing.T) {
	ha := func(body string) string { return "director {\n  ha {\n" + body + "\n  }\n}\n" }
	for _, tt := range []struct {
		name, src string
		want      []string
	}{
		{"no lock_key", ha(`interface = "eth0"`), []string{`t.hcl:2:6: error: Missing required argument; The argument "lock_key" is required`}},
		{"no interface", ha(`lock_key = "k"`), []string{`t.hcl:2:6: error: Missing required argument; The argument "interface" is required`}},
		{"bad values", ha(`lock_key = "/k"
interface = "eth0:1"
sync_interface = ""
sync_id = 256
heartbeat_port = 0
key_file = ""`), []string{
			`t.hcl:3:12: error: Invalid lock key; director.ha: lock_key: "/k" must not begin or end with /`,
			`t.hcl:4:13: error: Invalid interface name; director.ha: interface: "eth0:1" has ':'`,
			`t.hcl:5:18: error: Invalid interface name; director.ha: sync_interface: "" must be 1 to 15 characters long`,
			`t.hcl:6:11: error: Invalid sync id; director.ha: sync_id: 256: the kernel's sync id is 0 to 255`,
			`t.hcl:7:18: error: Invalid port; director.ha: heartbeat_port: 0: want 1 to 65535`,
			`t.hcl:8:12: error: Empty value; director.ha: key_file: must not be empty`,
		}},
		{"bad timings", ha(`lock_key = "k"
interface = "eth0"
heartbeat_interval = "fast"
lease_ttl = "-1s"`), []string{
			`t.hcl:5:22: error: Invalid duration; director.ha: heartbeat_interval: "fast" is not a positive duration`,
			`t.hcl:6:13: error: Invalid duration; director.ha: lease_ttl: "-1s" is not a positive duration`,
		}},
		{"unsafe timings", ha(`lock_key = "k"
interface = "eth0"
heartbeat_interval = "200ms"
lease_ttl = "300ms"`), []string{
			`t.hcl:2:3: error: Unsafe ha timings; director.ha: peer_timeout: 250ms must be at least two heartbeats (heartbeat_interval 200ms)`,
			`t.hcl:6:13: error: Unsafe ha timings; director.ha: lease_ttl: 300ms must be at least four renewals (renew_interval 100ms)`,
		}},
		{"unknown attribute", ha(`lock_key = "k"
interface = "eth0"
priority = 100`), []string{`t.hcl:5:1: error: Unsupported argument; An argument named "priority" is not expected here.`}},
		{"with vip_interface", `director {
  vip_interface = "lvs0"
  ha {
    lock_key = "k"
    interface = "eth0"
  }
}
`, []string{`t.hcl:2:19: error: VIP link with ha; director: vip_interface: with an ha block the VIPs go on ha's interface`}},
		{"two ha blocks", `director {
  ha {
    lock_key = "k"
    interface = "eth0"
  }
  ha {
    lock_key = "k"
    interface = "eth0"
  }
}
`, []string{`t.hcl:6:3: error: Duplicate ha block`}},
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
