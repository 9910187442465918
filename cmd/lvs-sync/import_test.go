package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// TestImportEveryTestdataConfig imports every config of
// importer/testdata: the HCL must validate (import checks it with
// config.Load and fails otherwise), and the real Consul agent must take
// the services file as it is.
func TestImportEveryTestdataConfig(t *testing.T) {
	agent := testconsul.Start(t)
	consul := testenv.Tool(t, "consul")
	root := filepath.Join(testenv.RepoRoot(t), "importer", "testdata")
	for _, tool := range []string{"ldirectord", "keepalived"} {
		files, _ := filepath.Glob(filepath.Join(root, tool, "*"))
		if len(files) < 5 {
			t.Fatalf("%d %s configs in testdata", len(files), tool)
		}
		for _, f := range files {
			t.Run(tool+"/"+filepath.Base(f), func(t *testing.T) {
				out := t.TempDir()
				code, stdout, stderr := cli("import", tool, "-out", out, f)
				if strings.Contains(filepath.Base(f), "curly-quotes") || strings.Contains(filepath.Base(f), "sip") {
					// Configs ldirectord cannot read as meant: errors with their lines.
					if code != 1 || !strings.Contains(stderr, filepath.Base(f)+":") || !strings.Contains(stderr, ": error: ") {
						t.Fatalf("import of a broken config: exit %d, %s", code, stderr)
					}
					return
				}
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				if !strings.HasPrefix(stdout, "wrote ") {
					t.Errorf("stdout %q", stdout)
				}
				svcs := filepath.Join(out, importServicesFile)
				if b, _ := os.ReadFile(svcs); !strings.Contains(string(b), "services {") {
					return // nothing to register (a fwmark-only config)
				}
				consulCLI(t, consul, agent.HTTPAddr, "services", "register", svcs)
				consulCLI(t, consul, agent.HTTPAddr, "services", "deregister", svcs)
			})
		}
	}
}

func TestImportUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"import"}, 1, "want ldirectord or keepalived"},
		{[]string{"import", "haproxy", "-out", "x", "f"}, 1, "want ldirectord or keepalived"},
		{[]string{"import", "ldirectord", "f"}, 1, "want -out DIR and one FILE"},
		{[]string{"import", "ldirectord", "-out", "x", "/nonexistent.cf"}, 1, "no such file"},
		{[]string{"import", "-help"}, 0, "Usage: lvs-sync import"},
	} {
		code, _, stderr := cli(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.err) {
			t.Errorf("%v: exit %d, %q; want %d, %q", tc.args, code, stderr, tc.code, tc.err)
		}
	}
	// An existing file is not overwritten without -force.
	dir := t.TempDir()
	cf := filepath.Join(dir, "ld.cf")
	if err := os.WriteFile(cf, []byte("virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cli("import", "ldirectord", "-out", dir, cf); code != 0 {
		t.Fatalf("first import: %s", stderr)
	}
	if code, _, stderr := cli("import", "ldirectord", "-out", dir, cf); code != 1 || !strings.Contains(stderr, "-force") {
		t.Errorf("second import without -force: exit %d, %s", code, stderr)
	}
	if code, _, stderr := cli("import", "ldirectord", "-out", dir, "-force", cf); code != 0 {
		t.Errorf("-force: exit %d, %s", code, stderr)
	}
}
