package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/internal/status"
)

// BGP are the metrics of a director of an all-active tier
// (director.bgp), read at each scrape from the status room's view of it,
// so that they say what /v1/status says:
//
//   - lvs_sync_bgp_session_up{neighbor}: 1 while the session with that
//     router is established, else 0.
//   - lvs_sync_bgp_session_state{neighbor,state}: 1, labelled with the
//     session's BGP state (established, active, connect, idle, ...).
//   - lvs_sync_bgp_session_uptime_seconds{neighbor}: how long the session
//     has been established; 0 when it is not.
//   - lvs_sync_bgp_session_prefixes_announced{neighbor}: the prefixes
//     sent to that router.
//   - lvs_sync_bgp_prefixes_announced: the prefixes the speaker announces.
//   - lvs_sync_bgp_vip_announced{vip,reason}: 1 for a VIP announced
//     (reason ""), 0 for one that is not, with why: "not synced yet",
//     "stopping", "pool empty".
//
// They are registered only with director.bgp.
type BGP struct {
	view func() *status.BGPView
}

var (
	bgpSessionUp = prometheus.NewDesc("lvs_sync_bgp_session_up",
		"1 while the BGP session with the router is established, else 0.", []string{"neighbor"}, nil)
	bgpSessionState = prometheus.NewDesc("lvs_sync_bgp_session_state",
		"1, labelled with the BGP session's state (established, active, connect, idle, ...).", []string{"neighbor", "state"}, nil)
	bgpSessionUptime = prometheus.NewDesc("lvs_sync_bgp_session_uptime_seconds",
		"How long the BGP session has been established; 0 when it is not.", []string{"neighbor"}, nil)
	bgpSessionPrefixes = prometheus.NewDesc("lvs_sync_bgp_session_prefixes_announced",
		"Prefixes announced to the router.", []string{"neighbor"}, nil)
	bgpPrefixes = prometheus.NewDesc("lvs_sync_bgp_prefixes_announced",
		"Prefixes the BGP speaker announces.", nil, nil)
	bgpVIP = prometheus.NewDesc("lvs_sync_bgp_vip_announced",
		`1 for a VIP announced to the routers, 0 for one that is not, with the reason ("not synced yet", "stopping", "pool empty").`,
		[]string{"vip", "reason"}, nil)
)

// NewBGP registers the bgp metrics of the view view returns; a nil view
// yields none.
func NewBGP(reg prometheus.Registerer, view func() *status.BGPView) *BGP {
	m := &BGP{view: view}
	reg.MustRegister(m)
	return m
}

// Describe is prometheus.Collector's.
func (m *BGP) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{bgpSessionUp, bgpSessionState, bgpSessionUptime, bgpSessionPrefixes, bgpPrefixes, bgpVIP} {
		ch <- d
	}
}

// Collect is prometheus.Collector's: the view as it is now.
func (m *BGP) Collect(ch chan<- prometheus.Metric) {
	v := m.view()
	if v == nil {
		return
	}
	gauge := func(d *prometheus.Desc, value float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, value, labels...)
	}
	for _, n := range v.Neighbors {
		up := 0.0
		if n.State == status.Established {
			up = 1
		}
		gauge(bgpSessionUp, up, n.Address)
		gauge(bgpSessionState, 1, n.Address, n.State)
		gauge(bgpSessionUptime, float64(n.Uptime), n.Address)
		gauge(bgpSessionPrefixes, float64(n.Announced), n.Address)
	}
	gauge(bgpPrefixes, float64(len(v.Announced)))
	for _, vip := range v.VIPs {
		announced := 0.0
		if vip.Announced {
			announced = 1
		}
		gauge(bgpVIP, announced, vip.Address, vip.Reason)
	}
}
