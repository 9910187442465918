package render

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// benchInput is 1,000 virtual services, each over its own Consul service of
// 10 instances with a mix of statuses, the size the issue asks about.
func benchInput(services, instances int) (*config.Config, catalog.Snapshot) {
	cfg := &config.Config{}
	snap := catalog.Snapshot{Services: map[string]*catalog.Service{}}
	statuses := []catalog.Health{catalog.Passing, catalog.Passing, catalog.Passing, catalog.Warning, catalog.Critical}
	for i := range services {
		name := fmt.Sprintf("svc%04d", i)
		fwd := []lvs.Forward{lvs.Masq, lvs.Route, lvs.Tunnel}[i%3]
		cfg.VirtualServices = append(cfg.VirtualServices, &config.VirtualService{
			Name: name, Service: name, Protocol: lvs.TCP, Scheduler: "wlc", Forwarding: fwd,
			Address:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 10, byte(i >> 8), byte(i)}), 80),
			Quiescent: i%2 == 0, Tags: []string{"prod"},
		})
		svc := &catalog.Service{Name: name, Index: uint64(i + 1)}
		for j := range instances {
			// masq translates the port; gate and ipip instances listen on
			// the virtual port, as a working config has them.
			port := 80
			if fwd == lvs.Masq {
				port = 8000 + j
			}
			svc.Instances = append(svc.Instances, &catalog.Instance{
				ID: fmt.Sprintf("%s-%d", name, j), Node: fmt.Sprintf("node%d", j),
				Address: fmt.Sprintf("10.%d.%d.%d", 100+j, i>>8, i&0xff), Port: port,
				Tags: []string{"prod", "v2"}, Weights: catalog.Weights{Passing: 10, Warning: 1},
				Status: statuses[(i+j)%len(statuses)],
			})
		}
		snap.Services[name] = svc
	}
	return cfg, snap
}

func BenchmarkRender1000x10(b *testing.B) {
	cfg, snap := benchInput(1000, 10)
	b.ReportAllocs()
	for b.Loop() {
		res := Render(cfg, snap)
		if len(res.State) != 1000 {
			b.Fatalf("rendered %d services", len(res.State))
		}
	}
}

// BenchmarkUpdateAcrossReload is a reload of 10,000 virtual services × 10
// that edits one: the new config's definitions compared with the old's,
// one rendered, the others' entries kept. Against a full render
// (BenchmarkRenderAll10000x10), what the reload did before.
func BenchmarkUpdateAcrossReload(b *testing.B) {
	cfg, snap := benchInput(10000, 10)
	prev := Render(cfg, snap)
	next, _ := benchInput(10000, 10) // alike, but another config
	next.VirtualServices[0].Scheduler = "rr"
	none := func(*config.VirtualService) bool { return false }
	b.ReportAllocs()
	for b.Loop() {
		res := Update(prev, next, snap, History{}, none)
		if len(res.Rendered) != 1 || len(res.State) != 10000 {
			b.Fatalf("rendered %d services, state %d", len(res.Rendered), len(res.State))
		}
	}
}

func BenchmarkRenderAll10000x10(b *testing.B) {
	cfg, snap := benchInput(10000, 10)
	b.ReportAllocs()
	for b.Loop() {
		if res := Render(cfg, snap); len(res.State) != 10000 {
			b.Fatalf("rendered %d services", len(res.State))
		}
	}
}
