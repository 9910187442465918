package benchwatch

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// BenchmarkAgentReads is the agent alone: four readers (the watcher's
// budget beside its feeds) asking /v1/health/service/NAME of random
// services for 10 s, no lvs-sync running. It tells how fast a sweep can
// go at best, and what each read costs the agent; directly, and through
// the counting proxy, to show what the proxy costs.
func BenchmarkAgentReads(b *testing.B) {
	for _, services := range sizes(b) {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			agent := testconsul.Start(b)
			m := &catalogOf{c: agent.Client, services: services}
			m.registerNodes(b)
			m.populate(b, 10)
			time.Sleep(2 * time.Second) // let the agent settle after the writes
			proxy, err := NewProxy(agent.HTTPAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer proxy.Close()
			pid := agentPID(b, agent.HTTPAddr)
			for _, via := range []string{"direct", "proxy"} {
				conf := api.DefaultConfig()
				conf.Address, conf.Token, conf.TokenFile = agent.HTTPAddr, "", ""
				if via == "proxy" {
					conf.Address = proxy.Addr
				}
				c, err := api.NewClient(conf)
				if err != nil {
					b.Fatal(err)
				}
				var reads atomic.Int64
				var wg sync.WaitGroup
				stop := time.Now().Add(10 * time.Second)
				cpu0, at0 := cpuTicks(b, pid), time.Now()
				for g := range 4 {
					wg.Go(func() {
						for k := g; time.Now().Before(stop); k += 4 {
							if _, _, err := c.Health().Service(serviceName(k%services), "", false, nil); err != nil {
								b.Error(err)
								return
							}
							reads.Add(1)
						}
					})
				}
				wg.Wait()
				secs := time.Since(at0).Seconds()
				cpu := float64(cpuTicks(b, pid)-cpu0) / clockTicks
				n := reads.Load()
				fmt.Printf("bench agent reads: services=%d instances=10 readers=4 via=%s reads_per_s=%s agent_cpu_ms_per_read=%s agent_cpu_pct=%s\n",
					services, via, perSecond(n, secs), strconv.FormatFloat(cpu*1000/float64(n), 'f', 2, 64),
					strconv.FormatFloat(cpu/secs*100, 'f', 1, 64))
			}
		})
	}
}
