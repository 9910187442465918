//go:build vmguest

package genl

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

func gen(i int) lvs.ServiceKey {
	return lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 30, byte(i >> 8), byte(i)}), Port: 80}
}

func genReal(i int) lvs.RealKey {
	return lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 31, byte(i >> 8), byte(i)}), Port: 80}
}

// TestBatchAttributesEachRefusal: a batch of 700 changes, three sendmsg,
// with refused changes in the middle, at the end of a sendmsg (the one
// that asks for the ack) and at the start of the next: each refusal is the
// error of its own op, and every other change is made.
func TestBatchAttributesEachRefusal(t *testing.T) {
	ns := freshNetns(t)
	c := openIn(t, ns, 5*time.Second)
	existing := gen(9999)
	if err := c.AddService(existing, &ipvs.Service{Scheduler: "wlc", Netmask: lvs.HostMask(existing.Addr)}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddReal(existing, genReal(0), ipvs.Real{Weight: 1, Forward: lvs.Route}); err != nil {
		t.Fatal(err)
	}
	missing := gen(9998)
	web6 := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("2001:db8::30"), Port: 80}
	refusals := map[int]struct {
		op   ipvs.Op
		want syscall.Errno
	}{
		3:   {ipvs.Op{Kind: ipvs.AddService, Service: gen(5000), Spec: &ipvs.Service{Scheduler: "nosuch", Netmask: 0xffffffff}}, syscall.ENOENT},
		100: {ipvs.Op{Kind: ipvs.AddReal, Service: missing, Real: genReal(1), RealSpec: ipvs.Real{Weight: 1}}, syscall.ESRCH},
		254: {ipvs.Op{Kind: ipvs.AddService, Service: existing, Spec: &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff}}, syscall.EEXIST},
		255: {ipvs.Op{Kind: ipvs.AddReal, Service: existing, Real: genReal(0), RealSpec: ipvs.Real{Weight: 2}}, syscall.EEXIST},
		256: {ipvs.Op{Kind: ipvs.UpdateReal, Service: existing, Real: genReal(9), RealSpec: ipvs.Real{Weight: 2}}, syscall.ENOENT},
		257: {ipvs.Op{Kind: ipvs.AddService, Service: web6, Spec: &ipvs.Service{Scheduler: "rr"}}, syscall.EINVAL}, // IPv6 netmask 0
		400: {ipvs.Op{Kind: ipvs.AddReal, Service: existing, Real: genReal(2), RealSpec: ipvs.Real{Weight: -1}}, syscall.ERANGE},
		511: {ipvs.Op{Kind: ipvs.DeleteReal, Service: existing, Real: genReal(8)}, syscall.ENOENT},
		699: {ipvs.Op{Kind: ipvs.UpdateService, Service: missing, Spec: &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff}}, syscall.ESRCH},
	}
	// The others: services with one real each.
	var ops ipvs.Plan
	want := ipvs.State{existing: {Scheduler: "wlc", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{genReal(0): {Weight: 1, Forward: lvs.Route}}}}
	svc := 0
	for i := range 700 {
		if r, ok := refusals[i]; ok {
			ops = append(ops, r.op)
			continue
		}
		if i%2 == 0 {
			svc++
			spec := &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff}
			ops = append(ops, ipvs.Op{Kind: ipvs.AddService, Service: gen(svc), Spec: spec})
			want[gen(svc)] = &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{}}
			continue
		}
		r := ipvs.Real{Weight: i, Forward: lvs.Masq}
		ops = append(ops, ipvs.Op{Kind: ipvs.AddReal, Service: gen(svc), Real: genReal(i), RealSpec: r})
		want[gen(svc)].Reals[genReal(i)] = r
	}

	sends := c.Sends()
	errs := c.ApplyBatch(ops)
	if n := c.Sends() - sends; n != 3 {
		t.Errorf("700 changes in %d sendmsg, want 3", n)
	}
	for i, err := range errs {
		r, refused := refusals[i]
		switch {
		case refused && !errors.Is(err, r.want):
			t.Errorf("op %d %s: got %v, want %v", i, ops[i], err, r.want)
		case !refused && err != nil:
			t.Errorf("op %d %s: %v", i, ops[i], err)
		}
	}
	got, err := ipvs.Read(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("the kernel's table after the batch:\n%s\nwant:\n%s", got, want)
	}
	if got, want := moby(t, ns), len(want); got != nil {
		svcs, err := got.GetServices()
		if err != nil || len(svcs) != want {
			t.Errorf("moby reads %d services (%v), want %d", len(svcs), err, want)
		}
	}
}

