package contrib

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

// needPromtool installs Debian's prometheus package, which has promtool,
// if promtool is not on PATH (scripts/need.sh). A missing one fails the
// test: none is skipped.
func needPromtool(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts", "need.sh"), "promtool", "prometheus").CombinedOutput(); err != nil {
		t.Fatalf("no promtool: scripts/need.sh promtool prometheus: %v\n%s", err, out)
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool: %v", err)
	}
	return p
}

func promtool(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = testenv.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestPromtool: the alert rules are valid, their unit tests pass (each
// alert firing on recorded series, and not firing where it must not), and
// every PromQL expression of the dashboard parses.
func TestPromtool(t *testing.T) {
	bin := needPromtool(t)
	t.Run("check rules", func(t *testing.T) {
		promtool(t, bin, "check", "rules", rulesFile)
	})
	t.Run("test rules", func(t *testing.T) {
		promtool(t, bin, "test", "rules", rulesTestFile)
	})
	t.Run("dashboard expressions", func(t *testing.T) {
		// Each expression of the dashboard as a recording rule, Grafana's
		// interval variables given a value, for promtool's parser.
		exprs := dashboardExprs(t)
		type rule struct {
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		}
		var rules []rule
		grafanaVars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
		for i, e := range exprs {
			rules = append(rules, rule{Record: "dashboard:expr_" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Expr: grafanaVars.Replace(e)})
		}
		out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		promtool(t, bin, "check", "rules", path)
	})
}

const (
	rulesFile     = "contrib/prometheus/lvs-sync.rules.yml"
	rulesTestFile = "contrib/prometheus/lvs-sync.test.yml"
	dashboardFile = "contrib/grafana/lvs-sync.json"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dashboardExprs returns every PromQL expression of the dashboard: the
// targets' expr, and the metric selector of each label_values() query of
// its variables.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var dash any
	if err := json.Unmarshal(read(t, dashboardFile), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func(v any, inTemplating bool)
	walk = func(v any, inTemplating bool) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				exprs = append(exprs, e)
			}
			if inTemplating && v["type"] == "query" {
				q, _ := v["query"].(string)
				if m, ok := v["query"].(map[string]any); ok {
					q, _ = m["query"].(string)
				}
				if sel := labelValues.FindStringSubmatch(strings.TrimSpace(q)); sel != nil {
					exprs = append(exprs, sel[1])
				} else if q != "" && !labelValuesOnly.MatchString(q) {
					t.Errorf("%s: variable %v: a query this test does not read: %q", dashboardFile, v["name"], q)
				}
			}
			for k, c := range v {
				walk(c, inTemplating || k == "templating")
			}
		case []any:
			for _, c := range v {
				walk(c, inTemplating)
			}
		}
	}
	walk(dash, false)
	return exprs
}
