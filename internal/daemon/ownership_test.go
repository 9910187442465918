package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/internal/ipvstest"
	"github.com/lvs-sync/lvs-sync/internal/ownership"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// newHarnessOwned is newHarness with the ownership record own.
func newHarnessOwned(t *testing.T, cfg string, kernel *ipvstest.Kernel, own *ownership.Record) *harness {
	t.Helper()
	h := newHarness(t, cfg, kernel)
	h.d.opts.Ownership = own // before the first sync: the loop reads it there
	return h
}

// TestCrashInTheFirstApplyLeavesNoConflict: lvs-sync dies in the middle
// of its first apply, some services made, none of them yet in the state
// file as the file was when it died. Restarted on that file, it adopts
// what it made: nothing is a conflict, the table is whole and owned.
func TestCrashInTheFirstApplyLeavesNoConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	own, err := ownership.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	kernel := ipvstest.New(ipvs.State{})
	// The process dies after the first service is made: the
	// disk holds the state file as it is then, and nothing of what the
	// process does afterwards.
	var onDisk []byte
	kernel.FailAfter(1, errors.New("the process died here"), func() {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
		onDisk = b
	})
	h := newHarnessOwned(t, webConfig, kernel, own)
	web := catalog.Snapshot{Services: map[string]*catalog.Service{"web": {Name: "web", Instances: []*catalog.Instance{
		web1(catalog.Passing), web2(catalog.Passing)}}}}
	h.snapshot2(web)
	h.untilNext()
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	made := kernel.State()
	if _, ok := made[gateKey]; !ok || len(made) != 1 {
		t.Fatalf("the kernel has %v when the process dies, want web alone", made.SortedKeys())
	}

	// The restart: the same kernel, the state file as the crash left it.
	kernel.FailAfter(0, nil, nil)
	restarted := filepath.Join(t.TempDir(), "state.json")
	if onDisk != nil {
		if err := os.WriteFile(restarted, onDisk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	own2, err := ownership.Open(restarted)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own2.Close() })
	h2 := newHarnessOwned(t, webConfig, kernel, own2)
	h2.snapshot2(web)
	h2.untilNext()
	st, err := h2.d.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Conflict {
			t.Errorf("after the restart %s (%s) is a conflict: lvs-sync made it and no longer takes it", s.Key, s.Name)
		}
	}
	want := h2.reports[len(h2.reports)-1].Desired.State
	if got := kernel.State(); got.String() != want.String() {
		t.Errorf("after the restart the kernel has\n%s\nwant\n%s", got, want)
	}
	for _, k := range want.SortedKeys() {
		if !own2.Owns(k) {
			t.Errorf("after the restart %s is not recorded as lvs-sync's", k)
		}
	}
}
