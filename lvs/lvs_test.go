package lvs

import (
	"net/netip"
	"testing"
)

func TestPrefixMask(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		addr   netip.Addr
		length int
		want   uint32
	}{
		{v4, 0, 0xffffffff},
		{v4, 32, 0xffffffff},
		{v4, 24, 0x00ffffff}, // 255.255.255.0, bytes ff ff ff 00
		{v4, 16, 0x0000ffff},
		{v4, 8, 0x000000ff},
		{v4, 20, 0x00f0ffff}, // 255.255.240.0
		{v4, 1, 0x00000080},
		{v6, 0, 128},
		{v6, 128, 128},
		{v6, 64, 64},
		{v6, 1, 1},
	} {
		if got := PrefixMask(c.addr, c.length); got != c.want {
			t.Errorf("PrefixMask(%s, %d) = %#x, want %#x", c.addr, c.length, got, c.want)
		}
	}
}
