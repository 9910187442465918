//go:build vmguest

package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/ipvsread"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// planVS is one virtual service of a TestPlanIsNextSync row's config.
type planVS struct {
	name, addr, fwd string
	attrs           string // extra HCL attributes
}

// planRow is one situation of TestPlanIsNextSync: the catalog and kernel
// are made into it while lvs-sync is stopped.
type planRow struct {
	name string
	vss  func(gate, masq string) []planVS
	// weights are the passing weights of web1..web3 at the start (1 each if nil).
	weights []int
	// start makes the starting state, after the reset (optional).
	start func(t *testing.T, r *planRun)
	// startReals is the reals of each service once lvs-sync converged (3 if 0).
	startReals int
	// download keeps a slow download through the masq VIP open from before
	// lvs-sync stops until after it started again.
	download bool
	// change makes the situation while lvs-sync is stopped.
	change func(t *testing.T, r *planRun)
	// want is the commands of the next sync, as anchored regexps, each
	// matching one line; none: the situation needs no change.
	want func(r *planRun) []string
	// check, if set, checks more once the first sync is done.
	check func(t *testing.T, r *planRun)
}

// planRun is a row as it runs.
type planRun struct {
	gate, masq string // the row's VIPs
	conn       int    // the index in reals of the download's server, if any
}

