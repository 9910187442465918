//go:build vmguest

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestSaveFormatIsIpvsadms adds services with every flag lvs-sync sets
// and compares State.String, what `lvs-sync render` prints, with the
// kernel's table as ipvsadm -Sn prints it: the same lines.
func TestSaveFormatIsIpvsadms(t *testing.T) {
	key := func(proto lvs.Protocol, s string) lvs.ServiceKey {
		ap := netip.MustParseAddrPort(s)
		return lvs.ServiceKey{Protocol: proto, Addr: ap.Addr(), Port: ap.Port()}
	}
	sched := func(s string, f lvs.SchedFlags) *ipvs.Service {
		return &ipvs.Service{Scheduler: s, Flags: uint32(f), Netmask: 0xffffffff}
	}
	persist := func(s *ipvs.Service, timeout, mask uint32) *ipvs.Service {
		s.Flags, s.Timeout, s.Netmask = s.Flags|ipvs.FlagPersistent, timeout, mask
		return s
	}
	v6 := sched("sh", lvs.SchedFlag2)
	v6.Netmask = 128
	v6p := persist(sched("sh", lvs.SchedFlag1), 60, 64)
	ops := sched("sh", lvs.SchedFlag1)
	ops.Flags |= ipvs.FlagOnePacket
	want := ipvs.State{
		key(lvs.TCP, "10.30.0.1:80"):         persist(sched("sh", lvs.SchedFlag1|lvs.SchedFlag2), 300, 0x00ffffff),
		key(lvs.UDP, "10.30.0.2:53"):         persist(ops, 120, 0xffffffff),
		key(lvs.TCP, "10.30.0.3:80"):         sched("mh", lvs.SchedFlag1|lvs.SchedFlag2),
		key(lvs.TCP, "10.30.0.4:80"):         sched("mh", lvs.SchedFlag2),
		key(lvs.TCP, "10.30.0.5:80"):         sched("rr", lvs.SchedFlag3),
		key(lvs.TCP, "10.30.0.6:80"):         sched("sh", 0),
		key(lvs.TCP, "[2001:db8::30]:80"):    v6,
		key(lvs.SCTP, "[2001:db8::31]:3868"): v6p,
	}
	for k, s := range want {
		s.Reals = map[lvs.RealKey]ipvs.Real{{Addr: netip.MustParseAddr("10.1.0.11"), Port: 80}: {Weight: 0, Forward: lvs.Route}}
		if k.Addr.Is6() {
			s.Reals = map[lvs.RealKey]ipvs.Real{{Addr: netip.MustParseAddr("2001:db8::11"), Port: 80}: {Weight: 0, Forward: lvs.Route}}
		}
		t.Cleanup(func() { _ = kernel.DelService(k) })
	}
	res := ipvs.Apply(kernel, ipvs.Diff(want, ipvs.State{}, nil), nil)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	mine := func(k lvs.ServiceKey) bool { return want[k] != nil }
	got, err := ipvs.Read(kernel, mine)
	if err != nil {
		t.Fatal(err)
	}
	ours := saveBlocks(got.Filter(mine).String(), want)
	theirs := saveBlocks(ipvsadm(t, "-Sn"), want)
	if ours != theirs || ours != saveBlocks(want.String(), want) {
		t.Errorf("read back through moby/ipvs:\n%s\nipvsadm -Sn:\n%s\nwritten:\n%s", ours, theirs, want)
	}
	t.Logf("ipvsadm -Sn:\n%s", theirs)
}

// saveBlocks is the ipvsadm -S text of the services of st, each service
// with its reals, the services sorted as text: ipvsadm lists them in the
// kernel's hash order.
func saveBlocks(save string, st ipvs.State) string {
	mine := map[string]bool{}
	for k := range st {
		mine[k.Ipvsadm()] = true
	}
	var blocks []string
	keep := false
	for _, line := range strings.Split(strings.TrimSpace(save), "\n") {
		if strings.HasPrefix(line, "-A ") {
			fields := strings.Fields(line)
			keep = len(fields) > 2 && mine[fields[1]+" "+fields[2]]
			if keep {
				blocks = append(blocks, line)
			}
		} else if keep {
			blocks[len(blocks)-1] += "\n" + line
		}
	}
	slices.Sort(blocks)
	return strings.Join(blocks, "\n")
}

