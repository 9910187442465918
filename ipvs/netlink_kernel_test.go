//go:build vmguest

package ipvs_test

import (
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/ipvsread"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

func openKernel(tb testing.TB) *ipvsread.Netlink {
	tb.Helper()
	k, err := ipvsread.Open(5*time.Second, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(k.Close)
	return k
}

// TestNetlinkContract runs the kernel contract (contract_test.go) against
// the kernel through moby/ipvs, the tests' independent reader: what
// MemKernel answers, the kernel answers.
func TestNetlinkContract(t *testing.T) {
	ipvs.KernelContractInVM(t, func(t *testing.T) ipvs.Kernel { return openKernel(t) }, procOrder)
}

// procOrder is the kernel's order of a service's reals as /proc/net/ip_vs
// lists them.
func procOrder(t *testing.T, k lvs.ServiceKey) []lvs.RealKey {
	t.Helper()
	reals, err := ipvsread.ProcOrder(k)
	if err != nil {
		t.Fatal(err)
	}
	return reals
}
