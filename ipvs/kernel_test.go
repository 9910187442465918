//go:build vmguest

// These tests run in the VM (see e2e.TestInKernel), as root against the
// kernel's real IPVS.
package ipvs

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// kernelContractInVM runs the kernel contract against the kernel through
// the client open returns (moby/ipvs's and genl's: see
// netlink_kernel_test.go and genl_kernel_test.go), each
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
	}, procOrder, func(t *testing.T, _ Kernel, svc lvs.ServiceKey) {
		// The guest's own connection goes through IPVS (its LOCAL_OUT
		// hook); the real is not there, so the handshake never ends, but
		// the kernel has counted it.
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(svc.Addr, svc.Port).String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
	})
}

// procOrder reads the reals of an IPv4 service from /proc/net/ip_vs, which
// lists them in the kernel's order (ip_vs_info_seq_show walks the list;
// ipvsadm sorts what it prints), addresses and ports in hex:
//
//	TCP  0A140001:0050 mh mh-port
//	  -> 0A140104:0050      Route   1      0          0
func procOrder(t *testing.T, svc lvs.ServiceKey) []lvs.RealKey {
	t.Helper()
	f, err := os.Open("/proc/net/ip_vs")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hexAddrPort := func(s string) (netip.AddrPort, error) {
		addr, port, ok := strings.Cut(s, ":")
		b, err := hex.DecodeString(addr)
		if !ok || err != nil || len(b) != 4 {
			return netip.AddrPort{}, fmt.Errorf("not an IPv4 hex address: %q", s)
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(p)), nil
	}
	var reals []lvs.RealKey
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 2 && fields[0] == "->" && in:
			ap, err := hexAddrPort(fields[1])
			if err != nil {
				t.Fatalf("/proc/net/ip_vs: %v", err)
			}
			reals = append(reals, lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()})
		case len(fields) >= 2 && fields[0] != "->":
			ap, err := hexAddrPort(fields[1])
			in = err == nil && strings.EqualFold(fields[0], svc.Protocol.String()) &&
				ap == netip.AddrPortFrom(svc.Addr, svc.Port)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return reals
}
