package benchwatch

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/benchgoal"
	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// The bench's knobs: how many of each measurement, and the windows.
const (
	flips        = 50
	changesEach  = 20 // registrations, deregistrations and weight edits each
	window       = 30 * time.Second
	busyRate     = 10 // changes a second in the busy window
	deploys      = 100
	deployMaxSvc = 1000 // rolling deploys only up to this size: each write sweeps every service
	quietFor     = 2 * time.Second
)

// BenchmarkWatch runs the real `lvs-sync run -dry-run` against a real,
// default `consul agent -dev` through a counting proxy, and prints one
// `bench watch:` line per size with the goals beside it. It runs once
// whatever b.N (`make bench` gives it -benchtime 1x).
// LVS_SYNC_BENCH_WATCH_SIZES ("1000,10000") picks other sizes.
func BenchmarkWatch(b *testing.B) {
	for _, services := range sizes(b) {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) { benchWatch(b, services, 10) })
	}
}

// sizes are the numbers of services to bench: 1,000 and 10,000, or
// those of LVS_SYNC_BENCH_WATCH_SIZES ("100" while working on the bench).
func sizes(b *testing.B) []int {
	env := os.Getenv("LVS_SYNC_BENCH_WATCH_SIZES")
	if env == "" {
		return []int{1000, 10000}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			b.Fatalf("LVS_SYNC_BENCH_WATCH_SIZES=%q: want numbers of services, at least 2", env)
		}
		out = append(out, n)
	}
	return out
}

// errMissed is a kernel change that never showed in lvs-sync's log.
var errMissed = errors.New("not applied in time")

// run is one size's bench: the agent, the proxy, lvs-sync and the
// figures gathered.
type run struct {
	tb       testing.TB
	m        *catalogOf
	p        *process
	proxy    *Proxy
	rng      *rand.Rand
	timeout  time.Duration
	live     []*instance // instances the flips and changes may pick
	pending  map[*instance]bool
	fields   []string
	failures []string
}

func (r *run) field(k, v string) { r.fields = append(r.fields, k+"="+v) }

