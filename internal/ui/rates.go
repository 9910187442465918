package ui

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// Rate is a counter's change per second: connections scheduled, bytes in
// and out.
type Rate struct {
	Conns, InBytes, OutBytes float64
}

// The rates' window: a rate is the change since the oldest sample kept,
// at most rateWindow old and at least rateMinSpan (the status view's
// table may be a second old, so a shorter span would mostly measure
// that); one sample a second is kept at most.
const (
	rateWindow  = 10 * time.Second
	rateMinSpan = 1500 * time.Millisecond
	rateEvery   = time.Second
)

// rates turns the kernel's counters, which only grow, into rates, from
// the samples the page's requests take: while nobody looks, nothing is
// kept or computed.
type rates struct {
	mu      sync.Mutex
	samples []sample // oldest first
}

type sample struct {
	at    time.Time
	stats map[string]ipvs.Stats
}

// serviceKey and realKey name a counter in a sample.
func serviceKey(s status.ServiceView) string                 { return s.Key }
func realKey(s status.ServiceView, r status.RealView) string { return s.Key + " " + r.Address }

// observe records the view's counters at now and returns the rate of a
// counter: false until a sample that has it is far enough back, and for
// one that went back (a real deleted and added again).
func (r *rates) observe(v status.View, now time.Time) func(key string) (Rate, bool) {
	cur := map[string]ipvs.Stats{}
	for _, s := range v.Services {
		cur[serviceKey(s)] = s.Stats
		for _, rv := range s.Reals {
			cur[realKey(s, rv)] = rv.Stats
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.samples) > 0 && now.Sub(r.samples[0].at) > rateWindow {
		r.samples = r.samples[1:]
	}
	// The samples the rates look back to: those far enough back, taken
	// before this one is added.
	var bases []sample
	for _, smp := range r.samples {
		if now.Sub(smp.at) >= rateMinSpan {
			bases = append(bases, smp)
		}
	}
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= rateEvery {
		r.samples = append(r.samples, sample{at: now, stats: cur})
	}
	return func(key string) (Rate, bool) {
		// The oldest sample that has the counter: a real added since the
		// window's first sample has a rate as soon as one sample of it
		// is far enough back.
		i := slices.IndexFunc(bases, func(smp sample) bool { _, ok := smp.stats[key]; return ok })
		if i < 0 {
			return Rate{}, false
		}
		was, is := bases[i].stats[key], cur[key]
		if is.Conns < was.Conns || is.InBytes < was.InBytes || is.OutBytes < was.OutBytes {
			return Rate{}, false
		}
		secs := now.Sub(bases[i].at).Seconds()
		return Rate{Conns: float64(is.Conns-was.Conns) / secs, InBytes: float64(is.InBytes-was.InBytes) / secs,
			OutBytes: float64(is.OutBytes-was.OutBytes) / secs}, true
	}
}

// perSecond shows a rate: "12.5/s", "3.1 kB/s"; unit "B" scales by 1000.
func perSecond(v float64, unit string) string {
	if unit == "" {
		return fmt.Sprintf("%.1f/s", v)
	}
	prefixes := []string{"", "k", "M", "G", "T"}
	i := 0
	for v >= 1000 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s%s/s", v, prefixes[i], unit)
}
