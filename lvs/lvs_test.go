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

// TestPersistenceNetmask: a prefix length as the kernel keeps it, and as
// ipvsadm's -M writes it.
func TestPersistenceNetmask(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		addr   netip.Addr
		length int
		mask   uint32
		text   string // "": none
	}{
		{v4, 0, 0xffffffff, ""}, // the host mask
		{v4, 32, 0xffffffff, "255.255.255.255"},
		{v4, 24, 0x00ffffff, "255.255.255.0"}, // bytes ff ff ff 00
		{v4, 16, 0x0000ffff, "255.255.0.0"},
		{v4, 20, 0x00f0ffff, "255.255.240.0"},
		{v4, 1, 0x00000080, "128.0.0.0"},
		{v6, 0, 128, ""},
		{v6, 128, 128, "128"},
		{v6, 64, 64, "64"},
		{v6, 1, 1, "1"},
	} {
		if got := PrefixMask(c.addr, c.length); got != c.mask {
			t.Errorf("PrefixMask(%s, %d) = %#x, want %#x", c.addr, c.length, got, c.mask)
		}
		if c.text == "" {
			continue
		}
		if n, err := ParsePersistenceNetmask(c.text, c.addr); err != nil || n != c.length {
			t.Errorf("ParsePersistenceNetmask(%q, %s) = %d, %v; want %d", c.text, c.addr, n, err, c.length)
		}
		if got := FormatPersistenceNetmask(c.addr, c.length); got != c.text {
			t.Errorf("FormatPersistenceNetmask(%s, %d) = %q, want %q", c.addr, c.length, got, c.text)
		}
	}
}
