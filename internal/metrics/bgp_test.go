package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-sync/lvs-sync/internal/announce"
	"github.com/lvs-sync/lvs-sync/internal/status"
)

// The bgp metrics say what the status view says, at each scrape.
func TestBGPMetrics(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	sp := status.Speaker{
		Announced: []netip.Prefix{netip.MustParsePrefix("10.10.10.60/32")},
		Neighbors: []status.SpeakerNeighbor{
			{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, State: "established", Since: now.Add(-90 * time.Second), Announced: 1},
			{Address: netip.MustParseAddr("10.7.0.2"), ASN: 65000, State: "active", Since: now.Add(-5 * time.Second), LastError: "connection refused"},
		},
	}
	vips := []announce.VIP{{Addr: netip.MustParseAddr("10.10.10.60"), Announced: true},
		{Addr: netip.MustParseAddr("10.10.10.61"), Reason: announce.PoolEmpty}}
	var view *status.BGPView
	reg := prometheus.NewRegistry()
	NewBGP(reg, func() *status.BGPView { return view })
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("without a view: %d series (%v), want none", n, err)
	}
	view = status.BGPOf(sp, vips, now)
	want := `
# HELP lvs_sync_bgp_prefixes_announced Prefixes the BGP speaker announces.
# TYPE lvs_sync_bgp_prefixes_announced gauge
lvs_sync_bgp_prefixes_announced 1
# HELP lvs_sync_bgp_session_prefixes_announced Prefixes announced to the router.
# TYPE lvs_sync_bgp_session_prefixes_announced gauge
lvs_sync_bgp_session_prefixes_announced{neighbor="10.7.0.1"} 1
lvs_sync_bgp_session_prefixes_announced{neighbor="10.7.0.2"} 0
# HELP lvs_sync_bgp_session_state 1, labelled with the BGP session's state (established, active, connect, idle, ...).
# TYPE lvs_sync_bgp_session_state gauge
lvs_sync_bgp_session_state{neighbor="10.7.0.1",state="established"} 1
lvs_sync_bgp_session_state{neighbor="10.7.0.2",state="active"} 1
# HELP lvs_sync_bgp_session_up 1 while the BGP session with the router is established, else 0.
# TYPE lvs_sync_bgp_session_up gauge
lvs_sync_bgp_session_up{neighbor="10.7.0.1"} 1
lvs_sync_bgp_session_up{neighbor="10.7.0.2"} 0
# HELP lvs_sync_bgp_session_uptime_seconds How long the BGP session has been established; 0 when it is not.
# TYPE lvs_sync_bgp_session_uptime_seconds gauge
lvs_sync_bgp_session_uptime_seconds{neighbor="10.7.0.1"} 90
lvs_sync_bgp_session_uptime_seconds{neighbor="10.7.0.2"} 0
# HELP lvs_sync_bgp_vip_announced 1 for a VIP announced to the routers, 0 for one that is not, with the reason ("not synced yet", "stopping", "pool empty").
# TYPE lvs_sync_bgp_vip_announced gauge
lvs_sync_bgp_vip_announced{reason="",vip="10.10.10.60"} 1
lvs_sync_bgp_vip_announced{reason="pool empty",vip="10.10.10.61"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
