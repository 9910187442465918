package render

import (
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/lvs"
)

var update = flag.Bool("update", false, "rewrite golden files")

// inst builds an instance; opts are "passing", "warning", "critical",
// "nodemaint", "svcmaint", "w=P/W", "tag=x", "meta=key=value",
// "tagged=lan_ipv6=ADDR" and "tagged=lan_ipv6=ADDR/PORT" (a tagged
// address, with a port).
func inst(node, addr string, port int, opts ...string) *catalog.Instance {
	in := &catalog.Instance{
		ID: fmt.Sprintf("%s-%d", node, port), Node: node, Address: addr, Port: port,
		Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing,
	}
	for _, o := range opts {
		switch {
		case o == string(catalog.Passing) || o == string(catalog.Warning) || o == string(catalog.Critical):
			in.Status = catalog.Health(o)
		case o == "nodemaint":
			in.NodeMaintenance = true
		case o == "svcmaint":
			in.ServiceMaintenance = true
		case strings.HasPrefix(o, "w="):
			if _, err := fmt.Sscanf(o, "w=%d/%d", &in.Weights.Passing, &in.Weights.Warning); err != nil {
				panic(err)
			}
		case strings.HasPrefix(o, "tagged="):
			tag, addr, _ := strings.Cut(strings.TrimPrefix(o, "tagged="), "=")
			ta := catalog.TaggedAddress{Address: addr}
			if a, p, ok := strings.Cut(addr, "/"); ok {
				ta.Address = a
				if _, err := fmt.Sscanf(p, "%d", &ta.Port); err != nil {
					panic(err)
				}
			}
			if in.TaggedAddresses == nil {
				in.TaggedAddresses = map[string]catalog.TaggedAddress{}
			}
			in.TaggedAddresses[tag] = ta
		case strings.HasPrefix(o, "tag="):
			in.Tags = append(in.Tags, strings.TrimPrefix(o, "tag="))
		case strings.HasPrefix(o, "meta="):
			k, v, _ := strings.Cut(strings.TrimPrefix(o, "meta="), "=")
			if in.Meta == nil {
				in.Meta = map[string]string{}
			}
			in.Meta[k] = v
		default:
			panic("unknown option " + o)
		}
	}
	return in
}

func snapshot(services map[string][]*catalog.Instance) catalog.Snapshot {
	snap := catalog.Snapshot{Services: map[string]*catalog.Service{}}
	for name, ins := range services {
		snap.Services[name] = &catalog.Service{Name: name, Index: 7, Instances: ins}
	}
	return snap
}

