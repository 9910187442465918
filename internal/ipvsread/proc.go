package ipvsread

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// ProcOrder reads the reals of an IPv4 service from /proc/net/ip_vs, in
// the kernel's order: a reader apart from netlink for the order that mh
// and sh build their table from (ipvsadm sorts the reals it prints;
// /proc walks the service's list, ip_vs_info_seq_show). A service that is
// not there has no reals.
//
// It reads the namespace of the calling thread: /proc/net is the thread
// group leader's, which in a test that entered other namespaces on locked
// threads may be one of those (Go wedges a locked main thread).
func ProcOrder(k lvs.ServiceKey) ([]lvs.RealKey, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/net/ip_vs")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseProcOrder(f, k)
}

// parseProcOrder reads /proc/net/ip_vs's text, addresses and ports in hex:
//
//	IP Virtual Server version 1.2.1 (size=4096)
//	Prot LocalAddress:Port Scheduler Flags
//	  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
//	TCP  0A0A0A3C:0050 mh (mh-port)
//	  -> 0A01000D:0050      Route   1      0          0
func parseProcOrder(r io.Reader, k lvs.ServiceKey) ([]lvs.RealKey, error) {
	if !k.Addr.Is4() || k.FWMark != 0 {
		return nil, fmt.Errorf("reading %s from /proc/net/ip_vs: only IPv4 address services are read", k)
	}
	want := netip.AddrPortFrom(k.Addr, k.Port)
	var reals []lvs.RealKey
	in := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) < 2:
		case fields[0] == "->":
			if !in {
				continue
			}
			ap, err := hexAddrPort(fields[1])
			if err != nil {
				return nil, fmt.Errorf("/proc/net/ip_vs: a real of %s: %w", k, err)
			}
			reals = append(reals, lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()})
		default:
			ap, err := hexAddrPort(fields[1])
			in = err == nil && strings.EqualFold(fields[0], k.Protocol.String()) && ap == want
		}
	}
	return reals, sc.Err()
}

func hexAddrPort(s string) (netip.AddrPort, error) {
	addr, port, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(addr)
	if !ok || err != nil || len(b) != 4 {
		return netip.AddrPort{}, fmt.Errorf("not an IPv4 address and port in hex: %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("not a port in hex: %q", s)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(p)), nil
}
