package ipvs

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/lvs-sync/lvs-sync/lvs"
)

func svcKey(s string) lvs.ServiceKey {
	ap := netip.MustParseAddrPort(s)
	return lvs.ServiceKey{Protocol: lvs.TCP, Addr: ap.Addr(), Port: ap.Port()}
}

func realKey(s string) lvs.RealKey {
	ap := netip.MustParseAddrPort(s)
	return lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()}
}

func svc(sched string, reals map[string]Real) *Service {
	s := &Service{Scheduler: sched, Netmask: 0xffffffff, Reals: map[lvs.RealKey]Real{}}
	for k, r := range reals {
		s.Reals[realKey(k)] = r
	}
	return s
}

func gate(w int) Real { return Real{Weight: w, Forward: lvs.Route} }
func masq(w int) Real { return Real{Weight: w, Forward: lvs.Masq} }

func planStrings(p Plan) string {
	lines := make([]string, len(p))
	for i, op := range p {
		lines[i] = op.String()
	}
	return strings.Join(lines, "\n")
}

func TestDiff(t *testing.T) {
	web, api, foreign, gone := svcKey("10.0.0.1:80"), svcKey("10.0.0.2:443"), svcKey("10.0.0.9:80"), svcKey("10.0.0.3:80")
	current := State{
		web: svc("wlc", map[string]Real{
			"10.1.0.11:80": gate(1), // weight changes
			"10.1.0.12:80": gate(1), // forwarding changes
			"10.1.0.13:80": gate(1), // leaves
			"10.1.0.14:80": gate(3), // stays
		}),
		api:                   svc("rr", map[string]Real{"10.1.0.21:8443": masq(1)}), // scheduler changes
		foreign:               svc("rr", map[string]Real{"10.9.0.1:80": gate(1)}),    // not ours: untouched
		gone:                  svc("wlc", map[string]Real{"10.1.0.31:80": gate(1)}),  // removed from config
		svcKey("10.0.0.4:80"): svc("wlc", map[string]Real{"127.0.0.1:80": {Weight: 1, Forward: lvs.LocalNode}}),
	}
	desired := State{
		web: svc("wlc", map[string]Real{
			"10.1.0.11:80": gate(5),
			"10.1.0.12:80": {Weight: 1, Forward: lvs.Tunnel},
			"10.1.0.14:80": gate(3),
			"10.1.0.15:80": gate(1),
		}),
		api:                   svc("wrr", map[string]Real{"10.1.0.21:8443": masq(1)}),
		svcKey("10.0.0.5:80"): svc("wlc", map[string]Real{"10.1.0.51:80": gate(2)}),
		svcKey("10.0.0.4:80"): svc("wlc", map[string]Real{"127.0.0.1:80": masq(1)}),
	}
	owned := func(k lvs.ServiceKey) bool { return k == gone || desired[k] != nil }
	want := `ipvsadm -A -t 10.0.0.5:80 -s wlc
ipvsadm -E -t 10.0.0.2:443 -s wrr
ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.15:80 -g -w 1
ipvsadm -a -t 10.0.0.5:80 -r 10.1.0.51:80 -g -w 2
ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 5
ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.12:80 -i -w 1
ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.13:80
ipvsadm -D -t 10.0.0.3:80`
	plan := Diff(desired, current, owned)
	if got := planStrings(plan); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}

	// Applying the plan makes the kernel equal to desired, foreign aside,
	// and a second diff is empty: the loop converges.
	k := NewMemKernel(current)
	if res := Apply(k, plan, nil); res.Err() != nil || res.Applied != len(plan) {
		t.Fatalf("apply: %d applied, %v", res.Applied, res.Err())
	}
	after, err := Read(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantState := desired.Clone()
	wantState[foreign] = current[foreign]
	wantState[svcKey("10.0.0.4:80")].Reals[realKey("127.0.0.1:80")] = Real{Weight: 1, Forward: lvs.LocalNode}
	if after.String() != wantState.String() {
		t.Errorf("kernel after apply:\n%s\nwant:\n%s", after, wantState)
	}
	if again := Diff(desired, after, owned); len(again) != 0 {
		t.Errorf("second diff not empty:\n%s", planStrings(again))
	}
}

func TestDiffNeverTouchesForeignServices(t *testing.T) {
	foreign := svcKey("10.0.0.9:80")
	current := State{foreign: svc("rr", map[string]Real{"10.9.0.1:80": gate(1)})}
	for _, owned := range []func(lvs.ServiceKey) bool{nil, func(lvs.ServiceKey) bool { return false }} {
		if plan := Diff(State{}, current, owned); len(plan) != 0 {
			t.Errorf("plan touches a foreign service:\n%s", planStrings(plan))
		}
	}
}

func TestDiffComparesConfigNotConnections(t *testing.T) {
	k := svcKey("10.0.0.1:80")
	current := State{k: svc("wlc", map[string]Real{"10.1.0.11:80": {Weight: 2, Forward: lvs.Route, ActiveConns: 7, InactiveConns: 3}})}
	desired := State{k: svc("wlc", map[string]Real{"10.1.0.11:80": gate(2)})}
	if plan := Diff(desired, current, nil); len(plan) != 0 {
		t.Errorf("connection counts caused changes:\n%s", planStrings(plan))
	}
	persistent := svc("wlc", nil)
	persistent.Flags, persistent.Timeout = FlagPersistent, 300
	if plan := Diff(State{k: persistent}, State{k: svc("wlc", nil)}, nil); planStrings(plan) != "ipvsadm -E -t 10.0.0.1:80 -s wlc -p 300" {
		t.Errorf("persistence change: %s", planStrings(plan))
	}
}

func TestIsGone(t *testing.T) {
	for err, want := range map[error]bool{syscall.ESRCH: true, syscall.ENOENT: true, syscall.EEXIST: false, nil: false} {
		if isGone(err) != want {
			t.Errorf("isGone(%v) = %v", err, !want)
		}
	}
}
