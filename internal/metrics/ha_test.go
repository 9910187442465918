package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHAMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewHA(reg)
	check := func(active, standby, epoch, takeovers float64) {
		t.Helper()
		got := [4]float64{testutil.ToFloat64(m.role.WithLabelValues("active")), testutil.ToFloat64(m.role.WithLabelValues("standby")),
			testutil.ToFloat64(m.epoch), testutil.ToFloat64(m.takeovers)}
		if want := [4]float64{active, standby, epoch, takeovers}; got != want {
			t.Fatalf("active, standby, epoch, takeovers = %v, want %v", got, want)
		}
	}
	check(0, 1, 0, 0)
	m.HARole(true, 7)
	m.HATakeover()
	check(1, 0, 7, 1)
	m.HARole(false, 0)
	check(0, 1, 0, 1)
	if n, err := testutil.GatherAndCount(reg, "lvs_sync_ha_role", "lvs_sync_ha_epoch", "lvs_sync_ha_takeovers_total"); err != nil || n != 4 {
		t.Fatalf("gathered %d series (%v), want 4", n, err)
	}
}
