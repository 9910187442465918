package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
	"github.com/lvs-sync/lvs-sync/internal/testnomad"
)

// rollReal is a real of the director's table: its address and the Nomad
// registration it stands for (whose ID holds the allocation's).
type rollReal struct{ addr, instance string }

// rollTable is the reals of service "web" a director would pick for a new
// connection (weight > 0), as the running lvs-sync's /v1/status shows them.
func rollTable(apiAddr string) ([]rollReal, error) {
	var st status.View
	if err := getJSON(apiAddr, "/v1/status", &st); err != nil {
		return nil, err
	}
	if st.Synced.IsZero() {
		return nil, fmt.Errorf("not synced yet")
	}
	var reals []rollReal
	for _, s := range st.Services {
		if s.Name != "web" {
			continue
		}
		for _, r := range s.Reals {
			if r.Weight > 0 {
				reals = append(reals, rollReal{r.Address, r.InstanceID})
			}
		}
	}
	return reals, nil
}

// rollLoad sends requests, one connection each, to a real picked at
// random from a table, as a director schedules each new connection.
type rollLoad struct {
	requests, failures atomic.Int64
	mu                 sync.Mutex
	firstFailures      []string
}

func (l *rollLoad) run(stop <-chan struct{}, table func() []rollReal) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case <-stop:
			return
		default:
		}
		reals := table()
		if len(reals) == 0 {
			// No real to pick: a director would drop the SYN; not a request.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		r := reals[rand.IntN(len(reals))]
		l.requests.Add(1)
		resp, err := client.Get("http://" + r.addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		if err != nil {
			l.failures.Add(1)
			l.mu.Lock()
			if len(l.firstFailures) < 5 {
				l.firstFailures = append(l.firstFailures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), r.addr, err))
			}
			l.mu.Unlock()
		}
	}
}