// TestApplyFallsBackInBatches: Apply over the client makes an add of what
// exists an update, and an update of a service gone an add with its reals,
// as over single calls, in three sendmsg; a refused service fails alone.
func TestApplyFallsBackInBatches(t *testing.T) {
	ns := freshNetns(t)
	c := openIn(t, ns, 5*time.Second)
	web, gone, bad := gen(1), gen(2), gen(3)
	host := func(sched string) *ipvs.Service { return &ipvs.Service{Scheduler: sched, Netmask: 0xffffffff} }
	gate := func(w int) ipvs.Real { return ipvs.Real{Weight: w, Forward: lvs.Route} }
	if err := c.AddService(web, host("rr")); err != nil {
		t.Fatal(err)
	}
	if err := c.AddReal(web, genReal(1), gate(9)); err != nil {
		t.Fatal(err)
	}
	// Planned against a kernel where web was not and gone was.
	plan := ipvs.Plan{
		{Kind: ipvs.AddService, Service: web, Spec: host("wlc")},
		{Kind: ipvs.AddService, Service: bad, Spec: host("nosuch")},
		{Kind: ipvs.UpdateService, Service: gone, Spec: host("wrr")},
		{Kind: ipvs.AddReal, Service: web, Real: genReal(1), RealSpec: gate(1)},
		{Kind: ipvs.AddReal, Service: bad, Real: genReal(3), RealSpec: gate(1)},
		{Kind: ipvs.AddReal, Service: gone, Real: genReal(2), RealSpec: gate(2)},
		{Kind: ipvs.UpdateReal, Service: gone, Real: genReal(4), RealSpec: gate(4)},
		{Kind: ipvs.DeleteReal, Service: gone, Real: genReal(5)},
		{Kind: ipvs.DeleteService, Service: gen(4)},
	}
	sends := c.Sends()
	res := ipvs.Apply(c, plan, nil)
	if n := c.Sends() - sends; n != 3 {
		t.Errorf("%d sendmsg, want 3 (the plan, the fallbacks, gone's real that was not there)", n)
	}
	if len(res.Failed) != 1 || !errors.Is(res.Failed[bad], syscall.ENOENT) {
		t.Errorf("failed: %v, want only %s with ENOENT", res.Failed, bad)
	}
	got, err := ipvs.Read(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ipvs.State{
		web:  {Scheduler: "wlc", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{genReal(1): gate(1)}},
		gone: {Scheduler: "wrr", Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{genReal(2): gate(2), genReal(4): gate(4)}},
	}
	if got.String() != want.String() {
		t.Errorf("kernel:\n%s\nwant:\n%s", got, want)
	}
}

// TestLostAnswersAreUnknown: with a receive buffer too small for the
// refusals of a batch, the kernel drops answers (ENOBUFS): the refusals
// that came are attributed, every other change of that sendmsg is
// ErrOutcomeUnknown, the call does not hang, and the client goes on.
// Not hanging is told by the errors, not by a stopwatch: a call that
// waited for the lost answers would end at its deadline, every unknown
// outcome then ErrTimeout; one that did not says ENOBUFS.
func TestLostAnswersAreUnknown(t *testing.T) {
	ns := freshNetns(t)
	c := openIn(t, ns, 5*time.Second)
	c.w.close()
	inNetns(t, ns, func() {
		var err error
		if c.w, err = openSock(1, c.timeout); err != nil { // the kernel's minimum: a few answers
			t.Fatal(err)
		}
	})
	var ops ipvs.Plan
	for i := range 200 {
		// Every real is refused: its service does not exist.
		ops = append(ops, ipvs.Op{Kind: ipvs.AddReal, Service: gen(i), Real: genReal(i), RealSpec: ipvs.Real{Weight: 1}})
	}
	ops = append(ops, ipvs.Op{Kind: ipvs.AddService, Service: gen(1000), Spec: &ipvs.Service{Scheduler: "rr", Netmask: 0xffffffff}})
	start := time.Now()
	errs := c.ApplyBatch(ops)
	took := time.Since(start)
	var refused, unknown int
	for i, err := range errs {
		switch {
		case errors.Is(err, syscall.ESRCH) && i < 200:
			refused++
		case errors.Is(err, ipvs.ErrOutcomeUnknown) && errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, ipvs.ErrTimeout):
			unknown++
		case errors.Is(err, ipvs.ErrTimeout):
			t.Errorf("op %d %s: %v: the call waited out its deadline for answers the kernel had dropped", i, ops[i], err)
		default:
			t.Errorf("op %d %s: %v", i, ops[i], err)
		}
	}
	if refused == 0 || unknown == 0 || !errors.Is(errs[200], ipvs.ErrOutcomeUnknown) {
		t.Errorf("%d refusals attributed, %d unknown (the last: %v); want some of each, the last unknown", refused, unknown, errs[200])
	}
	t.Logf("%d refusals attributed, %d outcomes unknown, in %v", refused, unknown, took)
	// The service was made all the same, and the client goes on.
	st, err := c.Services()
	if err != nil || st[gen(1000)] == nil {
		t.Errorf("services after the lost answers: %v %v", st, err)
	}
	if err := c.DelService(gen(1000)); err != nil {
		t.Errorf("a call after the lost answers: %v", err)
	}
}
