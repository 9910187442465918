package benchwatch

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// nodes is how many Consul nodes carry the instances.
const nodes = 100

// txnInstances is how many instances go in one /v1/txn (a service and a
// check op each; Consul takes 64 ops a transaction).
const txnInstances = 32

// instance is one instance the bench registered, as it stands.
type instance struct {
	svc                     int // the service's index
	service, id, node, addr string
	weight                  int
	passing                 bool
}

// real is the instance's real-server key as lvs-sync logs it (gate: the
// VIP's port).
func (in *instance) real() string { return in.addr + ":80" }

func (in *instance) registration() *api.AgentService {
	return &api.AgentService{ID: in.id, Service: in.service, Address: in.addr, Port: 8080,
		Weights: api.AgentWeights{Passing: in.weight, Warning: 1}}
}

func (in *instance) check() *api.HealthCheck {
	st := api.HealthCritical
	if in.passing {
		st = api.HealthPassing
	}
	return &api.HealthCheck{Node: in.node, CheckID: in.id + "-ttl", Name: in.id + " ttl", Status: st,
		ServiceID: in.id, ServiceName: in.service}
}

func nodeName(i int) string    { return fmt.Sprintf("node-%03d", i) }
func serviceName(i int) string { return fmt.Sprintf("svc%05d", i) }

// vip is the gate virtual service address of service i.
func vip(i int) string { return fmt.Sprintf("10.%d.%d.%d:80", 50+i/65536, (i/256)%256, i%256) }

// catalogOf writes instances to the agent and keeps what it wrote.
type catalogOf struct {
	c         *api.Client
	services  int
	instances []*instance // the original services × per instances
	serial    int
}

// registerNodes creates the nodes, each with a passing node check.
func (m *catalogOf) registerNodes(tb testing.TB) {
	for i := range nodes {
		_, err := m.c.Catalog().Register(&api.CatalogRegistration{Node: nodeName(i),
			Address: fmt.Sprintf("10.250.%d.%d", i/256, i%256)}, nil)
		if err != nil {
			tb.Fatalf("registering node %s: %v", nodeName(i), err)
		}
	}
}

// populate registers services × per passing instances through /v1/txn,
// eight transactions at a time.
func (m *catalogOf) populate(tb testing.TB, per int) {
	for s := range m.services {
		for j := range per {
			m.instances = append(m.instances, &instance{svc: s, service: serviceName(s), id: fmt.Sprintf("%s-%d", serviceName(s), j),
				node: nodeName((s*per + j) % nodes), addr: fmt.Sprintf("10.%d.%d.%d", 60+j, (s/256)%256, s%256),
				weight: 1, passing: true})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan []*instance)
	for range 8 {
		wg.Go(func() {
			for batch := range next {
				if err := m.txnSet(batch); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for chunk := range slices.Chunk(m.instances, txnInstances) {
		next <- chunk
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// txnSet registers instances with their checks in one transaction.
func (m *catalogOf) txnSet(batch []*instance) error {
	ops := make(api.TxnOps, 0, 2*len(batch))
	for _, in := range batch {
		ops = append(ops,
			&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: in.node, Service: *in.registration()}},
			&api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: *in.check()}})
	}
	return m.txn(ops, batch[0].id)
}

// txnDelete deregisters instances (their checks go with them).
func (m *catalogOf) txnDelete(batch []*instance) error {
	ops := make(api.TxnOps, 0, len(batch))
	for _, in := range batch {
		ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceDelete, Node: in.node,
			Service: *in.registration()}})
	}
	return m.txn(ops, batch[0].id)
}

