package ipvs_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
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

// TestApplyIsolatesFailures: a real the kernel refuses fails alone, and
// the rest of its service still changes; a service that cannot be added
// skips its reals; a missing scheduler is named as such. Each case plans
// against the kernel's table, applies with failures injected, and compares
// the whole table and the whole set of failures.
func TestApplyIsolatesFailures(t *testing.T) {
	web, api := ipvs.SvcKey("10.0.0.1:80"), ipvs.SvcKey("10.0.0.2:80")
	refused := errors.New("invalid argument")
	type fail struct {
		svc  lvs.ServiceKey
		real string // "" fails the whole service
	}
	tests := []struct {
		name    string
		current ipvs.State
		desired ipvs.State
		fail    []fail
		// want is the kernel's table afterwards, as ipvsadm -S prints it.
		want string
		// failed and failedReals name what Result reports, in order.
		failed      []lvs.ServiceKey
		failedReals []string // "service real"
		// errs are parts of Err(), in order.
		errs []string
	}{
		{
			// The case: before, the refused add skipped the rest of
			// web, and a dead real stayed at weight 1.
			name: "a refused real fails alone",
			current: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{
				"10.1.0.11:80": ipvs.Gate(1), "10.1.0.12:80": ipvs.Gate(1), "10.1.0.13:80": ipvs.Gate(1),
			})},
			desired: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{
				"10.1.0.11:80": ipvs.Gate(0), // critical, quiescent
				"10.1.0.12:80": ipvs.Gate(1),
				"10.1.0.14:80": ipvs.Gate(1), // the kernel refuses it
				"10.1.0.15:80": ipvs.Gate(2), // joins
				// 10.1.0.13 leaves
			})},
			fail: []fail{{web, "10.1.0.14:80"}},
			want: "-A -t 10.0.0.1:80 -s wlc\n" +
				"-a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 0\n" +
				"-a -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 1\n" +
				"-a -t 10.0.0.1:80 -r 10.1.0.15:80 -g -w 2\n",
			failedReals: []string{"tcp://10.0.0.1:80 10.1.0.14:80"},
			errs:        []string{"ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.14:80 -g -w 1: invalid argument"},
		},
		{
			name: "refused updates and deletes fail alone",
			current: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{
				"10.1.0.11:80": ipvs.Gate(1), "10.1.0.12:80": ipvs.Gate(1), "10.1.0.13:80": ipvs.Gate(1), "10.1.0.14:80": ipvs.Gate(1),
			})},
			desired: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{
				"10.1.0.11:80": ipvs.Gate(5), // refused
				"10.1.0.12:80": ipvs.Gate(0),
				// 10.1.0.13 leaves, refused; 10.1.0.14 leaves
			})},
			fail: []fail{{web, "10.1.0.11:80"}, {web, "10.1.0.13:80"}},
			want: "-A -t 10.0.0.1:80 -s wlc\n" +
				"-a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 1\n" +
				"-a -t 10.0.0.1:80 -r 10.1.0.12:80 -g -w 0\n" +
				"-a -t 10.0.0.1:80 -r 10.1.0.13:80 -g -w 1\n",
			failedReals: []string{"tcp://10.0.0.1:80 10.1.0.11:80", "tcp://10.0.0.1:80 10.1.0.13:80"},
			errs: []string{
				"ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 5: invalid argument",
				"ipvsadm -d -t 10.0.0.1:80 -r 10.1.0.13:80: invalid argument",
			},
		},
		{
			name:    "a service that cannot be added skips its reals",
			current: ipvs.State{},
			desired: ipvs.State{
				web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1)}),
				api: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.21:80": ipvs.Gate(1)}),
			},
			fail:   []fail{{web, ""}},
			want:   "-A -t 10.0.0.2:80 -s rr\n-a -t 10.0.0.2:80 -r 10.1.0.21:80 -g -w 1\n",
			failed: []lvs.ServiceKey{web},
			errs:   []string{"ipvsadm -A -t 10.0.0.1:80 -s wlc: invalid argument"},
		},
		{
			name:    "a scheduler the kernel lacks, on add",
			current: ipvs.State{},
			desired: ipvs.State{
				web: ipvs.Svc("nosuch", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1)}),
				api: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.21:80": ipvs.Gate(1)}),
			},
			want:   "-A -t 10.0.0.2:80 -s rr\n-a -t 10.0.0.2:80 -r 10.1.0.21:80 -g -w 1\n",
			failed: []lvs.ServiceKey{web},
			errs:   []string{"ipvsadm -A -t 10.0.0.1:80 -s nosuch: scheduler nosuch is not available in this kernel (modprobe ip_vs_nosuch): no such file or directory"},
		},
		{
			// Not "gone": before, ENOENT was taken for a vanished service,
			// and the add that followed answered "file exists". The service
			// keeps its scheduler and its reals still change.
			name:    "a scheduler the kernel lacks, on update",
			current: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1), "10.1.0.12:80": ipvs.Gate(1)})},
			desired: ipvs.State{web: ipvs.Svc("nosuch", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(0)})},
			want:    "-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 0\n",
			failed:  []lvs.ServiceKey{web},
			errs:    []string{"ipvsadm -E -t 10.0.0.1:80 -s nosuch: scheduler nosuch is not available in this kernel (modprobe ip_vs_nosuch): no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := ipvstest.New(tt.current)
			for _, f := range tt.fail {
				if f.real == "" {
					k.FailService(f.svc, refused)
				} else {
					k.FailReal(f.svc, ipvs.RealKeyOf(f.real), refused)
				}
			}
			res := ipvs.Apply(k, ipvs.Diff(tt.desired, tt.current, nil), nil)
			if got := k.State().String(); got != tt.want {
				t.Errorf("kernel:\n%s\nwant:\n%s", got, tt.want)
			}
			failed := slices.SortedFunc(maps.Keys(res.Failed), lvs.ServiceKey.Compare)
			if !slices.Equal(failed, tt.failed) {
				t.Errorf("failed services %v, want %v", failed, tt.failed)
			}
			var failedReals []string
			for key, reals := range res.FailedReals {
				for rk := range reals {
					failedReals = append(failedReals, key.String()+" "+rk.String())
				}
			}
			slices.Sort(failedReals)
			if !slices.Equal(failedReals, tt.failedReals) {
				t.Errorf("failed reals %q, want %q", failedReals, tt.failedReals)
			}
			var got []string
			if err := res.Err(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.errs) {
				t.Errorf("Err():\n%q\nwant:\n%q", got, tt.errs)
			}
			// The next sync retries what failed, and only that.
			if len(tt.failed) == 0 {
				if again := ipvs.Diff(tt.desired, k.State(), nil); len(again) != len(tt.failedReals) {
					t.Errorf("next plan has %d changes, want the %d that failed:\n%s", len(again), len(tt.failedReals), ipvs.PlanStrings(again))
				}
			}
		})
	}
}
