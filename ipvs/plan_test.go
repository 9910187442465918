package ipvs

import (
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestChanges is the one plan run applies and plan prints, for the
// situations a director meets: the changes are ordered, drains are
// weight-0 updates, and foreign services are never in them.
func TestChanges(t *testing.T) {
	web, foreign, removed := svcKey("10.0.0.1:80"), svcKey("10.0.0.9:80"), svcKey("10.0.0.3:80")
	withConns := func(r Real, active, inactive int) Real { r.ActiveConns, r.InactiveConns = active, inactive; return r }
	owned := func(k lvs.ServiceKey) bool { return k == web || k == removed }
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name             string
		desired, current State
		want             string
		wantNext         time.Duration // from t0; 0 for none
	}{{
		name:    "a real that left with no connection is deleted",
		desired: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})},
		current: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1), "10.1.0.12:80": gate(1)})},
		want:    "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.12:80",
	}, {
		name:     "a real that left with live connections drains at weight 0",
		desired:  State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})},
		current:  State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1), "10.1.0.12:80": withConns(gate(3), 2, 0)})},
		want:     "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 0",
		wantNext: 30 * time.Second,
	}, {
		name:     "only inactive connections: settles before it goes",
		desired:  State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})},
		current:  State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1), "10.1.0.12:80": withConns(gate(3), 0, 4)})},
		want:     "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 0",
		wantNext: DefaultSettle,
	}, {
		name:    "quiescent: kept at weight 0 by render, updated",
		desired: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(0)})},
		current: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": withConns(gate(5), 1, 0)})},
		want:    "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 0",
	}, {
		name:    "the fallback joins while the last real drains",
		desired: State{web: svc("wlc", map[string]Real{"10.9.9.9:80": gate(1)})},
		current: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": withConns(gate(5), 1, 0)})},
		want: "ipvsadm -a -t 10.0.0.1:80 -r 10.9.9.9:80 -g -w 1\n" +
			"ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 0",
		wantNext: 30 * time.Second,
	}, {
		name:    "a new service: the service before its reals",
		desired: State{web: svc("wlc", map[string]Real{"10.1.0.12:80": gate(2), "10.1.0.11:80": gate(1)})},
		current: State{},
		want: "ipvsadm -A -t 10.0.0.1:80 -s wlc\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 1\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 2",
	}, {
		name:    "an owned service that left the config is deleted; a foreign one is not touched",
		desired: State{},
		current: State{
			removed: svc("wlc", map[string]Real{"10.1.0.31:80": gate(1)}),
			foreign: svc("rr", map[string]Real{"10.9.0.1:80": gate(1)}),
		},
		want: "ipvsadm -D -t 10.0.0.3:80",
	}, {
		name:    "nothing to do",
		desired: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})},
		current: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": withConns(gate(1), 7, 3)})},
		want:    "",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }}
			plan, next := Changes(tt.desired, tt.current, owned, d, t0)
			if got := planStrings(plan); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
			var wantNext time.Time
			if tt.wantNext > 0 {
				wantNext = t0.Add(tt.wantNext)
			}
			if !next.Equal(wantNext) {
				t.Errorf("next drain event %v, want %v", next, wantNext)
			}
			for _, op := range plan {
				if op.Service == foreign {
					t.Errorf("plan touches the foreign service: %s", op)
				}
			}
		})
	}
}

// TestChangesWithoutDrainer: with no drainer a leaving real goes at once,
// connections or not.
func TestChangesWithoutDrainer(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	cur := svc("wlc", map[string]Real{"10.1.0.12:80": {Weight: 1, Forward: lvs.Route, ActiveConns: 3}})
	plan, _ := Changes(State{web: svc("wlc", nil)}, State{web: cur}, nil, nil, time.Now())
	if got := planStrings(plan); got != "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.12:80" {
		t.Errorf("plan %q", got)
	}
}