func (m *catalogOf) txn(ops api.TxnOps, first string) error {
	ok, resp, _, err := m.c.Txn().Txn(ops, nil)
	switch {
	case err != nil:
		return fmt.Errorf("transaction from %s: %w", first, err)
	case !ok:
		var whys []string
		for _, e := range resp.Errors {
			whys = append(whys, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		}
		return fmt.Errorf("transaction from %s rolled back: %s", first, strings.Join(whys, "; "))
	}
	return nil
}

// setCheck writes in's check status through /v1/catalog/register.
func (m *catalogOf) setCheck(in *instance) error {
	c := in.check()
	_, err := m.c.Catalog().Register(&api.CatalogRegistration{Node: in.node, SkipNodeUpdate: true,
		Check: &api.AgentCheck{Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status,
			ServiceID: c.ServiceID, ServiceName: c.ServiceName, Output: "flipped by the bench"}}, nil)
	if err != nil {
		return fmt.Errorf("setting check of %s %s: %w", in.id, c.Status, err)
	}
	return nil
}

// setService writes in's service (not its check) through
// /v1/catalog/register.
func (m *catalogOf) setService(in *instance) error {
	_, err := m.c.Catalog().Register(&api.CatalogRegistration{Node: in.node, SkipNodeUpdate: true,
		Service: in.registration()}, nil)
	if err != nil {
		return fmt.Errorf("registering %s: %w", in.id, err)
	}
	return nil
}

// register writes a new instance and its check in one
// /v1/catalog/register.
func (m *catalogOf) register(in *instance) error {
	c := in.check()
	_, err := m.c.Catalog().Register(&api.CatalogRegistration{Node: in.node, SkipNodeUpdate: true,
		Service: in.registration(), Check: &api.AgentCheck{Node: c.Node, CheckID: c.CheckID, Name: c.Name,
			Status: c.Status, ServiceID: c.ServiceID, ServiceName: c.ServiceName}}, nil)
	if err != nil {
		return fmt.Errorf("registering %s: %w", in.id, err)
	}
	return nil
}

func (m *catalogOf) deregister(in *instance) error {
	_, err := m.c.Catalog().Deregister(&api.CatalogDeregistration{Node: in.node, ServiceID: in.id}, nil)
	if err != nil {
		return fmt.Errorf("deregistering %s: %w", in.id, err)
	}
	return nil
}

// fresh is a new passing instance of service s, on an address no other
// instance has.
func (m *catalogOf) fresh(s int) *instance {
	m.serial++
	k := m.serial
	return &instance{svc: s, service: serviceName(s), id: fmt.Sprintf("%s-new%d", serviceName(s), k),
		node: nodeName(k % nodes), addr: fmt.Sprintf("10.%d.%d.%d", 100+k/65536, (k/256)%256, k%256),
		weight: 1, passing: true}
}

// config is lvs-sync's config: one gate virtual service per Consul
// service, the agent reached through proxy, an API on apiAddr.
func config(services int, proxy, apiAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "consul {\n  address = %q\n  max_connections = 8\n}\napi {\n  address = %q\n}\n", proxy, apiAddr)
	for i := range services {
		fmt.Fprintf(&b, "virtual_service \"vs%05d\" {\n  address    = %q\n  forwarding = \"gate\"\n  service    = %q\n}\n",
			i, vip(i), serviceName(i))
	}
	return b.String()
}

// buildBinary builds cmd/lvs-sync into dir.
func buildBinary(tb testing.TB, dir string) string {
	bin := filepath.Join(dir, "lvs-sync")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lvs-sync/lvs-sync/cmd/lvs-sync").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build ./cmd/lvs-sync: %v\n%s", err, out)
	}
	return bin
}

// kernelChange is one kernel change lvs-sync logged.
type kernelChange struct {
	at                  time.Time
	kind, service, real string
	weight              int // -1 when not logged (delete real)
}

// opLine matches the ipvs logger's INFO line for a real-server change.
var opLine = regexp.MustCompile(`\[INFO\] +lvs-sync\.ipvs: (add real|update real|delete real): service=(\S+) real=(\S+)(?: weight=(\d+))?`)

var appliedLine = regexp.MustCompile(`\[INFO\] +lvs-sync: applied changes: .*changes=(\d+)`)

// waiter waits for the first change of a real that satisfies want.
type waiter struct {
	want func(kernelChange) bool
	ch   chan time.Time
}

// process is a running `lvs-sync run -dry-run` and what its log said.
type process struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}

	mu        sync.Mutex
	waiters   map[string][]*waiter // by service|real
	applied   []time.Time          // "applied changes" lines
	appliedN  []int
	changes   int
	warnings  []string
	firstSync chan struct{}
	reloaded  chan bool // a reload's end, once onReload asked: took over or failed
}

// onReload returns a channel that gets, for each reload that ends from
// now on, true if it took over ("config reloaded"), false if it was given
// up ("config reload failed").
func (p *process) onReload() <-chan bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reloaded == nil {
		p.reloaded = make(chan bool, 64)
	}
	return p.reloaded
}

// startProcess runs the binary with cfg and follows its log (a copy of it
// goes to logPath).
func startProcess(tb testing.TB, bin, cfgPath, logPath string) *process {
	cmd := exec.Command(bin, "run", "-config", cfgPath, "-dry-run", "-log-level", "info")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), waiters: map[string][]*waiter{}, firstSync: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting lvs-sync: %v", err)
	}
	p.started = time.Now()
	go func() {
		defer close(p.done)
		p.follow(io.TeeReader(stderr, logFile))
		_ = cmd.Wait()
		logFile.Close()
	}()
	tb.Cleanup(func() { p.stop(tb) })
	return p
}