func benchWatch(b *testing.B, services, per int) {
	agent := testconsul.Start(b)
	seed := uint64(time.Now().UnixNano())
	r := &run{tb: b, m: &catalogOf{c: agent.Client, services: services}, rng: rand.New(rand.NewPCG(seed, 2)),
		timeout: 10 * time.Second * time.Duration(max(1, services/1000)), pending: map[*instance]bool{}}
	b.Logf("seed %d", seed)

	t0 := time.Now()
	r.m.registerNodes(b)
	r.m.populate(b, per)
	b.Logf("registered %d × %d instances through /v1/txn in %v", services, per, time.Since(t0).Round(time.Millisecond))
	deployed := services - 1 // its instances are left to the rolling deploys
	for _, in := range r.m.instances {
		if in.svc != deployed {
			r.live = append(r.live, in)
		}
	}

	var err error
	r.proxy, err = NewProxy(agent.HTTPAddr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.proxy.Close() })
	dir := b.TempDir()
	bin := buildBinary(b, dir)
	apiAddr := freeAddr(b)
	cfgPath := filepath.Join(dir, "lvs-sync.hcl")
	if err := os.WriteFile(cfgPath, []byte(config(services, r.proxy.Addr, apiAddr)), 0o644); err != nil {
		b.Fatal(err)
	}
	logPath := filepath.Join(dir, "lvs-sync.log")
	r.p = startProcess(b, bin, cfgPath, logPath)
	defer func() {
		if b.Failed() {
			log, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			b.Logf("lvs-sync's first warnings: %q; its log's last lines:\n%s", r.p.warnings,
				strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	}()
	pid := r.p.cmd.Process.Pid

	// First complete sync: every real of every service in one apply.
	select {
	case <-r.p.firstSync:
	case <-time.After(10 * time.Minute):
		b.Fatalf("no first sync in 10m")
	}
	r.p.mu.Lock()
	first, firstN := r.p.applied[0].Sub(r.p.started), r.p.appliedN[0]
	r.p.mu.Unlock()
	if want := services * (1 + per); firstN != want {
		r.fail("first sync applied %d changes, want %d (a service and %d reals each)", firstN, want, per)
	}
	r.field("first_sync_s", strconv.FormatFloat(first.Seconds(), 'f', 2, 64))
	r.quiet()

	// Flips, one at a time: down, then back up.
	var flipTimes []time.Duration
	for range flips / 2 {
		in := r.pick(false)
		for _, passing := range []bool{false, true} {
			d, err := r.flip(in, passing)
			if err != nil {
				r.fail("%v", err)
			}
			flipTimes = append(flipTimes, d)
			r.pause()
		}
	}
	b.Logf("flips, sorted (ms): %s", sortedMs(flipTimes))
	r.field("flip_p50_ms", ms(percentile(flipTimes, 0.5)))
	r.field("flip_p99_ms", ms(percentile(flipTimes, 0.99)))

	// Registrations, deregistrations and weight edits, in random order.
	kinds := slices.Repeat([]string{"register", "deregister", "weight"}, changesEach)
	r.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	byKind := map[string][]time.Duration{}
	var all []time.Duration
	for _, kind := range kinds {
		d, err := r.change(kind)
		if err != nil {
			r.fail("%v", err)
		}
		byKind[kind] = append(byKind[kind], d)
		all = append(all, d)
		r.pause()
	}
	b.Logf("changes, sorted (ms): %s", sortedMs(all))
	r.field("change_p99_ms", ms(percentile(all, 0.99)))
	changeFields := []string{"change_p50_ms=" + ms(percentile(all, 0.5))}
	for _, kind := range []string{"register", "deregister", "weight"} {
		changeFields = append(changeFields, kind+"_p99_ms="+ms(percentile(byKind[kind], 0.99)))
	}

	// Idle: nothing changes for a window, once the sweeps the last changes
	// started are done (settle_s: how long that took).
	settling := time.Now()
	r.quiet()
	settle := strconv.FormatFloat((time.Since(settling) - quietFor).Seconds(), 'f', 1, 64)
	c0, cpu0, at0 := r.proxy.Counts(), cpuTicks(b, pid), time.Now()
	time.Sleep(window)
	c1, cpu1, at1 := r.proxy.Counts(), cpuTicks(b, pid), time.Now()
	idle, idleFor := c1.Sub(c0), at1.Sub(at0).Seconds()
	cpuPct := float64(cpu1-cpu0) / clockTicks / idleFor * 100
	rss := rssMiB(b, pid)
	r.field("conns_max", "") // filled in at the end
	r.field("idle_cpu_pct", strconv.FormatFloat(cpuPct, 'f', 2, 64))
	r.field("rss_mib", strconv.FormatFloat(rss, 'f', 1, 64))
	// The private part (RssAnon + RssShmem): VmRSS less the binary's
	// file-backed pages, what TestMemory1kx10 holds (see memory_test.go).
	r.field("private_mib", strconv.FormatFloat(memOf(b, pid).Private(), 'f', 1, 64))
	r.field("req_per_s_idle", perSecond(idle.Requests, idleFor))

	// Busy: busyRate changes a second, flips and weight edits alternately;
	// the agent's CPU beside lvs-sync's says which side the time goes to.
	agentPid := agentPID(b, agent.HTTPAddr)
	cpuB0, agentB0 := cpuTicks(b, pid), cpuTicks(b, agentPid)
	busy, busyFor, busyFlips, busyEdits := r.busy()
	cpuB1, agentB1 := cpuTicks(b, pid), cpuTicks(b, agentPid)
	r.fields = append(r.fields, changeFields...)
	r.field("settle_s", settle)
	r.field("req_per_s_busy", perSecond(busy.Requests, busyFor))
	r.field("bytes_per_s_idle", perSecond(idle.BytesUp+idle.BytesDown, idleFor))
	r.field("bytes_per_s_busy", perSecond(busy.BytesUp+busy.BytesDown, busyFor))
	r.field("busy_flip_p99_ms", ms(percentile(busyFlips, 0.99)))
	r.field("busy_weight_p99_ms", ms(percentile(busyEdits, 0.99)))
	r.field("busy_cpu_pct", strconv.FormatFloat(float64(cpuB1-cpuB0)/clockTicks/busyFor*100, 'f', 1, 64))
	r.field("agent_busy_cpu_pct", strconv.FormatFloat(float64(agentB1-agentB0)/clockTicks/busyFor*100, 'f', 1, 64))
	b.Logf("requests by path, busy window: %v", busy.ByPath)

	// Reloading: flips, one at a time, while the same config is reloaded
	// over and over (SIGHUP).
	reloadFlips, reloads := r.reloading()
	b.Logf("flips while reloading, sorted (ms): %s", sortedMs(reloadFlips))
	r.field("reload_flip_p99_ms", ms(percentile(reloadFlips, 0.99)))
	r.field("reloads", strconv.Itoa(reloads))

	// Rolling deploys of one service: RSS and heap before and after.
	if services <= deployMaxSvc {
		r.deploys(deployed, per, apiAddr)
	}

	counts := r.proxy.Counts()
	r.p.stop(b)
	for i, f := range r.fields {
		if f == "conns_max=" {
			r.fields[i] = "conns_max=" + strconv.FormatInt(counts.Most, 10)
		}
	}
	r.field("http_429", strconv.FormatInt(counts.TooMany, 10))
	r.field("requests", strconv.FormatInt(counts.Requests, 10))
	r.field("conns_total", strconv.FormatInt(counts.Conns, 10))
	r.field("conns_closed_by_agent", strconv.FormatInt(counts.AgentClosed, 10))
	if counts.Most > 8 {
		r.fail("%d connections to the agent at once, budget 8", counts.Most)
	}
	if counts.TooMany != 0 {
		r.fail("%d answers 429 from the agent", counts.TooMany)
	}
	_, warnings := r.p.counts()
	for _, w := range warnings {
		if strings.Contains(w, "consul query failed") {
			r.fail("lvs-sync warned: %s", w)
		}
	}

	line := fmt.Sprintf("bench watch: services=%d instances=%d %s", services, per, strings.Join(r.fields, " "))
	fmt.Println(line)
	// issue 23's goals for this size (internal/benchgoal), met or MISSED.
	if v := benchgoal.Verdicts(line); v != "" {
		fmt.Printf("bench watch goals: services=%d %s\n", services, v)
	}
	for _, f := range r.failures {
		b.Error(f)
	}
}

func (r *run) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func perSecond(n int64, secs float64) string {
	return strconv.FormatFloat(float64(n)/secs, 'f', 2, 64)
}

// quiet waits until lvs-sync has logged no kernel change and sent the
// agent no request for quietFor: a sweep still under way after the last
// change is not idle.
func (r *run) quiet() {
	last, _ := r.p.counts()
	lastReq := r.proxy.Counts().Requests
	since := time.Now()
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n, _ := r.p.counts()
		req := r.proxy.Counts().Requests
		if n != last || req != lastReq {
			last, lastReq, since = n, req, time.Now()
		}
		if time.Since(since) >= quietFor {
			return
		}
	}
	r.tb.Fatalf("lvs-sync never went quiet for %v", quietFor)
}

