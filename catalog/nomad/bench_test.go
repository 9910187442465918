package nomad_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/nomad"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
)

// BenchmarkNomad runs N allocations of one service with an http check
// (interval 1 s) on a dev agent and watches them with the default
// options; it prints
//
//	bench nomad: allocations=N flip_p99_ms=… requests_per_s_idle=… conns_max=…
//
// flip_p99_ms: from a check made to fail (or pass again) to the watch's
// snapshot showing it, the check's own interval included;
// requests_per_s_idle: every query of the source while nothing changes;
// conns_max: the most connections it held at once (budget 8).
//
// N is $LVS_SYNC_NOMAD_ALLOCS, default 50 (~45 s): each allocation of a
// raw_exec task costs the dev client a logmon and an executor process
// besides the task (~40 MB together, and CPU for its check), which is what
// bounds N on one machine, not the source; 200 took 3 minutes here. From
// 50 allocations on, the default CheckRate (100/s) bites, so the requests
// a second are those 1,000 allocations would cost; only the flip delay
// grows, by N/CheckRate.
func BenchmarkNomad(b *testing.B) {
	n := 50
	if env := os.Getenv("LVS_SYNC_NOMAD_ALLOCS"); env != "" {
		var err error
		if n, err = strconv.Atoi(env); err != nil || n < 1 {
			b.Fatalf("LVS_SYNC_NOMAD_ALLOCS=%q: want a count", env)
		}
	}
	c := startCluster(b, testnomad.Options{})
	c.run("bench", "bench", n, "prod")
	fetcher := c.source(b, nomad.Options{})
	testenv.WaitFor(b, fmt.Sprintf("%d passing allocations", n), 5*time.Minute, func() bool {
		s, err := fetcher.Fetch(context.Background(), []string{"bench"})
		return err == nil && allPassing(s.Instances("bench"), n)
	})

	// The agent's own load (its client runs the n checks) before the
	// source asks anything, to tell the source's share apart.
	const idle = 5 * time.Second
	cpu0, t0 := cpuOf(b, c.agent), time.Now()
	time.Sleep(idle) // a measuring window, not a wait for a condition
	basePct := (cpuOf(b, c.agent) - cpu0).Seconds() / time.Since(t0).Seconds() * 100

	src := c.source(b, nomad.Options{})
	conns := nomad.CountConns(src)
	obs := &queryCount{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(src.Watch(ctx, []string{"bench"}, obs))
	testenv.WaitFor(b, "the watch's first snapshot", time.Minute, func() bool {
		s, _ := latest.get()
		return allPassing(s.Instances("bench"), n)
	})

	// Idle: what the source asks while nothing changes.
	agentCPU := cpuOf(b, c.agent)
	before, start := obs.all.Load(), time.Now()
	time.Sleep(idle) // a measuring window, not a wait for a condition
	perSec := float64(obs.all.Load()-before) / time.Since(start).Seconds()
	cpuPct := (cpuOf(b, c.agent) - agentCPU).Seconds() / time.Since(start).Seconds() * 100

	// Flips: one allocation at a time fails, then passes again.
	snap, _ := latest.get()
	allocs := make([]string, 0, n)
	for _, in := range snap.Instances("bench") {
		allocs = append(allocs, in.Allocation)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	var flips []time.Duration
	for range 10 {
		a := allocs[rng.IntN(len(allocs))]
		for _, failing := range []bool{true, false} {
			want := catalog.Passing
			if failing {
				want = catalog.Critical
			}
			c.setFailing(a, failing)
			flips = append(flips, testenv.WaitFor(b, "a flip seen", 60*time.Second, func() bool {
				s, _ := latest.get()
				in := instance(s, "bench", a)
				return in != nil && in.Status == want
			}))
		}
	}
	slices.Sort(flips)
	p99 := flips[(len(flips)*99+99)/100-1]
	b.Logf("flips (ms): %v; agent cpu while idle %.0f%% of a core, %.0f%% before the source asked anything: %.2f ms of agent cpu per query; check reads by the source at most %d/s, each allocation every %v",
		ms(flips), cpuPct, basePct, (cpuPct-basePct)*10/perSec, nomad.DefaultCheckRate,
		max(nomad.DefaultCheckInterval, time.Duration(float64(n)/nomad.DefaultCheckRate*float64(time.Second))))
	fmt.Printf("bench nomad: allocations=%d flip_p99_ms=%d requests_per_s_idle=%.0f conns_max=%d\n",
		n, p99.Milliseconds(), perSec, conns.Most())
}

// queryCount is an Observer counting every query.
type queryCount struct{ all atomic.Int64 }

func (q *queryCount) ObserveQuery(string, uint64, error) { q.all.Add(1) }

func ms(ds []time.Duration) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Milliseconds()
	}
	return out
}

// cpuOf is the CPU time the agent's process used so far (user + system),
// found by its config path on its command line.
func cpuOf(b *testing.B, a *testnomad.Agent) time.Duration {
	b.Helper()
	conf := filepath.Join(a.Dir, "agent.hcl")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmd), conf) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	b.Fatal("the agent's process not found")
	return 0
}