func (p *process) stop(tb testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		tb.Errorf("lvs-sync did not stop on SIGTERM in 10s; killing it")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) follow(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		now := time.Now()
		if m := opLine.FindStringSubmatch(line); m != nil {
			c := kernelChange{at: now, kind: m[1], service: m[2], real: m[3], weight: -1}
			if m[4] != "" {
				c.weight, _ = strconv.Atoi(m[4])
			}
			p.changed(c)
			continue
		}
		if m := appliedLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			p.mu.Lock()
			p.applied, p.appliedN = append(p.applied, now), append(p.appliedN, n)
			if len(p.applied) == 1 {
				close(p.firstSync)
			}
			p.mu.Unlock()
			continue
		}
		if ok := strings.Contains(line, "lvs-sync: config reloaded:"); ok || strings.Contains(line, "lvs-sync: config reload failed") {
			p.mu.Lock()
			if p.reloaded != nil {
				select {
				case p.reloaded <- ok:
				default:
				}
			}
			p.mu.Unlock()
			if ok {
				continue
			}
		}
		if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERROR]") {
			p.mu.Lock()
			if len(p.warnings) < 20 {
				p.warnings = append(p.warnings, line)
			}
			p.mu.Unlock()
		}
	}
}

func (p *process) changed(c kernelChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changes++
	k := c.service + "|" + c.real
	ws := p.waiters[k]
	for i, w := range ws {
		if w.want(c) {
			w.ch <- c.at
			ws = slices.Delete(ws, i, i+1)
			break
		}
	}
	if len(ws) == 0 {
		delete(p.waiters, k)
	} else {
		p.waiters[k] = ws
	}
}

// expect returns a channel that gets the time of the first change of
// (service, real) that satisfies want, from now on.
func (p *process) expect(service, real string, want func(kernelChange) bool) <-chan time.Time {
	w := &waiter{want: want, ch: make(chan time.Time, 1)}
	p.mu.Lock()
	k := service + "|" + real
	p.waiters[k] = append(p.waiters[k], w)
	p.mu.Unlock()
	return w.ch
}

// lastChange is when the log last showed a kernel change, and how many.
func (p *process) counts() (changes int, warnings []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changes, slices.Clone(p.warnings)
}

// cpuTicks is the process's utime+stime, in clock ticks.
func cpuTicks(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	// After "(comm) ": state is field 3 of stat(5), utime 14, stime 15.
	ut, _ := strconv.ParseInt(f[14-3], 10, 64)
	st, _ := strconv.ParseInt(f[15-3], 10, 64)
	return ut + st
}

// clockTicks is sysconf(_SC_CLK_TCK), 100 on every Linux we run on.
const clockTicks = 100

// rssMiB is the process's VmRSS.
func rssMiB(tb testing.TB, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// freeAddr is a free loopback TCP address.
func freeAddr(tb testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", testconsul.FreePorts(tb, 1)[0])
}

// percentile is the nearest-rank q-quantile of ds (q in (0, 1]).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

func sortedMs(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	out := make([]string, len(s))
	for i, d := range s {
		out[i] = ms(d)
	}
	return strings.Join(out, " ")
}

// agentPID finds the consul agent serving HTTP on addr, by its command
// line (testconsul starts it with -http-port).
func agentPID(tb testing.TB, addr string) int {
	_, port, _ := strings.Cut(addr, ":")
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && filepath.Base(args[0]) == "consul" && slices.Contains(args, "-http-port") &&
			args[slices.Index(args, "-http-port")+1] == port {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			return pid
		}
	}
	tb.Fatalf("no consul process serving %s", addr)
	return 0
}

// appliedTotal is how many changes the "applied changes" lines counted so
// far.
func (p *process) appliedTotal() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.appliedN {
		n += c
	}
	return n
}

// procMem is a process's resident memory, from /proc/PID/status, in MiB.
type procMem struct {
	// RSS is VmRSS: Anon, File and Shmem together; HWM its peak.
	RSS, HWM float64
	// Anon is what the process allocated (Go's heap, stacks and
	// runtime), File its mapped files' pages in memory (mostly the
	// binary's code and read-only data), Shmem its shared memory.
	Anon, File, Shmem float64
}

// Private is the memory the process itself allocated: its anonymous and
// shared pages, not the page cache of the files it maps.
func (m procMem) Private() float64 { return m.Anon + m.Shmem }

func (m procMem) String() string {
	return fmt.Sprintf("private=%.1fMiB rss=%.1fMiB (file %.1f, peak %.1f)", m.Private(), m.RSS, m.File, m.HWM)
}

// memOf reads the process's procMem.
func memOf(tb testing.TB, pid int) procMem {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var m procMem
	fields := map[string]*float64{"VmRSS:": &m.RSS, "VmHWM:": &m.HWM, "RssAnon:": &m.Anon, "RssFile:": &m.File, "RssShmem:": &m.Shmem}
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			if p, ok := fields[f[0]]; ok {
				kb, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					tb.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
				}
				*p, seen = kb/1024, seen+1
			}
		}
	}
	if seen != len(fields) {
		tb.Fatalf("/proc/%d/status lacks one of VmRSS, VmHWM, RssAnon, RssFile, RssShmem", pid)
	}
	return m
}
