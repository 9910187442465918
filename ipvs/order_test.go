package ipvs

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// listed is a service as read from the kernel, its reals in the kernel's
// order, head first, each at weight 1.
func listed(sched string, reals ...string) *Service {
	s := svc(sched, nil)
	for i, r := range reals {
		g := gate(1)
		g.Position = i + 1
		s.Reals[realKey(r)] = g
	}
	return s
}

// TestDiffOrder: for mh and sh the plan makes the kernel's list canonical
// (descending), keeping the longest canonical tail it has; for the other
// schedulers the order is none of its business.
func TestDiffOrder(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	all := func(sched string, reals ...string) *Service {
		s := svc(sched, nil)
		for _, r := range reals {
			s.Reals[realKey(r)] = gate(1)
		}
		return s
	}
	const a, b, c, d = "10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80"
	tests := []struct {
		name             string
		desired, current *Service
		want             string
	}{{
		name:    "canonical already: nothing to do",
		desired: all("mh", a, b, c),
		current: listed("mh", c, b, a),
	}, {
		name:    "a real that joins above the others: one add, at the head",
		desired: all("mh", a, b, c, d),
		current: listed("mh", c, b, a),
		want:    "ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.4:80 -g -w 1",
	}, {
		name:    "a real that joins below the others: those above it go round again",
		desired: all("mh", a, b, c),
		current: listed("mh", c, b),
		want: "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.2:80\n" +
			"ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.3:80\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:80 -g -w 1\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:80 -g -w 1\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.3:80 -g -w 1",
	}, {
		name:    "joined one by one, ascending (each at the head): reversed, all but the last go round",
		desired: all("sh", a, b, c),
		current: listed("sh", a, b, c),
		want: "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.2:80\n" +
			"ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.3:80\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:80 -g -w 1\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.3:80 -g -w 1",
	}, {
		name:    "a real that came back is at the head: the tail under it stays, those above go round, a leaving one is deleted",
		desired: all("mh", a, b, c, d),
		current: listed("mh", b, d, c, "10.1.0.9:80", a),
		want: "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.3:80\n" +
			"ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.4:80\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.3:80 -g -w 1\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.4:80 -g -w 1\n" +
			"ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.9:80",
	}, {
		name:    "a requeued real is added with its new settings, not updated",
		desired: func() *Service { s := all("mh", a, b); s.Reals[realKey(b)] = gate(7); return s }(),
		current: listed("mh", a, b),
		want: "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.2:80\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:80 -g -w 7",
	}, {
		name:    "a scheduler that does not read the order: left as it is",
		desired: all("wlc", a, b, c, d),
		current: listed("wlc", a, c, b),
		want:    "ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.4:80 -g -w 1",
	}, {
		name:    "a service that becomes mh is made canonical in the same plan",
		desired: all("mh", a, b),
		current: listed("rr", a, b),
		want: "ipvsadm -E -t 10.0.0.1:80 -s mh\n" +
			"ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.2:80\n" +
			"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:80 -g -w 1",
	}, {
		name:    "an order the kernel did not tell: left as it is",
		desired: all("mh", a, b),
		current: all("mh", a, b),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Diff(State{web: tt.desired}, State{web: tt.current}, nil)
			if got := planStrings(plan); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
			if tt.current.Reals[realKey(a)].Position == 0 {
				return
			}
			k := NewMemKernel(State{web: tt.current})
			if res := Apply(k, plan, nil); res.Err() != nil {
				t.Fatal(res.Err())
			}
			got, _ := KernelOrder(k.State()[web].Reals)
			if OrderMatters(tt.desired.Scheduler) && !slices.Equal(got, CanonicalOrder(tt.desired.Reals)) {
				t.Errorf("the kernel lists %v, want %v", got, CanonicalOrder(tt.desired.Reals))
			}
		})
	}
}

// TestFreshServiceIsCanonical: a service added by the plan, whatever its
// scheduler, costs the service and one add per real (and for mh the
// switch of its staged add), and its list is the
// canonical order: a sync after a restart, or on another director that
// started with every real, has nothing to do.
func TestFreshServiceIsCanonical(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	for _, sched := range []string{"mh", "sh", "wlc"} {
		desired := State{web: svc(sched, nil)}
		for i := range 12 {
			desired[web].Reals[lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i % 3), byte(200 - i)}), Port: 80}] = gate(1 + i%3)
		}
		plan := Diff(desired, State{}, nil)
		want := 1 + 12
		if Staged(sched) {
			want++ // the switch of a staged add (stage.go)
		}
		if len(plan) != want {
			t.Errorf("%s: a fresh service with 12 reals costs %d changes, want %d:\n%s", sched, len(plan), want, planStrings(plan))
		}
		k := NewMemKernel(State{})
		if res := Apply(k, plan, nil); res.Err() != nil {
			t.Fatal(res.Err())
		}
		st := k.State()
		if got, _ := KernelOrder(st[web].Reals); !slices.Equal(got, CanonicalOrder(desired[web].Reals)) {
			t.Errorf("%s: a fresh service lists %v, want the canonical %v", sched, got, CanonicalOrder(desired[web].Reals))
		}
		if again := Diff(desired, st, nil); len(again) != 0 {
			t.Errorf("%s: a second plan: %s", sched, planStrings(again))
		}
		if st[web].Fingerprint() != desired[web].Fingerprint() {
			t.Errorf("%s: fingerprint %s in the kernel, %s desired", sched, st[web].Fingerprint(), desired[web].Fingerprint())
		}
	}
}