// pause lets 250–350 ms pass between two measured changes, more than a
// feed's rate limit (MinInterval plus jitter, at most 200 ms), so that
// each change is timed on its own; the busy window times them packed.
func (r *run) pause() { time.Sleep(time.Duration(250+r.rng.IntN(100)) * time.Millisecond) }

// pick returns a random live instance with nothing pending, passing (or,
// with anyState, in any state).
func (r *run) pick(anyState bool) *instance {
	for {
		in := r.live[r.rng.IntN(len(r.live))]
		if !r.pending[in] && (anyState || in.passing) {
			return in
		}
	}
}

// measure makes a change with write, and waits for the kernel change of
// in's real that want accepts: the time from write's return to the log
// line (0 if the line came first).
func (r *run) measure(in *instance, what string, write func() error, want func(kernelChange) bool) (time.Duration, error) {
	ch := r.p.expect("tcp://"+vip(in.svc), in.real(), want)
	if err := write(); err != nil {
		r.tb.Fatal(err)
	}
	wrote := time.Now()
	select {
	case at := <-ch:
		return max(0, at.Sub(wrote)), nil
	case <-time.After(r.timeout):
		return r.timeout, fmt.Errorf("%s of %s (%s): %w in %v", what, in.id, in.real(), errMissed, r.timeout)
	}
}

