package testbird

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Real `show route all` output of BIRD 2.0.12 (the speaker's tests), and
// a multipath route as `merge paths` makes it in the VM's router.
const sample = `BIRD 2.0.12 ready.
Table master4:
192.0.2.10/32        unreachable [ebgp4 12:32:36.450 from 127.0.0.2] * (100) [AS65010i]
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 65010
	BGP.next_hop: 127.0.0.2
                     unreachable [ibgp4 12:32:36.449 from 127.0.0.3] (100) [i]
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 
	BGP.next_hop: 127.0.0.3
	BGP.local_pref: 100
198.51.100.0/24      blackhole [static4 12:32:34.112] * (200)
	Type: static univ
10.10.10.60/32       unicast [d1 12:00:01.000 from 10.7.0.11] * (100) [AS65010i]
	via 10.7.0.11 on eth1 weight 1
	via 10.7.0.12 on eth1 weight 1
	Type: BGP univ
	BGP.next_hop: 10.7.0.11

Table master6:
2001:db8::10/128     unreachable [ebgp6 12:32:36.450 from ::1] * (100) [AS65010i]
	Type: BGP univ
	BGP.next_hop: ::1
`

func TestParseRoutes(t *testing.T) {
	rs := ParseRoutes(sample)
	vip := netip.MustParsePrefix("192.0.2.10/32")
	if got := rs[vip]; len(got) != 2 || got[0].Proto != "ebgp4" || !got[0].Primary || got[1].Proto != "ibgp4" || got[1].Primary ||
		got[1].From != netip.MustParseAddr("127.0.0.3") || got[0].Type != "unreachable" {
		t.Errorf("%s: %+v", vip, got)
	}
	if got := NextHops(rs, vip); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}) {
		t.Errorf("NextHops(%s) = %v", vip, got)
	}
	ecmp := rs[netip.MustParsePrefix("10.10.10.60/32")]
	if len(ecmp) != 1 || !slices.Equal(ecmp[0].Via, []netip.Addr{netip.MustParseAddr("10.7.0.11"), netip.MustParseAddr("10.7.0.12")}) {
		t.Errorf("multipath route: %+v", ecmp)
	}
	if got := NextHops(rs, netip.MustParsePrefix("2001:db8::10/128")); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("::1")}) {
		t.Errorf("IPv6 next hops %v", got)
	}
	if len(rs) != 4 {
		t.Errorf("%d prefixes, want 4: %v", len(rs), rs)
	}
}

func TestConfigText(t *testing.T) {
	c := Config{
		RouterID: netip.MustParseAddr("10.7.0.1"), ASN: 65000, Port: 179,
		Peers: []Peer{
			{Name: "d1", Local: netip.MustParseAddr("10.7.0.1"), Address: netip.MustParseAddr("10.7.0.11"), ASN: 65010, Password: "p"},
			{Name: "i1", Local: netip.MustParseAddr("10.7.0.1"), Address: netip.MustParseAddr("10.7.0.12"), ASN: 65010, LocalASN: 65010},
		},
		Static: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
	}
	if text := c.Text(); !strings.Contains(text, "multihop;") || strings.Contains(text, "protocol kernel") {
		t.Errorf("loopback config: want multihop sessions and no kernel protocol:\n%s", text)
	}
	c.Direct, c.Kernel = true, true
	text := c.Text()
	for _, want := range []string{
		"direct; passive on;",
		"protocol kernel kernel4 { ipv4 { export where source = RTS_BGP; }; merge paths on; }",
		"router id 10.7.0.1;",
		"local 10.7.0.1 port 179 as 65000;\n  neighbor 10.7.0.11 as 65010;",
		"local 10.7.0.1 port 179 as 65010;\n  neighbor 10.7.0.12 as 65010;",
		`password "p";`,
		"route 198.51.100.0/24 blackhole;",
		"ipv4 { import all; export where source = RTS_STATIC; };",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}
