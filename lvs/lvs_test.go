package lvs

import (
	"net/netip"
	"testing"
)

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
