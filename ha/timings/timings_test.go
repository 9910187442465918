package timings

import (
	"strings"
	"testing"
	"time"
)

func TestProblems(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		name   string
		change func(*Timings)
		want   []string // field: message start
	}{
		{"the design's", func(*Timings) {}, nil},
		{"a zero heartbeat", func(t *Timings) { t.Heartbeat = 0 }, []string{"heartbeat_interval: 0s must be positive"}},
		{"a peer lost within two heartbeats", func(t *Timings) { t.PeerTimeout = 99 * ms }, []string{"peer_timeout: 99ms must be at least two heartbeats"}},
		{"exactly two heartbeats", func(t *Timings) { t.PeerTimeout = 100 * ms }, nil},
		{"a fence shorter than two renewals", func(t *Timings) { t.TTL = 399 * ms }, []string{"lease_ttl: 399ms must be at least four renewals"}},
		{"exactly four renewals", func(t *Timings) { t.TTL = 400 * ms }, nil},
		{"both", func(t *Timings) { t.Heartbeat, t.Renew = time.Second, time.Second },
			[]string{"peer_timeout: 250ms must be", "lease_ttl: 600ms must be"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tm := Default()
			tt.change(&tm)
			ps := tm.Problems()
			if len(ps) != len(tt.want) {
				t.Fatalf("problems %v, want %d", ps, len(tt.want))
			}
			for i, w := range tt.want {
				if got := ps[i].Field + ": " + ps[i].Err.Error(); !strings.HasPrefix(got, w) {
					t.Errorf("problem %d: %q, want it to start %q", i, got, w)
				}
			}
			if (tm.Validate() == nil) != (len(tt.want) == 0) {
				t.Errorf("Validate %v with problems %v", tm.Validate(), ps)
			}
		})
	}
}

func TestVIPLifetime(t *testing.T) {
	for _, c := range []struct{ ttl, want time.Duration }{
		{600 * time.Millisecond, 2 * time.Second},
		{time.Second, 2 * time.Second},
		{1001 * time.Millisecond, 3 * time.Second},
		{300 * time.Millisecond, 2 * time.Second},
	} {
		tm := Default()
		tm.TTL = c.ttl
		if got := tm.VIPLifetime(); got != c.want {
			t.Errorf("ttl %v: lifetime %v, want %v", c.ttl, got, c.want)
		}
		if got := tm.VIPRefresh(); got != c.want/8 {
			t.Errorf("ttl %v: refresh %v, want %v", c.ttl, got, c.want/8)
		}
	}
}
