// Package testenv finds what the tests need around them: the repository,
// and the real agents scripts/build-tool.sh builds.
package testenv

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// RepoRoot finds the repository from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "build-tool.sh")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the repository root from the working directory")
		}
		dir = parent
	}
}

// Tool returns the path of a real agent (consul, nomad): $LVS_SYNC_CONSUL
// or $LVS_SYNC_NOMAD if set, else the one scripts/build-tool.sh builds
// into the cache. A missing one fails the test; none is ever skipped.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p := os.Getenv("LVS_SYNC_" + strings.ToUpper(name)); p != "" {
		return p
	}
	out, err := exec.Command(filepath.Join(RepoRoot(t), "scripts", "build-tool.sh"), name).Output()
	if err != nil {
		t.Fatalf("no %s binary: run `make %s`: %v", name, name, err)
	}
	return strings.TrimSpace(string(out))
}

// WaitFor polls cond every 10ms until it holds, and returns how long that
// took; it fails the test if it does not hold within timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Weights returns the reals of a service as "ip:port" → weight, nil if the
// state has no such service: what the tests compare kernels with.
func Weights(st ipvs.State, k lvs.ServiceKey) map[string]int {
	svc := st[k]
	if svc == nil {
		return nil
	}
	m := make(map[string]int, len(svc.Reals))
	for rk, r := range svc.Reals {
		m[rk.String()] = r.Weight
	}
	return m
}

// SameWeights reports whether a service exists (got is not nil) with
// exactly the wanted reals and weights.
func SameWeights(got, want map[string]int) bool {
	return got != nil && maps.Equal(got, want)
}
