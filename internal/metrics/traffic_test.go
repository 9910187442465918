package metrics

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

const trafficConfig = `
virtual_service "web" {
  address    = "10.0.0.1:80"
  forwarding = "gate"
  service    = "web-app"
}
`

// TestTrafficMetrics: each scrape exposes the counters and connections of
// the table as last read, labelled by virtual service, real and catalog
// service; a foreign service has none; a real that leaves the table drops
// its series at the next scrape; a failed read exposes nothing.
func TestTrafficMetrics(t *testing.T) {
	cfg, err := config.Parse([]byte(trafficConfig), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	foreign := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.9"), Port: 80}
	r1, r2 := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80}, lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.2"), Port: 80}
	table := ipvs.State{
		web: {Scheduler: "wlc", Stats: ipvs.Stats{Conns: 30, InPkts: 300, OutPkts: 200, InBytes: 30000, OutBytes: 1 << 40},
			Reals: map[lvs.RealKey]ipvs.Real{
				r1: {Weight: 1, Forward: lvs.Route, ActiveConns: 2, InactiveConns: 5,
					Stats: ipvs.Stats{Conns: 20, InPkts: 200, OutPkts: 150, InBytes: 20000, OutBytes: 1<<40 - 1000}},
				r2: {Weight: 1, Forward: lvs.Route, ActiveConns: 1,
					Stats: ipvs.Stats{Conns: 9, InPkts: 90, OutPkts: 45, InBytes: 9000, OutBytes: 900}},
			}},
		foreign: {Scheduler: "rr", Stats: ipvs.Stats{Conns: 1}, Reals: map[lvs.RealKey]ipvs.Real{
			r1: {Weight: 1, Forward: lvs.Route, Stats: ipvs.Stats{Conns: 1}}}},
	}
	in := status.Input{Config: cfg, Owns: func(k lvs.ServiceKey) bool { return k == web }}
	var readErr error
	reads := 0
	reg := prometheus.NewRegistry()
	NewTraffic(reg, func() ([]status.ServiceView, error) {
		reads++
		return status.Services(table, in), readErr
	})

	const head = `
# HELP lvs_sync_real_active_connections Active connections of the real.
# TYPE lvs_sync_real_active_connections gauge
lvs_sync_real_active_connections{real="10.1.0.1:80",service="web-app",virtual_service="web"} 2
`
	const r2Active = `lvs_sync_real_active_connections{real="10.1.0.2:80",service="web-app",virtual_service="web"} 1
`
	const bytes1 = `# HELP lvs_sync_real_bytes_total Bytes through the real since it was added, by direction (in: from clients, out: to them).
# TYPE lvs_sync_real_bytes_total counter
lvs_sync_real_bytes_total{direction="in",real="10.1.0.1:80",service="web-app",virtual_service="web"} 20000
`
	const r2BytesIn = `lvs_sync_real_bytes_total{direction="in",real="10.1.0.2:80",service="web-app",virtual_service="web"} 9000
`
	const bytes1Out = `lvs_sync_real_bytes_total{direction="out",real="10.1.0.1:80",service="web-app",virtual_service="web"} 1.099511626776e+12
`
	const r2BytesOut = `lvs_sync_real_bytes_total{direction="out",real="10.1.0.2:80",service="web-app",virtual_service="web"} 900
`
	const conns1 = `# HELP lvs_sync_real_connections_total Connections the kernel scheduled to the real since it was added.
# TYPE lvs_sync_real_connections_total counter
lvs_sync_real_connections_total{real="10.1.0.1:80",service="web-app",virtual_service="web"} 20
`
	const r2Conns = `lvs_sync_real_connections_total{real="10.1.0.2:80",service="web-app",virtual_service="web"} 9
`
	const inactive1 = `# HELP lvs_sync_real_inactive_connections Inactive connections of the real.
# TYPE lvs_sync_real_inactive_connections gauge
lvs_sync_real_inactive_connections{real="10.1.0.1:80",service="web-app",virtual_service="web"} 5
`
	const r2Inactive = `lvs_sync_real_inactive_connections{real="10.1.0.2:80",service="web-app",virtual_service="web"} 0
`
	const packets1 = `# HELP lvs_sync_real_packets_total Packets through the real since it was added, by direction (in: from clients, out: to them).
# TYPE lvs_sync_real_packets_total counter
lvs_sync_real_packets_total{direction="in",real="10.1.0.1:80",service="web-app",virtual_service="web"} 200
`
	const r2PacketsIn = `lvs_sync_real_packets_total{direction="in",real="10.1.0.2:80",service="web-app",virtual_service="web"} 90
`
	const packets1Out = `lvs_sync_real_packets_total{direction="out",real="10.1.0.1:80",service="web-app",virtual_service="web"} 150
`
	const r2PacketsOut = `lvs_sync_real_packets_total{direction="out",real="10.1.0.2:80",service="web-app",virtual_service="web"} 45
`
	vs := func(active, inactive string) string {
		return `# HELP lvs_sync_virtual_service_active_connections Active connections of the virtual service's reals.
# TYPE lvs_sync_virtual_service_active_connections gauge
lvs_sync_virtual_service_active_connections{service="web-app",virtual_service="web"} ` + active + `
# HELP lvs_sync_virtual_service_bytes_total Bytes through the virtual service since it was made, by direction (in: from clients, out: to them).
# TYPE lvs_sync_virtual_service_bytes_total counter
lvs_sync_virtual_service_bytes_total{direction="in",service="web-app",virtual_service="web"} 30000
lvs_sync_virtual_service_bytes_total{direction="out",service="web-app",virtual_service="web"} 1.099511627776e+12
# HELP lvs_sync_virtual_service_connections_total Connections the kernel scheduled to the virtual service since it was made.
# TYPE lvs_sync_virtual_service_connections_total counter
lvs_sync_virtual_service_connections_total{service="web-app",virtual_service="web"} 30
# HELP lvs_sync_virtual_service_inactive_connections Inactive connections of the virtual service's reals.
# TYPE lvs_sync_virtual_service_inactive_connections gauge
lvs_sync_virtual_service_inactive_connections{service="web-app",virtual_service="web"} ` + inactive + `
# HELP lvs_sync_virtual_service_packets_total Packets through the virtual service since it was made, by direction (in: from clients, out: to them).
# TYPE lvs_sync_virtual_service_packets_total counter
lvs_sync_virtual_service_packets_total{direction="in",service="web-app",virtual_service="web"} 300
lvs_sync_virtual_service_packets_total{direction="out",service="web-app",virtual_service="web"} 200
`
	}
	both := head + r2Active + bytes1 + r2BytesIn + bytes1Out + r2BytesOut + conns1 + r2Conns +
		inactive1 + r2Inactive + packets1 + r2PacketsIn + packets1Out + r2PacketsOut + vs("3", "5")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(both)); err != nil {
		t.Errorf("two reals: %v", err)
	}

	// r2 leaves the kernel: its series go with it, nothing else changes
	// (the service's counters are the kernel's own, r2's past included).
	delete(table[web].Reals, r2)
	one := head + bytes1 + bytes1Out + conns1 + inactive1 + packets1 + packets1Out + vs("2", "5")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(one)); err != nil {
		t.Errorf("after a real left: %v", err)
	}
	if reads != 2 {
		t.Errorf("two scrapes read the table %d times, want 2", reads)
	}

	readErr = errors.New("netlink: no answer")
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("a failed read: %d series (%v), want none", n, err)
	}
}