func TestRender(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		services map[string][]*catalog.Instance
	}{
		{
			// A mark's reals keep each packet's port (port 0), masq and
			// gate alike; an IPv6 instance is of the wrong family.
			name: "fwmark-reals-keep-the-port",
			config: `virtual_service "web" {
  fwmark      = 1
  vips        = ["10.10.10.60"]
  forwarding  = "masq"
  persistence = "300s"
  fallback    = "10.9.9.9"
}
virtual_service "web-dr" {
  fwmark     = 2
  vips       = ["10.10.10.61"]
  forwarding = "gate"
  service    = "web"
}
virtual_service "web6" {
  fwmark     = 1
  family     = "ipv6"
  vips       = ["2001:db8::60"]
  forwarding = "gate"
  service    = "web6"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8080, "passing"),
				inst("n2", "10.1.0.12", 8443, "passing"),
				inst("n3", "2001:db8::13", 80, "passing"),
			}, "web6": {
				inst("n4", "2001:db8::14", 443, "passing"),
				inst("n5", "2001:db8::15", 443, "critical"),
			}},
		},
		{
			// The same name in both catalogs is two services: each
			// virtual service takes its provider's, by its catalog key.
			name: "nomad-and-consul-web",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
virtual_service "web-nomad" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  service    = "web"
  provider   = "nomad"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("consul-n1", "10.1.0.11", 80, "passing"),
			}, "nomad/web": {
				inst("nomad-n1", "10.2.0.11", 80, "passing"),
				inst("nomad-n2", "10.2.0.12", 80, "passing", "w=3/1"),
				inst("nomad-n3", "10.2.0.13", 80, "critical"),
			}},
		},
		{
			name: "weights-by-status",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8080, "passing", "w=5/2"),
				inst("n2", "10.1.0.12", 8080, "warning", "w=5/2"),
				inst("n3", "10.1.0.13", 8080, "critical", "w=5/2"),
			}},
		},
		{
			name: "quiescent",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  quiescent  = true
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 80, "passing", "w=3/1"),
				inst("n3", "10.1.0.13", 80, "critical", "w=3/1"),
			}},
		},
		{
			name: "maintenance-drains-whatever-quiescent-says",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8080, "passing"),
				inst("n2", "10.1.0.12", 8080, "passing", "nodemaint"),
				inst("n3", "10.1.0.13", 8080, "critical", "svcmaint"),
			}},
		},
		{
			name: "tags-filter",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "ipip"
  tags       = ["prod", "eu"]
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 80, "tag=prod", "tag=eu", "tag=v2"),
				inst("n2", "10.1.0.12", 80, "tag=prod"),
				inst("n3", "10.1.0.13", 80),
			}},
		},
		{
			name: "masq-translates-ports-gate-does-not",
			config: `virtual_service "nat" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
  service    = "web"
}
virtual_service "dr" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  service    = "web"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8081),
				inst("n2", "10.1.0.12", 8082),
			}},
		},
		{
			name: "ipv6-and-udp-and-persistence",
			config: `virtual_service "dns6" {
  address     = "[2001:db8::53]:53"
  protocol    = "udp"
  forwarding  = "masq"
  scheduler   = "rr"
  service     = "dns"
  persistence = "60s"
}
virtual_service "dns4" {
  address    = "10.10.10.53:53"
  protocol   = "udp"
  forwarding = "masq"
  service    = "dns"
}
virtual_service "sctp" {
  address    = "10.10.10.54:3868"
  protocol   = "sctp"
  forwarding = "masq"
  scheduler  = "sh"
  service    = "dns"
}`,
			services: map[string][]*catalog.Instance{"dns": {
				inst("n1", "2001:db8::11", 5353),
				inst("n2", "10.1.0.12", 5353),
				inst("n3", "::ffff:10.1.0.13", 5353),
			}},
		},
		{
			name: "fallback-when-nothing-serves",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  fallback   = "10.9.9.9:80"
}
virtual_service "api" {
  address    = "10.10.10.62:443"
  forwarding = "masq"
  fallback   = "local"
}
virtual_service "api6" {
  address    = "[2001:db8::62]:443"
  forwarding = "masq"
  fallback   = "local"
  service    = "api"
}
virtual_service "ok" {
  address    = "10.10.10.63:80"
  forwarding = "gate"
  fallback   = "10.9.9.9:80"
}`,
			services: map[string][]*catalog.Instance{
				"web": {inst("n1", "10.1.0.11", 80, "critical"), inst("n2", "10.1.0.12", 80, "nodemaint")},
				"api": {},
				"ok":  {inst("n1", "10.1.0.11", 80, "critical"), inst("n2", "10.1.0.12", 80, "warning")},
			},
		},
		{
			name: "zero-warning-weight-means-fallback",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  fallback   = "10.9.9.9:80"
}`,
			services: map[string][]*catalog.Instance{"web": {inst("n1", "10.1.0.11", 80, "warning", "w=10/0")}},
		},
		{
			name: "bad-catalog-data-is-skipped",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "web1.example.com", 80),
				inst("n2", "10.1.0.12", 0),
				inst("n3", "2001:db8::13", 80),
				inst("n4", "10.1.0.14", 80, "w=100000/1"),
				inst("n5", "10.1.0.15", 80),
			}},
		},
		{
			name: "unusable-addresses-are-skipped",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
}
virtual_service "web6" {
  address    = "[2001:db8::60]:80"
  forwarding = "masq"
}`,
			services: map[string][]*catalog.Instance{
				"web": {
					inst("n1", "0.0.0.0", 80),
					inst("n2", "224.0.0.1", 80),
					inst("n3", "255.255.255.255", 80),
					inst("n4", "169.254.1.1", 80),
					inst("n5", "127.0.0.1", 80),
					inst("n6", "::ffff:224.0.0.2", 80),
					inst("n7", "10.1.0.17", 80),
				},
				"web6": {
					inst("n1", "::", 80),
					inst("n2", "ff02::1", 80),
					inst("n3", "fe80::1", 80),
					inst("n4", "fe80::1%eth0", 80),
					inst("n5", "::1", 80),
					inst("n6", "2001:db8::16", 80),
				},
			},
		},
		{
			name: "negative-weight-is-zero",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
  fallback   = "10.9.9.9:80"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 80, "w=-5/1"),
				inst("n2", "10.1.0.12", 80, "warning", "w=1/-1"),
			}},
		},
		{
			name: "scheduler-flags",
			config: `virtual_service "sh" {
  address         = "10.10.10.60:80"
  forwarding      = "gate"
  scheduler       = "sh"
  scheduler_flags = ["sh-fallback", "sh-port"]
  persistence     = "300s"
  quiescent       = true
  service         = "web"
}
virtual_service "mh" {
  address         = "10.10.10.61:80"
  forwarding      = "masq"
  scheduler       = "mh"
  scheduler_flags = ["mh-fallback"]
  service         = "web"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8080, "passing"),
				inst("n2", "10.1.0.12", 8080, "critical"),
			}},
		},
		{
			name: "two-instances-one-real",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8080, "warning", "w=4/2"),
				inst("n1", "10.1.0.11", 8081, "passing", "w=4/2"),
			}},
		},
		{
			// One service at IPv4 addresses with IPv6 tagged ones backs an
			// IPv4 and two IPv6 virtual services; one at an IPv6 address
			// with an IPv4 tagged one, the other way round.
			name: "dual-stack-from-tagged-addresses",
			config: `virtual_service "web4" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
  service    = "web"
}
virtual_service "web6" {
  address    = "[2001:db8::60]:80"
  forwarding = "masq"
  service    = "web"
}
virtual_service "web6dr" {
  address    = "[2001:db8::61]:80"
  forwarding = "gate"
  service    = "web"
}`,
			services: map[string][]*catalog.Instance{"web": {
				inst("n1", "10.1.0.11", 8080, "tagged=lan_ipv6=2001:db8:1::11"),
				inst("n2", "10.1.0.12", 8080, "tagged=lan_ipv6=2001:db8:1::12/8443", "tagged=wan_ipv6=2001:db8:2::12"),
				inst("n3", "10.1.0.13", 8080, "tagged=wan_ipv6=2001:db8:2::13/8444", "tagged=lan_ipv4=10.1.0.13"),
				inst("n4", "10.1.0.14", 8080),
				inst("n5", "2001:db8:1::15", 8080, "tagged=lan_ipv4=10.1.0.15/9090", "tagged=wan_ipv4=192.0.2.15"),
				inst("n6", "2001:db8:1::16", 8080, "tagged=wan_ipv4=192.0.2.16"),
				inst("n7", "10.1.0.17", 8080, "tagged=lan_ipv6=fe80::17"),
				inst("n8", "10.1.0.18", 8080, "tagged=lan_ipv6=10.1.0.18"),
				inst("n9", "10.1.0.19", 8080, "tagged=lan_ipv6=2001:db8:1::19/70000"),
			}},
		},
		{
			name: "service-options-and-thresholds",
			config: `virtual_service "web" {
  address             = "10.10.10.60:80"
  forwarding          = "gate"
  persistence         = "300s"
  persistence_netmask = "255.255.255.0"
  upper_threshold     = 100
  lower_threshold     = 50
}
virtual_service "web6" {
  address             = "[2001:db8::60]:80"
  forwarding          = "masq"
  persistence         = "60s"
  persistence_netmask = 64
}
virtual_service "dns" {
  address         = "10.10.10.53:53"
  protocol        = "udp"
  forwarding      = "masq"
  ops             = true
  upper_threshold = 10
}`,
			services: map[string][]*catalog.Instance{
				"web": {
					inst("n1", "10.1.0.11", 80),
					inst("n2", "10.1.0.12", 80, "meta=lvs-upper-threshold=20", "meta=lvs-lower-threshold=0"),
					inst("n3", "10.1.0.13", 80, "meta=lvs-upper-threshold=lots"),
					inst("n4", "10.1.0.14", 80, "meta=lvs-lower-threshold=200"),
					inst("n5", "10.1.0.15", 80, "meta=lvs-upper-threshold=0", "meta=lvs-lower-threshold=0"),
					inst("n6", "10.1.0.16", 80, "meta=lvs-upper-threshold= 7"),
				},
				"web6": {inst("n1", "2001:db8::11", 8080, "meta=lvs-upper-threshold=3")},
				"dns": {
					inst("n1", "10.1.0.11", 5353),
					inst("n2", "10.1.0.12", 5353, "meta=lvs-upper-threshold=4294967296"),
					inst("n3", "10.1.0.13", 5353, "meta=lvs-lower-threshold=10"),
				},
			},
		},
		{
			name: "service-unknown-to-consul",
			config: `virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}`,
			services: map[string][]*catalog.Instance{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.config), tt.name+".hcl")
			if err != nil {
				t.Fatal(err)
			}
			res := Render(cfg, snapshot(tt.services))
			got := describe(cfg, res)
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("render differs from %s (go test ./render -update to accept):\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
			// Pure: rendering again gives the same.
			if again := describe(cfg, Render(cfg, snapshot(tt.services))); again != got {
				t.Errorf("second render differs:\n%s", again)
			}
		})
	}
}

