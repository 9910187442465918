package ha

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// The host's effects, on stateful fakes that share one log, so that the
// orders of the design can be checked as well as the state they leave.

type hostWorld struct {
	log    []string
	addrs  map[string]map[netip.Addr]bool
	sys    map[string]string
	sync   map[ipvs.SyncRole]bool
	announ [][]netip.Addr
}

type fakeAddrSet struct {
	w    *hostWorld
	link string
}

func (f fakeAddrSet) Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	have := f.w.addrs[f.link]
	for _, a := range want {
		if !have[a] {
			have[a] = true
			added = append(added, a)
			f.w.log = append(f.w.log, "add "+f.link)
		}
	}
	for a := range have {
		if !slices.Contains(want, a) && owned(a) {
			delete(have, a)
			removed = append(removed, a)
			f.w.log = append(f.w.log, "remove "+f.link)
		}
	}
	return added, removed, nil
}

type fakeSys struct{ w *hostWorld }

func (f fakeSys) Get(k string) (string, error) {
	v, ok := f.w.sys[k]
	if !ok {
		return "", errors.New("no such key")
	}
	return v, nil
}
func (f fakeSys) Set(k, v string) error {
	f.w.sys[k] = v
	f.w.log = append(f.w.log, k+"="+v)
	return nil
}

type fakeDaemons struct{ w *hostWorld }

func (f fakeDaemons) Start(r ipvs.SyncRole) error {
	if !f.w.sync[r] {
		f.w.sync[r] = true
		f.w.log = append(f.w.log, "start "+r.String())
	}
	return nil
}
func (f fakeDaemons) Stop(r ipvs.SyncRole) error {
	if f.w.sync[r] {
		delete(f.w.sync, r)
		f.w.log = append(f.w.log, "stop "+r.String())
	}
	return nil
}
func (f fakeDaemons) Running() ([]ipvs.SyncRole, error) {
	var out []ipvs.SyncRole
	for r := range f.w.sync {
		out = append(out, r)
	}
	return out, nil
}

type fakeAnnouncer struct{ w *hostWorld }

func (f fakeAnnouncer) Announce(link string, addrs []netip.Addr) error {
	f.w.announ = append(f.w.announ, addrs)
	f.w.log = append(f.w.log, "announce "+link)
	return nil
}

