//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's real IPVS.
package ipvs

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/lvs-sync/lvs-sync/lvs"
)

func openKernel(t *testing.T) *Netlink {
	t.Helper()
	k, err := OpenNetlink(5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// TestNetlinkContract runs the kernel contract (contract_test.go) against
// the kernel: what MemKernel answers, the kernel answers.
func TestNetlinkContract(t *testing.T) {
	kernelContractInVM(t, func(t *testing.T) Kernel { return openKernel(t) })
}

// kernelContractInVM runs the kernel contract against the kernel through
// the client open returns (genl's too: see genl_kernel_test.go), each
// subtest from an empty table.
func kernelContractInVM(t *testing.T, open func(*testing.T) Kernel) {
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
	}, func(t *testing.T, _ Kernel, svc lvs.ServiceKey) {
		// The guest's own connection goes through IPVS (its LOCAL_OUT
		// hook); the real is not there, so the handshake never ends, but
		// the kernel has counted it.
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(svc.Addr, svc.Port).String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
	})
}

// TestNetlinkDeadline: a call that does not come back in time fails with
// ErrTimeout, and the next call gets a fresh socket.
func TestNetlinkDeadline(t *testing.T) {
	k, err := OpenNetlink(200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	start := time.Now()
	err = k.do("a call that hangs", func(h *mobyipvs.Handle) error {
		time.Sleep(2 * time.Second) // as a lost reply would
		return nil
	})
	if !errors.Is(err, ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v, want ErrTimeout after 200ms", err, time.Since(start))
	}
	if _, err := k.Services(); err != nil {
		t.Errorf("the call after a timeout: %v", err)
	}
}
