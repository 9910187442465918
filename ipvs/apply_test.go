package ipvs_test

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"errors"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// These tests need the test kernel's knobs (failures, call counts), which
// live in internal/ipvstest: it imports ipvs, so they are outside it.

func TestApplyIsIdempotentAndIsolatesFailures(t *testing.T) {
	web, api := ipvs.SvcKey("10.0.0.1:80"), ipvs.SvcKey("10.0.0.2:80")
	desired := ipvs.State{
		web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1)}),
		api: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.21:80": ipvs.Gate(1)}),
	}
	// The plan was made against an empty kernel, but the kernel changed
	// since: web and one real exist already. Adding them updates them.
	k := ipvstest.New(ipvs.State{web: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(9)})})
	plan := ipvs.Diff(desired, ipvs.State{}, nil)
	if res := ipvs.Apply(k, plan, nil); res.Err() != nil {
		t.Fatalf("apply over existing objects: %v", res.Err())
	}
	// Four changes; the two over existing objects were refused (EEXIST)
	// and made again as updates.
	if k.Calls() != 6 || k.Writes() != 4 {
		t.Errorf("apply over existing objects: %d calls, %d writes; want 6 and 4", k.Calls(), k.Writes())
	}
	if got := k.State().String(); got != desired.String() {
		t.Errorf("kernel:\n%s\nwant:\n%s", got, desired)
	}
	// Deleting what is gone succeeds.
	del := ipvs.Plan{{Kind: ipvs.DeleteReal, Service: web, Real: ipvs.RealKeyOf("10.1.0.99:80")}, {Kind: ipvs.DeleteService, Service: ipvs.SvcKey("10.0.0.7:80")}}
	if res := ipvs.Apply(k, del, nil); res.Err() != nil {
		t.Errorf("deleting what is gone: %v", res.Err())
	}

	// One failing service is skipped; the others are still applied.
	boom := errors.New("netlink: no buffer space")
	k2 := ipvstest.New(ipvs.State{})
	k2.FailService(web, boom)
	res := ipvs.Apply(k2, ipvs.Diff(desired, ipvs.State{}, nil), nil)
	if !errors.Is(res.Err(), boom) || len(res.Failed) != 1 || res.Failed[web] == nil {
		t.Errorf("failures: %v", res.Failed)
	}
	if got := k2.State(); len(got) != 1 || got[api] == nil || len(got[api].Reals) != 1 {
		t.Errorf("api not applied beside the failing web: %s", got)
	}
	if !strings.Contains(res.Err().Error(), "ipvsadm -A -t 10.0.0.1:80 -s wlc") {
		t.Errorf("error does not name the change: %v", res.Err())
	}
}

func TestReadSkipsForeignReals(t *testing.T) {
	web, foreign := ipvs.SvcKey("10.0.0.1:80"), ipvs.SvcKey("10.0.0.9:80")
	k := ipvstest.New(ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1)}), foreign: ipvs.Svc("rr", map[string]ipvs.Real{"10.9.0.1:80": ipvs.Gate(1)})})
	st, err := ipvs.Read(k, func(key lvs.ServiceKey) bool { return key == web })
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || len(st[web].Reals) != 1 || st[foreign].Reals != nil {
		t.Errorf("read %s", st)
	}
	if k.Calls() != 2 {
		t.Errorf("%d kernel calls, want 2 (list services, reals of web)", k.Calls())
	}
}
