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
		name:    "an owned service that left the config drains: live reals at 0, idle ones go",
		desired: State{},
		current: State{removed: svc("wlc", map[string]Real{"10.1.0.31:80": withConns(gate(4), 1, 0), "10.1.0.32:80": gate(1)})},
		want: "ipvsadm -e -t 10.0.0.3:80 -r 10.1.0.31:80 -g -w 0\n" +
			"ipvsadm -d -t 10.0.0.3:80 -r 10.1.0.32:80",
		wantNext: 30 * time.Second,
	}, {
		name:    "nothing to do",
		desired: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})},
		current: State{web: svc("wlc", map[string]Real{"10.1.0.11:80": withConns(gate(1), 7, 3)})},
		want:    "",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }}
			p := Changes(Input{Desired: tt.desired, Current: tt.current, Owned: owned, Drains: d, Now: t0})
			plan, next := p.Plan, p.Next
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
	mine := func(lvs.ServiceKey) bool { return true }
	p := Changes(Input{Desired: State{web: svc("wlc", nil)}, Current: State{web: cur}, Owned: mine, Now: time.Now()})
	if got := planStrings(p.Plan); got != "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.12:80" {
		t.Errorf("plan %q", got)
	}
}

// TestChangesLeavesAConflictAlone: a desired service the kernel has from
// someone else is a conflict, untouched, unless the config adopts it; a
// service that drains after leaving the config stays lvs-sync's until it
// is gone.
func TestChangesLeavesAConflictAlone(t *testing.T) {
	web, removed := svcKey("10.0.0.1:80"), svcKey("10.0.0.3:80")
	foreignWeb := State{web: svc("rr", map[string]Real{"10.9.0.1:80": gate(7)})}
	desired := State{web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)})}
	p := Changes(Input{Desired: desired, Current: foreignWeb, Now: time.Now()})
	if len(p.Plan) != 0 || len(p.Conflicts) != 1 || p.Conflicts[0] != web || p.Kept[web] {
		t.Errorf("conflict: plan %q, conflicts %v, kept %v; want nothing planned, web a conflict, not kept", planStrings(p.Plan), p.Conflicts, p.Kept)
	}
	p = Changes(Input{Desired: desired, Current: foreignWeb, Adopt: func(k lvs.ServiceKey) bool { return k == web }, Now: time.Now()})
	want := "ipvsadm -E -t 10.0.0.1:80 -s wlc\n" +
		"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 1\n" +
		"ipvsadm -d -t 10.0.0.1:80 -r 10.9.0.1:80"
	if got := planStrings(p.Plan); got != want || len(p.Conflicts) != 0 || !p.Kept[web] {
		t.Errorf("adopted: plan\n%s\nwant\n%s\n(conflicts %v, kept %v)", got, want, p.Conflicts, p.Kept)
	}
	// A service that left the config with a live connection is kept, and
	// listed as leaving, until its connections end.
	d := &Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }}
	cur := State{removed: svc("wlc", map[string]Real{"10.1.0.31:80": {Weight: 2, Forward: lvs.Route, ActiveConns: 1}})}
	owned := func(k lvs.ServiceKey) bool { return k == removed }
	p = Changes(Input{Current: cur, Owned: owned, Drains: d, Now: time.Now()})
	if !p.Kept[removed] || len(p.Leaving) != 1 {
		t.Errorf("leaving service: kept %v, leaving %v; want it kept and leaving", p.Kept, p.Leaving)
	}
	cur[removed].Reals[realKey("10.1.0.31:80")] = Real{Weight: 0, Forward: lvs.Route}
	p = Changes(Input{Current: cur, Owned: owned, Drains: d, Now: time.Now()})
	if got := planStrings(p.Plan); got != "ipvsadm -D -t 10.0.0.3:80" || p.Kept[removed] {
		t.Errorf("once idle: plan %q, kept %v; want the service deleted, no longer kept", got, p.Kept)
	}
}

// unlisted is a kernel that must not be asked for its whole table.
type unlisted struct {
	*MemKernel
	t *testing.T
}

func (u unlisted) Services() (State, error) {
	u.t.Error("a scoped sync listed every service")
	return u.MemKernel.Services()
}

// TestReconcileOfAFewKeysReadsOnlyThose: a sync scoped to some services
// reads those by themselves, never the whole table, and applies only
// their changes; a scope of every service lists them and names the
// foreign ones.
func TestReconcileOfAFewKeysReadsOnlyThose(t *testing.T) {
	web, api, foreign := svcKey("10.0.0.1:80"), svcKey("10.0.0.2:80"), svcKey("10.0.0.9:80")
	kernel := NewMemKernel(State{
		web:     svc("wlc", map[string]Real{"10.1.0.11:80": gate(1)}),
		api:     svc("wlc", map[string]Real{"10.1.0.21:80": gate(1)}),
		foreign: svc("rr", map[string]Real{"10.9.0.1:80": gate(1)}),
	})
	desired := State{
		web: svc("wlc", map[string]Real{"10.1.0.11:80": gate(5)}),
		api: svc("wlc", map[string]Real{"10.1.0.21:80": gate(7)}),
	}
	mine := func(k lvs.ServiceKey) bool { return k == web || k == api }
	p, res, err := Reconcile(unlisted{kernel, t}, Input{Desired: desired, Owned: mine, Now: time.Now()},
		Scope{Keys: map[lvs.ServiceKey]bool{web: true}}, nil)
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	if got := planStrings(p.Plan); got != "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 5" {
		t.Errorf("scoped plan %q, want only web's change", got)
	}
	p, res, err = Reconcile(kernel, Input{Desired: desired, Owned: mine, Now: time.Now()}, All, nil)
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	if got := planStrings(p.Plan); got != "ipvsadm -e -t 10.0.0.2:80 -r 10.1.0.21:80 -g -w 7" || len(res.Foreign) != 1 || res.Foreign[0] != foreign {
		t.Errorf("full plan %q, foreign %v; want api's change and the foreign service named", got, res.Foreign)
	}
}
