package importtest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The stand-in for ipvsadm: a program (./fakeipvsadm) that
// keeps its table in DIR/table, in Table.String's form, and records every
// call in DIR/calls. It answers the calls ldirectord makes: -L -n [--thresholds],
// -S -n, and the commands that change the table, which it applies as
// ipvsadm would, refusing what ipvsadm refuses (adding a service twice,
// deleting a real that is not there).

// FakeEnv names the directory of the stand-in's state.
const FakeEnv = "LVS_SYNC_FAKE_IPVSADM"

// FakeMain runs the stand-in when FakeEnv is set and returns false
// otherwise: the whole of ./fakeipvsadm.
func FakeMain() (int, bool) {
	dir := os.Getenv(FakeEnv)
	if dir == "" {
		return 0, false
	}
	return fake(dir, os.Args[1:], os.Stdout, os.Stderr), true
}

func fake(dir string, args []string, stdout, stderr io.Writer) int {
	if err := appendLine(filepath.Join(dir, "calls"), strings.Join(args, " ")); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	t, err := LoadTable(dir)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	switch {
	case len(args) >= 1 && (args[0] == "-L" || args[0] == "-l"):
		fmt.Fprint(stdout, t.List(strings.Contains(strings.Join(args, " "), "--thresholds")))
		return 0
	case len(args) >= 1 && args[0] == "-S":
		fmt.Fprint(stdout, t.String())
		return 0
	}
	if err := t.Apply(args); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "table.new"), []byte(t.String()), 0o644); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := os.Rename(filepath.Join(dir, "table.new"), filepath.Join(dir, "table")); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	return 0
}

// LoadTable reads the stand-in's table in dir; none yet is empty.
func LoadTable(dir string) (Table, error) {
	b, err := os.ReadFile(filepath.Join(dir, "table"))
	if os.IsNotExist(err) {
		return Table{}, nil
	}
	if err != nil {
		return nil, err
	}
	return Parse(string(b))
}

// InstallFake makes dir/ipvsadm a script that runs the stand-in binary
// fake (./fakeipvsadm, built) with its state in dir.
func InstallFake(dir, fake string) error {
	script := fmt.Sprintf("#!/bin/sh\n%s=%q exec %q \"$@\"\n", FakeEnv, dir, fake)
	return os.WriteFile(filepath.Join(dir, "ipvsadm"), []byte(script), 0o755)
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