// TestShFallbackWithWeightZero runs sh with sh-port over three reals, one
// of them critical and quiescent (weight 0). With sh-fallback every
// connection is served by the other two; without it, the connections that
// hash to the weight-0 real get none: what validate warns of. A service
// whose scheduler has no module in the kernel is reported as such, and
// the other is applied all the same.
func TestShFallbackWithWeightZero(t *testing.T) {
	registerReals(t, 1, 1, 1)
	t.Cleanup(func() { registerReals(t, 1, 1, 1) })
	config := func(flags string) string {
		return fmt.Sprintf(`
consul {
  address = %q
}
director {
  reconcile_interval = "2s"
  vip_interface      = "lvs0"
  state_file         = "/tmp/lvs-sync/state.json"
}
virtual_service "web-sh" {
  address         = "10.10.10.60:80"
  forwarding      = "gate"
  scheduler       = "sh"
  scheduler_flags = [%s]
  quiescent       = true
  service         = "web"
}
virtual_service "web-dh" {
  address    = "10.10.10.64:80" # no other test's: its add is refused
  forwarding = "masq"
  scheduler  = "dh" # a scheduler this VM's kernel has no module for
  service    = "web"
}
`, os.Getenv("LVS_CONSUL"), flags)
	}
	path := filepath.Join(t.TempDir(), "lvs-sync.hcl")
	if err := os.WriteFile(path, []byte(config(`"sh-fallback", "sh-port"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLVS(t, path)
	l.waitSynced(t)
	shKey := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr(vipGate), Port: 80}
	flags := func() uint32 {
		st, err := ipvs.Read(kernel, func(k lvs.ServiceKey) bool { return k == shKey })
		if err != nil || st[shKey] == nil {
			t.Fatalf("reading %s: %v", shKey, err)
		}
		return st[shKey].Flags
	}
	waitFor(t, "three reals", 15*time.Second, func() bool { return len(realsOf(t, vipGate)) == 3 })
	setCheck(t, "web2", api.HealthCritical)
	waitFor(t, "rs2 at weight 0", 5*time.Second, func() bool {
		w, ok := realsOf(t, vipGate)[reals[1].addr+":80"]
		return ok && w == 0
	})
	if f := flags(); f != uint32(lvs.SchedFlag1|lvs.SchedFlag2) {
		t.Errorf("flags read back %#x, want sh-fallback|sh-port (0x18)", f)
	}
	if line := "-A -t 10.10.10.60:80 -s sh -b sh-fallback,sh-port\n-a -t 10.10.10.60:80 -r 10.1.0.11:80 -g -w 1\n-a -t 10.10.10.60:80 -r 10.1.0.12:80 -g -w 0\n"; !strings.Contains(ipvsadm(t, "-Sn"), line) {
		t.Errorf("ipvsadm -Sn lacks\n%s\n%s", line, ipvsadm(t, "-Sn"))
	}
	waitFor(t, "the missing scheduler reported", 5*time.Second, func() bool {
		return strings.Contains(l.logText(), "scheduler dh is not available in this kernel (modprobe ip_vs_dh)")
	})
	if strings.Contains(l.logText(), "file exists") || realsOf(t, "10.10.10.64") != nil {
		t.Errorf("web-dh: reported otherwise, or in the kernel:\n%s", ipvsadm(t, "-Sn"))
	}

	served, failed := traffic(30)
	t.Logf("sh-fallback: %d requests: %v, %d failed", 30, served, failed)
	if failed != 0 || served["rs2"] != 0 || served["rs1"] == 0 || served["rs3"] == 0 {
		t.Errorf("with sh-fallback: answers %v, %d failed; want rs1 and rs3 only, none failed", served, failed)
	}

	// Without sh-fallback, the clients whose hash lands on rs2 get nothing.
	if err := os.WriteFile(path, []byte(config(`"sh-port"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = l.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "sh-fallback off", 5*time.Second, func() bool { return flags() == uint32(lvs.SchedFlag2) })
	served, failed = traffic(30)
	t.Logf("no sh-fallback: %d requests: %v, %d failed", 30, served, failed)
	if failed == 0 || served["rs2"] != 0 {
		t.Errorf("without sh-fallback: answers %v, %d failed; want some failed, none from rs2", served, failed)
	}
}

// traffic makes n requests to the gate VIP, each on a new connection
// (a new client port), and counts who answered and how many failed.
func traffic(n int) (map[string]int, int) {
	served, failed := map[string]int{}, 0
	for range n {
		body, err := get(vipGate)
		if err != nil {
			failed++
			continue
		}
		served[body]++
	}
	return served, failed
}