// gone and back are what a real leaving and coming back looks like.
func gone(c kernelChange) bool { return c.kind == "delete real" || c.weight == 0 }
func back(w int) func(kernelChange) bool {
	return func(c kernelChange) bool { return c.kind != "delete real" && c.weight == w }
}

// flip sets in's check passing or critical and times its effect.
func (r *run) flip(i *instance, passing bool) (time.Duration, error) {
	i.passing = passing
	want := gone
	if passing {
		want = back(i.weight)
	}
	return r.measure(i, "flip", func() error { return r.m.setCheck(i) }, want)
}

// change makes one registration, deregistration or weight edit.
func (r *run) change(kind string) (time.Duration, error) {
	switch kind {
	case "register":
		i := r.m.fresh(r.live[r.rng.IntN(len(r.live))].svc)
		d, err := r.measure(i, kind, func() error { return r.m.register(i) }, back(i.weight))
		r.live = append(r.live, i)
		return d, err
	case "deregister":
		i := r.pick(false)
		r.live = slices.DeleteFunc(r.live, func(x *instance) bool { return x == i })
		return r.measure(i, kind, func() error { return r.m.deregister(i) }, gone)
	default:
		i := r.pick(false)
		i.weight = i.weight%9 + 2
		return r.measure(i, "weight edit", func() error { return r.m.setService(i) }, back(i.weight))
	}
}

// busy makes busyRate changes a second for a window, flips and weight
// edits alternately, each timed without waiting for it; it returns the
// proxy's counts over the window and the latencies.
func (r *run) busy() (Counts, float64, []time.Duration, []time.Duration) {
	type result struct {
		flip bool
		d    time.Duration
		err  error
	}
	results := make(chan result, int(window.Seconds())*busyRate)
	c0, at0 := r.proxy.Counts(), time.Now()
	tick := time.NewTicker(time.Second / busyRate)
	sent := 0
	for stop := time.After(window); ; {
		select {
		case <-tick.C:
		case <-stop:
			tick.Stop()
			goto done
		}
		flip := sent%2 == 0
		sent++
		i := r.pick(flip)
		r.pending[i] = true
		var write func() error
		want := gone
		if flip {
			i.passing = !i.passing
			write = func() error { return r.m.setCheck(i) }
			if i.passing {
				want = back(i.weight)
			}
		} else {
			i.weight = i.weight%9 + 2
			write, want = func() error { return r.m.setService(i) }, back(i.weight)
		}
		ch := r.p.expect("tcp://"+vip(i.svc), i.real(), want)
		if err := write(); err != nil {
			r.tb.Fatal(err)
		}
		wrote := time.Now()
		go func() {
			select {
			case at := <-ch:
				results <- result{flip, max(0, at.Sub(wrote)), nil}
			case <-time.After(r.timeout):
				results <- result{flip, r.timeout, fmt.Errorf("busy change of %s: %w in %v", i.id, errMissed, r.timeout)}
			}
		}()
	}
done:
	c1, at1 := r.proxy.Counts(), time.Now()
	var flips, edits []time.Duration
	for range sent {
		res := <-results
		if res.err != nil {
			r.fail("%v", res.err)
		}
		if res.flip {
			flips = append(flips, res.d)
		} else {
			edits = append(edits, res.d)
		}
	}
	clear(r.pending)
	r.quiet()
	return c1.Sub(c0), at1.Sub(at0).Seconds(), flips, edits
}