func TestHostFollowsTheRole(t *testing.T) {
	vip, stale := netip.MustParseAddr("10.0.0.60"), netip.MustParseAddr("10.0.0.61")
	// A run that died active left its VIP on eth0 and its master daemon.
	w := &hostWorld{addrs: map[string]map[netip.Addr]bool{"eth0": {vip: true, stale: true}, "lo": {}}, sys: map[string]string{}, sync: map[ipvs.SyncRole]bool{ipvs.SyncMaster: true}}
	h := &Host{Interface: "eth0", Daemons: fakeDaemons{w}, OnInterface: fakeAddrSet{w, "eth0"}, OnLo: fakeAddrSet{w, "lo"},
		Announcer: fakeAnnouncer{w}, Sysctl: fakeSys{w}, Log: hclog.NewNullLogger()}
	h.SetVIPs([]netip.Addr{vip})

	// Starting standby: whatever an earlier run left on eth0 goes.
	if err := h.Prepare(); err != nil {
		t.Fatal(err)
	}
	if len(w.addrs["eth0"]) != 1 || !w.addrs["eth0"][stale] || !w.addrs["lo"][vip] {
		t.Fatalf("after prepare: eth0 %v lo %v (the vip off eth0, on lo; 10.0.0.61 is not lvs-sync's)", w.addrs["eth0"], w.addrs["lo"])
	}
	if w.sys[backupOnly] != "1" || w.sys["net/ipv4/conf/all/arp_ignore"] != "1" || h.DaemonState() != "backup" {
		t.Fatalf("after prepare: sysctls %v, daemons %s", w.sys, h.DaemonState())
	}

	w.log = nil
	if err := h.BecomeActive(3); err != nil {
		t.Fatal(err)
	}
	if want := []string{"start master", backupOnly + "=0", "add eth0", "announce eth0"}; !slices.Equal(w.log, want) {
		t.Fatalf("takeover order %q, want %q", w.log, want)
	}
	if h.DaemonState() != "master+backup" || !w.addrs["lo"][vip] {
		t.Fatalf("active: daemons %s, lo %v", h.DaemonState(), w.addrs["lo"])
	}

	// The daemon's syncs place a new VIP by the role.
	vip2 := netip.MustParseAddr("10.0.0.62")
	if _, _, err := h.Sync([]netip.Addr{vip, vip2}, func(netip.Addr) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if !w.addrs["eth0"][vip2] || !w.addrs["lo"][vip2] {
		t.Fatalf("active sync: eth0 %v lo %v", w.addrs["eth0"], w.addrs["lo"])
	}

	w.log = nil
	if err := h.StepDown("test"); err != nil {
		t.Fatal(err)
	}
	// Stepped down, it answers no ARP for the VIPs but still schedules
	// what reaches it, until drained.
	if want := []string{"remove eth0", "remove eth0"}; !slices.Equal(w.log, want) {
		t.Fatalf("step-down did %q, want %q", w.log, want)
	}
	if w.sys[backupOnly] != "0" || h.DaemonState() != "master+backup" {
		t.Fatalf("draining: backup_only %q, daemons %s; want 0, master+backup", w.sys[backupOnly], h.DaemonState())
	}
	w.log = nil
	if err := h.Drained(); err != nil {
		t.Fatal(err)
	}
	if want := []string{backupOnly + "=1", "stop master"}; !slices.Equal(w.log, want) {
		t.Fatalf("drained did %q, want %q", w.log, want)
	}
	if w.addrs["eth0"][vip] || w.addrs["eth0"][vip2] || !w.addrs["lo"][vip2] || h.DaemonState() != "backup" {
		t.Fatalf("standby: eth0 %v lo %v daemons %s", w.addrs["eth0"], w.addrs["lo"], h.DaemonState())
	}
	if err := h.Announce(); err != nil || len(w.announ) != 1 {
		t.Fatalf("a standby announced: %v %d", err, len(w.announ))
	}
	// A standby keeps no VIP alive on eth0.
	w.log = nil
	if err := h.KeepVIPs(); err != nil || len(w.log) != 0 || w.addrs["eth0"][vip] {
		t.Fatalf("a standby's KeepVIPs: %v, did %q", err, w.log)
	}
}

// TestHostKeepVIPs: the active's KeepVIPs syncs the interface's set again
// (which refreshes their lifetime), putting back a VIP removed by hand,
// and leaves lo alone.
func TestHostKeepVIPs(t *testing.T) {
	vip := netip.MustParseAddr("10.0.0.60")
	w := &hostWorld{addrs: map[string]map[netip.Addr]bool{"eth0": {}, "lo": {}}, sys: map[string]string{}, sync: map[ipvs.SyncRole]bool{}}
	h := &Host{Interface: "eth0", Daemons: fakeDaemons{w}, OnInterface: fakeAddrSet{w, "eth0"}, OnLo: fakeAddrSet{w, "lo"},
		Announcer: fakeAnnouncer{w}, Sysctl: fakeSys{w}, Log: hclog.NewNullLogger()}
	h.SetVIPs([]netip.Addr{vip})
	if err := h.BecomeActive(1); err != nil {
		t.Fatal(err)
	}
	delete(w.addrs["eth0"], vip) // lapsed, or ip addr del
	w.log = nil
	if err := h.KeepVIPs(); err != nil || !w.addrs["eth0"][vip] || !slices.Equal(w.log, []string{"add eth0"}) {
		t.Fatalf("keep: %v, eth0 %v, did %q", err, w.addrs["eth0"], w.log)
	}
}

// TestUnplace: at start, the config's VIPs leave the interface; other
// addresses stay.
func TestUnplace(t *testing.T) {
	vip, other := netip.MustParseAddr("10.0.0.60"), netip.MustParseAddr("10.0.0.7")
	w := &hostWorld{addrs: map[string]map[netip.Addr]bool{"eth0": {vip: true, other: true}}}
	if err := Unplace(fakeAddrSet{w, "eth0"}, []netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	if w.addrs["eth0"][vip] || !w.addrs["eth0"][other] {
		t.Fatalf("eth0 %v after Unplace, want only 10.0.0.7", w.addrs["eth0"])
	}
}
