package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvs-sync/lvs-sync/internal/status"
)

// Traffic are the kernel's IPVS counters of each virtual service and real
// of the config, labelled by who they are, read at each scrape from the
// status room's view of the live table:
//
//   - lvs_sync_virtual_service_connections_total{virtual_service,service}
//   - lvs_sync_virtual_service_packets_total{virtual_service,service,direction}
//   - lvs_sync_virtual_service_bytes_total{virtual_service,service,direction}
//   - lvs_sync_virtual_service_active_connections{virtual_service,service}
//   - lvs_sync_virtual_service_inactive_connections{virtual_service,service}
//   - lvs_sync_real_connections_total{virtual_service,real,service}
//   - lvs_sync_real_packets_total{virtual_service,real,service,direction}
//   - lvs_sync_real_bytes_total{virtual_service,real,service,direction}
//   - lvs_sync_real_active_connections{virtual_service,real,service}
//   - lvs_sync_real_inactive_connections{virtual_service,real,service}
//
// virtual_service is the config's name, real the real's address:port,
// service the catalog service (Consul's or Nomad's) its instances come
// from, direction "in" (client to director) or "out". A virtual service's
// counters are the kernel's own (reals gone included); its connections
// the sum of its reals'.
//
// A collector and not vectors: each scrape emits what the last read of
// the kernel has, so a real that leaves drops its series and the
// cardinality is the table's, never its history. Services lvs-sync does
// not name (foreign ones, and its own once out of the config) have none.
// The read is the daemon's Services, shared with /v1/status and at most a
// second old: a scrape at any size costs at most one dump of the kernel a
// second. A read that fails yields no series: lvs_sync_last_sync_success
// and the logs say the kernel is unreadable.
type Traffic struct {
	read func() ([]status.ServiceView, error)
}

var (
	vsLabels     = []string{"virtual_service", "service"}
	vsDirLabels  = []string{"virtual_service", "service", "direction"}
	realLabels   = []string{"virtual_service", "real", "service"}
	realDirLabel = []string{"virtual_service", "real", "service", "direction"}

	vsConns = prometheus.NewDesc("lvs_sync_virtual_service_connections_total",
		"Connections the kernel scheduled to the virtual service since it was made.", vsLabels, nil)
	vsPackets = prometheus.NewDesc("lvs_sync_virtual_service_packets_total",
		"Packets through the virtual service since it was made, by direction (in: from clients, out: to them).", vsDirLabels, nil)
	vsBytes = prometheus.NewDesc("lvs_sync_virtual_service_bytes_total",
		"Bytes through the virtual service since it was made, by direction (in: from clients, out: to them).", vsDirLabels, nil)
	vsActive = prometheus.NewDesc("lvs_sync_virtual_service_active_connections",
		"Active connections of the virtual service's reals.", vsLabels, nil)
	vsInactive = prometheus.NewDesc("lvs_sync_virtual_service_inactive_connections",
		"Inactive connections of the virtual service's reals.", vsLabels, nil)
	realConns = prometheus.NewDesc("lvs_sync_real_connections_total",
		"Connections the kernel scheduled to the real since it was added.", realLabels, nil)
	realPackets = prometheus.NewDesc("lvs_sync_real_packets_total",
		"Packets through the real since it was added, by direction (in: from clients, out: to them).", realDirLabel, nil)
	realBytes = prometheus.NewDesc("lvs_sync_real_bytes_total",
		"Bytes through the real since it was added, by direction (in: from clients, out: to them).", realDirLabel, nil)
	realActive = prometheus.NewDesc("lvs_sync_real_active_connections",
		"Active connections of the real.", realLabels, nil)
	realInactive = prometheus.NewDesc("lvs_sync_real_inactive_connections",
		"Inactive connections of the real.", realLabels, nil)
)

// NewTraffic registers the traffic metrics of the table read returns.
func NewTraffic(reg prometheus.Registerer, read func() ([]status.ServiceView, error)) *Traffic {
	m := &Traffic{read: read}
	reg.MustRegister(m)
	return m
}

// Describe is prometheus.Collector's.
func (m *Traffic) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{vsConns, vsPackets, vsBytes, vsActive, vsInactive,
		realConns, realPackets, realBytes, realActive, realInactive} {
		ch <- d
	}
}

// Collect is prometheus.Collector's: the table as last read.
func (m *Traffic) Collect(ch chan<- prometheus.Metric) {
	views, err := m.read()
	if err != nil {
		return
	}
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v), labels...)
	}
	for _, v := range views {
		if v.Name == "" {
			continue
		}
		svc := v.ConsulService
		if svc == "" {
			svc = v.NomadService
		}
		s := v.Stats
		emit(vsConns, prometheus.CounterValue, s.Conns, v.Name, svc)
		emit(vsPackets, prometheus.CounterValue, s.InPkts, v.Name, svc, "in")
		emit(vsPackets, prometheus.CounterValue, s.OutPkts, v.Name, svc, "out")
		emit(vsBytes, prometheus.CounterValue, s.InBytes, v.Name, svc, "in")
		emit(vsBytes, prometheus.CounterValue, s.OutBytes, v.Name, svc, "out")
		var active, inactive uint64
		for _, r := range v.Reals {
			s := r.Stats
			emit(realConns, prometheus.CounterValue, s.Conns, v.Name, r.Address, svc)
			emit(realPackets, prometheus.CounterValue, s.InPkts, v.Name, r.Address, svc, "in")
			emit(realPackets, prometheus.CounterValue, s.OutPkts, v.Name, r.Address, svc, "out")
			emit(realBytes, prometheus.CounterValue, s.InBytes, v.Name, r.Address, svc, "in")
			emit(realBytes, prometheus.CounterValue, s.OutBytes, v.Name, r.Address, svc, "out")
			emit(realActive, prometheus.GaugeValue, uint64(r.ActiveConns), v.Name, r.Address, svc)
			emit(realInactive, prometheus.GaugeValue, uint64(r.InactiveConns), v.Name, r.Address, svc)
			active += uint64(r.ActiveConns)
			inactive += uint64(r.InactiveConns)
		}
		emit(vsActive, prometheus.GaugeValue, active, v.Name, svc)
		emit(vsInactive, prometheus.GaugeValue, inactive, v.Name, svc)
	}
}
