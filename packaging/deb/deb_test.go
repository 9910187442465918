// Package deb holds the Debian package's files (nfpm.yaml, the systemd
// unit, the conffile, the maintainer scripts) and its tests: the package
// `make package` builds passes lintian, its unit passes systemd-analyze
// verify, and it installs, runs, is removed and purged cleanly in a real
// Debian root (scripts/deb-chroot.sh).
package deb

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// acceptedLintian are the lintian warnings the package keeps, and why. An
// error, or any other warning, fails TestLintian.
var acceptedLintian = map[string]string{
	// No man page yet: `lvs-sync <command> -help` and the README (in
	// /usr/share/doc/lvs-sync) are the documentation.
	"no-manual-page": "",
}

var (
	buildOnce sync.Once
	builtDeb  string
	buildErr  error
	buildOut  []byte
)

// packageDeb builds the package once per test binary, as `make package`
// does, and returns its path.
func packageDeb(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("make", "-s", "--no-print-directory", "package")
		cmd.Dir = testenv.RepoRoot(t)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		buildOut, buildErr = cmd.Output()
		buildOut = append(buildOut, stderr.Bytes()...)
		lines := strings.Fields(string(buildOut))
		if buildErr == nil && len(lines) > 0 {
			builtDeb = filepath.Join(cmd.Dir, lines[len(lines)-1])
		}
	})
	if buildErr != nil || builtDeb == "" {
		t.Fatalf("make package: %v\n%s", buildErr, buildOut)
	}
	return builtDeb
}

// need finds a command the test runs; `make test` installs each through
// scripts/need.sh.
func need(t *testing.T, cmd, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(cmd)
	if err != nil {
		t.Fatalf("no %s: scripts/need.sh %s %s installs it (make test does)", cmd, cmd, pkg)
	}
	return p
}

// TestLintian: lintian finds no error in the package, and no warning but
// those of acceptedLintian. Overridden tags (the static binary, see
// lintian-overrides) are shown by lintian as O: and do not count.
func TestLintian(t *testing.T) {
	lintian := need(t, "lintian", "lintian")
	deb := packageDeb(t)
	out, err := exec.Command(lintian, "--tag-display-limit", "0", "--fail-on", "none", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("lintian %s: %v\n%s", deb, err, out)
	}
	tag := regexp.MustCompile(`^([EW]): lvs-sync: (\S+)`)
	var bad []string
	for line := range strings.Lines(string(out)) {
		m := tag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, ok := acceptedLintian[m[2]]; ok && m[1] == "W" {
			t.Logf("accepted: %s", strings.TrimSpace(line))
			continue
		}
		bad = append(bad, strings.TrimSpace(line))
	}
	if len(bad) > 0 {
		t.Errorf("lintian %s:\n%s", filepath.Base(deb), strings.Join(bad, "\n"))
	}
}

// installRoot copies the cached Debian root (scripts/deb-chroot.sh, or
// $LVS_SYNC_DEB_CHROOT) for one test to change.
func installRoot(t *testing.T) string {
	t.Helper()
	src := os.Getenv("LVS_SYNC_DEB_CHROOT")
	if src == "" {
		out, err := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts", "deb-chroot.sh")).Output()
		if err != nil {
			t.Fatalf("no Debian root: scripts/deb-chroot.sh: %v", err)
		}
		src = strings.TrimSpace(string(out))
	}
	dst := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying the Debian root %s: %v\n%s", src, err, out)
	}
	return dst
}

