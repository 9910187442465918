package ipvs

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestStagedAdd: a new mh service is planned under no scheduler, its
// reals in canonical order, then switched to mh with its flags after every
// add of a real in the plan; other schedulers, and an mh service that
// exists, are planned as before. Applied, the table is the one a direct
// add makes: the same settings, the same list order (what mh builds its
// table from: stage.go), and a second plan is empty.
func TestStagedAdd(t *testing.T) {
	web, api, old := svcKey("10.0.0.1:80"), svcKey("10.0.0.2:80"), svcKey("10.0.0.3:80")
	desired := State{
		web: svc("mh", map[string]Real{"10.1.0.13:80": gate(1), "10.1.0.11:80": gate(3), "10.1.0.12:80": gate(0)}),
		api: svc("sh", map[string]Real{"10.1.0.21:80": gate(1)}),
		old: svc("mh", map[string]Real{"10.1.0.31:80": gate(1), "10.1.0.32:80": gate(1)}),
	}
	desired[web].Flags = uint32(lvs.SchedFlag1 | lvs.SchedFlag2)
	current := State{old: svc("mh", map[string]Real{"10.1.0.31:80": {Weight: 1, Forward: lvs.Route, Position: 1}})}
	plan := Diff(desired, current, nil)
	want := strings.Join([]string{
		"ipvsadm -A -t 10.0.0.1:80 -s none",
		"ipvsadm -A -t 10.0.0.2:80 -s sh",
		"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 3",
		"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 0",
		"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.13:80 -g -w 1",
		"ipvsadm -a -t 10.0.0.2:80 -r 10.1.0.21:80 -g -w 1",
		"ipvsadm -a -t 10.0.0.3:80 -r 10.1.0.32:80 -g -w 1",
		"ipvsadm -E -t 10.0.0.1:80 -s mh -b mh-fallback,mh-port",
	}, "\n")
	if got := planStrings(plan); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}

	for _, batch := range []bool{true, false} {
		k := NewMemKernel(current)
		var kernel Kernel = k
		if !batch {
			kernel = singles{k}
		}
		if res := Apply(kernel, plan, nil); res.Err() != nil || res.Applied != len(plan) {
			t.Fatalf("batch %v: applied %d of %d: %v", batch, res.Applied, len(plan), res.Err())
		}
		got := k.State()
		// A direct add: the service under mh, then its reals in the plan's
		// order, each rebuilding the table.
		direct := NewMemKernel(State{})
		must(t, "add service", direct.AddService(web, desired[web]))
		for _, rk := range desired[web].SortedReals() {
			must(t, "add real", direct.AddReal(web, rk, desired[web].Reals[rk]))
		}
		if d := direct.State()[web]; !d.Equal(got[web]) || !maps.Equal(d.Reals, got[web].Reals) {
			t.Errorf("batch %v: staged, the kernel has %+v\n%v\ndirect, %+v\n%v", batch, *got[web], got[web].Reals, *d, d.Reals)
		}
		if got[web].Fingerprint() != desired[web].Fingerprint() {
			t.Errorf("batch %v: fingerprint %s, want %s", batch, got[web].Fingerprint(), desired[web].Fingerprint())
		}
		if again := Diff(desired, got, nil); len(again) != 0 {
			t.Errorf("batch %v: a second plan:\n%s", batch, planStrings(again))
		}
	}
}