// director is one director's kernel, synced by the one plan after each
// change of the catalog.
type director struct {
	k   *MemKernel
	ops int
}

func (d *director) sync(t *testing.T, desired State) {
	t.Helper()
	current, err := Read(d.k, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := Changes(Input{Desired: desired, Current: current, Owned: func(lvs.ServiceKey) bool { return true }})
	if res := Apply(d.k, p.Plan, nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	d.ops += len(p.Plan)
}

// TestHistoriesConverge: directors that see the same reals join, leave and
// come back in random orders, each from its own history (running all
// along, restarted with an empty table, started after the others), end
// with the same list in the kernel for mh and sh, so the same table and
// the same fingerprint. The schedulers that do not read the order pay
// nothing for it: their plan is the set difference, no requeue.
func TestHistoriesConverge(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	pool := make([]lvs.RealKey, 10)
	for i := range pool {
		pool[i] = lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 1, 0, byte(10 + i)}), Port: uint16(80 + i%2)}
	}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 20))
		sched := []string{"mh", "sh", "wlc", "rr"}[seed%4]
		ordered := OrderMatters(sched)
		flags := uint32(0)
		if sched == "mh" {
			flags = uint32(lvs.SchedFlag2)
		}
		// Three directors: a runs throughout, b restarts at a random
		// step (its table flushed), c starts at the end.
		a, b := &director{k: NewMemKernel(State{})}, &director{k: NewMemKernel(State{})}
		restart := rng.IntN(30)
		in := map[lvs.RealKey]Real{}
		for step := range 30 {
			rk := pool[rng.IntN(len(pool))]
			switch _, ok := in[rk]; {
			case ok && rng.IntN(3) == 0:
				in[rk] = gate(1 + rng.IntN(3)) // a weight changes
			case ok:
				delete(in, rk) // leaves
			default:
				in[rk] = gate(1 + rng.IntN(3)) // joins, or comes back
			}
			desired := State{web: &Service{Scheduler: sched, Flags: flags, Netmask: 0xffffffff, Reals: maps.Clone(in)}}
			a.sync(t, desired)
			if step == restart {
				b.k = NewMemKernel(State{})
			}
			b.sync(t, desired)
			if ordered {
				for name, d := range map[string]*director{"a": a, "b": b} {
					if got, _ := KernelOrder(d.k.State()[web].Reals); !slices.Equal(got, CanonicalOrder(in)) {
						t.Fatalf("seed %d %s step %d: director %s lists %v, want %v", seed, sched, step, name, got, CanonicalOrder(in))
					}
				}
			}
		}
		desired := State{web: &Service{Scheduler: sched, Flags: flags, Netmask: 0xffffffff, Reals: maps.Clone(in)}}
		c := &director{k: NewMemKernel(State{})}
		c.sync(t, desired)
		fa, fb, fc := fingerprintOf(t, a.k, web), fingerprintOf(t, b.k, web), fingerprintOf(t, c.k, web)
		if fa != fb || fb != fc || fc != desired[web].Fingerprint() {
			t.Errorf("seed %d %s: fingerprints a %s, b %s, c %s, desired %s\n%s", seed, sched, fa, fb, fc, desired[web].Fingerprint(), describe(a.k, web))
		}
		for name, d := range map[string]*director{"a": a, "b": b, "c": c} {
			if got, _ := KernelOrder(d.k.State()[web].Reals); ordered && !slices.Equal(got, CanonicalOrder(in)) {
				t.Errorf("seed %d %s: director %s lists\n%swant %v", seed, sched, name, describe(d.k, web), CanonicalOrder(in))
			}
		}
		// The service, its reals, and for mh the switch of a staged add
		// (stage.go).
		want := 1 + len(in)
		if Staged(sched) {
			want++
		}
		if c.ops != want {
			t.Errorf("seed %d %s: a director starting with %d reals made %d changes, want %d", seed, sched, len(in), c.ops, want)
		}
	}
}

// TestOtherSchedulersPayNothing: whatever the kernel's order, a plan for a
// scheduler that does not read it has no requeue.
func TestOtherSchedulersPayNothing(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	for _, sched := range lvs.Schedulers {
		if OrderMatters(sched) {
			continue
		}
		current := listed(sched, "10.1.0.1:80", "10.1.0.3:80", "10.1.0.2:80")
		desired := svc(sched, map[string]Real{"10.1.0.1:80": gate(1), "10.1.0.2:80": gate(1), "10.1.0.3:80": gate(1), "10.1.0.0:80": gate(1)})
		plan := Diff(State{web: desired}, State{web: current}, nil)
		if want := "ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.0:80 -g -w 1"; planStrings(plan) != want {
			t.Errorf("%s: plan %q, want %q", sched, planStrings(plan), want)
		}
	}
}