// TestPlanIsNextSync: for each situation, `lvs-sync plan` with lvs-sync
// stopped prints exactly the kernel changes, in order, that `lvs-sync run`
// then makes in its first sync. It relies on the CLI's contract only: plan
// prints one ipvsadm command a line; run logs each kernel change with a
// command= field, before its "synced" line.
//
// Each row has VIPs of its own, so that no connection a previous test left
// in the kernel (the kernel revives a deleted real with its counters) makes
// a real drain instead of going.
func TestPlanIsNextSync(t *testing.T) {
	c := consul(t)
	// The masq VIPs of the rows are reached from the client like vipMasq.
	inNS("client", "/sbin/ip", "route", "add", "10.10.20.0/24", "via", "10.2.0.1", "dev", "eth1")
	var rowVIPs []string
	t.Cleanup(func() {
		inNS("client", "/sbin/ip", "route", "del", "10.10.20.0/24")
		for _, vip := range rowVIPs {
			_, _ = sh("/sbin/ipvsadm", "-D", "-t", vip+":80")
			_, _ = sh("/sbin/ip", "addr", "del", vip+"/32", "dev", "lvs0")
		}
		_ = c.Agent().DisableNodeMaintenance()
		registerReals(t, 1, 1, 1)
	})
	both := func(attrs string) func(gate, masq string) []planVS {
		return func(gate, masq string) []planVS {
			return []planVS{{"plan-gate", gate, "gate", attrs}, {"plan-masq", masq, "masq", attrs}}
		}
	}
	masqOnly := func(attrs string) func(gate, masq string) []planVS {
		return func(_, masq string) []planVS { return []planVS{{"plan-masq", masq, "masq", attrs}} }
	}
	critical := func(ids ...string) func(t *testing.T, r *planRun) {
		return func(t *testing.T, r *planRun) {
			for _, id := range ids {
				setCheck(t, id, api.HealthCritical)
			}
			waitCatalog(t, "critical", func(in map[string]*api.ServiceEntry) bool {
				for _, id := range ids {
					if in[id] == nil || in[id].Checks.AggregatedStatus() != api.HealthCritical {
						return false
					}
				}
				return true
			})
		}
	}
	deregister := func(t *testing.T, id string) {
		if err := c.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
		waitCatalog(t, id+" gone", func(in map[string]*api.ServiceEntry) bool { return in[id] == nil })
	}
	serviceMaint := func(t *testing.T, id string) {
		if err := c.Agent().EnableServiceMaintenance(id, "plan test"); err != nil {
			t.Fatal(err)
		}
		waitCatalog(t, id+" in maintenance", func(in map[string]*api.ServiceEntry) bool { return inMaintenance(in[id]) })
	}
	id := func(i int) string { return fmt.Sprintf("web%d", i+1) }
	rk := func(fwd string, i int) string { return reals[i].addr + ":" + port(fwd, i) }
	flag := map[string]string{"gate": "-g", "masq": "-m"}
	add := func(vip, fwd, rk, weight string) string {
		return regexp.QuoteMeta("ipvsadm -a -t "+vip+":80 -r "+rk+" "+flag[fwd]+" -w ") + weight
	}
	del := func(vip, fwd string, i int) string {
		return regexp.QuoteMeta("ipvsadm -d -t " + vip + ":80 -r " + rk(fwd, i))
	}
	zero := func(vip, fwd string, i int) string {
		return regexp.QuoteMeta("ipvsadm -e -t " + vip + ":80 -r " + rk(fwd, i) + " " + flag[fwd] + " -w 0")
	}
	// leave is a real with no connection leaving for maintenance: it
	// drains like any leaving real, and one with no connection at all goes
	// at once.
	leave := del

	rows := []planRow{{
		name:   "critical",
		vss:    both(""),
		change: critical("web2"),
		want:   func(r *planRun) []string { return []string{del(r.gate, "gate", 1), del(r.masq, "masq", 1)} },
	}, {
		name:   "critical, quiescent",
		vss:    both(`  quiescent = true`),
		change: critical("web2"),
		want:   func(r *planRun) []string { return []string{zero(r.gate, "gate", 1), zero(r.masq, "masq", 1)} },
	}, {
		name:   "service maintenance",
		vss:    both(""),
		change: func(t *testing.T, _ *planRun) { serviceMaint(t, "web2") },
		want:   func(r *planRun) []string { return []string{leave(r.gate, "gate", 1), leave(r.masq, "masq", 1)} },
	}, {
		name: "node maintenance",
		vss:  both(""),
		change: func(t *testing.T, _ *planRun) {
			if err := c.Agent().EnableNodeMaintenance("plan test"); err != nil {
				t.Fatal(err)
			}
			waitCatalog(t, "the node in maintenance", func(in map[string]*api.ServiceEntry) bool { return inMaintenance(in["web1"]) })
		},
		want: func(r *planRun) []string {
			var w []string
			for i := range reals {
				w = append(w, leave(r.gate, "gate", i), leave(r.masq, "masq", i))
			}
			return w
		},
	}, {
		name:     "service maintenance with a live connection",
		vss:      masqOnly(`  drain_timeout = "20s"`),
		download: true,
		change:   func(t *testing.T, r *planRun) { serviceMaint(t, id(r.conn)) },
		want:     func(r *planRun) []string { return []string{zero(r.masq, "masq", r.conn)} },
	}, {
		name:     "deregistered with a live connection",
		vss:      masqOnly(`  drain_timeout = "20s"`),
		download: true,
		change:   func(t *testing.T, r *planRun) { deregister(t, id(r.conn)) },
		want:     func(r *planRun) []string { return []string{zero(r.masq, "masq", r.conn)} },
	}, {
		name:   "deregistered, no connection",
		vss:    both(""),
		change: func(t *testing.T, _ *planRun) { deregister(t, "web2") },
		want:   func(r *planRun) []string { return []string{del(r.gate, "gate", 1), del(r.masq, "masq", 1)} },
	}, {
		name:       "slow start",
		vss:        both(`  slow_start = "30s"`),
		weights:    []int{10, 10, 10},
		start:      func(t *testing.T, _ *planRun) { deregister(t, "web3") },
		startReals: 2,
		change: func(t *testing.T, _ *planRun) {
			registerReal(t, 2, 10)
			waitCatalog(t, "web3 passing", func(in map[string]*api.ServiceEntry) bool {
				return in["web3"] != nil && in["web3"].Checks.AggregatedStatus() == api.HealthPassing
			})
		},
		// The weight is slow start's to decide; plan and run must agree on it.
		want: func(r *planRun) []string {
			return []string{add(r.gate, "gate", rk("gate", 2), `\d+`), add(r.masq, "masq", rk("masq", 2), `\d+`)}
		},
	}, {
		name: "every instance critical: the fallbacks",
		vss: func(gate, masq string) []planVS {
			return []planVS{{"plan-gate", gate, "gate", `  fallback = "local"`}, {"plan-masq", masq, "masq", `  fallback = "10.1.0.50:8080"`}}
		},
		change: critical("web1", "web2", "web3"),
		want: func(r *planRun) []string {
			w := []string{add(r.gate, "gate", r.gate+":80", "1"), add(r.masq, "masq", "10.1.0.50:8080", "1")}
			for i := range reals {
				w = append(w, del(r.gate, "gate", i), del(r.masq, "masq", i))
			}
			return w
		},
	}, {
		name: "a foreign service on another VIP",
		vss:  both(""),
		change: func(t *testing.T, _ *planRun) {
			ipvsadm(t, "-A", "-t", "10.10.20.99:80", "-s", "sh")
			ipvsadm(t, "-a", "-t", "10.10.20.99:80", "-r", "10.1.0.11:80", "-g", "-w", "7")
			t.Cleanup(func() { _, _ = sh("/sbin/ipvsadm", "-D", "-t", "10.10.20.99:80") })
		},
		want: func(*planRun) []string { return nil },
		check: func(t *testing.T, _ *planRun) {
			if !strings.Contains(ipvsadm(t, "-Sn"), "-a -t 10.10.20.99:80 -r 10.1.0.11:80 -g -w 7") {
				t.Errorf("the foreign service was changed:\n%s", ipvsadm(t, "-Sn"))
			}
		},
	}, {
		name:   "a real deleted by hand",
		vss:    both(""),
		change: func(t *testing.T, r *planRun) { ipvsadm(t, "-d", "-t", r.gate+":80", "-r", rk("gate", 1)) },
		want:   func(r *planRun) []string { return []string{add(r.gate, "gate", rk("gate", 1), "1")} },
	}, {
		// mh builds its table from the kernel's list: rs2 deleted and
		// added again by hand is at its head (rs2, rs3, rs1), out of the
		// canonical order (rs3, rs2, rs1). The plan keeps the tail rs2,
		// rs1 and puts rs3 round again: deleted, then added at the head.
		name: "mh: a real deleted and added again by hand, out of order",
		vss:  both("  scheduler  = \"mh\"\n  scheduler_flags = [\"mh-port\", \"mh-fallback\"]"),
		change: func(t *testing.T, r *planRun) {
			for _, s := range []struct{ vip, fwd string }{{r.gate, "gate"}, {r.masq, "masq"}} {
				ipvsadm(t, "-d", "-t", s.vip+":80", "-r", rk(s.fwd, 1))
				ipvsadm(t, "-a", "-t", s.vip+":80", "-r", rk(s.fwd, 1), flag[s.fwd], "-w", "1")
			}
		},
		want: func(r *planRun) []string {
			return []string{del(r.gate, "gate", 2), del(r.masq, "masq", 2),
				add(r.gate, "gate", rk("gate", 2), "1"), add(r.masq, "masq", rk("masq", 2), "1")}
		},
		check: func(t *testing.T, r *planRun) {
			for _, s := range []struct{ vip, fwd string }{{r.gate, "gate"}, {r.masq, "masq"}} {
				key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr(s.vip), Port: 80}
				got, err := ipvsread.ProcOrder(key)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, i := range []int{2, 1, 0} {
					want = append(want, rk(s.fwd, i))
				}
				var gotS []string
				for _, k := range got {
					gotS = append(gotS, k.String())
				}
				if !slices.Equal(gotS, want) {
					t.Errorf("%s: /proc/net/ip_vs lists %v after the sync, want %v", s.vip, gotS, want)
				}
			}
		},
	}}

	for n, row := range rows {
		r := &planRun{gate: fmt.Sprintf("10.10.20.%d", 10*(n+1)), masq: fmt.Sprintf("10.10.20.%d", 10*(n+1)+1)}
		rowVIPs = append(rowVIPs, r.gate, r.masq)
		t.Run(row.name, func(t *testing.T) {
			resetCatalog(t, row.weights)
			if row.start != nil {
				row.start(t, r)
			}
			vss := row.vss(r.gate, r.masq)
			path := writePlanConfig(t, vss)

			// 1. lvs-sync converges on the starting state.
			l := startLVS(t, path)
			l.waitSynced(t)
			waitFor(t, "the starting state in the kernel", 10*time.Second, func() bool {
				for _, vs := range vss {
					if len(realsOf(t, vs.addr)) != cmp.Or(row.startReals, len(reals)) {
						return false
					}
				}
				return true
			})
			var dl *download
			if row.download {
				dl = startDownload(t, r.masq)
				r.conn = dl.real
			}

			// 2. Stopped, the kernel is left as it is; the situation is made.
			l.stop(t, syscall.SIGTERM)
			row.change(t, r)
			before := ipvsadm(t, "-Sn")

			// 3. plan, then 4. run's first sync.
			planned := planCommands(t, path)
			if after := ipvsadm(t, "-Sn"); after != before {
				t.Errorf("plan changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			l = startLVS(t, path)
			l.waitSynced(t)
			applied, ended := firstSyncOps(l.logText())
			if !ended {
				t.Fatal("the log has no end of the first sync")
			}

			// 5. The same commands, in the same order, and the ones the situation calls for.
			t.Logf("plan:\n%s\nfirst sync:\n%s", lines(planned), lines(applied))
			if !slices.Equal(planned, applied) {
				t.Errorf("plan is not the next sync:\nplan printed:\n%s\nthe first sync applied:\n%s", lines(planned), lines(applied))
			}
			want := row.want(r)
			if len(want) > 0 && len(applied) == 0 {
				t.Errorf("the first sync changed nothing; want %d changes", len(want))
			}
			for who, got := range map[string][]string{"the first sync's": applied, "plan's": planned} {
				if problems := matchShape(got, want); problems != "" {
					t.Errorf("%s commands are not of the expected shape:%s", who, problems)
				}
			}
			if row.check != nil {
				row.check(t, r)
			}
			if dl != nil {
				if took := time.Since(dl.began); took > 4*time.Second {
					t.Errorf("the first sync came %v into a 5s download: the connection may have ended before it", took)
				}
				if err := dl.finish(); err != nil {
					t.Errorf("the download through the VIP broke: %v", err)
				}
			}
			l.stop(t, syscall.SIGTERM)
		})
	}
}

// writePlanConfig writes a config with the given virtual services of the
// Consul service web.
func writePlanConfig(t *testing.T, vss []planVS) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "consul {\n  address = %q\n}\n", os.Getenv("LVS_CONSUL"))
	b.WriteString("director {\n  vip_interface      = \"lvs0\"\n  reconcile_interval = \"2s\"\n  state_file         = \"/tmp/lvs-sync/state.json\"\n}\n")
	for _, vs := range vss {
		sched := "  scheduler  = \"rr\"\n"
		if strings.Contains(vs.attrs, "scheduler ") { // the row's own
			sched = ""
		}
		fmt.Fprintf(&b, "virtual_service %q {\n  address    = \"%s:80\"\n  forwarding = %q\n%s  service    = \"web\"\n%s\n}\n",
			vs.name, vs.addr, vs.fwd, sched, vs.attrs)
	}
	p := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// resetCatalog registers web1..web3 passing with the given weights, out of
