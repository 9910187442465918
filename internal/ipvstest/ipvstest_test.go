package ipvstest

import (
	"errors"
	"maps"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

var (
	web  = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	api  = lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.2"), Port: 443}
	a, b = lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.11"), Port: 80}, lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.12"), Port: 80}
	gate = ipvs.Real{Weight: 1, Forward: lvs.Route}
	boom = errors.New("injected")
)

func service() *ipvs.Service { return &ipvs.Service{Scheduler: "wlc", Netmask: 0xffffffff} }

// wantState checks the whole table, connection counts included.
func wantState(t *testing.T, k *Kernel, want ipvs.State) {
	t.Helper()
	got := k.State()
	ok := len(got) == len(want)
	for key, w := range want {
		g := got[key]
		ok = ok && g != nil && g.Equal(w) && maps.Equal(unordered(g.Reals), w.Reals)
	}
	if !ok {
		t.Errorf("table:\n%v\nwant:\n%v", dump(got), dump(want))
	}
}

// unordered leaves the reals' order in the kernel's list aside, which
// ipvs's contract test checks.
func unordered(reals map[lvs.RealKey]ipvs.Real) map[lvs.RealKey]ipvs.Real {
	for rk, r := range reals {
		r.Position = 0
		reals[rk] = r
	}
	return reals
}

func dump(st ipvs.State) map[string]any {
	m := map[string]any{}
	for k, s := range st {
		m[k.String()] = *s
	}
	return m
}

func withReals(reals map[lvs.RealKey]ipvs.Real) *ipvs.Service {
	s := service()
	s.Reals = reals
	return s
}

func TestCountsCallsAndWrites(t *testing.T) {
	k := New(ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate})})
	_, _ = k.Services()
	_, _ = k.Reals(web)
	if err := k.AddService(web, service()); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("add an existing service: %v", err)
	}
	if err := k.AddReal(web, b, gate); err != nil {
		t.Fatal(err)
	}
	if k.Calls() != 4 || k.Writes() != 1 {
		t.Errorf("%d calls, %d writes; want 4 (two reads, a refused write, a write) and 1", k.Calls(), k.Writes())
	}
	wantState(t, k, ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate, b: gate})})
}

func TestFailService(t *testing.T) {
	k := New(ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate})})
	k.FailService(web, boom)
	for what, err := range map[string]error{
		"update service": k.UpdateService(web, &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff}),
		"add real":       k.AddReal(web, b, gate),
		"delete real":    k.DelReal(web, a),
		"delete service": k.DelService(web),
	} {
		if !errors.Is(err, boom) {
			t.Errorf("%s of a failing service: %v", what, err)
		}
	}
	if err := k.AddService(api, service()); err != nil {
		t.Errorf("another service: %v", err)
	}
	if k.Writes() != 1 {
		t.Errorf("%d writes, want 1", k.Writes())
	}
	wantState(t, k, ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate}), api: withReals(map[lvs.RealKey]ipvs.Real{})})

	k.FailService(web, nil)
	if err := k.DelService(web); err != nil {
		t.Errorf("after the failure ended: %v", err)
	}
	wantState(t, k, ipvs.State{api: withReals(map[lvs.RealKey]ipvs.Real{})})
}

// One refused real does not stop the others of its service.
func TestFailReal(t *testing.T) {
	k := New(ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{})})
	k.FailReal(web, a, boom)
	if err := k.AddReal(web, a, gate); !errors.Is(err, boom) {
		t.Errorf("add the failing real: %v", err)
	}
	if err := k.AddReal(web, b, gate); err != nil {
		t.Errorf("add another real of the service: %v", err)
	}
	if err := k.UpdateService(web, &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff}); err != nil {
		t.Errorf("update the service: %v", err)
	}
	if err := k.AddReal(api, a, gate); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the same real in another service fails as the kernel would: %v", err)
	}
	want := &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{b: gate}}
	wantState(t, k, ipvs.State{web: want})

	k.FailReal(web, a, nil)
	if err := k.AddReal(web, a, gate); err != nil {
		t.Errorf("after the failure ended: %v", err)
	}
	want.Reals[a] = gate
	wantState(t, k, ipvs.State{web: want})
}

func TestSetConns(t *testing.T) {
	k := New(ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate, b: gate})})
	if err := k.SetConns(web, a, 3, 1); err != nil {
		t.Fatal(err)
	}
	busy := ipvs.Real{Weight: 1, Forward: lvs.Route, ActiveConns: 3, InactiveConns: 1}
	if reals, err := k.Reals(web); err != nil || !maps.Equal(unordered(reals), map[lvs.RealKey]ipvs.Real{a: busy, b: gate}) {
		t.Errorf("reals read: %v, %v", reals, err)
	}
	// An update keeps them, as the kernel does.
	if err := k.UpdateReal(web, a, ipvs.Real{Weight: 0, Forward: lvs.Route}); err != nil {
		t.Fatal(err)
	}
	busy.Weight = 0
	wantState(t, k, ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: busy, b: gate})})
	// A deleted real's connections go with it.
	if err := k.DelReal(web, a); err != nil {
		t.Fatal(err)
	}
	if err := k.AddReal(web, a, gate); err != nil {
		t.Fatal(err)
	}
	wantState(t, k, ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate, b: gate})})

	for what, err := range map[string]error{
		"a real that is not there":    k.SetConns(web, lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.99"), Port: 80}, 1, 0),
		"a service that is not there": k.SetConns(api, a, 1, 0),
	} {
		if err == nil {
			t.Errorf("connections set on %s", what)
		}
	}
}

