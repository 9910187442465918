package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// scaleConfig has n gate virtual services, each on its own Consul service.
func scaleConfig(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "virtual_service \"vs%05d\" {\n  address    = \"10.%d.%d.%d:80\"\n  forwarding = \"gate\"\n  service    = \"svc%05d\"\n}\n",
			i, 50+i/65536, (i/256)%256, i%256, i)
	}
	return b.String()
}

// scaleSnapshot has 10 passing instances of each of n services, on port
// 8080 as the bench's (gate keeps the virtual port: a note each); flip
// makes instance 0 of service 0 critical.
func scaleSnapshot(n int, flip bool, changed map[string]bool) catalog.Snapshot {
	snap := catalog.Snapshot{Services: make(map[string]*catalog.Service, n), Changed: changed}
	for i := range n {
		name := fmt.Sprintf("svc%05d", i)
		svc := &catalog.Service{Name: name}
		for j := range 10 {
			status := catalog.Passing
			if flip && i == 0 && j == 0 {
				status = catalog.Critical
			}
			svc.Instances = append(svc.Instances, &catalog.Instance{
				ID: fmt.Sprintf("%s-%d", name, j), Node: fmt.Sprintf("node%d", j),
				Address: fmt.Sprintf("10.%d.%d.%d", 60+j, (i/256)%256, i%256), Port: 8080,
				Status: status, Weights: catalog.Weights{Passing: 1 + j, Warning: 1},
			})
		}
		snap.Services[name] = svc
	}
	return snap
}

// BenchmarkOneFlip is one check flip among n services × 10 instances:
// snapshot in, sync done, in the in-memory kernel.
func BenchmarkOneFlip(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			kernel := ipvstest.New(ipvs.State{})
			h := newHarness(b, scaleConfig(n), kernel)
			h.d.log = hclog.NewNullLogger()
			h.snapshot2(scaleSnapshot(n, false, nil))
			h.untilNext()
			snaps := [2]catalog.Snapshot{
				scaleSnapshot(n, true, map[string]bool{"svc00000": true}),
				scaleSnapshot(n, false, map[string]bool{"svc00000": true}),
			}
			b.ResetTimer()
			for i := range b.N {
				h.snapshot2(snaps[i%2])
				h.untilNext()
			}
		})
	}
}

// BenchmarkReload is a reload among n services × 10 instances that edits
// one virtual service's scheduler: the new watch's first snapshot in,
// the sync that follows done, in the in-memory kernel.
func BenchmarkReload(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			kernel := ipvstest.New(ipvs.State{})
			h := newHarness(b, scaleConfig(n), kernel)
			h.d.log = hclog.NewNullLogger()
			snap := scaleSnapshot(n, false, nil)
			h.snapshot2(snap)
			h.untilNext()
			edited := strings.Replace(scaleConfig(n), "forwarding = \"gate\"\n", "forwarding = \"gate\"\n  scheduler  = \"rr\"\n", 1)
			cfgs := [2]*config.Config{mustConfig(b, edited), mustConfig(b, scaleConfig(n))}
			// The new watch's answers are its own, equal to the running
			// watch's.
			firsts := [2]catalog.Snapshot{scaleSnapshot(n, false, nil), scaleSnapshot(n, false, nil)}
			b.ResetTimer()
			for i := range b.N {
				h.l.reload(b.Context(), reloadRequest{cfg: cfgs[i%2], trigger: "bench"}, h.clock.Now())
				h.l.switchTo(firsts[i%2], h.clock.Now())
				h.untilNext()
			}
		})
	}
}
