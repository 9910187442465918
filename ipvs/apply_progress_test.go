package ipvs_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/internal/progress"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// slowKernel is a MemKernel on which every change takes per of a fake
// clock's time: an apply's duration is exact, whatever the host's load.
type slowKernel struct {
	*ipvs.MemKernel
	clock *clockwork.FakeClock
	per   time.Duration
}

func (k *slowKernel) ApplyBatch(ops []ipvs.Op) []error {
	errs := k.MemKernel.ApplyBatch(ops)
	k.clock.Advance(time.Duration(len(ops)) * k.per)
	return errs
}

var progressLine = regexp.MustCompile(`\[INFO\]  ipvs: applying changes: applied=(\d+) of=(\d+)( done=true took=\S+)?$`)

// TestApplyProgressAtScale: the first apply of 10,000 services (20,000
// changes at 1 ms each of the fake clock, 20 s) logs how far it is at most
// every 2 s, counts that only grow, and a last line that says done with
// every change; a plan of 10 services (20 ms) logs no progress at all.
func TestApplyProgressAtScale(t *testing.T) {
	for _, c := range []struct {
		services  int
		min, max  int // progress lines, the last included
		wantTotal int
	}{
		{services: 10, min: 0, max: 0, wantTotal: 20},
		{services: 10000, min: 10, max: 11, wantTotal: 20000},
	} {
		t.Run(strconv.Itoa(c.services), func(t *testing.T) {
			desired := ipvs.State{}
			for i := range c.services {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				desired[lvs.ServiceKey{Protocol: lvs.TCP, Addr: a, Port: 80}] = ipvs.Svc("wlc", map[string]ipvs.Real{
					fmt.Sprintf("10.200.%d.%d:80", byte(i>>8), byte(i)): ipvs.Gate(1),
				})
			}
			clock := clockwork.NewFakeClock()
			k := &slowKernel{MemKernel: ipvs.NewMemKernel(nil), clock: clock, per: time.Millisecond}
			var buf bytes.Buffer
			log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info, DisableTime: true}).Named("ipvs")
			res := ipvs.ApplyClock(k, ipvs.Diff(desired, ipvs.State{}, nil), log, clock)
			if res.Applied != c.wantTotal || res.Err() != nil {
				t.Fatalf("applied %d, want %d; errors: %v", res.Applied, c.wantTotal, res.Err())
			}
			var got [][]string
			for _, l := range strings.Split(buf.String(), "\n") {
				if m := progressLine.FindStringSubmatch(l); m != nil {
					got = append(got, m)
				}
			}
			if len(got) < c.min || len(got) > c.max {
				t.Fatalf("%d progress lines, want %d to %d:\n%s", len(got), c.min, c.max, buf.String())
			}
			if len(got) == 0 {
				return
			}
			prev := 0
			for _, m := range got {
				n, _ := strconv.Atoi(m[1])
				if m[2] != strconv.Itoa(c.wantTotal) || n < prev {
					t.Errorf("line %q: counts must grow, of %d", m[0], c.wantTotal)
				}
				// 2 s at 1 ms a change: at least 2,000 changes between two lines,
				// less a piece's worth, which is when a line can be logged.
				if n != c.wantTotal && n-prev < int(progress.Every/time.Millisecond)-1024 {
					t.Errorf("line %q only %d changes after the one before", m[0], n-prev)
				}
				prev = n
			}
			if last := got[len(got)-1]; last[1] != strconv.Itoa(c.wantTotal) || last[3] == "" {
				t.Errorf("last progress line %q does not say done with every change", last[0])
			}
		})
	}
}
