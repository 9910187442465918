package nomad_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/catalog/nomad"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
)

// jobModel is what the test asked of one job: its service, count and
// version tag.
type jobModel struct {
	service string
	count   int
	version int
}

func (j *jobModel) tags(job string) []string {
	return []string{"job-" + job, "v" + strconv.Itoa(j.version)}
}

// TestNoChangeMissed makes random changes of every kind a Nomad service
// sees (registrations and deregistrations by scaling, check flips,
// allocation stops and their replacements, in-place tag edits) on a real
// agent, in bursts, and after each burst requires the watch's last
// snapshot to equal a fresh Fetch once Nomad shows what the test asked.
// The backstop resync is an hour away: the feed and the check polls alone
// must see everything.
func TestNoChangeMissed(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("LVS_SYNC_SEED"); env != "" {
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("LVS_SYNC_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay the same changes with LVS_SYNC_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	c := startCluster(t, testnomad.Options{})
	// Two services; "rnd1" is registered by two jobs.
	jobs := map[string]*jobModel{"rnd0": {service: "rnd0", count: 2}, "rnd1": {service: "rnd1", count: 1}, "rnd1b": {service: "rnd1", count: 2}}
	jobNames := slices.Sorted(func(yield func(string) bool) {
		for j := range jobs {
			if !yield(j) {
				return
			}
		}
	})
	for _, j := range jobNames {
		c.run(j, jobs[j].service, jobs[j].count, jobs[j].tags(j)...)
	}
	names := []string{"absent", "rnd0", "rnd1"}
	failing := map[string]bool{} // allocations whose check the test made fail
	stopped := map[string]bool{} // allocations the test stopped

	src := c.source(t, nomad.Options{MaxConnections: 4, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := follow(src.Watch(ctx, names, nil))
	fetcher := c.source(t, nomad.Options{})

	// settled reports whether a fetch shows what the test asked: each
	// job's count of instances with its tags, the failing ones critical
	// and only they, no stopped allocation.
	settled := func(s catalog.Snapshot) string {
		for _, j := range jobNames {
			m := jobs[j]
			n := 0
			for _, in := range s.Instances(m.service) {
				if !slices.Contains(in.Tags, "job-"+j) {
					continue
				}
				n++
				switch {
				case !slices.Equal(in.Tags, m.tags(j)):
					return fmt.Sprintf("%s: tags %v, want %v", in.Allocation, in.Tags, m.tags(j))
				case stopped[in.Allocation]:
					return fmt.Sprintf("%s: stopped, still registered", in.Allocation)
				case failing[in.Allocation] != (in.Status == catalog.Critical):
					return fmt.Sprintf("%s: %s, failing %v", in.Allocation, in.Status, failing[in.Allocation])
				}
			}
			if n != m.count {
				return fmt.Sprintf("job %s: %d instances, want %d", j, n, m.count)
			}
		}
		return ""
	}
	var want catalog.Snapshot
	converge := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		restop := time.Now().Add(5 * time.Second)
		for {
			var err error
			if want, err = fetcher.Fetch(context.Background(), names); err != nil {
				t.Fatal(err)
			}
			why := settled(want)
			if why == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: nomad did not show the changes in 30s: %s", what, why)
			}
			if time.Now().After(restop) {
				// Seen once in a few dozen runs: a stop sent right after a
				// scale of the same job left the allocation running (its
				// desired status still "run"). That is Nomad's business, not
				// the source's: ask again.
				restop = time.Now().Add(5 * time.Second)
				for _, svc := range want.Services {
					for _, in := range svc.Instances {
						if stopped[in.Allocation] {
							var a struct{ DesiredStatus, ClientStatus string }
							_ = c.agent.Get("/v1/allocation/"+in.Allocation, &a)
							t.Logf("%s: stopped allocation %s still registered after 5s (desired %s, client %s): stopping it again",
								what, in.Allocation, a.DesiredStatus, a.ClientStatus)
							c.stopAlloc(in.Allocation)
						}
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		deadline = time.Now().Add(5 * time.Second)
		for {
			got, n := latest.get()
			diffs := compare(got, want)
			if len(diffs) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 5s the last of %d snapshots differs from a fresh fetch:\n%s", what, n, strings.Join(diffs, "\n"))
			}
			time.Sleep(20 * time.Millisecond)
			if want, _ = fetcher.Fetch(context.Background(), names); settled(want) != "" {
				t.Fatalf("%s: nomad moved on its own: %s", what, settled(want))
			}
		}
	}
	converge("start")

	const bursts, burstLen = 14, 4
	kinds := map[string]int{}
	for b := range bursts {
		for range burstLen {
			j := jobNames[rng.IntN(len(jobNames))]
			m := jobs[j]
			var allocs []string
			for _, in := range want.Instances(m.service) {
				if slices.Contains(in.Tags, "job-"+j) && !stopped[in.Allocation] {
					allocs = append(allocs, in.Allocation)
				}
			}
			k := []int{0, 0, 1, 2, 2, 2, 3, 4}[rng.IntN(8)] // flips the most common
			switch {
			case k == 0 && m.count < 3 || k == 1 && m.count == 0:
				kinds["register (scale up)"]++
				m.count++
				t.Logf("burst %d: scale %s to %d", b, j, m.count)
				c.scale(j, m.count)
			case k == 1:
				kinds["deregister (scale down)"]++
				m.count--
				t.Logf("burst %d: scale %s to %d", b, j, m.count)
				c.scale(j, m.count)
				want.Services = nil // which allocation goes is Nomad's choice: pick from the next fetch
			case k == 2 && len(allocs) > 0:
				kinds["check flip"]++
				a := allocs[rng.IntN(len(allocs))]
				failing[a] = !failing[a]
				t.Logf("burst %d: %s of %s failing %v", b, a, j, failing[a])
				c.setFailing(a, failing[a])
			case k == 3 && len(allocs) > 0:
				kinds["allocation stop"]++
				a := allocs[rng.IntN(len(allocs))]
				stopped[a] = true
				t.Logf("burst %d: stop %s of %s", b, a, j)
				delete(failing, a)
				c.stopAlloc(a)
				want.Services = nil
			default:
				kinds["tag edit"]++
				m.version++
				t.Logf("burst %d: %s tags v%d", b, j, m.version)
				c.run(j, m.service, m.count, m.tags(j)...)
			}
			if want.Services == nil {
				break // the next change needs to know the allocations
			}
			if rng.IntN(3) == 0 {
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond) // let some reads and polls be out mid-change
			}
		}
		// Allocations a scale-down stopped are no longer the test's to flip.
		converge(fmt.Sprintf("burst %d", b))
		for a := range failing {
			if !hasAlloc(want, a) {
				delete(failing, a)
			}
		}
	}
	_, n := latest.get()
	t.Logf("changes: %v; %d snapshots, each burst's last equal to a fresh fetch", kinds, n)
}

func hasAlloc(s catalog.Snapshot, alloc string) bool {
	for _, svc := range s.Services {
		for _, in := range svc.Instances {
			if in.Allocation == alloc {
				return true
			}
		}
	}
	return false
}
