// Package benchgoal holds the goals of `make bench` in one place: each
// figure a `bench …:` line prints, the goal issue 23 sets for it, and
// whether a line met it. The benchmarks that print the lines (the watch
// against a real agent on the host, the kernel's in the VM) call Verdicts
// on their own lines, so that a goal changes here and nowhere else. A
// leaf of the standard library.
package benchgoal

import (
	"fmt"
	"strconv"
	"strings"
)

// Goal is one figure's bound: Field Op Value, as "change_p99_ms<=500".
type Goal struct {
	Field string
	Op    string // "<=", "<" or ">="
	Value float64
}

func (g Goal) String() string {
	return g.Field + g.Op + strconv.FormatFloat(g.Value, 'f', -1, 64)
}

// met is whether v meets g.
func (g Goal) met(v float64) bool {
	switch g.Op {
	case "<=":
		return v <= g.Value
	case "<":
		return v < g.Value
	case ">=":
		return v >= g.Value
	}
	panic("benchgoal: unknown op " + g.Op)
}

// goals are issue 23's, by the start of the line they judge (its prefix
// and the fields that name the case, each followed by a space).
var goals = []struct {
	line  string
	goals []Goal
}{
	// A weight edit or a healthy deregistration → applied (change), a
	// check's flip → applied, alone, while sweeps run (busy_flip: edits
	// among the flips) and while a reload runs (reload_flip), the
	// daemon's memory and idle CPU, the first complete sync, within the
	// agent's default connection limit of the host.
	{"bench watch: services=1000 ", []Goal{{"flip_p99_ms", "<=", 100}, {"busy_flip_p99_ms", "<=", 100}, {"reload_flip_p99_ms", "<=", 100},
		{"change_p99_ms", "<=", 500}, {"rss_mib", "<=", 48}, {"idle_cpu_pct", "<", 0.5}, {"conns_max", "<=", 8}, {"http_429", "<=", 0}}},
	{"bench watch: services=10000 ", []Goal{{"flip_p99_ms", "<=", 100}, {"busy_flip_p99_ms", "<=", 100}, {"reload_flip_p99_ms", "<=", 100},
		{"change_p99_ms", "<=", 1000}, {"rss_mib", "<=", 256}, {"idle_cpu_pct", "<", 0.5}, {"first_sync_s", "<=", 3},
		{"conns_max", "<=", 8}, {"http_429", "<=", 0}}},
	// The kernel's figures in the VM, as ratios to ipvsadm doing the same
	// (ipvsadm's time over lvs-sync's).
	{"bench kernel: case=load-1kx10 ", []Goal{{"ratio", ">=", 10}}},
	{"bench kernel: case=load-10kx10 ", []Goal{{"ratio", ">=", 10}}},
	{"bench kernel: case=read-1kx10 ", []Goal{{"ratio", ">=", 5}}},
	{"bench kernel: case=load-1kx10-mh ", []Goal{{"ratio", ">=", 10}}},
	// `lvs-sync run` from start to the full 1k × 10 table from a real
	// Consul, against `ipvsadm -R` of the same table.
	{"bench kernel: case=daemon-load-1kx10 ", []Goal{{"ratio", ">=", 3}}},
	// The daemon's own leg, a catalog answer → applied, in the guest.
	{"bench kernel: case=own-leg-p99 ", []Goal{{"lvs_sync_ms", "<=", 10}}},
	// The pair's takeover after the active's link is cut, in the VM: the
	// new connections' gap, and no director that kept its VIP on eth0
	// when it came back beside the new active.
	{"bench ha: case=takeover ", []Goal{{"takeover_p50_ms", "<=", 300}, {"two_holders", "<=", 0}}},
}

// For is the goals of line, none if issue 23 sets none for it.
func For(line string) []Goal {
	for _, g := range goals {
		if strings.HasPrefix(line+" ", g.line) {
			return g.goals
		}
	}
	return nil
}

// Verdicts judges line's fields against its goals: "field<=goal:met" or
// ":MISSED" each, ":absent" for a field the line lacks (a figure not
// measured is not met), "" for a line without goals. A line whose case
// failed (result=fail) misses every goal: its figures are not a run's.
func Verdicts(line string) string {
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	var out []string
	for _, g := range For(line) {
		v, err := strconv.ParseFloat(fields[g.Field], 64)
		switch {
		case fields["result"] != "" && fields["result"] != "pass":
			out = append(out, g.String()+":MISSED")
		case fields[g.Field] == "" || err != nil:
			out = append(out, g.String()+":absent")
		case g.met(v):
			out = append(out, g.String()+":met")
		default:
			out = append(out, g.String()+":MISSED")
		}
	}
	return strings.Join(out, " ")
}

// Annotate is line with its verdicts after "goals:", or line alone.
func Annotate(line string) string {
	if v := Verdicts(line); v != "" {
		return fmt.Sprintf("%s goals: %s", line, v)
	}
	return line
}
