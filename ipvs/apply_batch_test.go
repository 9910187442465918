package ipvs_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// batchKernel is a MemKernel that counts its batches; the changes to lost
// services get their answer lost, as a kernel's receive buffer overrun
// would (made, but ErrOutcomeUnknown).
type batchKernel struct {
	*ipvs.MemKernel
	batches int
	lost    map[lvs.ServiceKey]bool
}

func (k *batchKernel) ApplyBatch(ops []ipvs.Op) []error {
	k.batches++
	errs := k.MemKernel.ApplyBatch(ops)
	for i, op := range ops {
		if k.lost[op.Service] {
			errs[i] = ipvs.ErrOutcomeUnknown
		}
	}
	return errs
}

// TestApplyInBatches: over a BatchKernel, Apply gives every change the
// outcome the single calls give it — adds of what exists update, updates
// of what is gone add, deletes of what is gone succeed — in as few batches
// as the fallbacks need, and a refused change fails its service alone.
func TestApplyInBatches(t *testing.T) {
	web, api, gone, bad, lost := ipvs.SvcKey("10.0.0.1:80"), ipvs.SvcKey("10.0.0.2:80"), ipvs.SvcKey("10.0.0.3:80"), ipvs.SvcKey("10.0.0.4:80"), ipvs.SvcKey("10.0.0.5:80")
	badSvc := ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.41:80": ipvs.Gate(1)})
	badSvc.Scheduler = "nosuch"
	for _, c := range []struct {
		name    string
		kernel  ipvs.State
		desired ipvs.State
		current ipvs.State // what the plan was made against
		lost    lvs.ServiceKey
		batches int
		failed  map[lvs.ServiceKey]error
		want    ipvs.State
	}{
		{
			name:    "from empty: one batch",
			kernel:  ipvs.State{},
			desired: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1), "10.1.0.12:80": ipvs.Gate(2)}), api: ipvs.Svc("rr", nil)},
			current: ipvs.State{},
			batches: 1,
		},
		{
			name:    "what exists is updated: a second batch",
			kernel:  ipvs.State{web: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(9)})},
			desired: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.11:80": ipvs.Gate(1), "10.1.0.12:80": ipvs.Gate(2)})},
			current: ipvs.State{},
			batches: 2,
		},
		{
			name:    "a service gone is added back with its reals: three batches",
			kernel:  ipvs.State{},
			desired: ipvs.State{gone: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.31:80": ipvs.Gate(5), "10.1.0.32:80": ipvs.Gate(1)})},
			current: ipvs.State{gone: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.31:80": ipvs.Gate(1), "10.1.0.33:80": ipvs.Gate(1)})},
			batches: 3,
		},
		{
			name:    "deleting what is gone succeeds",
			kernel:  ipvs.State{web: ipvs.Svc("wlc", nil)},
			desired: ipvs.State{web: ipvs.Svc("wlc", nil)},
			current: ipvs.State{web: ipvs.Svc("wlc", map[string]ipvs.Real{"10.1.0.19:80": ipvs.Gate(1)}), gone: ipvs.Svc("rr", nil)},
			batches: 1,
		},
		{
			name:    "a refused service fails alone; its reals are refused with it",
			kernel:  ipvs.State{},
			desired: ipvs.State{bad: badSvc, api: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.21:80": ipvs.Gate(1)})},
			current: ipvs.State{},
			batches: 1,
			failed:  map[lvs.ServiceKey]error{bad: syscall.ENOENT},
			want:    ipvs.State{api: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.21:80": ipvs.Gate(1)})},
		},
		{
			name:    "a lost answer fails its service as unknown, with no fallback",
			kernel:  ipvs.State{},
			desired: ipvs.State{lost: ipvs.Svc("rr", map[string]ipvs.Real{"10.1.0.51:80": ipvs.Gate(1)}), api: ipvs.Svc("rr", nil)},
			current: ipvs.State{},
			lost:    lost,
			batches: 1,
			failed:  map[lvs.ServiceKey]error{lost: ipvs.ErrOutcomeUnknown},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := &batchKernel{MemKernel: ipvs.NewMemKernel(c.kernel), lost: map[lvs.ServiceKey]bool{c.lost: true}}
			owned := func(key lvs.ServiceKey) bool { return c.current[key] != nil }
			res := ipvs.Apply(k, ipvs.Diff(c.desired, c.current, owned), nil)
			if k.batches != c.batches {
				t.Errorf("%d batches, want %d", k.batches, c.batches)
			}
			if len(res.Failed) != len(c.failed) {
				t.Errorf("failed %v, want %v", res.Failed, c.failed)
			}
			for key, want := range c.failed {
				if !errors.Is(res.Failed[key], want) {
					t.Errorf("%s failed with %v, want %v", key, res.Failed[key], want)
				}
			}
			want := c.want
			if want == nil {
				want = c.desired
			}
			if got := k.State(); got.String() != want.String() {
				t.Errorf("kernel:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestApplySummarisesManyChanges: up to 20 changes are logged one by one
// at INFO; above, one INFO line counts them by kind and the changes go to
// DEBUG.
func TestApplySummarisesManyChanges(t *testing.T) {
	for _, c := range []struct {
		reals     int
		infoLines int
		summary   string
	}{
		{reals: 19, infoLines: 20},
		{reals: 1000, infoLines: 1, summary: "kernel changes applied: changes=1001 applied=1001 add_service=1 add_real=1000"},
	} {
		reals := map[string]ipvs.Real{}
		for i := range c.reals {
			reals[fmt.Sprintf("10.1.%d.%d:80", i/250, i%250+1)] = ipvs.Gate(1)
		}
		desired := ipvs.State{ipvs.SvcKey("10.0.0.1:80"): ipvs.Svc("wlc", reals)}
		var buf bytes.Buffer
		log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
		res := ipvs.Apply(ipvs.NewMemKernel(ipvs.State{}), ipvs.Diff(desired, ipvs.State{}, nil), log)
		if res.Err() != nil {
			t.Fatal(res.Err())
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != c.infoLines {
			t.Errorf("%d changes: %d lines at INFO, want %d", c.reals+1, len(lines), c.infoLines)
		}
		if c.summary != "" && !strings.Contains(lines[0], c.summary) {
			t.Errorf("summary %q, want %q", lines[0], c.summary)
		}
	}
}
