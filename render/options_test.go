package render

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestThresholdMetaAboveIntMax: a meta threshold that fits a u32 but not
// the kernel's INT_MAX is noted and replaced by the virtual service's own,
// never passed on: current Linux 6.1 builds refuse it with EINVAL.
func TestThresholdMetaAboveIntMax(t *testing.T) {
	vs := &config.VirtualService{UpperThreshold: 10, LowerThreshold: 5}
	for _, c := range []struct {
		meta         string
		upper, lower uint32
		note         string
	}{
		{"meta=lvs-upper-threshold=2147483647", lvs.MaxThreshold, 5, ""},
		{"meta=lvs-upper-threshold=2147483648", 10, 5, `meta lvs-upper-threshold = "2147483648" is not a connection count from 0 to 2147483647: using 10`},
		{"meta=lvs-upper-threshold=4294967295", 10, 5, `meta lvs-upper-threshold = "4294967295" is not a connection count from 0 to 2147483647: using 10`},
		{"meta=lvs-lower-threshold=4294967295", 10, 5, `meta lvs-lower-threshold = "4294967295" is not a connection count from 0 to 2147483647: using 5`},
	} {
		var notes []string
		upper, lower := thresholds(vs, inst("n1", "10.1.0.11", 80, c.meta), func(format string, args ...any) {
			notes = append(notes, fmt.Sprintf(format, args...))
		})
		if upper != c.upper || lower != c.lower {
			t.Errorf("%s: thresholds %d/%d, want %d/%d", c.meta, upper, lower, c.upper, c.lower)
		}
		if got := strings.Join(notes, "; "); got != c.note {
			t.Errorf("%s: notes %q, want %q", c.meta, got, c.note)
		}
	}
}