// TestStagedSwitchFails: on a kernel without ip_vs_mh the switch of a
// staged add fails; the service is deleted rather than left under no
// scheduler, with an error that names it and the module, and the plan's
// other services are still made, a foreign one untouched. Through a
// batching kernel and through single calls.
func TestStagedSwitchFails(t *testing.T) {
	web, api, foreign := svcKey("10.0.0.1:80"), svcKey("10.0.0.2:80"), svcKey("10.0.0.9:80")
	desired := State{
		web: svc("mh", map[string]Real{"10.1.0.11:80": gate(1), "10.1.0.12:80": gate(1)}),
		api: svc("wlc", map[string]Real{"10.1.0.21:80": gate(1)}),
	}
	theirs := svc("wlc", map[string]Real{"10.1.0.91:80": {Weight: 1, Forward: lvs.Route, Position: 1}})
	for _, batch := range []bool{true, false} {
		mem := NewMemKernel(State{foreign: theirs})
		var k Kernel = noMH{mem}
		if !batch {
			k = singles{noMH{mem}}
		}
		var logs bytes.Buffer
		log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
		_, res, err := Reconcile(k, Input{Desired: desired, Owned: func(lvs.ServiceKey) bool { return false }}, All, log)
		if err != nil {
			t.Fatal(err)
		}
		got := mem.State()
		if s, ok := got[web]; ok {
			t.Errorf("batch %v: the service whose switch failed is still in the kernel, under %q", batch, s.Scheduler)
		}
		if got[api] == nil || len(got[api].Reals) != 1 || got[foreign] == nil || len(got[foreign].Reals) != 1 {
			t.Errorf("batch %v: the other services: %v", batch, got)
		}
		ferr := res.Failed[web]
		for _, want := range []string{"-t 10.0.0.1:80 -s mh", "ip_vs_mh", "deleted"} {
			if ferr == nil || !strings.Contains(ferr.Error(), want) {
				t.Errorf("batch %v: the error %q does not say %q", batch, ferr, want)
			}
		}
		if !errors.Is(ferr, syscall.ENOENT) || len(res.Failed) != 1 {
			t.Errorf("batch %v: failed %v, want the ENOENT of 10.0.0.1:80 alone", batch, res.Failed)
		}
		if l := logs.String(); !strings.Contains(l, "service was deleted") || !strings.Contains(l, "module=ip_vs_mh") {
			t.Errorf("batch %v: the log does not say it:\n%s", batch, l)
		}
	}
}

// TestStagedLeftConverges: a service a crash left under no scheduler
// (between the staged add and its switch) is switched by the next plan,
// an ordinary edit, its reals kept.
func TestStagedLeftConverges(t *testing.T) {
	web := svcKey("10.0.0.1:80")
	desired := State{web: svc("mh", map[string]Real{"10.1.0.11:80": gate(1), "10.1.0.12:80": gate(1)})}
	k := NewMemKernel(State{web: svc(StageScheduler, map[string]Real{"10.1.0.11:80": gate(1), "10.1.0.12:80": gate(1)})})
	plan := Diff(desired, k.State(), nil)
	if got, want := planStrings(plan), "ipvsadm -E -t 10.0.0.1:80 -s mh"; got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if res := Apply(k, plan, nil); res.Err() != nil {
		t.Fatal(res.Err())
	}
	if again := Diff(desired, k.State(), nil); len(again) != 0 {
		t.Errorf("a second plan:\n%s", planStrings(again))
	}
}

// noMH is a kernel without the ip_vs_mh module: an add or edit that names
// mh is refused with ENOENT, as ip_vs_scheduler_get finds none.
type noMH struct{ *MemKernel }

func (k noMH) refuse(s *Service) bool { return s.Scheduler == "mh" }

func (k noMH) AddService(key lvs.ServiceKey, s *Service) error {
	if k.refuse(s) {
		return syscall.ENOENT
	}
	return k.MemKernel.AddService(key, s)
}

func (k noMH) UpdateService(key lvs.ServiceKey, s *Service) error {
	if _, err := k.Service(key); err != nil {
		return err
	}
	if k.refuse(s) {
		return syscall.ENOENT
	}
	return k.MemKernel.UpdateService(key, s)
}

func (k noMH) ApplyBatch(ops []Op) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = call(k, op)
	}
	return errs
}

// singles hides a kernel's batching: Apply makes one call per change.
type singles struct{ Kernel }
