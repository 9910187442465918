package ownership

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// holdEnv makes the test binary a second process that holds a state
// file's lock: it opens the file, says "locked", and waits for stdin to end.
const holdEnv = "LVS_SYNC_TEST_HOLD_STATE_FILE"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		o, err := Open(path)
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = o.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var (
	web = key("tcp://10.10.10.60:80")
	api = key("tcp://10.10.10.61:8080")
	dns = key("udp://[2001:db8::53]:53")
)

func key(s string) lvs.ServiceKey {
	k, err := lvs.ParseServiceKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func set(keys ...lvs.ServiceKey) map[lvs.ServiceKey]bool {
	m := map[lvs.ServiceKey]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func writeState(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	good := `{"version": 1, "services": ["tcp://10.10.10.60:80", "udp://[2001:db8::53]:53"]}`
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		owns    []lvs.ServiceKey
		unknown bool
	}{
		{name: "missing", content: nil},
		{name: "good", content: &good, owns: []lvs.ServiceKey{web, dns}},
		{name: "none owned", content: ptr(`{"version":1,"services":[]}`)},
		{name: "empty", content: ptr(""), unknown: true},
		{name: "blank", content: ptr(" \n\t"), unknown: true},
		{name: "truncated", content: ptr(good[:30]), unknown: true},
		{name: "not json", content: ptr("services = web\n"), unknown: true},
		{name: "future version", content: ptr(`{"version":2,"services":["tcp://10.10.10.60:80"]}`), unknown: true},
		{name: "no version", content: ptr(`{"services":["tcp://10.10.10.60:80"]}`), unknown: true},
		{name: "bad key", content: ptr(`{"version":1,"services":["tcp://10.10.10.60:80","web"]}`), unknown: true},
		{name: "nul bytes", content: ptr("\x00\x00\x00\x00"), unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if tc.content != nil {
				writeState(t, path, *tc.content)
			}
			for _, open := range []struct {
				name string
				fn   func(string) (*Record, error)
			}{{"Load", Load}, {"Open", Open}} {
				o, err := open.fn(path)
				if o == nil {
					t.Fatalf("%s: no record: %v", open.name, err)
				}
				if got := errors.Is(err, ErrUnknown); got != tc.unknown {
					t.Errorf("%s: error %v, want unknown %v", open.name, err, tc.unknown)
				}
				if !tc.unknown && err != nil {
					t.Errorf("%s: %v", open.name, err)
				}
				if tc.unknown {
					// The error names the file and the way out.
					for _, want := range []string{path, "move it aside", "mv " + path + " " + path + ".bad", "delete none"} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: error %q does not say %q", open.name, err, want)
						}
					}
				}
				if o.Unknown() != tc.unknown {
					t.Errorf("%s: Unknown() = %v, want %v", open.name, o.Unknown(), tc.unknown)
				}
				if got := o.Keys(); !slices.Equal(got, tc.owns) {
					t.Errorf("%s: owns %v, want %v", open.name, got, tc.owns)
				}
				// An unknown record owns nothing, not even what its file names.
				for _, k := range []lvs.ServiceKey{web, api, dns} {
					if got, want := o.Owns(k), slices.Contains(tc.owns, k); got != want {
						t.Errorf("%s: Owns(%s) = %v, want %v", open.name, k, got, want)
					}
				}
				if err := o.Close(); err != nil {
					t.Errorf("%s: close: %v", open.name, err)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

// An unknown record never writes over the file: the operator moves it
// aside, and nothing lvs-sync does meanwhile makes it own anything.
func TestUnknownIgnoresSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	writeState(t, path, "{garbage")
	o, err := Open(path)
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("open: %v", err)
	}
	defer o.Close()
	if err := o.Set(set(web, api)); err != nil {
		t.Fatalf("set: %v", err)
	}
	if o.Owns(web) || len(o.Keys()) != 0 || !o.Unknown() {
		t.Errorf("after Set: owns web %v, keys %v, unknown %v", o.Owns(web), o.Keys(), o.Unknown())
	}
	if b, _ := os.ReadFile(path); string(b) != "{garbage" {
		t.Errorf("file written over: %q", b)
	}
}

func TestSetWritesDurablyAndOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.json")
	o, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.Set(set(web, dns)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"version\": 1,\n  \"services\": [\n    \"tcp://10.10.10.60:80\",\n    \"udp://[2001:db8::53]:53\"\n  ]\n}\n"
	if string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file left behind: %v", err)
	}
	// The same services again: no write. The file is changed behind the
	// record's back, which an unneeded write would undo.
	writeState(t, path, `{"version":1,"services":[]}`)
	if err := o.Set(map[lvs.ServiceKey]bool{web: true, dns: true, api: false}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"version":1,"services":[]}` {
		t.Errorf("unchanged Set wrote the file: %s", b)
	}
	if !o.Owns(web) || o.Owns(api) {
		t.Errorf("owns web %v api %v", o.Owns(web), o.Owns(api))
	}
}

// A write that fails leaves the old file whole, keeps the new services in
// memory, and is retried by the next Set even when nothing changed, and
// by Close.
func TestFailedWriteKeepsOldFileAndRetries(t *testing.T) {
	for _, retry := range []string{"Set", "Close"} {
		t.Run(retry, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			old := `{"version":1,"services":["tcp://10.10.10.60:80"]}`
			writeState(t, path, old)
			o, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			// The temp file's name is taken by a directory that is not
			// empty: creating it fails even for root, which a read-only
			// directory would not stop.
			block := path + ".tmp"
			if err := os.MkdirAll(filepath.Join(block, "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			err = o.Set(set(web, api))
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "will retry") {
				t.Fatalf("set with a blocked temp file: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != old {
				t.Errorf("old file not intact after a failed write: %q", b)
			}
			if !o.Owns(api) {
				t.Errorf("the new services are not held in memory")
			}
			if err := o.Set(set(web, api)); err == nil {
				t.Errorf("second set while still blocked: no error")
			}
			if err := os.RemoveAll(block); err != nil {
				t.Fatal(err)
			}
			if retry == "Set" {
				err = o.Set(set(web, api))
			} else {
				err = o.Close()
			}
			if err != nil {
				t.Fatalf("retry by %s: %v", retry, err)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := []lvs.ServiceKey{web, api}; !slices.Equal(got.Keys(), want) {
				t.Errorf("after retry the file owns %v, want %v", got.Keys(), want)
			}
		})
	}
}

func TestOpenRefusesASecondHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	first, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// The rename dance replaces the state file; the lock is beside it and
	// still holds.
	if err := first.Set(set(web)); err != nil {
		t.Fatal(err)
	}
	// A second Open in the same process is a second open file
	// description, and flock conflicts between those too.
	_, err = Open(path)
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second open: %v, want a LockedError", err)
	}
	if locked.Pid != os.Getpid() || locked.Path != path || locked.Lock != LockPath(path) {
		t.Errorf("locked error %+v, want pid %d", locked, os.Getpid())
	}
	for _, want := range []string{path, LockPath(path), "only one lvs-sync"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A reader is never refused.
	if r, err := Load(path); err != nil || !r.Owns(web) {
		t.Errorf("load while locked: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := Open(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	if !second.Owns(web) {
		t.Errorf("second holder does not see the first's services")
	}
	_ = second.Close()
}

// A holder that has not written its pid yet (or an old lock file) is still
// a holder; the error just cannot name it.
func TestOpenRefusesAForeignFlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	f, err := os.OpenFile(LockPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path)
	var locked *LockedError
	if !errors.As(err, &locked) || locked.Pid != 0 || !strings.Contains(err.Error(), "another process holding") {
		t.Fatalf("open beside a foreign flock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	o, err := Open(path)
	if err != nil {
		t.Fatalf("open after unlock: %v", err)
	}
	_ = o.Close()
}

// A second lvs-sync, a real process, holds the lock: Open names its pid;
// when it dies, even by SIGKILL, the lock goes with it.
func TestOpenRefusesWhileAnotherProcessHolds(t *testing.T) {
	for _, end := range []string{"exit", "kill"} {
		t.Run(end, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			writeState(t, path, `{"version":1,"services":["tcp://10.10.10.60:80"]}`)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), holdEnv+"="+path)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if line != "locked\n" {
				t.Fatalf("holder said %q (%v)", line, err)
			}

			_, err = Open(path)
			var locked *LockedError
			if !errors.As(err, &locked) || locked.Pid != cmd.Process.Pid {
				t.Fatalf("open while pid %d holds: %v", cmd.Process.Pid, err)
			}
			if o, err := Load(path); err != nil || !o.Owns(web) {
				t.Errorf("load while another process holds: %v", err)
			}

			if end == "exit" {
				_ = stdin.Close()
			} else {
				_ = cmd.Process.Kill()
			}
			_ = cmd.Wait()
			// The kernel closed the holder's files before Wait returned.
			o, err := Open(path)
			if err != nil {
				t.Fatalf("lock not released after the holder's %s: %v", end, err)
			}
			_ = o.Close()
		})
	}
}

func TestMemoryRecord(t *testing.T) {
	o, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Set(set(web)); err != nil || !o.Owns(web) || o.Unknown() {
		t.Errorf("memory record: %v, owns %v", err, o.Owns(web))
	}
	if err := o.Close(); err != nil {
		t.Error(err)
	}
}
