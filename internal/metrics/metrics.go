// Package metrics is lvs-sync's Prometheus metrics, each named and
// explained in one place. The daemon's loop feeds them with what each
// sync did and, for the per-service gauges, the table the sync left as
// the status room annotates it (so a real is classified as /v1/status
// shows it); the HA runner feeds the HA metrics. A nil *Metrics records
// nothing.
//
// It may import ipvs and the status room; nothing imports it but the
// daemon and cmd.
package metrics

import (
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// Metrics are lvs-sync's Prometheus metrics. A nil *Metrics records
// nothing, so the daemon needs none.
type Metrics struct {
	catalogQueries  *prometheus.CounterVec
	catalogErrors   *prometheus.CounterVec
	catalogIndex    *prometheus.GaugeVec
	applyLatency    prometheus.Histogram
	kernelOps       *prometheus.CounterVec
	syncs           *prometheus.CounterVec
	tables          *tables
	foreignServices prometheus.Gauge
	conflicts       prometheus.Gauge
	filtered        *prometheus.GaugeVec
	configReloads   *prometheus.CounterVec
	draining        prometheus.Gauge
	lastSyncSuccess prometheus.Gauge

	mu sync.Mutex
	// drainingBy counts the draining reals of each virtual service, for
	// their total.
	drainingBy map[string]int
}

// New registers lvs-sync's metrics, and the Go and process ones.
func New(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{
		drainingBy: map[string]int{},
		catalogQueries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvs_sync_catalog_queries_total",
			Help: "Blocking queries answered by Consul, by Consul service."}, []string{"service"}),
		catalogErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvs_sync_catalog_query_errors_total",
			Help: "Blocking queries that failed, by Consul service."}, []string{"service"}),
		catalogIndex: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lvs_sync_catalog_last_index",
			Help: "The Consul index of the last answer, by Consul service."}, []string{"service"}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lvs_sync_catalog_to_kernel_seconds",
			Help:    "Time from a catalog answer to its change applied in the kernel.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		kernelOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvs_sync_kernel_operations_total",
			Help: "IPVS changes made, by kind (add_service, update_real, ...) and result (ok, error)."}, []string{"op", "result"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvs_sync_syncs_total",
			Help: "Syncs of the kernel with the desired state, by scope (changed, all) and result."}, []string{"scope", "result"}),
		tables: newTables(),
		foreignServices: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvs_sync_foreign_services",
			Help: "Virtual services in the kernel that lvs-sync does not own, seen at the last full sync."}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvs_sync_conflicts",
			Help: "Virtual services of the config that the kernel has from someone else: left untouched (adopt = true takes one over)."}),
		filtered: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lvs_sync_catalog_filtered",
			Help: "1 for a Consul service whose answer ACLs filter: its last good state is kept."}, []string{"service"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvs_sync_config_reloads_total",
			Help: "Config reloads, by result (ok, error)."}, []string{"result"}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvs_sync_reals_draining",
			Help: "Real servers at weight 0 waiting for their connections to end."}),
		lastSyncSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvs_sync_last_sync_success",
			Help: "1 if the last sync succeeded, else 0."}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lvs_sync_build_info",
		Help: "A constant 1, labelled with lvs-sync's version and Go version."}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(m.catalogQueries, m.catalogErrors, m.catalogIndex, m.applyLatency, m.kernelOps, m.syncs,
		m.tables, m.foreignServices, m.conflicts, m.filtered, m.configReloads, m.draining,
		m.lastSyncSuccess, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var opLabels = map[ipvs.OpKind]string{
	ipvs.AddService: "add_service", ipvs.UpdateService: "update_service", ipvs.DeleteService: "delete_service",
	ipvs.AddReal: "add_real", ipvs.UpdateReal: "update_real", ipvs.DeleteReal: "delete_real",
}

// ConfigReload counts a reload.
func (m *Metrics) ConfigReload(ok bool) {
	if m == nil {
		return
	}
	m.configReloads.WithLabelValues(result(ok)).Inc()
}

func result(ok bool) string {
	if ok {
		return "ok"
	}
	return "error"
}

// SawQuery counts a blocking query's answer, or its failure.
func (m *Metrics) SawQuery(service string, index uint64, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.catalogErrors.WithLabelValues(service).Inc()
		return
	}
	m.catalogQueries.WithLabelValues(service).Inc()
	m.catalogIndex.WithLabelValues(service).Set(float64(index))
}

