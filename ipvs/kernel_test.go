//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's real IPVS.
package ipvs

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// kernelContractInVM runs the kernel contract against the kernel through
// the client open returns (moby/ipvs's and genl's: see
// netlink_kernel_test.go and genl_kernel_test.go), each
// subtest from an empty table; listed reads the kernel's order of a
// service's reals from /proc/net/ip_vs (ipvsread.ProcOrder, which this
// package's tests cannot import).
func kernelContractInVM(t *testing.T, open func(*testing.T) Kernel, listed func(*testing.T, lvs.ServiceKey) []lvs.RealKey) {
	testKernelContract(t, func(t *testing.T) Kernel {
		k := open(t)
		st, err := k.Services()
		if err != nil || len(st) != 0 {
			t.Fatalf("the kernel's table is not empty to start with: %v %v", st, err)
		}
		t.Cleanup(func() {
			st, _ := k.Services()
			for key := range st {
				_ = k.DelService(key)
			}
		})
		return k
	}, listed, func(t *testing.T, _ Kernel, svc lvs.ServiceKey) {
		// The guest's own connection goes through IPVS (its LOCAL_OUT
		// hook); the real is not there, so the handshake never ends, but
		// the kernel has counted it.
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(svc.Addr, svc.Port).String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
	})
}
