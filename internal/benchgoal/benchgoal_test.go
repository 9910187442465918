package benchgoal

import "testing"

func TestVerdicts(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"bench kernel: case=load-1kx10 lvs_sync_ms=12.0 ipvsadm_ms=130.0 ratio=10.8",
			"ratio>=10:met"},
		{"bench kernel: case=load-1kx10-mh lvs_sync_ms=40.0 ipvsadm_ms=130.0 ratio=3.3",
			"ratio>=10:MISSED"},
		{"bench kernel: case=own-leg-p99 lvs_sync_ms=10.00 ipvsadm_ms=1.00 ratio=0.10", "lvs_sync_ms<=10:met"},
		{"bench kernel: case=one-change lvs_sync_ms=1.0 ipvsadm_ms=2.0 ratio=2.0", ""},
		{"bench watch: services=1000 instances=10 first_sync_s=0.90 flip_p99_ms=99.0 change_p99_ms=500.1 conns_max=8 idle_cpu_pct=0.50 rss_mib=47.9 http_429=0",
			"flip_p99_ms<=100:met busy_flip_p99_ms<=100:absent reload_flip_p99_ms<=100:absent change_p99_ms<=500:MISSED rss_mib<=48:met idle_cpu_pct<0.5:MISSED conns_max<=8:met http_429<=0:met"},
		// services=10000 is not services=1000's line.
		{"bench watch: services=10000 instances=10 first_sync_s=3.01", "flip_p99_ms<=100:absent busy_flip_p99_ms<=100:absent reload_flip_p99_ms<=100:absent " +
			"change_p99_ms<=1000:absent rss_mib<=256:absent idle_cpu_pct<0.5:absent first_sync_s<=3:MISSED conns_max<=8:absent http_429<=0:absent"},
		{"bench ha: case=takeover result=pass takeover_p50_ms=290 failed=3 resets=0 max_ms=400 takeovers=5 two_holders=0",
			"takeover_p50_ms<=300:met two_holders<=0:met"},
		{"bench watch: services=100 instances=10 flip_p99_ms=1", ""},
		// A failed case's -1 is no figure.
		{"bench ha: case=takeover result=fail takeover_p50_ms=-1 failed=0 resets=0 error=vip-on-",
			"takeover_p50_ms<=300:MISSED two_holders<=0:MISSED"},
	} {
		if got := Verdicts(c.line); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.line, got, c.want)
		}
	}
	if got := Annotate("bench kernel: case=read-1kx10 ratio=4.9"); got != "bench kernel: case=read-1kx10 ratio=4.9 goals: ratio>=5:MISSED" {
		t.Errorf("Annotate: %s", got)
	}
}
