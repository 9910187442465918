//go:build vmguest

package e2e

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// trafficSums scrapes the running lvs-sync's /metrics (the API's default
// address) and sums each traffic metric of a virtual service over its
// reals, by metric name and direction ("" for none): what the kernel's
// counters say through the metrics, labelled by identity.
func trafficSums(t *testing.T, virtualService string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:9337/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	sums := map[string]float64{}
	for _, name := range []string{"lvs_sync_real_connections_total", "lvs_sync_real_bytes_total", "lvs_sync_real_packets_total",
		"lvs_sync_virtual_service_connections_total", "lvs_sync_virtual_service_bytes_total"} {
		mf := families[name]
		if mf == nil {
			continue
		}
		for _, m := range mf.Metric {
			labels := labelsOf(m)
			if labels["virtual_service"] != virtualService || labels["service"] != "web" {
				continue
			}
			sums[name+"/"+labels["direction"]] += m.GetCounter().GetValue()
		}
	}
	return sums
}

func labelsOf(m *dto.Metric) map[string]string {
	have := map[string]string{}
	for _, lp := range m.Label {
		have[lp.GetName()] = lp.GetValue()
	}
	return have
}

// checkTrafficMetrics: after the HTTP requests of a test, the virtual
// service's connections, packets and bytes through the director are above
// zero on /metrics, by virtual_service and Consul service; bytes out too
// when the replies come back through the director (masq).
func checkTrafficMetrics(t *testing.T, virtualService string, repliesThrough bool) {
	t.Helper()
	want := []string{"lvs_sync_real_connections_total/", "lvs_sync_real_bytes_total/in", "lvs_sync_real_packets_total/in",
		"lvs_sync_virtual_service_connections_total/", "lvs_sync_virtual_service_bytes_total/in"}
	if repliesThrough {
		want = append(want, "lvs_sync_real_bytes_total/out", "lvs_sync_virtual_service_bytes_total/out")
	}
	var sums map[string]float64
	// The kernel folds its per-CPU counters into the ones it reports
	// every 2 s (its rate estimator), and a scrape is served from a read
	// at most a second old: the counters trail the traffic by up to 3 s.
	waitFor(t, virtualService+"'s traffic on /metrics", 10*time.Second, func() bool {
		sums = trafficSums(t, virtualService)
		for _, k := range want {
			if sums[k] <= 0 {
				return false
			}
		}
		return true
	})
	t.Logf("%s on /metrics: %v", virtualService, sums)
}
