//go:build vmguest

package ipvs_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/ipvsread"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// benchState is 1,000 virtual services of 10 real servers each.
func benchState(services, reals int) ipvs.State {
	st := ipvs.State{}
	for i := range services {
		k := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), Port: 80}
		svc := &ipvs.Service{Scheduler: "wlc", Netmask: lvs.HostMask(k.Addr), Reals: map[lvs.RealKey]ipvs.Real{}}
		for j := range reals {
			rk := lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 60 + byte(j), byte(i >> 8), byte(i)}), Port: 8080}
			svc.Reals[rk] = ipvs.Real{Weight: 1 + j, Forward: lvs.Route}
		}
		st[k] = svc
	}
	return st
}

// benchSync is what the daemon does on a change: read what is in scope
// (nil: everything), diff, apply.
func benchSync(b *testing.B, k *ipvsread.Netlink, desired ipvs.State, scope ipvs.Scope) ipvs.Plan {
	mine := func(key lvs.ServiceKey) bool { return desired[key] != nil }
	planned, res, err := ipvs.Reconcile(k, ipvs.Input{Desired: desired, Owned: mine, Now: time.Now()}, scope, nil)
	plan := planned.Plan
	if err != nil {
		b.Fatal(err)
	}
	if res.Err() != nil {
		b.Fatal(res.Err())
	}
	return plan
}

func benchKernel(b *testing.B) *ipvsread.Netlink {
	k, err := ipvsread.Open(30*time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(k.Close)
	return k
}

func clear(b *testing.B, k *ipvsread.Netlink, st ipvs.State) {
	b.Helper()
	for key := range st {
		if err := k.DelService(key); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply1000x10FromEmpty: lvs-sync's first sync on an empty
// kernel, 1,000 services and 10,000 reals.
func BenchmarkApply1000x10FromEmpty(b *testing.B) {
	k := benchKernel(b)
	desired := benchState(1000, 10)
	clear(b, k, desired)
	var calls uint64
	for b.Loop() {
		before := k.Calls()
		plan := benchSync(b, k, desired, ipvs.All)
		calls = k.Calls() - before
		if len(plan) != 11000 {
			b.Fatalf("plan of %d changes, want 11000", len(plan))
		}
		b.StopTimer()
		clear(b, k, desired)
		b.StartTimer()
	}
	b.ReportMetric(float64(calls), "netlink-calls/op")
}

// BenchmarkOneChangeIn1000x10: one weight changes among 10,000 reals; the
// daemon reads only the changed service, diffs and applies the update.
func BenchmarkOneChangeIn1000x10(b *testing.B) {
	benchOneChange(b, true)
}

// BenchmarkReconcileAll1000x10: the same change found by a full read, the
// cost of the periodic reconcile.
func BenchmarkReconcileAll1000x10(b *testing.B) {
	benchOneChange(b, false)
}

func benchOneChange(b *testing.B, scoped bool) {
	k := benchKernel(b)
	desired := benchState(1000, 10)
	clear(b, k, desired)
	benchSync(b, k, desired, ipvs.All)
	b.Cleanup(func() { clear(b, k, desired) })
	target := desired.SortedKeys()[500]
	rk := desired[target].SortedReals()[0]
	var calls uint64
	i := 0
	for b.Loop() {
		i++
		before := desired.Clone()
		r := desired[target].Reals[rk]
		r.Weight = 100 + i%2
		desired[target].Reals[rk] = r
		scope := ipvs.All
		if scoped {
			scope.Keys = ipvs.Changed(before, desired)
		}
		n := k.Calls()
		if plan := benchSync(b, k, desired, scope); len(plan) != 1 {
			b.Fatalf("plan of %d changes, want 1", len(plan))
		}
		calls = k.Calls() - n
	}
	b.ReportMetric(float64(calls), "netlink-calls/op")
}
