package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/ownership"
)

// A second `lvs-sync run` on a state file that one holds refuses to start,
// naming the file and the holder, before it touches the kernel.
func TestRunRefusesAStateFileInUse(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	holder, err := ownership.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	cfg := writeConfig(t, fmt.Sprintf("director {\n  state_file = %q\n}\nvirtual_service \"web\" {\n  address = \"10.0.0.1:80\"\n  forwarding = \"gate\"\n}\n", state))
	code, _, errOut := cli("run", "-config", cfg)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"another lvs-sync runs on this state file", state, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
