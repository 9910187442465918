package ipvs

import (
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestOwnerWhose is the rule's table: made by lvs-sync, desired, adopted,
// in the kernel or not.
func TestOwnerWhose(t *testing.T) {
	k := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	yes := func(lvs.ServiceKey) bool { return true }
	for _, tc := range []struct {
		name                  string
		owned, desired, adopt func(lvs.ServiceKey) bool
		inKernel              bool
		want                  Claim
	}{
		{name: "made by lvs-sync, left the config", owned: yes, inKernel: true, want: Ours},
		{name: "made by lvs-sync, desired", owned: yes, desired: yes, inKernel: true, want: Ours},
		{name: "desired, not in the kernel yet", desired: yes, want: Ours},
		{name: "desired, made by someone else", desired: yes, inKernel: true, want: Conflict},
		{name: "desired, made by someone else, adopt", desired: yes, adopt: yes, inKernel: true, want: Ours},
		{name: "someone else's", inKernel: true, want: Foreign},
		{name: "someone else's, adopt alone", adopt: yes, inKernel: true, want: Foreign},
	} {
		o := Owner{Owned: tc.owned, Desired: tc.desired, Adopt: tc.adopt}
		if got := o.Whose(k, tc.inKernel); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// claimWatch is a kernel, one change per call, that notes at each write
// what was claimed so far.
type claimWatch struct {
	Kernel
	claimed *[]lvs.ServiceKey
	atWrite [][]lvs.ServiceKey
}

func (c *claimWatch) AddService(k lvs.ServiceKey, s *Service) error {
	c.atWrite = append(c.atWrite, slices.Clone(*c.claimed))
	return c.Kernel.AddService(k, s)
}

func (c *claimWatch) DelService(k lvs.ServiceKey) error {
	c.atWrite = append(c.atWrite, slices.Clone(*c.claimed))
	return c.Kernel.DelService(k)
}

// TestReconcileClaimsBeforeTheFirstChange: Reconcile hands Claim the
// services it is about to make or adopt before it makes any change, and
// Released names the owned ones it deleted, not the one whose delete
// failed, nor a kept one.
func TestReconcileClaimsBeforeTheFirstChange(t *testing.T) {
	web, api, adopted, gone, stuck := svcKey("10.0.0.1:80"), svcKey("10.0.0.2:80"), svcKey("10.0.0.3:80"), svcKey("10.0.0.4:80"), svcKey("10.0.0.5:80")
	var claimed []lvs.ServiceKey
	kernel := &claimWatch{Kernel: NewMemKernel(State{
		adopted: svc("wlc", map[string]Real{"10.1.0.31:80": gate(1)}),
		gone:    svc("wlc", nil),
		stuck:   svc("wlc", nil),
	}), claimed: &claimed}
	desired := State{
		web:     svc("wlc", map[string]Real{"10.1.0.11:80": gate(5)}),
		api:     svc("wlc", map[string]Real{"10.1.0.21:80": gate(7)}),
		adopted: svc("wlc", map[string]Real{"10.1.0.31:80": gate(1)}),
	}
	owned := func(k lvs.ServiceKey) bool { return k == gone || k == stuck }
	fail := &failDel{claimWatch: kernel, key: stuck}
	in := Input{Desired: desired, Owned: owned, Adopt: func(k lvs.ServiceKey) bool { return k == adopted }, Now: time.Now(),
		Claim: func(keys []lvs.ServiceKey) { claimed = append(claimed, keys...) }}
	p, res, err := Reconcile(fail, in, All, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []lvs.ServiceKey{web, api, adopted}
	if !slices.Equal(claimed, want) {
		t.Fatalf("claimed %v, want %v", claimed, want)
	}
	if len(kernel.atWrite) == 0 {
		t.Fatal("no change made")
	}
	for i, at := range kernel.atWrite {
		if !slices.Equal(at, want) {
			t.Errorf("change %d made with %v claimed, want %v", i, at, want)
		}
	}
	if got := p.Released([]lvs.ServiceKey{gone, stuck}, All, res); !slices.Equal(got, []lvs.ServiceKey{gone}) {
		t.Errorf("released %v, want %v: stuck's delete failed", got, []lvs.ServiceKey{gone})
	}
}

// failDel fails the delete of one service.
type failDel struct {
	*claimWatch
	key lvs.ServiceKey
}

func (f *failDel) DelService(k lvs.ServiceKey) error {
	if k == f.key {
		return syscall.EBUSY
	}
	return f.claimWatch.DelService(k)
}
