//go:build !vmguest

package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/vmtest"
)

// TestKeepalivedInKernel boots a VM of its own (the comparison reads the
// whole table, which must hold keepalived's services alone; the stage has
// Debian's keepalived, as scripts/vm-assets.sh puts it there) and runs the
// guest's TestKeepalivedSameTable: keepalived programs IPVS from a
// keepalived.conf, and lvs-sync renders the same table from its import.
func TestKeepalivedInKernel(t *testing.T) {
	stage := vmtest.Stage(t)
	bin := t.TempDir()
	vmtest.BuildStatic(t, filepath.Join(bin, "lvs-sync"), "./cmd/lvs-sync", false)
	vmtest.BuildStatic(t, filepath.Join(bin, "e2e.test"), "./e2e", true, "vmguest")
	files := map[string]string{
		"/bin/lvs-sync": filepath.Join(bin, "lvs-sync"),
		"/bin/e2e.test": filepath.Join(bin, "e2e.test"),
	}
	agent := testconsul.Start(t)
	var out strings.Builder
	code := vmtest.Boot(t, stage, vmtest.Options{
		Files:   files,
		Command: "/bin/e2e.test -test.count=1 -test.v -test.run '^TestKeepalivedSameTable$'",
		Env:     map[string]string{"LVS_CONSUL": vmtest.GuestAddr(agent.HTTPAddr)},
		Output:  &tee{t: t, b: &out},
		Timeout: 10 * time.Minute,
	})
	if code != 0 {
		t.Fatalf("the keepalived comparison in the VM failed (exit %d); see the log above", code)
	}
	if !strings.Contains(out.String(), "--- PASS: TestKeepalivedSameTable") {
		t.Fatal("TestKeepalivedSameTable did not run in the VM")
	}
}
