package config

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Load reads a config file, or every *.hcl file of a directory merged in
// name order (see Files). On any problem it returns a *DiagnosticsError
// carrying all of them, and no config.
func Load(path string) (*Config, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	parser := hclparse.NewParser()
	var diags hcl.Diagnostics
	var bodies []hcl.Body
	for _, f := range files {
		file, d := parser.ParseHCLFile(f)
		diags = append(diags, d...)
		if file != nil {
			bodies = append(bodies, file.Body)
		}
	}
	var cfg *Config
	if !diags.HasErrors() {
		var d hcl.Diagnostics
		cfg, d = decode(bodies)
		diags = append(diags, d...)
	}
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: sortDiags(diags, files), Files: parser.Files()}
	}
	withWarnings(cfg, diags, files, parser)
	return cfg, nil
}

// withWarnings keeps the warnings of a valid config on it.
func withWarnings(cfg *Config, diags hcl.Diagnostics, files []string, parser *hclparse.Parser) {
	if len(diags) > 0 {
		cfg.Warnings = &DiagnosticsError{Diags: sortDiags(diags, files), Files: parser.Files()}
	}
}

// Parse reads a config from memory; filename is used in diagnostics.
func Parse(src []byte, filename string) (*Config, error) {
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	var cfg *Config
	if !diags.HasErrors() {
		var d hcl.Diagnostics
		cfg, d = decode([]hcl.Body{file.Body})
		diags = append(diags, d...)
	}
	if diags.HasErrors() {
		return nil, &DiagnosticsError{Diags: sortDiags(diags, []string{filename}), Files: parser.Files()}
	}
	withWarnings(cfg, diags, []string{filename}, parser)
	return cfg, nil
}

// Files lists the files that make up the config at path, in the order Load
// reads them: path itself when it is a file, else the *.hcl files of the
// directory in name order. A directory without any is an error, as is a
// path that cannot be read.
func Files(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.hcl"))
	if err != nil {
		return nil, fmt.Errorf("listing config directory %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("config directory %s has no *.hcl files", path)
	}
	slices.Sort(files)
	return files, nil
}

// sortDiags orders diagnostics as a reader meets them: by file, in the
// order the files are read, then by position.
func sortDiags(diags hcl.Diagnostics, files []string) hcl.Diagnostics {
	rank := func(d *hcl.Diagnostic) (int, int) {
		if d.Subject == nil {
			return len(files), 0
		}
		i := slices.Index(files, d.Subject.Filename)
		if i < 0 {
			i = len(files)
		}
		return i, d.Subject.Start.Byte
	}
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		fa, ba := rank(a)
		fb, bb := rank(b)
		return cmp.Or(cmp.Compare(fa, fb), cmp.Compare(ba, bb))
	})
	return diags
}

// ReadTokenFile reads the token_file of a block (consul, api) as consul/api
// reads a token file: its content, trimmed; it must not be empty.
func ReadTokenFile(block, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s token_file %s: %w", block, path, err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("%s token_file %s is empty", block, path)
	}
	return token, nil
}