// TestNomadRollingUpdateUnderLoad is issue 21's "a job update rolls with
// zero failed requests under load", the host way: `lvs-sync run -dry-run`
// (the in-memory kernel) and its status, not real IPVS traffic. A load
// generator stands in for the director: for each request it picks a real
// of weight > 0 from the running lvs-sync's /v1/status (refreshed every
// 75 ms) and sends the request to that real directly. Such a request fails
// only if lvs-sync kept a leaver at weight > 0 after its server stopped
// (past the job's shutdown_delay of 3 s), or added a joiner before its
// server answered. examples/web-nomad.nomad.hcl's three allocations
// (http check, shutdown_delay, update { max_parallel = 1 }) are rolled by
// `-var version=2`, which changes an env var and so replaces each one.
//
// A second generator uses the table as it was 5 s earlier (longer than the
// shutdown_delay): it keeps sending to leavers after their servers stopped,
// and its failures show that the first generator's zero could have been
// otherwise.
func TestNomadRollingUpdateUnderLoad(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("the example job serves HTTP with python3, which is not on PATH: %v", err)
	}
	iface, addr := testnomad.HostInterface(t)
	agent := testnomad.StartWith(t, "", testnomad.Options{NetworkInterface: iface})
	job := webNomadJob(t)
	if code, out := agent.CLI(t, "job", "run", "-detach", "-var", "command="+python, job); code != 0 {
		t.Fatalf("nomad job run: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "lvs-sync")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/lvs-sync/lvs-sync/cmd/lvs-sync").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lvs-sync: %v\n%s", err, out)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testconsul.FreePorts(t, 1)[0])
	cfg := writeConfig(t, fmt.Sprintf(`
api {
  address = %q
}
nomad {
  address = %q
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
  tags       = ["prod"]
  provider   = "nomad"
}
`, apiAddr, agent.Addr))
	logPath := filepath.Join(dir, "run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "-dry-run", "-config", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("lvs-sync run: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("lvs-sync run's log:\n%s", b)
		}
	}()

	type alloc struct {
		ID, ClientStatus, DesiredStatus string
		JobVersion                      uint64
	}
	allocs := func() []alloc {
		var as []alloc
		if err := agent.Get("/v1/job/web-nomad/allocations", &as); err != nil {
			t.Fatal(err)
		}
		return as
	}
	// serves reports whether the table is exactly the running allocations
	// of one job version, three of them, on the client's address.
	serves := func(reals []rollReal, version uint64) bool {
		var ids []string
		for _, a := range allocs() {
			if a.JobVersion == version && a.ClientStatus == "running" && a.DesiredStatus == "run" {
				ids = append(ids, a.ID)
			}
		}
		if len(ids) != 3 || len(reals) != 3 {
			return false
		}
		for _, r := range reals {
			if !strings.HasPrefix(r.addr, addr.String()+":") || !slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(r.instance, id) }) {
				return false
			}
		}
		return true
	}
	var before []rollReal
	testenv.WaitFor(t, "lvs-sync serves the three allocations of version 0", 90*time.Second, func() bool {
		before, err = rollTable(apiAddr)
		return err == nil && serves(before, 0)
	})

	// The tables: the latest, and their history for the stale generator.
	type snap struct {
		at    time.Time
		reals []rollReal
	}
	var (
		mu      sync.Mutex
		history = []snap{{time.Now(), before}}
	)
	const staleBy = 5 * time.Second
	fresh := func() []rollReal {
		mu.Lock()
		defer mu.Unlock()
		return history[len(history)-1].reals
	}
	stale := func() []rollReal {
		mu.Lock()
		defer mu.Unlock()
		cut := time.Now().Add(-staleBy)
		i := 0
		for i+1 < len(history) && !history[i+1].at.After(cut) {
			i++
		}
		return history[i].reals
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refreshErrs atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(75 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			reals, err := rollTable(apiAddr)
			if err != nil {
				refreshErrs.Add(1) // the last table stays, as a director's would
				continue
			}
			mu.Lock()
			history = append(history, snap{time.Now(), reals})
			mu.Unlock()
		}
	}()
	var load, staleLoad rollLoad
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); load.run(stop, fresh) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); staleLoad.run(stop, stale) }()
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	// Load before the update: the generators work.
	testenv.WaitFor(t, "the load generator's first 50 requests", 30*time.Second, func() bool { return load.requests.Load() >= 50 })

	start := time.Now()
	if code, out := agent.CLI(t, "job", "run", "-detach", "-var", "command="+python, "-var", "version=2", job); code != 0 {
		t.Fatalf("nomad job run -var version=2: exit %d\n%s", code, out)
	}
	testenv.WaitFor(t, "the update's deployment succeeds and lvs-sync serves its three allocations", 90*time.Second, func() bool {
		var d struct {
			Status     string
			JobVersion uint64
		}
		if err := agent.Get("/v1/job/web-nomad/deployment", &d); err != nil || d.JobVersion != 1 || d.Status != "successful" {
			return false
		}
		return serves(fresh(), 1)
	})
	took := time.Since(start)
	// Past the stale generator's lag, so that it saw every leaver.
	testenv.WaitFor(t, "the stale table catches up", 30*time.Second, func() bool { return serves(stale(), 1) })
	stopLoad()

	// Every allocation replaced: the three old ones stopped, three new.
	var old, running int
	for _, a := range allocs() {
		switch {
		case a.JobVersion == 0 && a.DesiredStatus == "stop" && a.ClientStatus != "running":
			old++
		case a.JobVersion == 1 && a.ClientStatus == "running":
			running++
		default:
			t.Errorf("allocation %s: version %d, desired %s, client %s", a.ID, a.JobVersion, a.DesiredStatus, a.ClientStatus)
		}
	}
	if old != 3 || running != 3 {
		t.Errorf("%d old allocations stopped and %d new running, want 3 and 3", old, running)
	}
	after, err := rollTable(apiAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range after {
		if slices.Contains(before, r) {
			t.Errorf("real %s (%s) of version 0 still has a weight after the rollout", r.addr, r.instance)
		}
	}

	n, failed := load.requests.Load(), load.failures.Load()
	sn, sfailed := staleLoad.requests.Load(), staleLoad.failures.Load()
	t.Logf("rollout: %d ms from the update to lvs-sync serving the three new allocations", took.Milliseconds())
	t.Logf("load (fresh table): %d requests, %d failed; stale table (%v behind): %d requests, %d failed; %d status reads failed",
		n, failed, staleBy, sn, sfailed, refreshErrs.Load())
	if failed != 0 {
		t.Errorf("%d of %d requests to reals the director would have picked failed, first: %v", failed, n, load.firstFailures)
	}
	if n < 200 {
		t.Errorf("only %d requests during the rollout: not a load", n)
	}
	if sfailed == 0 {
		t.Errorf("the stale generator (%v behind) had no failure in %d requests: the test could not tell a late drain", staleBy, sn)
	} else {
		t.Logf("stale table, first failures: %v", staleLoad.firstFailures)
	}
}