// TestUnitVerifies: systemd-analyze verify accepts lvs-sync.service as
// installed, against the systemd of a Debian root (sysinit.target and the
// rest; systemd need not run: here it is not PID 1), with its ExecStart
// and ExecReload present there. A unit spoiled on purpose is refused, so
// the check reads the unit.
func TestUnitVerifies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: dpkg-deb -x keeps the package's owners")
	}
	analyze := need(t, "systemd-analyze", "systemd")
	deb := packageDeb(t)
	root := installRoot(t)
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	verify := func(unit string) (string, error) {
		out, err := exec.Command(analyze, "verify", "--root="+root, unit).CombinedOutput()
		return string(out), err
	}
	if out, err := verify("lvs-sync.service"); err != nil || out != "" {
		t.Fatalf("systemd-analyze verify lvs-sync.service: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/lvs-sync.service"))
	if err != nil {
		t.Fatal(err)
	}
	spoiled := strings.Replace(string(unit), "ProtectSystem=strict", "ProtectSystem=very", 1)
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system/spoiled.service"), []byte(spoiled), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := verify("spoiled.service"); !strings.Contains(out, "very") {
		t.Errorf("systemd-analyze verify took a unit with ProtectSystem=very: %q", out)
	}
}

// TestInstallRemovePurge installs the package with dpkg into a Debian
// root, as on a director: the unit is enabled but not started, `lvs-sync
// version` runs from /usr/bin and `validate` accepts the shipped config; a
// reinstall (an upgrade) restarts only a running lvs-sync; removal stops it
// and keeps the conffile; purge leaves the root as it was. systemd does
// not run in a chroot: /usr/bin/systemctl is replaced by a stand-in that
// records its calls, and /run/systemd/system made, so that the maintainer
// scripts take the paths they take on a booted director. The stand-in
// passes the calls that only change files (preset, enable, mask...) to the
// real systemctl, offline (--root=/): deb-systemd-helper enables with
// `systemctl preset`.
func TestInstallRemovePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chroot and dpkg")
	}
	deb := packageDeb(t)
	root := installRoot(t)
	const calls = "/systemctl.calls"
	stub := `#!/bin/sh
echo "$*" >>` + calls + `
case " $* " in
*" preset "* | *" enable "* | *" disable "* | *" reenable "* | *" is-enabled "* | *" mask "* | *" unmask "*)
	exec /usr/bin/systemctl.real --root=/ "$@" ;;
esac
`
	if err := os.Rename(filepath.Join(root, "usr/bin/systemctl"), filepath.Join(root, "usr/bin/systemctl.real")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/systemctl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp/lvs-sync.deb"), mustRead(t, deb), 0o644); err != nil {
		t.Fatal(err)
	}
	in := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("chroot", append([]string{root}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("in the root: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// What systemctl was asked since the last look, one call a line.
	seen := 0
	systemctl := func() []string {
		b, _ := os.ReadFile(filepath.Join(root, calls))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(b) == 0 {
			lines = nil
		}
		news := lines[seen:]
		seen = len(lines)
		return news
	}
	ignored := func(p string) bool {
		return p == "tmp/lvs-sync.deb" || strings.HasPrefix(p, "var/lib/dpkg/") || strings.HasPrefix(p, "var/log/") ||
			strings.HasPrefix(p, "var/cache/debconf/") || p == strings.TrimPrefix(calls, "/")
	}
	before := tree(t, root, ignored)

	in("dpkg", "-i", "/tmp/lvs-sync.deb")
	if got := in("dpkg-query", "-W", "-f=${Status}", "lvs-sync"); got != "install ok installed" {
		t.Fatalf("after dpkg -i: status %q", got)
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/lvs-sync.service")
	// /lib or /usr/lib: one directory in a merged-/usr root.
	if dst, err := os.Readlink(wants); err != nil || !strings.HasSuffix(dst, "lib/systemd/system/lvs-sync.service") {
		t.Errorf("not enabled on install: %s: %q, %v", wants, dst, err)
	}
	for _, c := range systemctl() {
		t.Logf("install: systemctl %s", c)
		if strings.Contains(c, "start") {
			t.Errorf("started on a fresh install: systemctl %s", c)
		}
	}
	// The version make package stamped: the Makefile's VERSION.
	want := "lvs-sync " + strings.TrimSpace(runIn(t, testenv.RepoRoot(t), "git", "describe", "--tags", "--always", "--dirty")) + " ("
	if v := in("/usr/bin/lvs-sync", "version"); !strings.HasPrefix(v, want) {
		t.Errorf("lvs-sync version from /usr/bin: %q, want %q...", v, want)
	}
	if v := in("/usr/bin/lvs-sync", "validate", "-config", "/etc/lvs-sync"); !strings.Contains(v, "valid: 0 virtual services") {
		t.Errorf("validate of the shipped config: %q", v)
	}
	// Every module compiled into the binary has its paragraph in the
	// copyright file.
	copyright := string(mustRead(t, filepath.Join(root, "usr/share/doc/lvs-sync/copyright")))
	mods := 0
	for line := range strings.Lines(runIn(t, root, "go", "version", "-m", filepath.Join(root, "usr/bin/lvs-sync"))) {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "dep" {
			continue
		}
		mods++
		if !strings.Contains(copyright, "\nFiles: vendor/"+f[1]+"/*\n") {
			t.Errorf("copyright: no paragraph for module %s %s", f[1], f[2])
		}
	}
	if mods == 0 {
		t.Error("go version -m lists no module in /usr/bin/lvs-sync")
	}
	// The commented examples are valid too, once uncommented.
	conf := string(mustRead(t, filepath.Join(root, "etc/lvs-sync/lvs-sync.hcl")))
	uncomment := regexp.MustCompile(`(?m)^# (virtual_service "|  [a-z]|\}$)`)
	if err := os.WriteFile(filepath.Join(root, "tmp/examples.hcl"), []byte(uncomment.ReplaceAllString(conf, "$1")), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := in("/usr/bin/lvs-sync", "validate", "-config", "/tmp/examples.hcl"); !strings.Contains(v, "valid: 2 virtual services") {
		t.Errorf("validate of the config's examples, uncommented: %q", v)
	}
	if err := os.Remove(filepath.Join(root, "tmp/examples.hcl")); err != nil {
		t.Fatal(err)
	}

	// The same version again: postinst configure with the old version, an
	// upgrade's path.
	in("dpkg", "-i", "/tmp/lvs-sync.deb")
	if c := systemctl(); !slices.Contains(c, "try-restart lvs-sync.service") {
		t.Errorf("an upgrade does not try-restart lvs-sync: systemctl %q", c)
	}

	in("dpkg", "-r", "lvs-sync")
	if c := systemctl(); !slices.Contains(c, "stop lvs-sync.service") {
		t.Errorf("removal does not stop lvs-sync: systemctl %q", c)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/lvs-sync")); !os.IsNotExist(err) {
		t.Errorf("after dpkg -r: /usr/bin/lvs-sync: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/lvs-sync/lvs-sync.hcl")); err != nil {
		t.Errorf("dpkg -r removed the conffile: %v", err)
	}

	in("dpkg", "-P", "lvs-sync")
	if _, err := os.Stat(filepath.Join(root, "etc/lvs-sync")); !os.IsNotExist(err) {
		t.Errorf("after dpkg -P: /etc/lvs-sync: %v", err)
	}
	after := tree(t, root, ignored)
	var added, gone []string
	for p := range after {
		if !before[p] {
			added = append(added, p)
		}
	}
	for p := range before {
		if !after[p] {
			gone = append(gone, p)
		}
	}
	slices.Sort(added)
	slices.Sort(gone)
	if len(added)+len(gone) > 0 {
		t.Errorf("install and purge did not leave the root as it was: left %q, took %q", added, gone)
	}
}

// tree lists the paths under root, relative, but the ignored ones and the
// API file systems.
func tree(t *testing.T, root string, ignored func(string) bool) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && (rel == "proc" || rel == "sys" || rel == "dev") {
			return fs.SkipDir
		}
		if rel != "." && !ignored(rel) {
			paths[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func runIn(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}
