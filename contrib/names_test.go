package contrib

import (
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v2"

	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/internal/announce"
	"github.com/lvs-sync/lvs-sync/internal/metrics"
	"github.com/lvs-sync/lvs-sync/internal/status"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// exported returns every metric name lvs-sync's /metrics can show: a
// registry as `run` builds it (metrics.New, NewHA, NewBGP), fed until
// every collector it describes has series, then gathered. A histogram's
// and a summary's series names (_bucket, _sum, _count) are included.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := &describing{Registry: prometheus.NewRegistry()}
	m := metrics.New(reg, "test")
	metrics.NewHA(reg)
	sp := status.Speaker{
		Announced: []netip.Prefix{netip.MustParsePrefix("10.10.10.60/32")},
		Neighbors: []status.SpeakerNeighbor{{Address: netip.MustParseAddr("10.7.0.1"), ASN: 65000, State: "established", Since: time.Unix(0, 0), Announced: 1}},
	}
	view := status.BGPOf(sp, []announce.VIP{{Addr: netip.MustParseAddr("10.10.10.60"), Announced: true}}, time.Unix(60, 0))
	metrics.NewBGP(reg, func() *status.BGPView { return view })

	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  address    = "10.0.0.1:80"
  forwarding = "gate"
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	web := lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	real := lvs.RealKey{Addr: netip.MustParseAddr("10.1.0.1"), Port: 80}
	table := ipvs.State{web: {Scheduler: "wlc", Reals: map[lvs.RealKey]ipvs.Real{real: {Weight: 1}}}}
	res := render.Result{State: table, Origins: map[lvs.ServiceKey]map[lvs.RealKey]render.Origin{web: {real: {Source: render.SourcePassing}}}}
	m.SawQuery("web", 7, nil)
	m.SawQuery("web", 0, errNoAnswer)
	m.SawSync(ipvs.Result{Done: map[ipvs.OpKind]int{ipvs.AddReal: 1}, Errors: map[ipvs.OpKind]int{ipvs.AddReal: 1}}, true, 0)
	m.SawTable(table, status.Input{Config: cfg, Owns: func(lvs.ServiceKey) bool { return true }, Desired: &res}, true, true)
	m.ObserveApplyLatency(time.Millisecond)
	m.SawConflicts(0)
	m.SawFiltered([]string{"web"})
	m.ConfigReload(true)
	metrics.NewTraffic(reg, func() ([]status.ServiceView, error) {
		return status.Services(table, status.Input{Config: cfg, Owns: func(lvs.ServiceKey) bool { return true }}), nil
	})

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[f.GetName()+"_bucket"], names[f.GetName()+"_sum"], names[f.GetName()+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[f.GetName()+"_sum"], names[f.GetName()+"_count"] = true, true
		}
	}
	// A metric added to internal/metrics but not fed above would be
	// missing from the list, and a dashboard using it wrongly refused:
	// every description must have its family.
	if described := reg.described(); described != len(families) {
		t.Fatalf("the registry describes %d metrics but gathered %d: feed the new ones in exported()", described, len(families))
	}
	return names
}

type errString string

func (e errString) Error() string { return string(e) }

const errNoAnswer = errString("no answer")

// describing is a registry that counts what its collectors describe.
type describing struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *describing) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *describing) described() int {
	n := 0
	for _, c := range r.collectors {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for range ch {
			n++
		}
	}
	return n
}

var (
	// PromQL's parts that are not metric names, removed before the names
	// are read: strings (label values, count_values' label), label
	// matchers, ranges and subqueries, grouping label lists, Grafana's
	// variables.
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	grafanaVar   = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}

	// Grafana's label_values(METRIC_SELECTOR, LABEL), and the form with
	// a label alone.
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*\w+\s*\)$`)
	labelValuesOnly = regexp.MustCompile(`^label_values\(\s*\w+\s*\)$`)

	// A name of ours mentioned anywhere: in an annotation, a panel's
	// description, a test's series.
	ourName = regexp.MustCompile(`\blvs_sync_[a-z0-9_]*[a-z0-9]`)
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, matchers, ranges and grouping lists are
// gone that are neither a keyword, nor a function (followed by "("), nor
// part of a number or a duration.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = grafanaVar.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // 5m, 1e3
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") || promKeywords[strings.ToLower(name)] {
			continue
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (instance, le) (rate(lvs_sync_catalog_to_kernel_seconds_bucket{job=~"$job"}[$__rate_interval]))`: {"lvs_sync_catalog_to_kernel_seconds_bucket"},
		`a > 0 < 2 unless on (x) group_left (y) b offset 5m`:                                                     {"a", "b"},
		`count_values by (vs) ("fp", up{a="{b}"}) != bool max without (instance) (nope_total[1h:1m])`:            {"up", "nope_total"},
		`histogram_quantile(0.99, x) * 1e3 + Inf`:                                                                {"x"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestOnlyExportedMetrics: the alert rules, their tests and the
// dashboard use only metric names lvs-sync exports, in their expressions
// and wherever else they name one of ours (annotations, descriptions,
// recorded series).
func TestOnlyExportedMetrics(t *testing.T) {
	ours := exported(t)
	check := func(where string, names []string) {
		t.Helper()
		for _, name := range names {
			if !ours[name] {
				t.Errorf("%s: %s is not a metric lvs-sync exports", where, name)
			}
		}
	}

	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(read(t, rulesFile), &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts++
			}
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: %s%s: no metric read from %q", rulesFile, r.Alert, r.Record, r.Expr)
			}
			check(rulesFile+": "+r.Alert+r.Record, names)
		}
	}
	if alerts < 12 {
		t.Errorf("%s: %d alerts read, want the 12 of issue 22", rulesFile, alerts)
	}

	exprs := dashboardExprs(t)
	if len(exprs) < 20 {
		t.Errorf("%s: %d expressions read: the walk misses panels", dashboardFile, len(exprs))
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: no metric read from %q", dashboardFile, e)
		}
		check(dashboardFile, names)
		for _, n := range names {
			used[n] = true
		}
	}
	t.Logf("%s uses %d metrics: %s", dashboardFile, len(used), strings.Join(slices.Sorted(maps.Keys(used)), " "))

	for _, file := range []string{rulesFile, rulesTestFile, dashboardFile} {
		check(file, ourName.FindAllString(string(read(t, file)), -1))
	}
}
