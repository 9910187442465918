package status

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/announce"
)

// The bgp part of /v1/status, as a script reads it: each neighbour's
// state, since and uptime (when established), the prefixes announced,
// each VIP announced or why not; empty lists are [], not null.
func TestBGPViewJSON(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	sp := Speaker{
		Announced: []netip.Prefix{netip.MustParsePrefix("10.10.10.60/32")},
		Neighbors: []SpeakerNeighbor{
			{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, State: "established", Since: now.Add(-90500 * time.Millisecond), Announced: 1},
			{Address: netip.MustParseAddr("fd00:7::1"), ASN: 65001, State: "active", Since: now.Add(-5 * time.Second), LastError: "connection refused"},
		},
	}
	vips := []announce.VIP{{Addr: netip.MustParseAddr("10.10.10.60"), Announced: true, Since: now.Add(-time.Minute)},
		{Addr: netip.MustParseAddr("10.10.10.61"), Reason: announce.PoolEmpty, Since: now.Add(-time.Second)}}
	b, err := json.MarshalIndent(View{BGP: BGPOf(sp, vips, now), Services: []ServiceView{}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "synced": "0001-01-01T00:00:00Z",
  "last_sync": "0001-01-01T00:00:00Z",
  "bgp": {
    "neighbors": [
      {
        "address": "10.7.0.1",
        "asn": 65000,
        "state": "established",
        "since": "2026-12-07T11:58:29.5Z",
        "uptime_seconds": 90,
        "announced": 1
      },
      {
        "address": "fd00:7::1",
        "asn": 65001,
        "state": "active",
        "since": "2026-12-07T11:59:55Z",
        "announced": 0,
        "last_error": "connection refused"
      }
    ],
    "announced": [
      "10.10.10.60/32"
    ],
    "vips": [
      {
        "address": "10.10.10.60",
        "announced": true,
        "since": "2026-12-07T11:59:00Z"
      },
      {
        "address": "10.10.10.61",
        "announced": false,
        "reason": "pool empty",
        "since": "2026-12-07T11:59:59Z"
      }
    ]
  },
  "services": []
}`
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	b, _ = json.Marshal(BGPOf(Speaker{}, nil, now))
	if want := `{"neighbors":[],"announced":[],"vips":[]}`; string(b) != want {
		t.Errorf("a speaker with nothing: %s, want %s", b, want)
	}
}
