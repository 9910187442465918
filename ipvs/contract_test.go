package ipvs

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestMemKernelContract runs the kernel contract against the in-memory
// table; kernel_test.go runs the same against the kernel, in the VM.
func TestMemKernelContract(t *testing.T) {
	testKernelContract(t, func(*testing.T) Kernel { return NewMemKernel(State{}) }, nil,
		func(t *testing.T, k Kernel, svc lvs.ServiceKey) {
			// A client's connection, as the kernel counts it: on the real
			// the scheduler picks, the only one here.
			m := k.(*MemKernel)
			m.mu.Lock()
			defer m.mu.Unlock()
			for rk, r := range m.state[svc].Reals {
				r.ActiveConns++
				m.state[svc].Reals[rk] = r
			}
		})
}

// testKernelContract pins what lvs-sync relies on the kernel to answer, for
// every call it makes. newKernel returns a kernel with an empty table;
// connect makes one client connection to svc, which has one real; listed,
// when not nil, returns the reals of svc in the kernel's order as another
// reader sees them (/proc/net/ip_vs, in the VM).
func testKernelContract(t *testing.T, newKernel func(*testing.T) Kernel, listed func(t *testing.T, svc lvs.ServiceKey) []lvs.RealKey,
	connect func(t *testing.T, k Kernel, svc lvs.ServiceKey)) {
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.1"), Port: 80}
	web6 := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("2001:db8::80"), Port: 443}
	dns6 := lvs.ServiceKey{Protocol: lvs.UDP, Addr: netip.MustParseAddr("2001:db8::53"), Port: 53}
	diameter := lvs.ServiceKey{Protocol: lvs.SCTP, Addr: netip.MustParseAddr("10.20.0.2"), Port: 3868}
	mark := lvs.ServiceKey{FWMark: 7, Addr: netip.IPv4Unspecified()}
	mark6 := lvs.ServiceKey{FWMark: 7, Addr: netip.IPv6Unspecified()}
	missing := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.99"), Port: 80}
	rk := func(s string) lvs.RealKey {
		ap := netip.MustParseAddrPort(s)
		return lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()}
	}
	host := func(k lvs.ServiceKey, sched string) *Service {
		return &Service{Scheduler: sched, Netmask: lvs.HostMask(k.Addr)}
	}
	persist := func(s *Service, timeout, netmask uint32) *Service {
		s.Flags, s.Timeout, s.Netmask = s.Flags|FlagPersistent, timeout, netmask
		return s
	}
	schedFlags := func(s *Service, f lvs.SchedFlags) *Service {
		s.Flags |= uint32(f)
		return s
	}

	t.Run("services", func(t *testing.T) {
		k := newKernel(t)
		onePacket := host(dns6, "rr")
		onePacket.Flags = FlagOnePacket
		added := State{
			web:      persist(host(web, "wlc"), 300, 0x00ffffff), // 255.255.255.0, network order
			web6:     host(web6, "wrr"),
			dns6:     persist(onePacket, 600, 64),
			diameter: schedFlags(host(diameter, "sh"), lvs.SchedFlag1|lvs.SchedFlag2), // sh-fallback,sh-port
			mark:     host(mark, "rr"),
			mark6:    host(mark6, "lc"), // the same mark in the other family is another service
		}
		for key, s := range added {
			must(t, "add service "+key.String(), k.AddService(key, s))
		}
		wantServices(t, k, added)

		// An update changes every setting and keeps the reals.
		updated := State{
			web:      host(web, "rr"),
			web6:     persist(host(web6, "lc"), 60, 48),
			dns6:     schedFlags(host(dns6, "sh"), lvs.SchedFlag1), // sh-fallback
			diameter: schedFlags(persist(host(diameter, "mh"), 30, 0xffffffff), lvs.SchedFlag1|lvs.SchedFlag2),
			mark:     persist(host(mark, "wlc"), 120, 0x0000ffff),
			mark6:    host(mark6, "rr"),
		}
		for key, s := range updated {
			r := rk("10.20.1.1:80")
			if key.Addr.Is6() {
				r = rk("[2001:db8::1:1]:80")
			}
			must(t, "add a real to "+key.String(), k.AddReal(key, r, Real{Weight: 2, Forward: lvs.Route}))
			must(t, "update service "+key.String(), k.UpdateService(key, s))
			wantReals(t, k, key, map[lvs.RealKey]Real{r: {Weight: 2, Forward: lvs.Route}})
		}
		wantServices(t, k, updated)

		// Deleting a service deletes its reals.
		for key := range updated {
			must(t, "delete service "+key.String(), k.DelService(key))
		}
		wantServices(t, k, State{})
		wantReals(t, k, web, map[lvs.RealKey]Real{})
	})

	t.Run("reals", func(t *testing.T) {
		k := newKernel(t)
		other := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.20.0.3"), Port: 80}
		services := State{web: host(web, "wlc"), other: host(other, "rr"), web6: host(web6, "wlc"), mark: host(mark, "rr")}
		for key, s := range services {
			must(t, "add service "+key.String(), k.AddService(key, s))
		}
		reals := map[lvs.ServiceKey]map[lvs.RealKey]Real{
			web: {
				rk("10.20.1.1:8080"): {Weight: 5, Forward: lvs.Masq, UpperThreshold: 100, LowerThreshold: 50},
				rk("10.20.1.2:80"):   {Weight: 0, Forward: lvs.Route},
				rk("10.20.1.3:80"):   {Weight: 1, Forward: lvs.Tunnel, UpperThreshold: 10}, // the kernel's lower: 3/4 of it
				rk("10.20.1.4:80"):   {Weight: 1, Forward: lvs.LocalNode},
			},
			other: {rk("10.20.1.2:80"): {Weight: 7, Forward: lvs.Masq}}, // a real of web too
			web6: {
				rk("[2001:db8::1:1]:8443"): {Weight: 3, Forward: lvs.Masq, UpperThreshold: 2, LowerThreshold: 2},
				rk("[2001:db8::1:2]:443"):  {Weight: 1, Forward: lvs.Route},
				rk("[2001:db8::1:3]:443"):  {Weight: 2, Forward: lvs.Tunnel},
			},
			mark: {rk("10.20.1.5:0"): {Weight: 1, Forward: lvs.Route}},
		}
		for key, rs := range reals {
			for r, spec := range rs {
				must(t, "add real "+r.String()+" to "+key.String(), k.AddReal(key, r, spec))
			}
		}
		for key, rs := range reals {
			wantReals(t, k, key, rs)
		}
		wantServices(t, k, services) // without reals

		// An update changes the weight, the method and the thresholds (to
		// none, to some, to the largest every kernel takes: INT_MAX); a
		// delete only its real.
		reals[web][rk("10.20.1.1:8080")] = Real{Weight: 0, Forward: lvs.Masq}
		reals[web][rk("10.20.1.2:80")] = Real{Weight: 4, Forward: lvs.Tunnel, UpperThreshold: 7, LowerThreshold: 1}
		reals[web6][rk("[2001:db8::1:2]:443")] = Real{Weight: 9, Forward: lvs.Masq, UpperThreshold: lvs.MaxThreshold}
		for _, c := range []struct {
			key lvs.ServiceKey
			r   lvs.RealKey
		}{{web, rk("10.20.1.1:8080")}, {web, rk("10.20.1.2:80")}, {web6, rk("[2001:db8::1:2]:443")}} {
			must(t, "update real "+c.r.String(), k.UpdateReal(c.key, c.r, reals[c.key][c.r]))
		}
		must(t, "delete real", k.DelReal(web, rk("10.20.1.3:80")))
		must(t, "delete real", k.DelReal(web6, rk("[2001:db8::1:3]:443")))
		delete(reals[web], rk("10.20.1.3:80"))
		delete(reals[web6], rk("[2001:db8::1:3]:443"))
		for key, rs := range reals {
			wantReals(t, k, key, rs)
		}
	})

	t.Run("local reals keep their method", func(t *testing.T) {
		k := newKernel(t)
		must(t, "add service", k.AddService(web, host(web, "rr")))
		must(t, "add service", k.AddService(dns6, host(dns6, "rr")))
		local := map[lvs.ServiceKey]map[lvs.RealKey]Real{
			web: {
				rk("127.0.0.1:80"): {Weight: 1, Forward: lvs.Masq},
				rk("127.0.0.2:80"): {Weight: 2, Forward: lvs.Route},
			},
			dns6: {
				rk("[::1]:53"): {Weight: 1, Forward: lvs.Masq},
				rk("[::1]:54"): {Weight: 1, Forward: lvs.Tunnel},
			},
		}
		for key, rs := range local {
			for r, spec := range rs {
				must(t, "add local real "+r.String(), k.AddReal(key, r, spec))
			}
			wantReals(t, k, key, rs)
		}
	})

	t.Run("errors", func(t *testing.T) {
		k := newKernel(t)
		r, gone := rk("10.20.1.9:80"), rk("10.20.1.10:80")
		spec := Real{Weight: 1, Forward: lvs.Route}
		must(t, "add service", k.AddService(web, host(web, "wlc")))
		must(t, "add service", k.AddService(dns6, host(dns6, "rr")))
		must(t, "add real", k.AddReal(web, r, spec))
		for _, c := range []struct {
			what string
			call func() error
			want syscall.Errno
		}{
			{"add an existing service", func() error { return k.AddService(web, host(web, "rr")) }, syscall.EEXIST},
			{"add an existing service with an unknown scheduler", func() error { return k.AddService(web, host(web, "nosuch")) }, syscall.EEXIST},
			{"add a service with an unknown scheduler", func() error { return k.AddService(missing, host(missing, "nosuch")) }, syscall.ENOENT},
			{"update to an unknown scheduler", func() error { return k.UpdateService(web, host(web, "nosuch")) }, syscall.ENOENT},
			{"add an IPv6 service with netmask 0", func() error { return k.AddService(web6, &Service{Scheduler: "rr"}) }, syscall.EINVAL},
			{"add an IPv6 service with netmask 129", func() error { return k.AddService(web6, &Service{Scheduler: "rr", Netmask: 129}) }, syscall.EINVAL},
			{"update an IPv6 service to netmask 0", func() error { return k.UpdateService(dns6, &Service{Scheduler: "rr"}) }, syscall.EINVAL},
			{"update a service that is not there", func() error { return k.UpdateService(missing, host(missing, "rr")) }, syscall.ESRCH},
			{"delete a service that is not there", func() error { return k.DelService(missing) }, syscall.ESRCH},
			{"add a real to a service that is not there", func() error { return k.AddReal(missing, r, spec) }, syscall.ESRCH},
			{"update a real of a service that is not there", func() error { return k.UpdateReal(missing, r, spec) }, syscall.ESRCH},
			{"delete a real of a service that is not there", func() error { return k.DelReal(missing, r) }, syscall.ESRCH},
			{"add an existing real", func() error { return k.AddReal(web, r, Real{Weight: 3, Forward: lvs.Masq}) }, syscall.EEXIST},
			{"update a real that is not there", func() error { return k.UpdateReal(web, gone, spec) }, syscall.ENOENT},
			{"delete a real that is not there", func() error { return k.DelReal(web, gone) }, syscall.ENOENT},
			{"add a real with a negative weight", func() error { return k.AddReal(web, gone, Real{Weight: -1, Forward: lvs.Route}) }, syscall.ERANGE},
			{"update a real to a negative weight", func() error { return k.UpdateReal(web, r, Real{Weight: -1, Forward: lvs.Route}) }, syscall.ERANGE},
			{"add a real with a lower threshold above the upper", func() error {
				return k.AddReal(web, gone, Real{Weight: 1, Forward: lvs.Route, UpperThreshold: 5, LowerThreshold: 6})
			}, syscall.ERANGE},
			{"add a real with a lower threshold and no upper", func() error {
				return k.AddReal(web, gone, Real{Weight: 1, Forward: lvs.Route, LowerThreshold: 1})
			}, syscall.ERANGE},
			{"update a real to a lower threshold above the upper", func() error {
				return k.UpdateReal(web, r, Real{Weight: 1, Forward: lvs.Route, UpperThreshold: 1, LowerThreshold: 2})
			}, syscall.ERANGE},
			// Linux 6.1 builds before the INT_MAX check stored a larger
			// threshold, later ones refuse it; every client refuses it
			// before sending (Real.Check), so the answer is EINVAL on all.
			{"add a real with an upper threshold above INT_MAX", func() error {
				return k.AddReal(web, gone, Real{Weight: 1, Forward: lvs.Route, UpperThreshold: lvs.MaxThreshold + 1})
			}, syscall.EINVAL},
			{"update a real to thresholds above INT_MAX", func() error {
				return k.UpdateReal(web, r, Real{Weight: 1, Forward: lvs.Route, UpperThreshold: 4294967295, LowerThreshold: 4294967295})
			}, syscall.EINVAL},
			{"add a real at 0.0.0.0", func() error { return k.AddReal(web, rk("0.0.0.0:80"), spec) }, syscall.EINVAL},
			{"add a real at 224.0.0.1", func() error { return k.AddReal(web, rk("224.0.0.1:80"), spec) }, syscall.EINVAL},
			{"add a real at 255.255.255.255", func() error { return k.AddReal(web, rk("255.255.255.255:80"), spec) }, syscall.EINVAL},
			{"add a real at ::", func() error { return k.AddReal(dns6, rk("[::]:53"), spec) }, syscall.EINVAL},
			{"add a real at ff02::1", func() error { return k.AddReal(dns6, rk("[ff02::1]:53"), spec) }, syscall.EINVAL},
			{"add a real at fe80::1", func() error { return k.AddReal(dns6, rk("[fe80::1]:53"), spec) }, syscall.EINVAL},
		} {
			if err := c.call(); !errors.Is(err, c.want) {
				t.Errorf("%s: got %v, want %v", c.what, err, c.want)
			}
		}
		// A refused call changes nothing.
		wantServices(t, k, State{web: host(web, "wlc"), dns6: host(dns6, "rr")})
		wantReals(t, k, web, map[lvs.RealKey]Real{r: spec})
		// The reals of a service that is not there are none, without error.
		wantReals(t, k, missing, map[lvs.RealKey]Real{})
	})

	t.Run("a refused real fails alone", func(t *testing.T) {
		// A multicast real, as a bad catalog entry would make one: the
		// kernel refuses it, and the rest of the service is still made;
		// the next sync retries that one change alone.
		k := newKernel(t)
		good := map[lvs.RealKey]Real{rk("10.20.1.1:80"): {Weight: 1, Forward: lvs.Route}, rk("10.20.1.2:80"): {Weight: 0, Forward: lvs.Route}}
		want := State{web: host(web, "wlc")}
		want[web].Reals = maps.Clone(good)
		want[web].Reals[rk("224.0.0.1:80")] = Real{Weight: 1, Forward: lvs.Route}
		for range 2 {
			current, err := Read(k, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := Apply(k, Diff(want, current, nil), nil)
			if len(res.Failed) != 0 || len(res.FailedReals) != 1 || !errors.Is(res.FailedReals[web][rk("224.0.0.1:80")], syscall.EINVAL) {
				t.Errorf("failures: services %v, reals %v; want only 224.0.0.1:80, EINVAL", res.Failed, res.FailedReals)
			}
			wantReals(t, k, web, good)
		}
	})

	t.Run("updates keep connection counts", func(t *testing.T) {
		k := newKernel(t)
		r := rk("10.20.1.5:80")
		must(t, "add service", k.AddService(web, host(web, "wlc")))
		must(t, "add real", k.AddReal(web, r, Real{Weight: 1, Forward: lvs.Route}))
		connect(t, k, web)
		before := readReals(t, k, web)[r]
		if before.ActiveConns+before.InactiveConns == 0 {
			t.Fatalf("no connection counted after a client connected: %+v", before)
		}
		must(t, "update real", k.UpdateReal(web, r, Real{Weight: 3, Forward: lvs.Tunnel, UpperThreshold: 9}))
		must(t, "update service", k.UpdateService(web, host(web, "rr")))
		after := before
		after.Position, after.Stats = 0, Stats{} // wantReals leaves the order and the counters aside
		after.Weight, after.Forward, after.UpperThreshold = 3, lvs.Tunnel, 9
		wantReals(t, k, web, map[lvs.RealKey]Real{r: after})
	})

	t.Run("order", func(t *testing.T) {
		// The kernel's list of a service's reals, which mh and sh build
		// their table from (order.go): an add (and an add again) puts the
		// real at the head, an update leaves it in place, a delete closes
		// the gap. Then a plan makes it canonical (descending), in place.
		k := newKernel(t)
		a, b, c, d := rk("10.20.1.1:80"), rk("10.20.1.2:80"), rk("10.20.1.3:80"), rk("10.20.1.4:80")
		spec := Real{Weight: 1, Forward: lvs.Route}
		must(t, "add service", k.AddService(web, schedFlags(host(web, "mh"), lvs.SchedFlag2)))
		wantOrder := func(what string, want ...lvs.RealKey) {
			t.Helper()
			got, ok := KernelOrder(readReals(t, k, web))
			if !ok || !slices.Equal(got, want) {
				t.Errorf("%s: the kernel lists %v (order known: %v), want %v", what, got, ok, want)
			}
			if listed != nil {
				if got := listed(t, web); !slices.Equal(got, want) {
					t.Errorf("%s: /proc/net/ip_vs lists %v, want %v", what, got, want)
				}
			}
		}
		for _, r := range []lvs.RealKey{a, b, c} {
			must(t, "add real "+r.String(), k.AddReal(web, r, spec))
		}
		wantOrder("a, b, c added", c, b, a)
		must(t, "delete real", k.DelReal(web, b))
		wantOrder("b deleted", c, a)
		must(t, "update real", k.UpdateReal(web, a, Real{Weight: 5, Forward: lvs.Route}))
		wantOrder("a updated", c, a)
		must(t, "add real again", k.AddReal(web, b, spec))
		wantOrder("b added again", b, c, a)
		must(t, "add real", k.AddReal(web, d, Real{Weight: 0, Forward: lvs.Route}))
		must(t, "update real", k.UpdateReal(web, b, Real{Weight: 0, Forward: lvs.Route}))
		wantOrder("d added, b at weight 0", d, b, c, a)
		must(t, "delete real", k.DelReal(web, c))
		must(t, "add real again", k.AddReal(web, c, spec))
		wantOrder("c deleted and added again", c, d, b, a)

		// The plan keeps the longest canonical tail the kernel has (c, b,
		// a: c is ahead of b, b of a) and deletes and adds again d alone,
		// which the list then has at its head.
		desired := State{web: schedFlags(host(web, "mh"), lvs.SchedFlag2)}
		desired[web].Reals = map[lvs.RealKey]Real{a: spec, b: spec, c: spec, d: spec}
		current, err := Read(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		plan := Diff(desired, current, nil)
		want := []string{
			"ipvsadm -d -t 10.20.0.1:80 -r 10.20.1.4:80",
			"ipvsadm -a -t 10.20.0.1:80 -r 10.20.1.4:80 -g -w 1",
			"ipvsadm -e -t 10.20.0.1:80 -r 10.20.1.1:80 -g -w 1",
			"ipvsadm -e -t 10.20.0.1:80 -r 10.20.1.2:80 -g -w 1",
		}
		if got := planStrings(plan); got != strings.Join(want, "\n") {
			t.Errorf("plan:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
		if res := Apply(k, plan, nil); res.Err() != nil {
			t.Fatal(res.Err())
		}
		wantOrder("planned", d, c, b, a)
		current, err = Read(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if again := Diff(desired, current, nil); len(again) != 0 {
			t.Errorf("the plan does not converge; still:\n%s", planStrings(again))
		}
	})

	t.Run("staged add", func(t *testing.T) {
		// A new mh service is added under no scheduler ("none", which
		// the kernel takes and reads back as such), its reals, then
		// switched to mh with its flags (stage.go): read back, it is mh
		// with mh-fallback and mh-port, its reals in canonical order, and
		// a second plan is empty. A service left under "none" (a crash
		// before the switch) is an ordinary edit to the next plan.
		k := newKernel(t)
		must(t, "add service under none", k.AddService(diameter, host(diameter, StageScheduler)))
		must(t, "add real", k.AddReal(diameter, rk("10.20.1.1:3868"), Real{Weight: 1, Forward: lvs.Masq}))
		wantServices(t, k, State{diameter: host(diameter, StageScheduler)})

		desired := State{
			web:      schedFlags(host(web, "mh"), lvs.SchedFlag1|lvs.SchedFlag2),
			diameter: host(diameter, "mh"),
		}
		a, b, c := rk("10.20.1.1:80"), rk("10.20.1.2:80"), rk("10.20.1.3:80")
		desired[web].Reals = map[lvs.RealKey]Real{a: {Weight: 1, Forward: lvs.Route}, b: {Weight: 2, Forward: lvs.Route}, c: {Weight: 0, Forward: lvs.Route}}
		desired[diameter].Reals = map[lvs.RealKey]Real{rk("10.20.1.1:3868"): {Weight: 1, Forward: lvs.Masq}}
		current, err := Read(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		plan := Diff(desired, current, nil)
		want := []string{
			"ipvsadm -A -t 10.20.0.1:80 -s none",
			"ipvsadm -E --sctp-service 10.20.0.2:3868 -s mh",
			"ipvsadm -a -t 10.20.0.1:80 -r 10.20.1.1:80 -g -w 1",
			"ipvsadm -a -t 10.20.0.1:80 -r 10.20.1.2:80 -g -w 2",
			"ipvsadm -a -t 10.20.0.1:80 -r 10.20.1.3:80 -g -w 0",
			"ipvsadm -E -t 10.20.0.1:80 -s mh -b mh-fallback,mh-port",
		}
		if got := planStrings(plan); got != strings.Join(want, "\n") {
			t.Errorf("plan:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
		if res := Apply(k, plan, nil); res.Err() != nil || res.Applied != len(plan) {
			t.Fatalf("applied %d of %d: %v", res.Applied, len(plan), res.Err())
		}
		wantServices(t, k, State{web: desired[web], diameter: desired[diameter]})
		got, ok := KernelOrder(readReals(t, k, web))
		if want := CanonicalOrder(desired[web].Reals); !ok || !slices.Equal(got, want) {
			t.Errorf("the kernel lists %v (order known: %v), want %v", got, ok, want)
		}
		if listed != nil {
			if got, want := listed(t, web), CanonicalOrder(desired[web].Reals); !slices.Equal(got, want) {
				t.Errorf("/proc/net/ip_vs lists %v, want %v", got, want)
			}
		}
		current, err = Read(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if again := Diff(desired, current, nil); len(again) != 0 {
			t.Errorf("the plan does not converge; still:\n%s", planStrings(again))
		}
	})

	t.Run("diff converges", func(t *testing.T) {
		// What Diff and Apply write, the kernel reads back so that a
		// second diff is empty: its quirks (the hashed flag) normalised.
		k := newKernel(t)
		desired := State{
			web: {Scheduler: "wlc", Flags: FlagPersistent, Timeout: 300, Netmask: lvs.HostMask(web.Addr), Reals: map[lvs.RealKey]Real{
				rk("10.20.1.1:80"):   {Weight: 5, Forward: lvs.Route},
				rk("10.20.1.2:80"):   {Weight: 0, Forward: lvs.Tunnel},
				rk("10.20.1.3:8080"): {Weight: 1, Forward: lvs.Masq, UpperThreshold: 20, LowerThreshold: 10},
				rk("127.0.0.1:80"):   {Weight: 1, Forward: lvs.Masq},
			}},
			dns6: {Scheduler: "rr", Netmask: lvs.HostMask(dns6.Addr), Reals: map[lvs.RealKey]Real{rk("[2001:db8::11]:5353"): {Weight: 2, Forward: lvs.Masq}}},
			diameter: {Scheduler: "sh", Flags: uint32(lvs.SchedFlag1), Netmask: lvs.HostMask(diameter.Addr), Reals: map[lvs.RealKey]Real{
				rk("10.20.1.1:3868"): {Weight: 1, Forward: lvs.Masq},
				rk("10.20.1.2:3868"): {Weight: 0, Forward: lvs.Masq}, // sh-fallback passes over it
			}},
		}
		mine := func(key lvs.ServiceKey) bool { return desired[key] != nil }
		converge := func(what string) {
			t.Helper()
			if _, res, err := Reconcile(k, Input{Desired: desired, Owned: mine, Now: time.Now()}, All, nil); err != nil || res.Err() != nil {
				t.Fatalf("%s: %v %v", what, err, res.Err())
			}
			current, err := Read(k, mine)
			if err != nil {
				t.Fatal(err)
			}
			if again := Diff(desired, current, mine); len(again) != 0 {
				t.Fatalf("%s: the diff does not converge; still:\n%s\nkernel:\n%s", what, planStrings(again), current)
			}
		}
		converge("first apply")
		desired[web].Scheduler = "wrr"
		desired[web].Reals[rk("10.20.1.2:80")] = Real{Weight: 3, Forward: lvs.Route}
		desired[web].Reals[rk("10.20.1.3:8080")] = Real{Weight: 1, Forward: lvs.Masq, UpperThreshold: 30}
		desired[diameter].Flags = uint32(lvs.SchedFlag1 | lvs.SchedFlag2)
		converge("an update")
		desired[diameter].Flags = 0
		converge("flags taken off")
		desired = State{}
		mine = func(key lvs.ServiceKey) bool { return key == web || key == dns6 || key == diameter }
		converge("removing everything")
		wantServices(t, k, State{})
	})
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func readReals(t *testing.T, k Kernel, key lvs.ServiceKey) map[lvs.RealKey]Real {
	t.Helper()
	got, err := k.Reals(key)
	if err != nil {
		t.Fatalf("reals of %s: %v", key, err)
	}
	return got
}

// wantReals checks the whole of a service's reals, connection counts
// included, their order aside (the "order" case checks it), and their
// traffic counters aside: the kernel folds its per-CPU counters into them
// every 2 s, so two reads around one connection may differ.
func wantReals(t *testing.T, k Kernel, key lvs.ServiceKey, want map[lvs.RealKey]Real) {
	t.Helper()
	got := readReals(t, k, key)
	for rk, r := range got {
		r.Position, r.Stats = 0, Stats{}
		got[rk] = r
	}
	if !maps.Equal(got, want) {
		t.Errorf("reals of %s:\n got %v\nwant %v", key, got, want)
	}
}

// wantServices checks the whole table of services, which Services lists
// without their reals.
func wantServices(t *testing.T, k Kernel, want State) {
	t.Helper()
	got, err := k.Services()
	if err != nil {
		t.Fatalf("services: %v", err)
	}
	var diff []string
	for key, w := range want {
		switch g := got[key]; {
		case g == nil:
			diff = append(diff, "missing "+ServiceRule(key, w))
		case !g.Equal(w):
			diff = append(diff, fmt.Sprintf("%s: got %+v, want %+v", key, *g, *w))
		}
	}
	for key, g := range got {
		if g.Reals != nil {
			diff = append(diff, fmt.Sprintf("%s listed with its reals %v", key, g.Reals))
		}
		if want[key] == nil {
			diff = append(diff, "unexpected "+ServiceRule(key, g))
		}
	}
	if len(diff) != 0 {
		t.Errorf("services:\n%s", strings.Join(diff, "\n"))
	}
}
