//go:build vmguest

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// BenchmarkDaemon is issue 12's two figures of the whole daemon, in the
// guest, against the host's real Consul, each beside ipvsadm in the same
// boot:
//   - daemon-load-1kx10: `lvs-sync run` from its start to the full table of
//     1,000 virtual services x 10 reals registered in Consul, beside
//     `ipvsadm -R` of the same rules;
//   - own-leg-p99: lvs-sync's own leg of a check flip, from the catalog
//     answer to the change applied in the kernel (the sync's took=, the
//     50 ms burst coalescing aside), beside one `ipvsadm -e`.
func BenchmarkDaemon(b *testing.B) {
	const services, instances, flips = 1000, 10, 40
	c := consul(b)
	registerScale(b, c, services, instances)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "consul {\n  address = %q\n}\napi {\n  address = \"\"\n}\ndirector {\n  state_file = %q\n}\n",
		os.Getenv("LVS_CONSUL"), filepath.Join(b.TempDir(), "state.json"))
	for i := range services {
		fmt.Fprintf(&cfg, "virtual_service \"vs%04d\" {\n  address    = \"10.50.%d.%d:80\"\n  forwarding = \"gate\"\n  service    = \"bench%04d\"\n}\n",
			i, i/256, i%256, i)
	}
	config := filepath.Join(b.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	ipvsadm(b, "-C") // the bench has the guest to itself
	for b.Loop() {
		start := time.Now()
		l := startLVS(b, config)
		want := services * (instances + 1)
		waitFor(b, "the full table", 5*time.Minute, func() bool {
			return strings.Contains(l.logText(), fmt.Sprintf("applied changes: reason=catalog changes=%d applied=%d", want, want))
		})
		load := time.Since(start)
		rules := ipvsadm(b, "-Sn")

		// Own leg: flip instance 0 of a service, wait for its sync.
		var legs []time.Duration
		took := regexp.MustCompile(`synced: reason=catalog changes=1 applied=1 failed=0 failed_reals=0 scope=changed took=([0-9.]+[µm]?s)`)
		for f := range flips {
			status := api.HealthCritical
			if f%2 == 1 {
				status = api.HealthPassing
			}
			before := len(took.FindAllString(l.logText(), -1))
			setScaleCheck(b, c, f/2, status)
			waitFor(b, "the flip applied", 30*time.Second, func() bool { return len(took.FindAllString(l.logText(), -1)) > before })
			m := took.FindAllStringSubmatch(l.logText(), -1)
			d, err := time.ParseDuration(m[len(m)-1][1])
			if err != nil {
				b.Fatal(err)
			}
			legs = append(legs, d)
		}
		l.stop(b, syscall.SIGTERM)

		// ipvsadm, same boot: the same rules from empty, and one change.
		ipvsadm(b, "-C")
		s := time.Now()
		cmd := exec.Command("/sbin/ipvsadm", "-R")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ipvsadm -R: %v: %s", err, out)
		}
		restore := time.Since(s)
		var edits []time.Duration
		for f := range flips {
			s := time.Now()
			ipvsadm(b, "-e", "-t", "10.50.0.0:80", "-r", "10.60.0.0:80", "-g", "-w", fmt.Sprint(1+f%2))
			edits = append(edits, time.Since(s))
		}
		ipvsadm(b, "-C")
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Printf("bench kernel: case=daemon-load-1kx10 lvs_sync_ms=%.1f ipvsadm_ms=%.1f ratio=%.1f\n", ms(load), ms(restore), float64(restore)/float64(load))
		slices.Sort(legs)
		slices.Sort(edits)
		p50, p99 := legs[len(legs)/2], legs[len(legs)*99/100]
		fmt.Printf("bench kernel: case=own-leg-p99 lvs_sync_ms=%.2f ipvsadm_ms=%.2f ratio=%.2f own_leg_p50_ms=%.2f flips=%d\n",
			ms(p99), ms(edits[len(edits)*99/100]), float64(edits[len(edits)*99/100])/float64(p99), ms(p50), flips)
	}
}

// registerScale registers services x instances through the catalog, in
// transactions: instance j of service i on node benchj, at 10.6j.i/256.i%256:80,
// weight j+1; instance 0 of each service has a check to flip.
func registerScale(b testing.TB, c *api.Client, services, instances int) {
	b.Helper()
	var ops api.TxnOps
	flush := func() {
		if len(ops) == 0 {
			return
		}
		ok, resp, _, err := c.Txn().Txn(ops, nil)
		if err != nil || !ok {
			b.Fatalf("registering: %v %+v", err, resp)
		}
		ops = ops[:0]
	}
	add := func(op *api.TxnOp) {
		ops = append(ops, op)
		if len(ops) == 64 {
			flush()
		}
	}
	for j := range instances {
		add(&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: fmt.Sprintf("bench%d", j), Address: fmt.Sprintf("10.6%d.255.255", j)}}})
	}
	for i := range services {
		for j := range instances {
			add(&api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: fmt.Sprintf("bench%d", j), Service: api.AgentService{
				ID: fmt.Sprintf("bench%04d-%d", i, j), Service: fmt.Sprintf("bench%04d", i),
				Address: fmt.Sprintf("10.6%d.%d.%d", j, i/256, i%256), Port: 80,
				Weights: api.AgentWeights{Passing: j + 1, Warning: 1},
			}}})
		}
		setScaleCheckOp(add, i, api.HealthPassing)
	}
	flush()
}

func setScaleCheckOp(add func(*api.TxnOp), i int, status string) {
	add(&api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
		Node: "bench0", CheckID: fmt.Sprintf("bench%04d-0-flip", i), Name: "flip", Status: status,
		ServiceID: fmt.Sprintf("bench%04d-0", i), ServiceName: fmt.Sprintf("bench%04d", i),
	}}})
}

func setScaleCheck(b testing.TB, c *api.Client, i int, status string) {
	b.Helper()
	var ops api.TxnOps
	setScaleCheckOp(func(op *api.TxnOp) { ops = append(ops, op) }, i, status)
	if ok, resp, _, err := c.Txn().Txn(ops, nil); err != nil || !ok {
		b.Fatalf("flipping: %v %+v", err, resp)
	}
}