// describe is the golden form: ipvsadm save lines, then where each real
// came from, then the notes.
func describe(cfg *config.Config, res Result) string {
	var b strings.Builder
	b.WriteString(res.State.String())
	for _, k := range res.State.SortedKeys() {
		fmt.Fprintf(&b, "# %s = virtual_service %q\n", k, cfg.VirtualServiceAt(k).Name)
		for _, rk := range res.State[k].SortedReals() {
			o := res.Origins[k][rk]
			fmt.Fprintf(&b, "#   %s <- %s node=%q instance=%q status=%q\n", rk, o.Source, o.Node, o.InstanceID, o.Status)
		}
		var gone []lvs.RealKey
		for rk := range res.Origins[k] {
			if _, in := res.State[k].Reals[rk]; !in {
				gone = append(gone, rk)
			}
		}
		slices.SortFunc(gone, lvs.RealKey.Compare)
		for _, rk := range gone {
			o := res.Origins[k][rk]
			fmt.Fprintf(&b, "#   %s <- %s node=%q instance=%q status=%q (not in the state: drains)\n", rk, o.Source, o.Node, o.InstanceID, o.Status)
		}
	}
	names := make([]string, 0, len(res.Decisions))
	for name := range res.Decisions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, d := range res.Decisions[name] {
			fmt.Fprintf(&b, "# %s: %s/%s: %s\n", name, d.Instance.Node, d.Instance.ID, d.Rule)
		}
	}
	for _, n := range res.Notes() {
		fmt.Fprintf(&b, "# note: %s\n", n)
	}
	return b.String()
}

