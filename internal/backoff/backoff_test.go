package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	half := func(d time.Duration) time.Duration { return d / 2 }
	most := func(d time.Duration) time.Duration { return d - 1 }
	tests := []struct {
		name      string
		n         int
		base, max time.Duration
		jitter    func(time.Duration) time.Duration
		want      time.Duration
	}{
		{"first failure is base", 1, time.Second, 30 * time.Second, nil, time.Second},
		{"n below 1 counts as 1", 0, time.Second, 30 * time.Second, nil, time.Second},
		{"doubles", 3, time.Second, 30 * time.Second, nil, 4 * time.Second},
		{"capped", 6, time.Second, 30 * time.Second, nil, 30 * time.Second},
		{"huge n neither overflows nor passes the cap", 1 << 20, 250 * time.Millisecond, 30 * time.Second, nil, 30 * time.Second},
		{"base above max is max", 1, time.Minute, 30 * time.Second, nil, 30 * time.Second},
		{"jitter takes from a quarter", 1, 8 * time.Second, 30 * time.Second, half, 7 * time.Second},
		{"jitter never takes more than a quarter", 6, time.Second, 32 * time.Second, most, 24*time.Second + 1},
		{"zero base is no wait", 5, 0, time.Second, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Delay(tt.n, tt.base, tt.max, tt.jitter); got != tt.want {
				t.Errorf("Delay(%d, %v, %v) = %v, want %v", tt.n, tt.base, tt.max, got, tt.want)
			}
		})
	}
}
