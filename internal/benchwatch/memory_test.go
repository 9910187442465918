package benchwatch

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// memGoalMiB is issue 23's goal for lvs-sync's memory at 1,000 services ×
// 10 instances.
const memGoalMiB = 48

// TestMemory1kx10 runs the real `lvs-sync run -dry-run` against a real
// agent holding 1,000 services × 10 gate instances (each on another port
// than the virtual one, so each has a caveat), to its first complete sync
// and through a round of 200 edits (flips, weight edits, registrations and
// deregistrations), and reads its memory once it is quiet after each: it
// fails when the memory lvs-sync allocated passes issue 23's goal.
//
// What is held to the goal is the private part of the RSS (RssAnon and
// RssShmem: Go's heap, stacks and runtime), not VmRSS: VmRSS also counts
// the pages of the binary's code and read-only data the kernel maps in,
// shared page cache that no allocation of lvs-sync changes and that
// depends on the kernel. On this machine's 6.18 kernel, with the binary on
// ext4, every one of them is resident (about 28 MiB of a 40 MB binary,
// however few services) — the same binary run from tmpfs has 22 MiB of
// them — so VmRSS is that much above the private part. Both are logged.
func TestMemory1kx10(t *testing.T) {
	const services, per = 1000, 10
	agent := testconsul.Start(t)
	m := &catalogOf{c: agent.Client, services: services}
	t0 := time.Now()
	m.registerNodes(t)
	m.populate(t, per)
	t.Logf("registered %d × %d instances in %v", services, per, time.Since(t0).Round(time.Millisecond))

	proxy, err := NewProxy(agent.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	cfgPath := filepath.Join(dir, "lvs-sync.hcl")
	if err := os.WriteFile(cfgPath, []byte(config(services, proxy.Addr, freeAddr(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, bin, cfgPath, filepath.Join(dir, "lvs-sync.log"))
	r := &run{tb: t, p: p, proxy: proxy}
	pid := p.cmd.Process.Pid
	select {
	case <-p.firstSync:
	case <-time.After(2 * time.Minute):
		t.Fatal("no first sync in 2m")
	}
	t.Logf("first sync after %v", time.Since(p.started).Round(time.Millisecond))
	mem := map[string]procMem{}
	cpu := map[string]float64{}
	// read waits for the daemon to be quiet, then for its memory to come
	// under the goal, for settle at most: it returns the first sync's
	// memory a second after that sync, on its own timer, which a busy
	// machine may delay past the quiet. A daemon that stays over the goal
	// is read when settle is over.
	const settle = 5 * time.Second
	read := func(stage string) {
		r.quiet()
		m := memOf(t, pid)
		for deadline := time.Now().Add(settle); m.Private() > memGoalMiB && time.Now().Before(deadline); m = memOf(t, pid) {
			time.Sleep(100 * time.Millisecond)
		}
		mem[stage], cpu[stage] = m, float64(cpuTicks(t, pid))/clockTicks
	}
	read("first sync")

	// A round of edits, written at once. The daemon applies them in syncs
	// of more than 20 changes, which it logs as counts: what is waited for
	// is the count of changes applied, one for each edit.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 23))
	before := p.appliedTotal()
	const edits = 200
	for k, i := range rng.Perm(len(m.instances))[:edits] {
		in := m.instances[i]
		switch {
		case k < 100:
			in.passing = false
			must(t, m.setCheck(in))
		case k < 150:
			in.weight = 5
			must(t, m.setService(in))
		case k < 175:
			must(t, m.deregister(in))
		default:
			must(t, m.register(m.fresh(in.svc)))
		}
	}
	for deadline := time.Now().Add(time.Minute); p.appliedTotal()-before < edits; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes applied in 1m after %d edits", p.appliedTotal()-before, edits)
		}
	}
	read("edits")

	t.Logf("memory at %d × %d after the first sync: %v; after %d edits: %v", services, per, mem["first sync"], edits, mem["edits"])
	t.Logf("cpu to the first sync %.2fs, for the edits %.2fs", cpu["first sync"], cpu["edits"]-cpu["first sync"])
	for _, stage := range []string{"first sync", "edits"} {
		if got := mem[stage].Private(); got > memGoalMiB {
			t.Errorf("after the %s lvs-sync holds %.1f MiB of its own, over the goal of %d MiB", stage, got, memGoalMiB)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
