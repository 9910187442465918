package ipvsread

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// /proc/net/ip_vs as Linux 6.1 prints it: the reals of 10.10.10.60:80 are
// read in the order listed, those of other services and the header not.
func TestParseProcOrder(t *testing.T) {
	const proc = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  0A0A0A3C:0050 rr
  -> 0A010063:0050      Route   1      0          0
TCP  0A0A0A3C:0050 mh (mh-port)
  -> 0A01000C:0050      Route   1      0          0
  -> 0A01000D:0050      Route   1      0          0
  -> 0A01000B:1F91      Masq    0      2          1
TCP  [2001:0db8:0000:0000:0000:0000:0000:0080]:0050 rr
  -> [2001:0db8:0000:0000:0000:0000:0001:0001]:0050      Route   1      0          0
FWM  00000007 rr
  -> 0A010063:0000      Route   1      0          0
`
	key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.10.10.60"), Port: 80}
	got, err := parseProcOrder(strings.NewReader(proc), key)
	if err != nil {
		t.Fatal(err)
	}
	rk := func(s string) lvs.RealKey {
		ap := netip.MustParseAddrPort(s)
		return lvs.RealKey{Addr: ap.Addr(), Port: ap.Port()}
	}
	if want := []lvs.RealKey{rk("10.1.0.12:80"), rk("10.1.0.13:80"), rk("10.1.0.11:8081")}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	key.Port = 81
	if got, err := parseProcOrder(strings.NewReader(proc), key); err != nil || len(got) != 0 {
		t.Errorf("a service that is not there: %v, %v", got, err)
	}
}