// reloading flips checks one at a time, down and back up, for a window
// while the config is reloaded: SIGHUP, and again as soon as the reload
// ends, so that one is always under way (the new config's watch reads
// its services beside the running one, then takes over with a sync of
// everything). It returns the flips' latencies and how many reloads took
// over; one given up is a failure of the run.
func (r *run) reloading() ([]time.Duration, int) {
	ended := r.p.onReload()
	hup := func() {
		if err := r.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			r.tb.Fatal(err)
		}
	}
	took := 0
	end := func(ok bool) {
		if ok {
			took++
		} else {
			r.fail("a reload of the same config was given up (config reload failed)")
		}
	}
	hup()
	var ds []time.Duration
	for stop := time.Now().Add(window); time.Now().Before(stop); {
		in := r.pick(false)
		for _, passing := range []bool{false, true} {
			d, err := r.flip(in, passing)
			if err != nil {
				r.fail("while reloading: %v", err)
			}
			ds = append(ds, d)
			select {
			case ok := <-ended:
				end(ok)
				hup()
			default:
			}
			r.pause()
		}
	}
	// The last reload's end, so that the next window starts quiet.
	select {
	case ok := <-ended:
		end(ok)
	case <-time.After(2 * time.Minute):
		r.fail("the last reload never ended")
	}
	r.quiet()
	return ds, took
}

// deploys rolls service svc deploys times: 10 new instances registered
// in one transaction, then the 10 old ones deregistered in another, each
// step waited for in the kernel. RSS and Go heap are read before the
// first, after the first and after the last.
func (r *run) deploys(svc, per int, apiAddr string) {
	old := slices.DeleteFunc(slices.Clone(r.m.instances), func(in *instance) bool { return in.svc != svc })
	rssBefore, heapBefore := rssMiB(r.tb, r.p.cmd.Process.Pid), heapInuse(r.tb, apiAddr)
	var rss1, heap1 float64
	var adds, dels []time.Duration
	for k := range deploys {
		next := make([]*instance, per)
		for j := range next {
			next[j] = r.m.fresh(svc)
		}
		add, ok1 := r.step(next, func() error { return r.m.txnSet(next) }, back(1))
		del, ok2 := r.step(old, func() error { return r.m.txnDelete(old) }, gone)
		if !ok1 || !ok2 {
			r.fail("rolling deploy %d of %s not applied in %v", k+1, serviceName(svc), r.timeout)
			return
		}
		adds, dels = append(adds, add), append(dels, del)
		old = next
		if k == 0 {
			r.quiet()
			rss1, heap1 = rssMiB(r.tb, r.p.cmd.Process.Pid), heapInuse(r.tb, apiAddr)
		}
	}
	r.quiet()
	rss100, heap100 := rssMiB(r.tb, r.p.cmd.Process.Pid), heapInuse(r.tb, apiAddr)
	r.field("deploy_add_p99_ms", ms(percentile(adds, 0.99)))
	r.field("deploy_del_p99_ms", ms(percentile(dels, 0.99)))
	r.field("rss_mib_deploys", fmt.Sprintf("%.1f/%.1f/%.1f", rssBefore, rss1, rss100))
	r.field("heap_mib_deploys", fmt.Sprintf("%.1f/%.1f/%.1f", heapBefore, heap1, heap100))
}

// step writes a deploy step and waits for every instance's real to change
// as want says: the time from the write's return to the last change.
func (r *run) step(ins []*instance, write func() error, want func(kernelChange) bool) (time.Duration, bool) {
	var chs []<-chan time.Time
	for _, i := range ins {
		chs = append(chs, r.p.expect("tcp://"+vip(i.svc), i.real(), want))
	}
	if err := write(); err != nil {
		r.tb.Fatal(err)
	}
	wrote := time.Now()
	deadline := time.After(r.timeout)
	var last time.Time
	for _, ch := range chs {
		select {
		case at := <-ch:
			if at.After(last) {
				last = at
			}
		case <-deadline:
			return r.timeout, false
		}
	}
	return max(0, last.Sub(wrote)), true
}

// heapInuse reads go_memstats_heap_inuse_bytes from lvs-sync's /metrics,
// in MiB.
func heapInuse(tb testing.TB, apiAddr string) float64 {
	resp, err := http.Get("http://" + apiAddr + "/metrics")
	if err != nil {
		tb.Fatalf("reading lvs-sync's metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f / (1 << 20)
		}
	}
	tb.Fatalf("no go_memstats_heap_inuse_bytes in lvs-sync's metrics")
	return 0
}
