package main

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/announce"
	"github.com/lvs-sync/lvs-sync/internal/status"
)

// status's lines about a bgp director: the prefixes announced, each
// router's session with its uptime, each VIP not announced with why.
func TestPrintBGP(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	v := status.BGPOf(status.Speaker{
		Announced: []netip.Prefix{netip.MustParsePrefix("10.10.10.60/32"), netip.MustParsePrefix("10.10.10.62/32")},
		Neighbors: []status.SpeakerNeighbor{
			{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, State: "established", Since: now.Add(-90 * time.Second), Announced: 2},
			{Address: netip.MustParseAddr("10.7.0.2"), ASN: 65000, State: "active", Since: now.Add(-5 * time.Second), LastError: "connection refused"},
		}}, []announce.VIP{
		{Addr: netip.MustParseAddr("10.10.10.60"), Announced: true},
		{Addr: netip.MustParseAddr("10.10.10.61"), Reason: announce.PoolEmpty, Since: now.Add(-12 * time.Second)},
		{Addr: netip.MustParseAddr("10.10.10.62"), Announced: true},
	}, now)
	var b bytes.Buffer
	printBGP(&b, v, now)
	want := `bgp: announcing 2 of 3 vips: 10.10.10.60/32, 10.10.10.62/32
  neighbor 10.7.0.1 (AS 65000): established for 1m30s, 2 prefixes sent
  neighbor 10.7.0.2 (AS 65000): active since 5s ago, 0 prefixes sent, last error: connection refused
  vip 10.10.10.61 not announced: pool empty (for 12s)
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printBGP(&b, nil, now)
	if b.Len() != 0 {
		t.Errorf("without bgp: %q", b.String())
	}
}
