//go:build vmguest

package genl

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// benchState is services × reals: services 10.50.i.i:80, reals
// 10.(60+j).i.i:80 at weight j+1, gate (the kernel gives a gate real its
// service's port, whatever it was asked).
func benchState(services, reals int, sched string) ipvs.State {
	st := ipvs.State{}
	for i := range services {
		k := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), Port: 80}
		svc := &ipvs.Service{Scheduler: sched, Netmask: lvs.HostMask(k.Addr), Reals: map[lvs.RealKey]ipvs.Real{}}
		for j := range reals {
			rk := lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 60 + byte(j), byte(i >> 8), byte(i)}), Port: 80}
			svc.Reals[rk] = ipvs.Real{Weight: 1 + j, Forward: lvs.Route}
		}
		st[k] = svc
	}
	return st
}

// BenchmarkVersusIpvsadm prints the figures of issue 12, one line each,
// every one beside ipvsadm's doing the same in the same boot, each into a
// network namespace of its own (make bench; -test.benchtime 1x):
//
//	bench kernel: case=load-1kx10 lvs_sync_ms=… ipvsadm_ms=… ratio=…
//
// ratio is ipvsadm's time over lvs-sync's: how many times faster lvs-sync
// is. lvs-sync's figure is what the daemon does (ipvs.Reconcile: read,
// diff, apply) through this client; ipvsadm's is the command, run through
// `ip netns exec`, its process start included. The 1,000-service figures
// are the median of three runs, one change of five.
//
// LVS_SYNC_BENCH_CASE, when set, runs only the case of that name (with its
// read-back and change lines): one case costs minutes in the guest, and a
// change to one scheduler's load is measured by its own case alone.
func BenchmarkVersusIpvsadm(b *testing.B) {
	only := os.Getenv("LVS_SYNC_BENCH_CASE")
	var lines []string
	for b.Loop() {
		lines = lines[:0]
		for _, c := range []struct {
			name             string
			services, reals  int
			sched            string
			runs             int
			readBack, change bool
		}{
			{name: "load-1kx10", services: 1000, reals: 10, sched: "wlc", runs: 3, readBack: true, change: true},
			{name: "load-1kx10-mh", services: 1000, reals: 10, sched: "mh", runs: 3},
			{name: "load-10kx10", services: 10000, reals: 10, sched: "wlc", runs: 1},
		} {
			if only != "" && c.name != only {
				continue
			}
			desired := benchState(c.services, c.reals, c.sched)
			rules := desired.String()
			changes := c.services * (c.reals + 1)
			if ipvs.Staged(c.sched) {
				changes += c.services // the switch of each staged add (ipvs/stage.go)
			}
			var ours, theirs []time.Duration
			var loaded string // a namespace lvs-sync loaded, for the read and the change
			for range c.runs {
				ns := freshNetns(b)
				k := openIn(b, ns, 60*time.Second)
				ours = append(ours, timed(func() { reconcile(b, k, desired, ipvs.All, changes) }))
				checkLoaded(b, k, desired)
				loaded = ns
				ns2 := freshNetns(b)
				theirs = append(theirs, timed(func() { ipvsadm(b, ns2, rules, "-R") }))
				checkLoaded(b, openIn(b, ns2, 60*time.Second), desired)
				if !c.readBack {
					// Free the kernel's memory before the next run.
					run(b, "ip", "netns", "del", ns)
					run(b, "ip", "netns", "del", ns2)
				}
			}
			lines = append(lines, figure(c.name, ours, theirs))
			if c.readBack {
				k := openIn(b, loaded, 60*time.Second)
				ours, theirs = nil, nil
				for range 3 {
					ours = append(ours, timed(func() {
						if _, err := ipvs.Read(k, nil); err != nil {
							b.Fatal(err)
						}
					}))
					theirs = append(theirs, timed(func() { ipvsadmQuiet(b, loaded, "-Sn") }))
				}
				lines = append(lines, figure("read-1kx10", ours, theirs))
			}
			if c.change {
				lines = append(lines, oneChange(b, loaded, desired))
			}
		}
	}
	for _, l := range lines {
		fmt.Println(l)
	}
}

// oneChange is one real's weight changed among 1,000 × 10: lvs-sync's
// sync scoped to that service, as the daemon makes it on a catalog change,
// against `ipvsadm -e` of that real.
func oneChange(b *testing.B, ns string, desired ipvs.State) string {
	k := openIn(b, ns, 60*time.Second)
	target := desired.SortedKeys()[500]
	rk := desired[target].SortedReals()[0]
	var ours, theirs []time.Duration
	for i := range 5 {
		r := desired[target].Reals[rk]
		r.Weight = 100 + i
		desired[target].Reals[rk] = r
		sends := k.Sends()
		scope := ipvs.Scope{Keys: map[lvs.ServiceKey]bool{target: true}}
		ours = append(ours, timed(func() { reconcile(b, k, desired, scope, 1) }))
		if n := k.Sends() - sends; n != 3 {
			b.Fatalf("one change made %d sendmsg, want 3 (the service, its reals, the change: one write, no listing of every service)", n)
		}
		theirs = append(theirs, timed(func() {
			ipvsadm(b, ns, "", "-e", "-t", netip.AddrPortFrom(target.Addr, target.Port).String(), "-r", rk.String(), "-g", "-w", fmt.Sprint(200+i))
		}))
	}
	return figure("one-change", ours, theirs)
}

// reconcile is the daemon's sync: read what is in scope, diff, apply.
func reconcile(b *testing.B, k *Client, desired ipvs.State, scope ipvs.Scope, changes int) {
	mine := func(key lvs.ServiceKey) bool { return desired[key] != nil }
	planned, res, err := ipvs.Reconcile(k, ipvs.Input{Desired: desired, Owned: mine}, scope, nil)
	if err != nil || res.Err() != nil {
		b.Fatal(err, res.Err())
	}
	if plan := planned.Plan; len(plan) != changes || res.Applied != changes {
		b.Fatalf("%d changes planned, %d applied, want %d", len(plan), res.Applied, changes)
	}
}

// checkLoaded checks the whole table against desired, outside the timing.
func checkLoaded(b *testing.B, k *Client, desired ipvs.State) {
	got, err := ipvs.Read(k, nil)
	if err != nil {
		b.Fatal(err)
	}
	diff := ipvs.Diff(desired, got, nil)
	if len(got) != len(desired) || len(diff) != 0 {
		b.Fatalf("the table loaded differs from the one desired: %d services of %d; still to make:\n%s",
			len(got), len(desired), diff[:min(len(diff), 5)])
	}
}

func ipvsadmQuiet(b *testing.B, ns string, args ...string) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "ipvsadm"}, args...)...)
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		b.Fatalf("ipvsadm %s: %v", strings.Join(args, " "), err)
	}
}

func timed(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func figure(name string, ours, theirs []time.Duration) string {
	o, t := median(ours), median(theirs)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return fmt.Sprintf("bench kernel: case=%s lvs_sync_ms=%.1f ipvsadm_ms=%.1f ratio=%.1f", name, ms(o), ms(t), float64(t)/float64(o))
}
