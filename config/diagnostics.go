package config

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// DiagnosticsError is a config that could not be loaded: every problem found,
// with the sources needed to show each in context.
type DiagnosticsError struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// Error lists the problems one a line as "file:line:column: summary; detail".
func (e *DiagnosticsError) Error() string {
	lines := make([]string, 0, len(e.Diags))
	for _, d := range e.Diags {
		lines = append(lines, oneLine(d))
	}
	return strings.Join(lines, "\n")
}

func oneLine(d *hcl.Diagnostic) string {
	where := "config"
	if d.Subject != nil {
		where = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	sev := "error"
	if d.Severity == hcl.DiagWarning {
		sev = "warning"
	}
	if d.Detail == "" {
		return fmt.Sprintf("%s: %s: %s", where, sev, d.Summary)
	}
	return fmt.Sprintf("%s: %s: %s; %s", where, sev, d.Summary, d.Detail)
}

// Write prints every problem as a file:line:column line followed by HCL's
// own rendering with the offending source snippet, as Terraform and Nomad
// users know it.
func (e *DiagnosticsError) Write(w io.Writer, width uint, color bool) error {
	tw := hcl.NewDiagnosticTextWriter(w, e.Files, width, color)
	for _, d := range e.Diags {
		if _, err := fmt.Fprintln(w, oneLine(d)); err != nil {
			return err
		}
		if err := tw.WriteDiagnostic(d); err != nil {
			return err
		}
	}
	return nil
}
