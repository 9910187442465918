//go:build vmguest

package ipvs_test

import (
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/ipvs/genl"
)

// TestGenlContract runs the kernel contract (contract_test.go) against
// ipvs/genl's batching client, as TestNetlinkContract does against
// moby/ipvs: what MemKernel answers, the client answers.
func TestGenlContract(t *testing.T) {
	ipvs.KernelContractInVM(t, func(t *testing.T) ipvs.Kernel {
		k, err := genl.Open(5*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		return k
	}, procOrder)
}
