package ui

import (
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// TestRates: a rate is the counters' change over the time since the
// oldest sample of the window, unknown until that is far enough back and
// for a counter that went back; the page shows it scaled.
func TestRates(t *testing.T) {
	view := func(svc, real ipvs.Stats) status.View {
		return status.View{Services: []status.ServiceView{{Key: "tcp://10.0.0.1:80", Name: "web", Stats: svc,
			Reals: []status.RealView{{Address: "10.1.0.1:80", Stats: real}}}}}
	}
	r := &rates{}
	t0 := time.Unix(1_000_000, 0)
	svcKey, realKey := "tcp://10.0.0.1:80", "tcp://10.0.0.1:80 10.1.0.1:80"
	if _, ok := r.observe(view(ipvs.Stats{Conns: 100, InBytes: 1000}, ipvs.Stats{Conns: 100}), t0)(svcKey); ok {
		t.Errorf("a rate from one sample")
	}
	if _, ok := r.observe(view(ipvs.Stats{Conns: 110}, ipvs.Stats{Conns: 110}), t0.Add(time.Second))(svcKey); ok {
		t.Errorf("a rate over 1 s, less than %s", rateMinSpan)
	}
	rate := r.observe(view(ipvs.Stats{Conns: 150, InBytes: 26_000, OutBytes: 5_000_000}, ipvs.Stats{Conns: 50}), t0.Add(5*time.Second))
	if got, ok := rate(svcKey); !ok || got != (Rate{Conns: 10, InBytes: 5000, OutBytes: 1_000_000}) {
		t.Errorf("the service's rate over 5 s: %+v %v, want 10 conns/s, 5000 B/s in, 1e6 B/s out", got, ok)
	}
	if _, ok := rate(realKey); ok {
		t.Errorf("a rate for a real whose counters went back (deleted and added again)")
	}
	if got := shown(rate(svcKey)); got != (Rates{Conns: "10.0/s", In: "5.0 kB/s", Out: "1.0 MB/s"}) {
		t.Errorf("shown %+v", got)
	}
	// 20 s on, the samples of t0 are out of the window: the rate is over
	// the samples since.
	r.observe(view(ipvs.Stats{Conns: 200}, ipvs.Stats{Conns: 60}), t0.Add(20*time.Second))
	rate = r.observe(view(ipvs.Stats{Conns: 230}, ipvs.Stats{Conns: 66}), t0.Add(23*time.Second))
	if got, ok := rate(realKey); !ok || got.Conns != 2 {
		t.Errorf("the real's rate over 20..23 s: %+v %v, want 2 conns/s", got, ok)
	}
}

// TestRateOfARealAddedLater: a real missing from the window's first
// sample (added since) has its rate from its own first sample, not once
// that first one leaves the window.
func TestRateOfARealAddedLater(t *testing.T) {
	r := &rates{}
	t0 := time.Unix(1_000_000, 0)
	r.observe(status.View{Services: []status.ServiceView{{Key: "tcp://10.0.0.1:80"}}}, t0)
	withReal := func(conns uint64) status.View {
		return status.View{Services: []status.ServiceView{{Key: "tcp://10.0.0.1:80",
			Reals: []status.RealView{{Address: "10.1.0.1:80", Stats: ipvs.Stats{Conns: conns}}}}}}
	}
	r.observe(withReal(10), t0.Add(2*time.Second))
	if got, ok := r.observe(withReal(40), t0.Add(4*time.Second))("tcp://10.0.0.1:80 10.1.0.1:80"); !ok || got.Conns != 15 {
		t.Errorf("the new real's rate: %+v %v, want 15 conns/s over its 2 s", got, ok)
	}
}