// any maintenance, and waits until the catalog says so.
func resetCatalog(t *testing.T, weights []int) {
	t.Helper()
	c := consul(t)
	if err := c.Agent().DisableNodeMaintenance(); err != nil {
		t.Fatal(err)
	}
	registerReals(t, weights...)
	for i := range reals {
		if err := c.Agent().DisableServiceMaintenance(fmt.Sprintf("web%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	waitCatalog(t, "web1..web3 passing", func(in map[string]*api.ServiceEntry) bool {
		for i := range reals {
			e := in[fmt.Sprintf("web%d", i+1)]
			want := 1
			if i < len(weights) {
				want = weights[i]
			}
			if e == nil || inMaintenance(e) || e.Checks.AggregatedStatus() != api.HealthPassing || e.Service.Weights.Passing != want {
				return false
			}
		}
		return true
	})
}

// waitCatalog waits until the instances of web that Consul's health
// endpoint returns, by ID, satisfy cond: an agent's change reaches the
// catalog a moment later, and plan and run must both see it.
func waitCatalog(t *testing.T, what string, cond func(map[string]*api.ServiceEntry) bool) {
	t.Helper()
	waitFor(t, what+" in the catalog", 5*time.Second, func() bool {
		entries, _, err := consul(t).Health().Service("web", "", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]*api.ServiceEntry{}
		for _, e := range entries {
			byID[e.Service.ID] = e
		}
		return cond(byID)
	})
}

func inMaintenance(e *api.ServiceEntry) bool {
	if e == nil {
		return false
	}
	for _, c := range e.Checks {
		if c.CheckID == "_node_maintenance" || strings.HasPrefix(c.CheckID, "_service_maintenance:") {
			return true
		}
	}
	return false
}

// planCommands runs `lvs-sync plan` and returns its stdout, a command a line.
func planCommands(t *testing.T, config string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("/bin/lvs-sync", "plan", "-config", config)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lvs-sync plan: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("lvs-sync plan said on stderr:\n%s", stderr.String())
	}
	var out []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// firstSyncOps returns the kernel changes lvs-sync logged before the end
// of its first sync (its "synced" or "applied changes" line), and whether
// that end was logged.
func firstSyncOps(log string) ([]string, bool) {
	end := syncEnd.FindStringIndex(log)
	if end == nil {
		return kernelOpsAfter(log, ""), false
	}
	return kernelOpsAfter(log[:end[0]], ""), true
}

var syncEnd = regexp.MustCompile(`: (synced|applied changes): reason=`)

// logField returns the value of key in a line of hclog's text format:
// bare up to the next space, or quoted, with Go's escapes, when it holds
// anything but - through ~.
func logField(line, key string) (string, bool) {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return "", false
	}
	rest := line[i+len(key)+2:]
	if !strings.HasPrefix(rest, `"`) {
		v, _, _ := strings.Cut(rest, " ")
		return v, true
	}
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			if v, err := strconv.Unquote(rest[:j+1]); err == nil {
				return v, true
			}
			return rest[1:j], true
		}
	}
	return "", false
}