func TestLocalFallbackIsTheVIP(t *testing.T) {
	cfg, err := config.Parse([]byte(`virtual_service "web" {
  address    = "10.10.10.60:8443"
  forwarding = "masq"
  fallback   = "local"
}`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	res := Render(cfg, snapshot(nil))
	svc := res.State[cfg.VirtualServices[0].Key()]
	want := lvs.RealKey{Addr: netip.MustParseAddr("10.10.10.60"), Port: 8443}
	if r, ok := svc.Reals[want]; !ok || r.Weight != 1 || len(svc.Reals) != 1 {
		t.Errorf("reals = %v, want only %s with weight 1", svc.Reals, want)
	}
}

// TestUpdateRendersOnlyWhatChanged: Update gives what RenderAt gives, but
// renders again only the virtual services of the changed Consul services
// and those whose next change is due; the others are the previous
// result's, untouched.
func TestUpdateRendersOnlyWhatChanged(t *testing.T) {
	cfg, err := config.Parse([]byte(`
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
virtual_service "shop" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  hold       = "10s"
}`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	before := snapshot(map[string][]*catalog.Instance{
		"web":  {inst("n1", "10.1.0.11", 80, "passing")},
		"shop": {inst("n2", "10.1.0.21", 80, "passing")},
	})
	prev := RenderAt(cfg, before, History{Now: t0})
	after := snapshot(map[string][]*catalog.Instance{
		"web":  {inst("n1", "10.1.0.11", 80, "critical")},
		"shop": {inst("n2", "10.1.0.21", 80, "critical")}, // changed, but not said to be
	})
	onlyWeb := func(vs *config.VirtualService) bool { return vs.Service == "web" }
	got := Update(prev, cfg, after, History{Now: t0.Add(time.Second)}, onlyWeb)
	if !slices.Equal(got.Rendered, []string{"web"}) {
		t.Errorf("rendered %v, want only web", got.Rendered)
	}
	shop := cfg.VirtualService("shop").Key()
	if got.State[shop] != prev.State[shop] {
		t.Error("shop was rendered again though its service was not said to change")
	}
	web := cfg.VirtualService("web").Key()
	if want := RenderAt(cfg, after, History{Now: t0.Add(time.Second)}); !maps.Equal(got.State[web].Reals, want.State[web].Reals) {
		t.Errorf("web rendered by Update %v, by RenderAt %v", got.State[web].Reals, want.State[web].Reals)
	}
	// A hold that ends is due: shop renders again at its next change,
	// changed or not.
	key := InstanceKey{Node: "n2", ID: "n2-80"}
	held := History{Now: t0, LastCritical: map[InstanceKey]time.Time{key: t0.Add(-time.Second)}, Recovered: map[InstanceKey]time.Time{key: t0}}
	prev = RenderAt(cfg, before, held)
	if !prev.NextChange.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("next change %v, want the end of shop's hold", prev.NextChange)
	}
	held.Now = t0.Add(10 * time.Second)
	got = Update(prev, cfg, before, held, func(*config.VirtualService) bool { return false })
	if !slices.Equal(got.Rendered, []string{"shop"}) || !got.NextChange.IsZero() {
		t.Errorf("at the hold's end rendered %v (next %v), want shop and no next change", got.Rendered, got.NextChange)
	}
	if _, in := got.State[shop].Reals[realKey("10.1.0.21:80")]; !in {
		t.Error("shop's instance still held out after its hold")
	}
}

// TestUpdateAcrossReload: rendered from another config, Update renders
// again the virtual services defined anew (changed, added, or renamed),
// keeps those defined alike even when declared elsewhere in the files,
// leaves out the removed ones, and so equals a full render of the new
// config.
func TestUpdateAcrossReload(t *testing.T) {
	parse := func(src string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(src), "t.hcl")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	before := parse(`
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}
virtual_service "shop" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
}
virtual_service "old" {
  address    = "10.10.10.62:80"
  forwarding = "gate"
  service    = "web"
}`)
	after := parse(`
virtual_service "api" {
  address    = "10.10.10.63:80"
  forwarding = "gate"
  service    = "shop"
}

virtual_service "shop" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  scheduler  = "rr"
}
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "gate"
}`)
	t0 := time.Unix(1_700_000_000, 0)
	snap := snapshot(map[string][]*catalog.Instance{
		"web":  {inst("n1", "10.1.0.11", 80, "passing")},
		"shop": {inst("n2", "10.1.0.21", 80, "passing")},
	})
	prev := RenderAt(before, snap, History{Now: t0})
	none := func(*config.VirtualService) bool { return false }
	got := Update(prev, after, snap, History{Now: t0}, none)
	if !slices.Equal(got.Rendered, []string{"api", "shop"}) {
		t.Errorf("rendered %v, want api (added) and shop (changed): web is defined alike", got.Rendered)
	}
	web := after.VirtualService("web").Key()
	if got.State[web] != prev.State[web] {
		t.Error("web was rendered again though its definition did not change")
	}
	want := RenderAt(after, snap, History{Now: t0})
	if !reflect.DeepEqual(got.State, want.State) || !reflect.DeepEqual(got.Origins, want.Origins) ||
		!reflect.DeepEqual(got.Decisions, want.Decisions) {
		t.Errorf("across a reload Update gives\n%v\nwhere a full render gives\n%v", got.State, want.State)
	}
	if _, in := got.State[before.VirtualService("old").Key()]; in {
		t.Error("the removed virtual service is still in the state")
	}
	// The catalog changes said to have changed render again across a
	// reload as within one config.
	snap2 := snapshot(map[string][]*catalog.Instance{
		"web":  {inst("n1", "10.1.0.11", 80, "critical")},
		"shop": {inst("n2", "10.1.0.21", 80, "passing")},
	})
	got = Update(prev, after, snap2, History{Now: t0}, func(vs *config.VirtualService) bool { return vs.Service == "web" })
	if !slices.Equal(got.Rendered, []string{"api", "shop", "web"}) {
		t.Errorf("rendered %v, want web too: its service changed", got.Rendered)
	}
	if want := RenderAt(after, snap2, History{Now: t0}); !reflect.DeepEqual(got.State, want.State) {
		t.Errorf("Update %v, full render %v", got.State, want.State)
	}
}

// TestPortWarnings: a gate or ipip instance whose port is not the virtual
// port is a real server all the same, on the virtual port, with a warning
// in the notes and on its decision; masq and a port of 0 or the virtual
// port's are not warned about.
func TestPortWarnings(t *testing.T) {
	const warned = "port %d is not the virtual port 80: %s cannot translate ports, so the real server gets the traffic on 80"
	tests := []struct {
		name       string
		forwarding string
		in         *catalog.Instance
		warn       string
	}{
		{"gate, the virtual port", "gate", inst("n1", "10.1.0.11", 80), ""},
		{"gate, no port", "gate", inst("n1", "10.1.0.11", 0), ""},
		{"gate, another port", "gate", inst("n1", "10.1.0.11", 8080), fmt.Sprintf(warned, 8080, "gate")},
		{"gate, in maintenance", "gate", inst("n1", "10.1.0.11", 8080, "svcmaint"), fmt.Sprintf(warned, 8080, "gate")},
		{"ipip, a dynamic port", "ipip", inst("n1", "10.1.0.11", 23456), fmt.Sprintf(warned, 23456, "ipip")},
		{"masq translates", "masq", inst("n1", "10.1.0.11", 8080), ""},
		// A mark's reals keep each packet's port (port 0): no port is wrong.
		{"a firewall mark, gate", "gate fwmark", inst("n1", "10.1.0.11", 8080), ""},
		{"a firewall mark, masq", "masq fwmark", inst("n1", "10.1.0.11", 8080), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fwd, mark := strings.CutSuffix(tt.forwarding, " fwmark")
			where := `address = "10.10.10.60:80"`
			if mark {
				where = "fwmark = 1"
			}
			cfg, err := config.Parse([]byte(fmt.Sprintf("virtual_service \"web\" {\n  %s\n  forwarding = %q\n}\n", where, fwd)), "t.hcl")
			if err != nil {
				t.Fatal(err)
			}
			res := Render(cfg, snapshot(map[string][]*catalog.Instance{"web": {tt.in}}))
			var notes []Note
			if tt.warn != "" {
				notes = []Note{{VirtualService: "web", Node: "n1", InstanceID: tt.in.ID, Message: tt.warn, InUse: true}}
			}
			if !slices.Equal(res.Notes(), notes) {
				t.Errorf("notes = %+v, want %+v", res.Notes(), notes)
			}
			ds := res.Decisions["web"]
			if len(ds) != 1 || ds[0].Warning != tt.warn {
				t.Fatalf("decisions = %+v, want one with warning %q", ds, tt.warn)
			}
			wantPort := uint16(80)
			switch {
			case mark:
				wantPort = 0
			case fwd == "masq":
				wantPort = uint16(tt.in.Port)
			}
			if ds[0].Real.Port != wantPort {
				t.Errorf("real = %s, want port %d", ds[0].Real, wantPort)
			}
		})
	}
}
