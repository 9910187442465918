package lvs

import (
	"net/netip"
	"testing"
)

// A key is written and read back as the state file does, and named as
// ipvsadm -S names it; the same mark in two families stays two keys.
func TestServiceKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		key          ServiceKey
		str, ipvsadm string
	}{
		{ServiceKey{Protocol: TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}, "tcp://10.0.0.1:80", "-t 10.0.0.1:80"},
		{ServiceKey{Protocol: UDP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 53}, "udp://[2001:db8::1]:53", "-u [2001:db8::1]:53"},
		{ServiceKey{FWMark: 7, Addr: netip.IPv4Unspecified()}, "fwmark:7", "-f 7"},
		{ServiceKey{FWMark: 7, Addr: netip.IPv6Unspecified()}, "fwmark6:7", "-f 7 -6"},
		{ServiceKey{FWMark: 4294967295, Addr: netip.IPv4Unspecified()}, "fwmark:4294967295", "-f 4294967295"},
	} {
		if got := tc.key.String(); got != tc.str {
			t.Errorf("%+v: String %q, want %q", tc.key, got, tc.str)
		}
		if got := tc.key.Ipvsadm(); got != tc.ipvsadm {
			t.Errorf("%+v: Ipvsadm %q, want %q", tc.key, got, tc.ipvsadm)
		}
		back, err := ParseServiceKey(tc.str)
		if err != nil || back != tc.key {
			t.Errorf("ParseServiceKey(%q) = %+v, %v; want %+v", tc.str, back, err, tc.key)
		}
	}
	for _, bad := range []string{"fwmark:0", "fwmark:x", "fwmark6:", "fwmark:4294967296", "fwmark:7x"} {
		if k, err := ParseServiceKey(bad); err == nil {
			t.Errorf("ParseServiceKey(%q) = %+v, want an error", bad, k)
		}
	}
}
