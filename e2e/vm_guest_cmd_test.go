//go:build !vmguest

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// TestGuestRunsEveryBinary: the guest's command runs every test binary
// even when an earlier one fails, exits non-zero, and the failures read
// from its output name each failed binary and its failed tests. (Before,
// "a && b && c" stopped at the first failure and hid the rest.)
func TestGuestRunsEveryBinary(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"ipvs":     "echo '--- FAIL: TestGenlContract (0.01s)'; echo '    --- FAIL: TestGenlContract/reals (0.01s)'; exit 1",
		"genl":     "echo ran > " + filepath.Join(dir, "genl.ran") + "; exit 0",
		"ipvsread": "exit 0",
		"hostnet":  "exit 0",
		"e2e":      "echo \"args: $*\" > " + filepath.Join(dir, "e2e.args") + "; echo '--- FAIL: TestReadBack (1.00s)'; exit 2",
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".test"), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("sh", "-c", guestCommand(dir, guestBinaries, " -test.v", " -test.skip X")).CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit %d (%v), want 1:\n%s", code, err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "genl.ran")); err != nil {
		t.Error("genl.test did not run after ipvs.test failed")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "e2e.args")); string(b) != "args: -test.v -test.skip X\n" {
		t.Errorf("e2e.test got %q, want its own flags too", b)
	}
	want := []string{
		"ipvs.test failed (exit 1): TestGenlContract (0.01s); TestGenlContract/reals (0.01s)",
		"e2e.test failed (exit 2): TestReadBack (1.00s)",
	}
	if got := guestFailures(string(out), guestBinaries); !reflect.DeepEqual(got, want) {
		t.Errorf("failures:\n%q\nwant\n%q", got, want)
	}
	// A guest that died midway: the binaries that never reported are named.
	if got := guestFailures("vmtest: ipvs.test exited 0\n", guestBinaries)[0]; got != "genl.test never reported: the guest stopped before it ended" {
		t.Errorf("a guest cut short: %q", got)
	}
}

func exitCode(err error) int {
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