// matchShape checks that each of the anchored patterns want matches one
// of got's lines, and each line one pattern; it returns what does not.
func matchShape(got, want []string) string {
	left := slices.Clone(got)
	var b strings.Builder
	for _, w := range want {
		re := regexp.MustCompile("^" + w + "$")
		i := slices.IndexFunc(left, re.MatchString)
		if i < 0 {
			fmt.Fprintf(&b, "\n  missing: %s", w)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	for _, l := range left {
		fmt.Fprintf(&b, "\n  unexpected: %s", l)
	}
	return b.String()
}

func lines(ss []string) string {
	if len(ss) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(ss, "\n  ")
}

// download is a slow download through a VIP, begun.
type download struct {
	real  int // the index in reals of the server sending it
	began time.Time
	r     *bufio.Reader
	got   string
}

// downloadClient is client with room for a download that outlasts a
// restart of lvs-sync.
var downloadClient = func() *http.Client {
	c := *client
	c.Timeout = 20 * time.Second
	return &c
}()

// startDownload begins a download of ten parts over 5s through vip and
// reads its first part.
func startDownload(t *testing.T, vip string) *download {
	t.Helper()
	began := time.Now()
	resp, err := downloadClient.Get("http://" + vip + "/slow?ms=5000")
	if err != nil {
		t.Fatal(err)
	}
	d := &download{began: began, r: bufio.NewReader(resp.Body)}
	t.Cleanup(func() { resp.Body.Close() })
	first, err := d.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	d.got = first
	ns := strings.Fields(first)[0]
	for i, r := range reals {
		if r.ns == ns {
			d.real = i
			return d
		}
	}
	t.Fatalf("download answered by %q", ns)
	return nil
}

// finish reads the rest of the download and checks it is whole.
func (d *download) finish() error {
	rest, err := io.ReadAll(d.r)
	if err != nil {
		return err
	}
	if n := strings.Count(d.got+string(rest), "\n"); n != 10 {
		return fmt.Errorf("%d of 10 parts", n)
	}
	return nil
}
