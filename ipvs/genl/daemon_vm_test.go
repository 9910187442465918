//go:build vmguest

package genl

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
)

// TestSyncDaemons: a master and a backup started through the client are
// what the kernel lists, to the client (GET_DAEMON) and to ipvsadm; the
// kernel answers EEXIST, ESRCH and ENODEV as the client says; stopping
// them leaves none.
func TestSyncDaemons(t *testing.T) {
	ns := freshNetns(t)
	run(t, "ip", "-n", ns, "link", "add", "hb0", "type", "veth", "peer", "name", "hb1")
	// A master binds its socket to the link's address.
	run(t, "ip", "-n", ns, "addr", "add", "10.78.0.1/24", "dev", "hb0")
	run(t, "ip", "-n", ns, "addr", "add", "10.78.0.2/24", "dev", "hb1")
	run(t, "ip", "-n", ns, "link", "set", "hb0", "up")
	run(t, "ip", "-n", ns, "link", "set", "hb1", "up")
	c := openIn(t, ns, 30*time.Second)
	t.Cleanup(func() {
		_ = c.StopDaemon(ipvs.SyncMaster)
		_ = c.StopDaemon(ipvs.SyncBackup)
	})

	master := ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "hb0", SyncID: 5}
	backup := ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: "hb1", SyncID: 0}
	if err := c.StartDaemon(master); err != nil {
		t.Fatal(err)
	}
	if err := c.StartDaemon(backup); err != nil {
		t.Fatal(err)
	}
	ds, err := c.Daemons()
	if err != nil || fmt.Sprint(ds) != "[master (interface=hb0 sync_id=5) backup (interface=hb1 sync_id=0)]" {
		t.Errorf("daemons %v, %v", ds, err)
	}
	out := ipvsadm(t, ns, "", "-L", "--daemon")
	for _, want := range []string{"master sync daemon (mcast=hb0, syncid=5", "backup sync daemon (mcast=hb1, syncid=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvsadm -L --daemon lacks %q:\n%s", want, out)
		}
	}

	for _, e := range []struct {
		name string
		err  error
		want unix.Errno
	}{
		{"a second master", c.StartDaemon(ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "hb1", SyncID: 1}), unix.EEXIST},
		{"a second backup", c.StartDaemon(backup), unix.EEXIST},
	} {
		if !errors.Is(e.err, e.want) || !strings.Contains(e.err.Error(), "sync daemon") {
			t.Errorf("%s: %v, want %v", e.name, e.err, e.want)
		}
	}
	// How long the kernel takes to stop a daemon is what a director
	// stepping down waits: logged, for the HA design.
	start := time.Now()
	if err := c.StopDaemon(ipvs.SyncMaster); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopping the master took %v", time.Since(start))
	if err := c.StopDaemon(ipvs.SyncMaster); !errors.Is(err, unix.ESRCH) {
		t.Errorf("stopping a stopped master: %v, want ESRCH", err)
	}
	if err := c.StartDaemon(ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "nosuch0", SyncID: 1}); !errors.Is(err, unix.ENODEV) {
		t.Errorf("a master on a missing link: %v, want ENODEV", err)
	}
	start = time.Now()
	if err := c.StopDaemon(ipvs.SyncBackup); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopping the backup took %v", time.Since(start))
	if ds, err := c.Daemons(); err != nil || len(ds) != 0 {
		t.Errorf("daemons after stopping both: %v, %v", ds, err)
	}
	if out := ipvsadm(t, ns, "", "-L", "--daemon"); strings.Contains(out, "sync daemon") {
		t.Errorf("ipvsadm still lists a daemon:\n%s", out)
	}
}

// TestStopRightAfterStart: a director that steps down as soon as it took
// over stops a master whose thread may not have run yet. The kernel then
// sends no ack (kthread_stop answers -EINTR, which netlink takes for "no
// answer"); the client must still say at once that the daemon stopped,
// not wait out its timeout and call it lost.
func TestStopRightAfterStart(t *testing.T) {
	ns := freshNetns(t)
	run(t, "ip", "-n", ns, "link", "add", "hb0", "type", "veth", "peer", "name", "hb1")
	run(t, "ip", "-n", ns, "addr", "add", "10.79.0.1/24", "dev", "hb0")
	run(t, "ip", "-n", ns, "link", "set", "hb0", "up")
	c := openIn(t, ns, 10*time.Second)
	t.Cleanup(func() { _ = c.StopDaemon(ipvs.SyncMaster) })
	master := ipvs.SyncDaemon{Role: ipvs.SyncMaster, Interface: "hb0", SyncID: 9}
	const cycles = 200
	var slowest time.Duration
	for i := range cycles {
		if err := c.StartDaemon(master); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		start := time.Now()
		if err := c.StopDaemon(ipvs.SyncMaster); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		slowest = max(slowest, time.Since(start))
	}
	if ds, err := c.Daemons(); err != nil || len(ds) != 0 {
		t.Errorf("daemons after the cycles: %v, %v", ds, err)
	}
	if slowest > time.Second {
		t.Errorf("the slowest stop took %v", slowest)
	}
	t.Logf("%d start-stop cycles: slowest stop %v, %d stops the kernel did not answer", cycles, slowest, c.unanswered.Load())
}