// TestSetStats: counters set on a real and a service are read by every
// read (the dump, one service, the whole table), kept by an update, and
// forgotten with the real or the service; the MemKernel beneath has none.
func TestSetStats(t *testing.T) {
	k := New(ipvs.State{web: withReals(map[lvs.RealKey]ipvs.Real{a: gate, b: gate})})
	if st, _ := ipvs.Read(k, nil); st[web].Stats != (ipvs.Stats{}) || st[web].Reals[a].Stats != (ipvs.Stats{}) {
		t.Fatalf("counters before any were set: %+v", st[web])
	}
	ra := ipvs.Stats{Conns: 3, InPkts: 30, OutPkts: 20, InBytes: 3000, OutBytes: 90000}
	sv := ipvs.Stats{Conns: 5, InPkts: 50, OutPkts: 40, InBytes: 5000, OutBytes: 150000}
	if err := k.SetStats(web, a, ra); err != nil {
		t.Fatal(err)
	}
	if err := k.SetServiceStats(web, sv); err != nil {
		t.Fatal(err)
	}
	if err := k.UpdateReal(web, a, ipvs.Real{Weight: 0, Forward: lvs.Route}); err != nil {
		t.Fatal(err)
	}
	st, err := ipvs.Read(k, nil)
	if err != nil || st[web].Stats != sv || st[web].Reals[a].Stats != ra || st[web].Reals[b].Stats != (ipvs.Stats{}) {
		t.Errorf("read: %+v, %v", st[web], err)
	}
	if one, err := k.Service(web); err != nil || one.Stats != sv {
		t.Errorf("one service: %+v, %v", one, err)
	}
	if got := k.State()[web]; got.Stats != sv || got.Reals[a].Stats != ra {
		t.Errorf("state: %+v", got)
	}
	// A deleted real's counters go with it, a deleted service's too.
	if err := k.DelReal(web, a); err != nil {
		t.Fatal(err)
	}
	if err := k.AddReal(web, a, gate); err != nil {
		t.Fatal(err)
	}
	if got := k.State()[web].Reals[a].Stats; got != (ipvs.Stats{}) {
		t.Errorf("a real added again has its old counters: %+v", got)
	}
	if err := k.DelService(web); err != nil {
		t.Fatal(err)
	}
	if err := k.AddService(web, service()); err != nil {
		t.Fatal(err)
	}
	if got := k.State()[web].Stats; got != (ipvs.Stats{}) {
		t.Errorf("a service added again has its old counters: %+v", got)
	}
	for what, err := range map[string]error{
		"a real that is not there":    k.SetStats(web, b, ra),
		"a service that is not there": k.SetServiceStats(api, sv),
	} {
		if err == nil {
			t.Errorf("counters set on %s", what)
		}
	}
}

// The knobs and the table are safe to use from several goroutines (run
// with -race).
func TestConcurrentUse(t *testing.T) {
	k := New(ipvs.State{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), Port: 80}
			_ = k.AddService(key, service())
			_ = k.AddReal(key, a, gate)
			_ = k.SetConns(key, a, i, 0)
			k.FailReal(key, b, boom)
			_, _ = ipvs.Read(k, nil)
		}()
	}
	wg.Wait()
	st := k.State()
	if len(st) != 8 || k.Writes() != 16 {
		t.Errorf("%d services, %d writes; want 8 and 16", len(st), k.Writes())
	}
	for key, s := range st {
		if r := s.Reals[a]; r.ActiveConns != int(key.Addr.As4()[3]) {
			t.Errorf("%s: %+v", key, r)
		}
	}
}

// TestFailAfter: the writes after the first n fail, at runs once.
func TestFailAfter(t *testing.T) {
	k := New(ipvs.State{})
	boom := errors.New("boom")
	stopped := 0
	k.FailAfter(1, boom, func() { stopped++ })
	if err := k.AddService(web, &ipvs.Service{Scheduler: "rr"}); err != nil {
		t.Fatalf("the first write: %v", err)
	}
	for range 2 {
		if err := k.AddService(api, &ipvs.Service{Scheduler: "rr"}); !errors.Is(err, boom) {
			t.Fatalf("a write after the first: %v, want boom", err)
		}
	}
	if stopped != 1 {
		t.Errorf("at ran %d times, want once", stopped)
	}
	k.FailAfter(0, nil, nil)
	if err := k.AddService(api, &ipvs.Service{Scheduler: "rr"}); err != nil || len(k.State()) != 2 {
		t.Errorf("after FailAfter(0, nil, nil): %v, %d services", err, len(k.State()))
	}
}
