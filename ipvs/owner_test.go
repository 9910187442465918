package ipvs

import (
	"net/netip"
	"testing"

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
