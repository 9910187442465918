package daemon

import (
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// BenchmarkScrape is one scrape of the traffic metrics at 1,000 virtual
// services × 10 reals, every one with counters, through the /metrics
// handler: "read" reads the in-memory kernel's table at each scrape (the
// first scrape of each second), "cached" is a scrape within the second
// of another, served from the shared read. It reports the size of the
// body too: 77,000 series (7 a virtual service, 7 a real).
func BenchmarkScrape(b *testing.B) {
	const n = 1000
	kernel := ipvstest.New(ipvs.State{})
	h := newHarness(b, scaleConfig(n), kernel)
	h.d.log = hclog.NewNullLogger()
	h.snapshot2(scaleSnapshot(n, false, nil))
	h.untilNext()
	reals := 0
	for k, svc := range kernel.State() {
		if err := kernel.SetServiceStats(k, ipvs.Stats{Conns: 1e6, InPkts: 1e8, OutPkts: 2e8, InBytes: 1e10, OutBytes: 1e12}); err != nil {
			b.Fatal(err)
		}
		for rk := range svc.Reals {
			if err := kernel.SetStats(k, rk, ipvs.Stats{Conns: 1e5, InPkts: 1e7, OutPkts: 2e7, InBytes: 1e9, OutBytes: 1e11}); err != nil {
				b.Fatal(err)
			}
			reals++
		}
	}
	if reals != n*10 {
		b.Fatalf("%d reals in the kernel, want %d", reals, n*10)
	}
	reg := prometheus.NewRegistry()
	metrics.NewTraffic(reg, h.d.Services)
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	scrape := func() int {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != 200 {
			b.Fatalf("scrape: %d %s", w.Code, w.Body)
		}
		return w.Body.Len()
	}
	for _, c := range []struct {
		name  string
		fresh bool
	}{{"read", true}, {"cached", false}} {
		b.Run(c.name, func(b *testing.B) {
			scrape() // fills the shared read for "cached"
			b.ReportAllocs()
			b.ResetTimer()
			size := 0
			for range b.N {
				if c.fresh {
					b.StopTimer()
					h.clock.Advance(statusMaxAge)
					b.StartTimer()
				}
				size = scrape()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
