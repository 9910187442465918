package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadTokenFile: a token_file is its content, trimmed; an empty or
// unreadable one is an error that names the block and the file.
func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "good"), filepath.Join(dir, "empty")
	if err := os.WriteFile(good, []byte("  secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadTokenFile("consul", good); err != nil || tok != "secret" {
		t.Errorf("good: %q, %v; want \"secret\"", tok, err)
	}
	if _, err := ReadTokenFile("api", empty); err == nil || err.Error() != "api token_file "+empty+" is empty" {
		t.Errorf("empty: %v", err)
	}
	if _, err := ReadTokenFile("consul", filepath.Join(dir, "none")); err == nil {
		t.Error("missing file: no error")
	}
}