// SawSync counts a sync that applied a plan, and its kernel operations;
// a full one also sets the foreign services it saw.
func (m *Metrics) SawSync(res ipvs.Result, full bool, foreign int) {
	if m == nil {
		return
	}
	for kind, n := range res.Done {
		m.kernelOps.WithLabelValues(opLabels[kind], "ok").Add(float64(n))
	}
	for kind, n := range res.Errors {
		m.kernelOps.WithLabelValues(opLabels[kind], "error").Add(float64(n))
	}
	scope := "changed"
	if full {
		scope = "all"
		m.foreignServices.Set(float64(foreign))
	}
	m.syncs.WithLabelValues(scope, result(res.Err() == nil)).Inc()
}

// SawTable sets the per-service gauges from the status room's view of
// table, what a sync left in the kernel: of every service when full,
// else of those the sync looked at. ok tells whether the sync succeeded.
func (m *Metrics) SawTable(table ipvs.State, in status.Input, full, ok bool) {
	if m == nil {
		return
	}
	views := status.Services(table, in)
	m.lastSyncSuccess.Set(map[bool]float64{true: 1, false: 0}[ok])
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables
	t.mu.Lock()
	defer t.mu.Unlock()
	if full {
		t.reset(ok)
		clear(m.drainingBy)
	}
	for _, v := range views {
		if v.Name == "" {
			continue
		}
		g := t.of(v.Name)
		g.hasStates, g.states, g.desired = true, [len(realStates)]uint32{}, 0
		for _, r := range v.Reals {
			state := status.State(r.Source, r.Weight)
			if i := slices.Index(realStates[:], state); i >= 0 {
				g.states[i]++
			}
			if state != "draining" {
				g.desired++
			}
		}
		m.drainingBy[v.Name] = int(g.states[slices.Index(realStates[:], "draining")])
		if ok {
			g.hasApplied, g.applied = true, uint32(len(v.Reals))
			// 48 bits: exact in a float64, so that an alert can compare
			// directors with max != min by virtual_service.
			if f, err := strconv.ParseUint(v.Fingerprint, 16, 48); err == nil {
				g.hasFingerprint, g.fingerprint = true, f
			}
		}
	}
	total := 0
	for _, n := range m.drainingBy {
		total += n
	}
	m.draining.Set(float64(total))
}

// ObserveApplyLatency records how long a catalog answer took to reach the
// kernel.
func (m *Metrics) ObserveApplyLatency(d time.Duration) {
	if m == nil {
		return
	}
	m.applyLatency.Observe(d.Seconds())
}

// SawConflicts sets the number of conflicts.
func (m *Metrics) SawConflicts(n int) {
	if m == nil {
		return
	}
	m.conflicts.Set(float64(n))
}

// SawFiltered sets which services' answers ACLs filter.
func (m *Metrics) SawFiltered(services []string) {
	if m == nil {
		return
	}
	m.filtered.Reset()
	for _, name := range services {
		m.filtered.WithLabelValues(name).Set(1)
	}
}

// HA are the metrics of a director of an HA pair: its role
// (lvs_sync_ha_role{role="active"|"standby"} 1 for the one it has), its
// epoch and its takeovers. They are registered only with director.ha.
type HA struct {
	role      *prometheus.GaugeVec
	epoch     prometheus.Gauge
	takeovers prometheus.Counter
}

// NewHA registers the HA metrics, the role standby to begin with.
func NewHA(reg prometheus.Registerer) *HA {
	m := &HA{
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lvs_sync_ha_role",
			Help: "1 for the role this director has in its HA pair (active, standby), 0 for the other."}, []string{"role"}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvs_sync_ha_epoch",
			Help: "The lease epoch this director is active in; 0 when standby."}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "lvs_sync_ha_takeovers_total",
			Help: "Times this director became active."}),
	}
	reg.MustRegister(m.role, m.epoch, m.takeovers)
	m.HARole(false, 0)
	return m
}

// HARole records the role and epoch.
func (m *HA) HARole(active bool, epoch uint64) {
	m.role.WithLabelValues("active").Set(map[bool]float64{true: 1}[active])
	m.role.WithLabelValues("standby").Set(map[bool]float64{false: 1}[active])
	m.epoch.Set(float64(epoch))
}

// HATakeover counts a takeover.
func (m *HA) HATakeover() { m.takeovers.Inc() }
