package ipvs

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestMemKernelSyncContract runs the sync daemon contract against the
// in-memory table; sync_kernel_test.go runs it against the kernel through
// ipvs/genl, in the VM.
func TestMemKernelSyncContract(t *testing.T) {
	testSyncContract(t, NewMemKernel(State{}), "eth0")
}

// testSyncContract pins what lvs-sync's HA relies on the kernel to answer
// about its sync daemons; k runs none at the start, link is a link that
// can carry multicast.
func testSyncContract(t *testing.T, k SyncKernel, link string) {
	list := func() string {
		t.Helper()
		ds, err := k.Daemons()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ds)
	}
	if got := list(); got != "[]" {
		t.Fatalf("daemons at the start: %s", got)
	}
	for _, c := range []struct {
		name string
		call func() error
		want error // nil: done
		then string
	}{
		{"stop a master none runs", func() error { return k.StopDaemon(SyncMaster) }, syscall.ESRCH, "[]"},
		{"stop a backup none runs", func() error { return k.StopDaemon(SyncBackup) }, syscall.ESRCH, "[]"},
		{"start a backup accepting every id", func() error { return k.StartDaemon(SyncDaemon{SyncBackup, link, 0}) }, nil,
			"[backup (interface=" + link + " sync_id=0)]"},
		{"start a master beside it", func() error { return k.StartDaemon(SyncDaemon{SyncMaster, link, 7}) }, nil,
			"[master (interface=" + link + " sync_id=7) backup (interface=" + link + " sync_id=0)]"},
		{"a second master", func() error { return k.StartDaemon(SyncDaemon{SyncMaster, link, 8}) }, syscall.EEXIST,
			"[master (interface=" + link + " sync_id=7) backup (interface=" + link + " sync_id=0)]"},
		{"a second backup", func() error { return k.StartDaemon(SyncDaemon{SyncBackup, link, 1}) }, syscall.EEXIST,
			"[master (interface=" + link + " sync_id=7) backup (interface=" + link + " sync_id=0)]"},
		{"an unknown role", func() error { return k.StartDaemon(SyncDaemon{3, link, 1}) }, syscall.EINVAL,
			"[master (interface=" + link + " sync_id=7) backup (interface=" + link + " sync_id=0)]"},
		{"no interface", func() error { return k.StartDaemon(SyncDaemon{SyncMaster, "", 1}) }, syscall.EINVAL,
			"[master (interface=" + link + " sync_id=7) backup (interface=" + link + " sync_id=0)]"},
		{"stop the master", func() error { return k.StopDaemon(SyncMaster) }, nil,
			"[backup (interface=" + link + " sync_id=0)]"},
		{"stop it again", func() error { return k.StopDaemon(SyncMaster) }, syscall.ESRCH,
			"[backup (interface=" + link + " sync_id=0)]"},
		{"start the master again", func() error { return k.StartDaemon(SyncDaemon{SyncMaster, link, 1}) }, nil,
			"[master (interface=" + link + " sync_id=1) backup (interface=" + link + " sync_id=0)]"},
		{"stop the backup", func() error { return k.StopDaemon(SyncBackup) }, nil,
			"[master (interface=" + link + " sync_id=1)]"},
		{"stop the master", func() error { return k.StopDaemon(SyncMaster) }, nil, "[]"},
	} {
		start := time.Now()
		err := c.call()
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Logf("%s took %v", c.name, took)
		}
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if got := list(); got != c.then {
			t.Errorf("%s: daemons %s, want %s", c.name, got, c.then)
		}
	}
}
