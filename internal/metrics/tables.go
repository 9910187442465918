package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// tables are the gauges of each virtual service's table that SawTable
// sets — lvs_sync_reals{virtual_service,state}, lvs_sync_reals_desired,
// lvs_sync_reals_applied and lvs_sync_table_fingerprint — kept as a few
// numbers per virtual service and emitted at each scrape. A collector and
// not four vectors: a vector's series holds its labels as protobuf pairs
// and a metric object each, about 350 bytes, eight series a virtual
// service; at 1,000 services that was 3 MiB of the daemon's heap, and a
// full sync dropped and made them all again.
type tables struct {
	mu sync.Mutex
	by map[string]*tableGauges
}

// realStates are lvs_sync_reals' states, in tableGauges.states' order.
var realStates = [...]string{"serving", "quiesced", "draining", "fallback", "held"}

// tableGauges are one virtual service's gauges; a has* false is a series
// not emitted.
type tableGauges struct {
	hasStates, hasApplied, hasFingerprint bool
	states                                [len(realStates)]uint32
	desired, applied                      uint32
	fingerprint                           uint64 // 48 bits
}

var (
	realsByStateDesc = prometheus.NewDesc("lvs_sync_reals",
		"Real servers by virtual service and state: serving, quiesced, draining, fallback, held (vanished with too many others).",
		[]string{"virtual_service", "state"}, nil)
	realsDesiredDesc = prometheus.NewDesc("lvs_sync_reals_desired",
		"Real servers the last render wants, by virtual service.", []string{"virtual_service"}, nil)
	realsAppliedDesc = prometheus.NewDesc("lvs_sync_reals_applied",
		"Real servers in the kernel after the last successful sync, by virtual service.", []string{"virtual_service"}, nil)
	fingerprintDesc = prometheus.NewDesc("lvs_sync_table_fingerprint",
		"A 48-bit hash of what decides the virtual service's table (scheduler, flags, reals in the kernel's order with their weights) after the last successful sync: equal on every director that maps a flow to the same real.",
		[]string{"virtual_service"}, nil)
)

func newTables() *tables { return &tables{by: map[string]*tableGauges{}} }

// reset drops every virtual service's counts by state and desired reals
// (a full sync sets them all again), and with applied its reals applied
// and fingerprint too.
func (t *tables) reset(applied bool) {
	for name, g := range t.by {
		g.hasStates = false
		if applied {
			g.hasApplied, g.hasFingerprint = false, false
		}
		if !g.hasApplied && !g.hasFingerprint {
			delete(t.by, name)
		}
	}
}

// of is name's gauges, made if need be; call with t.mu held.
func (t *tables) of(name string) *tableGauges {
	g := t.by[name]
	if g == nil {
		g = &tableGauges{}
		t.by[name] = g
	}
	return g
}

// Describe is prometheus.Collector's.
func (t *tables) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{realsByStateDesc, realsDesiredDesc, realsAppliedDesc, fingerprintDesc} {
		ch <- d
	}
}

// Collect is prometheus.Collector's.
func (t *tables) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	defer t.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for name, g := range t.by {
		if g.hasStates {
			for i, state := range realStates {
				gauge(realsByStateDesc, float64(g.states[i]), name, state)
			}
			gauge(realsDesiredDesc, float64(g.desired), name)
		}
		if g.hasApplied {
			gauge(realsAppliedDesc, float64(g.applied), name)
		}
		if g.hasFingerprint {
			gauge(fingerprintDesc, float64(g.fingerprint), name)
		}
	}
}
