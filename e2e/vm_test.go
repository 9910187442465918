//go:build !vmguest

// Package e2e proves lvs-sync in a real kernel: the host runs a real Consul
// agent and boots Debian's kernel under qemu, where lvs-sync, a client and
// three real servers in network namespaces exchange real traffic.
package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/vmtest"
)

// TestInKernel builds the guest binaries, boots the VM and runs, in it,
// the ipvs package's kernel tests and this package's traffic tests.
func TestInKernel(t *testing.T) {
	stage := vmtest.Stage(t)
	bin := t.TempDir()
	vmtest.BuildStatic(t, filepath.Join(bin, "lvs-sync"), "./cmd/lvs-sync", false)
	vmtest.BuildStatic(t, filepath.Join(bin, "ipvs.test"), "./ipvs", true, "vmguest")
	vmtest.BuildStatic(t, filepath.Join(bin, "e2e.test"), "./e2e", true, "vmguest")
	agent := testconsul.Start(t)

	run := os.Getenv("LVS_SYNC_E2E_RUN") // a -test.run pattern, to run a few
	args := " -test.v -test.count=1"
	if run != "" {
		args += " -test.run '" + run + "'"
	}
	var out strings.Builder
	code := vmtest.Boot(t, stage, vmtest.Options{
		Files: map[string]string{
			"/bin/lvs-sync":  filepath.Join(bin, "lvs-sync"),
			"/bin/ipvs.test": filepath.Join(bin, "ipvs.test"),
			"/bin/e2e.test":  filepath.Join(bin, "e2e.test"),
		},
		Command: "/bin/ipvs.test" + args + " && /bin/e2e.test" + args,
		Env:     map[string]string{"LVS_CONSUL": vmtest.GuestAddr(agent.HTTPAddr)},
		Output:  &tee{t: t, b: &out},
		Timeout: 20 * time.Minute,
	})
	if code != 0 {
		t.Fatalf("tests in the VM failed (exit %d); see the log above", code)
	}
	if !strings.Contains(out.String(), "--- PASS: TestForwardingWithRealTraffic") {
		t.Fatal("the traffic tests did not run in the VM")
	}
}

type tee struct {
	t *testing.T
	b *strings.Builder
}

func (w *tee) Write(p []byte) (int, error) {
	w.b.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