// pinnedFingerprint is TestFingerprint's service's, as this version
// computes it.
const pinnedFingerprint = "94b7aaa6276c"

func TestFingerprint(t *testing.T) {
	base := listed("mh", "10.1.0.2:80", "10.1.0.1:80")
	base.Flags = uint32(lvs.SchedFlag2)
	f := base.Fingerprint()
	if len(f.String()) != 12 || uint64(f) >= 1<<48 {
		t.Errorf("fingerprint %s (%d): want 48 bits, 12 hex digits", f, uint64(f))
	}
	same := cloneService(base)
	same.Flags |= FlagHashed // as the kernel reports every service
	r := same.Reals[realKey("10.1.0.1:80")]
	r.ActiveConns, r.Forward = 9, lvs.Tunnel // no part of the table
	same.Reals[realKey("10.1.0.1:80")] = r
	if same.Fingerprint() != f {
		t.Errorf("connections, the forwarding method or the hashed flag changed the fingerprint")
	}
	for what, other := range map[string]*Service{
		"the kernel's order": listed("mh", "10.1.0.1:80", "10.1.0.2:80"),
		"a weight": func() *Service {
			s := cloneService(base)
			s.Reals[realKey("10.1.0.1:80")] = Real{Weight: 2, Forward: lvs.Route, Position: 2}
			return s
		}(),
		"a flag":      func() *Service { s := cloneService(base); s.Flags = 0; return s }(),
		"a scheduler": func() *Service { s := cloneService(base); s.Scheduler = "sh"; return s }(),
		"a real":      listed("mh", "10.1.0.2:80", "10.1.0.1:81"),
	} {
		if other.Scheduler == "mh" && other.Flags == 0 && what != "a flag" {
			other.Flags = uint32(lvs.SchedFlag2)
		}
		if other.Fingerprint() == f {
			t.Errorf("%s changed, the fingerprint did not", what)
		}
	}
	// Pinned, so that it stays the same across versions and hosts: an
	// alert compares directors that may run different builds.
	if got, want := base.Fingerprint().String(), pinnedFingerprint; got != want {
		t.Errorf("fingerprint of %q is %s, was %s", "mh 0x10 10.1.0.2:80=1 10.1.0.1:80=1", got, want)
	}
}

func cloneService(s *Service) *Service {
	return State{svcKey("10.0.0.1:80"): s}.Clone()[svcKey("10.0.0.1:80")]
}

func fingerprintOf(t *testing.T, k *MemKernel, key lvs.ServiceKey) Fingerprint {
	t.Helper()
	current, err := Read(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return current[key].Fingerprint()
}

func describe(k *MemKernel, key lvs.ServiceKey) string {
	svc := k.State()[key]
	var b strings.Builder
	for _, rk := range svc.Order() {
		fmt.Fprintf(&b, "  %s w=%d pos=%d\n", rk, svc.Reals[rk].Weight, svc.Reals[rk].Position)
	}
	return b.String()
}

// TestDrainKeepsItsPlace: a real that leaves an mh service with
// connections drains at weight 0 where it is when the canonical order has
// it there (an edit keeps its slots, mh's last_weight), and the reals out
// of place around it go round as usual; the drain ends in a delete, which
// leaves the rest canonical.
func TestDrainKeepsItsPlace(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	const a, x, c = "10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"
	current := listed("mh", x, c, a) // x came back at the head once
	busy := current.Reals[realKey(x)]
	busy.ActiveConns = 3
	current.Reals[realKey(x)] = busy
	desired := State{web: svc("mh", map[string]Real{a: gate(1), c: gate(1)})}
	d := &Drainer{Timeout: func(lvs.ServiceKey) time.Duration { return 30 * time.Second }}
	t0 := time.Unix(1_700_000_000, 0)
	mine := func(lvs.ServiceKey) bool { return true }
	p := Changes(Input{Desired: desired, Current: State{web: current}, Owned: mine, Drains: d, Now: t0})
	want := "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.3:80\n" +
		"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.3:80 -g -w 1\n" +
		"ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.2:80 -g -w 0"
	if got := planStrings(p.Plan); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	k := NewMemKernel(State{web: current})
	if res := Apply(k, p.Plan, nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if got, _ := KernelOrder(k.State()[web].Reals); !slices.Equal(got, []lvs.RealKey{realKey(c), realKey(x), realKey(a)}) {
		t.Errorf("while x drains the kernel lists %v, want c, x, a", got)
	}
	// The connections end: x is deleted, c and a stay canonical.
	st := k.State()
	p = Changes(Input{Desired: desired, Current: st, Owned: mine, Drains: d, Now: t0.Add(time.Minute)})
	if got := planStrings(p.Plan); got != "ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.2:80" {
		t.Errorf("once drained: %s", got)
	}
}
