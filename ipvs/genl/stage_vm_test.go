//go:build vmguest

package genl

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestStagedMHTable: an mh service added staged (ipvs/stage.go: under no
// scheduler, its reals, then mh) picks, for every one of 2,000 flows, the
// same real as one added directly under mh with its reals one by one in
// the same canonical order: the kernel's table is the same, as the
// all-active contract needs. A third service, its reals added in the
// reverse order, shows that the flows tell tables apart: some of them go
// elsewhere there. The flows are the guest's own connections from one
// address and 2,000 ports (mh-port hashes the port), each scheduled by
// IPVS on its SYN and read back from /proc/net/ip_vs_conn.
func TestStagedMHTable(t *testing.T) {
	ns := freshNetns(t)
	run(t, "ip", "-n", ns, "link", "add", "st0", "type", "veth", "peer", "name", "st1")
	run(t, "ip", "-n", ns, "addr", "add", "10.99.0.1/24", "dev", "st0")
	run(t, "ip", "-n", ns, "link", "set", "st0", "up")
	run(t, "ip", "-n", ns, "link", "set", "st1", "up")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", "10.99.0.2")
	k := openIn(t, ns, 10*time.Second)

	vip := func(i byte) lvs.ServiceKey {
		return lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{10, 50, 0, i}), Port: 80}
	}
	staged, direct, reversed := vip(1), vip(2), vip(3)
	spec := func() *ipvs.Service {
		s := &ipvs.Service{Scheduler: "mh", Flags: uint32(lvs.SchedFlag2), Netmask: 0xffffffff, Reals: map[lvs.RealKey]ipvs.Real{}}
		for j := range 10 {
			s.Reals[lvs.RealKey{Addr: netip.AddrFrom4([4]byte{10, 60, 0, byte(1 + j)}), Port: 80}] = ipvs.Real{Weight: 1 + j, Forward: lvs.Route}
		}
		return s
	}
	desired := ipvs.State{staged: spec()}
	mine := func(key lvs.ServiceKey) bool { return key == staged }
	planned, res, err := ipvs.Reconcile(k, ipvs.Input{Desired: desired, Owned: mine}, ipvs.All, nil)
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	if p := planned.Plan; len(p) != 12 || p[0].Spec.Scheduler != ipvs.StageScheduler || !p[11].Stage {
		t.Fatalf("the plan is not a staged add:\n%v", p)
	}
	add := func(key lvs.ServiceKey, order []lvs.RealKey) {
		s := spec()
		if err := k.AddService(key, s); err != nil {
			t.Fatal(err)
		}
		for _, rk := range order {
			if err := k.AddReal(key, rk, s.Reals[rk]); err != nil {
				t.Fatal(err)
			}
		}
	}
	asc := spec().SortedReals()
	desc := ipvs.CanonicalOrder(spec().Reals)
	add(direct, asc)    // each at the head: the canonical order
	add(reversed, desc) // the reverse of it

	st, err := ipvs.Read(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []lvs.ServiceKey{staged, direct} {
		got, ok := ipvs.KernelOrder(st[key].Reals)
		if !st[key].Equal(spec()) || !ok || fmt.Sprint(got) != fmt.Sprint(desc) {
			t.Errorf("%s: the kernel has %+v, its reals in the order %v, want mh with mh-port, %v", key, *st[key], got, desc)
		}
	}

	const flows = 2000
	picked := map[lvs.ServiceKey]map[uint16]string{}
	inNetns(t, ns, func() {
		for _, key := range []lvs.ServiceKey{staged, direct, reversed} {
			for i := range flows {
				if err := syn(uint16(20000+i), key); err != nil {
					t.Fatal(err)
				}
			}
		}
		var err error
		if picked, err = connDests(); err != nil {
			t.Fatal(err)
		}
	})
	var same, moved int
	for i := range flows {
		port := uint16(20000 + i)
		a, b, c := picked[staged][port], picked[direct][port], picked[reversed][port]
		if a == "" || b == "" || c == "" {
			t.Fatalf("flow from port %d: no connection entry (staged %q, direct %q, reversed %q)", port, a, b, c)
		}
		if a != b {
			t.Errorf("flow from port %d: staged to %s, direct to %s", port, a, b)
		} else {
			same++
		}
		if b != c {
			moved++
		}
	}
	t.Logf("staged mh table: %d of %d flows to the same real as a direct add; %d to another with the reverse order", same, flows, moved)
	if moved == 0 {
		t.Errorf("no flow of %d goes elsewhere with the reals in the reverse order: the flows cannot tell two tables apart", flows)
	}
}

// syn opens a TCP connection from 10.99.0.1:port to the service and
// closes it at once: its SYN, through LOCAL_OUT, is what IPVS schedules,
// and closing a socket in SYN-SENT sends nothing, so the entry stays.
func syn(port uint16, to lvs.ServiceKey) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 99, 0, 1}, Port: int(port)}); err != nil {
		return fmt.Errorf("bind port %d: %w", port, err)
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: to.Addr.As4(), Port: int(to.Port)})
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return fmt.Errorf("connect from port %d to %s: %w", port, to, err)
	}
	return nil
}

// connDests reads the thread's namespace's connection entries: for each
// service, the client port → the real IPVS sent it to (hex, as listed).
func connDests() (map[lvs.ServiceKey]map[uint16]string, error) {
	b, err := os.ReadFile("/proc/thread-self/net/ip_vs_conn")
	if err != nil {
		return nil, err
	}
	out := map[lvs.ServiceKey]map[uint16]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "TCP" {
			continue
		}
		port, err1 := strconv.ParseUint(f[2], 16, 16)
		ip, err2 := strconv.ParseUint(f[3], 16, 32)
		vport, err3 := strconv.ParseUint(f[4], 16, 16)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("/proc/net/ip_vs_conn: %q: %w", line, err)
		}
		key := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), Port: uint16(vport)}
		if out[key] == nil {
			out[key] = map[uint16]string{}
		}
		out[key][uint16(port)] = f[5] + ":" + f[6]
	}
	return out, nil
}
