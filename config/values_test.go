package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// parseCase is one input of a value parser: what it yields, or the whole
// text of its error.
type parseCase[T comparable] struct {
	in   string
	want T
	err  string
}

func testParser[T comparable](t *testing.T, parse func(string) (T, error), cases []parseCase[T]) {
	t.Helper()
	for _, c := range cases {
		got, err := parse(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", c.in, err)
		case c.err != "" && err == nil:
			t.Errorf("%q: got %v, want error %s", c.in, got, c.err)
		case c.err != "" && err.Error() != c.err:
			t.Errorf("%q: error\n  %s\nwant\n  %s", c.in, err, c.err)
		case c.err == "" && got != c.want:
			t.Errorf("%q: got %v, want %v", c.in, got, c.want)
		}
	}
}

// check adapts a validator to testParser.
func check(valid func(string) error) func(string) (bool, error) {
	return func(s string) (bool, error) { return true, valid(s) }
}

func TestParseAddrPort(t *testing.T) {
	ap := netip.MustParseAddrPort
	testParser(t, parseAddrPort, []parseCase[netip.AddrPort]{
		{in: "10.0.0.1:80", want: ap("10.0.0.1:80")},
		{in: "[2001:db8::1]:65535", want: ap("[2001:db8::1]:65535")},
		{in: "[::ffff:10.0.0.1]:80", want: ap("10.0.0.1:80")}, // unmapped, as the kernel keys it
		{in: "10.0.0.1", err: `"10.0.0.1" is not IP:PORT (use [IPv6]:PORT for IPv6; host names are not allowed)`},
		{in: "www.example.com:80", err: `"www.example.com:80" is not IP:PORT (use [IPv6]:PORT for IPv6; host names are not allowed)`},
		{in: "10.0.0.1:65536", err: `"10.0.0.1:65536" is not IP:PORT (use [IPv6]:PORT for IPv6; host names are not allowed)`},
		{in: "10.0.0.1:0", err: `"10.0.0.1:0": port must be 1 to 65535`},
		{in: "[fe80::1%eth0]:80", err: `"[fe80::1%eth0]:80": an address with a zone cannot be balanced`},
		{in: "0.0.0.0:80", err: `"0.0.0.0:80": address must be a unicast address`},
		{in: "[::]:80", err: `"[::]:80": address must be a unicast address`},
		{in: "224.0.0.1:80", err: `"224.0.0.1:80": address must be a unicast address`},
	})
}

func TestParseFallback(t *testing.T) {
	testParser(t, parseFallback, []parseCase[Fallback]{
		{in: "local", want: Fallback{Local: true}},
		{in: "10.9.9.9:80", want: Fallback{Addr: netip.MustParseAddrPort("10.9.9.9:80")}},
		{in: "Local", err: `want "local" or IP:PORT: "Local" is not IP:PORT (use [IPv6]:PORT for IPv6; host names are not allowed)`},
		{in: "10.9.9.9:0", err: `want "local" or IP:PORT: "10.9.9.9:0": port must be 1 to 65535`},
	})
}

func TestParsePersistence(t *testing.T) {
	testParser(t, parsePersistence, []parseCase[time.Duration]{
		{in: "0s", want: 0},
		{in: "5m", want: 5 * time.Minute},
		{in: "4294967295s", want: maxPersistence},
		{in: "soon", err: `"soon" is not a duration such as "300s" or "5m"`},
		{in: "-5s", err: `"-5s" must not be negative`},
		{in: "1.5s", err: `"1.5s" must be whole seconds: IPVS keeps persistence in seconds`},
		{in: "4294967296s", err: `"4294967296s" is longer than IPVS can keep`},
	})
}

func TestParseDurations(t *testing.T) {
	t.Run("non-negative", func(t *testing.T) {
		testParser(t, parseNonNegative, []parseCase[time.Duration]{
			{in: "0s", want: 0},
			{in: "1.5s", want: 1500 * time.Millisecond},
			{in: "-1s", err: `"-1s" is not a duration of 0s or more, such as "30s"`},
			{in: "often", err: `"often" is not a duration of 0s or more, such as "30s"`},
		})
	})
	t.Run("positive", func(t *testing.T) {
		testParser(t, parsePositive, []parseCase[time.Duration]{
			{in: "1ns", want: 1},
			{in: "10s", want: 10 * time.Second},
			{in: "0s", err: `"0s" is not a positive duration such as "30s"`},
			{in: "ten", err: `"ten" is not a positive duration such as "30s"`},
		})
	})
	t.Run("reconcile interval", func(t *testing.T) {
		testParser(t, parseReconcileInterval, []parseCase[time.Duration]{
			{in: "1s", want: time.Second},
			{in: "2m", want: 2 * time.Minute},
			{in: "999ms", err: `"999ms" must be a duration of at least 1s, such as "60s"`},
			{in: "hourly", err: `"hourly" must be a duration of at least 1s, such as "60s"`},
		})
	})
}

func TestValidators(t *testing.T) {
	const known = "rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos"
	tests := []struct {
		name  string
		valid func(string) error
		cases []parseCase[bool]
	}{
		{"scheduler", validScheduler, []parseCase[bool]{
			{in: "wlc", want: true}, {in: "mh", want: true}, {in: "sh", want: true}, {in: "twos", want: true},
			{in: "", err: `unknown scheduler "": the kernel has ` + known},
			{in: "fo2", err: `unknown scheduler "fo2": the kernel has ` + known},
			{in: "Round Robin", err: `unknown scheduler "Round Robin": the kernel has ` + known},
			{in: "ip_vs_rr", err: `unknown scheduler "ip_vs_rr": the kernel has ` + known},
		}},
		{"service name", validServiceName, []parseCase[bool]{
			{in: "web", want: true}, {in: "web-v2.prod_x", want: true},
			{in: "", err: `must not be empty`},
			{in: "web/admin", err: `"web/admin" has '/', which a Consul service name cannot have`},
			{in: "web admin", err: `"web admin" has ' ', which a Consul service name cannot have`},
			{in: "a?b", err: `"a?b" has '?', which a Consul service name cannot have`},
			{in: "a#b", err: `"a#b" has '#', which a Consul service name cannot have`},
			{in: "a%b", err: `"a%b" has '%', which a Consul service name cannot have`},
			{in: "wéb", err: `"wéb" has 'é', which a Consul service name cannot have`},
		}},
		{"interface name", validInterfaceName, []parseCase[bool]{
			{in: "lvs0", want: true}, {in: "a.b-c_d@e", want: true}, {in: strings.Repeat("x", 15), want: true},
			{in: "", err: `"" must be 1 to 15 characters long`},
			{in: "a-very-long-link-name", err: `"a-very-long-link-name" must be 1 to 15 characters long`},
			{in: ".", err: `"." is not a valid link name`},
			{in: "..", err: `".." is not a valid link name`},
			{in: "lvs 0", err: `"lvs 0" has ' ', which a link name cannot have`},
			{in: "a/b", err: `"a/b" has '/', which a link name cannot have`},
			{in: "a:b", err: `"a:b" has ':', which a link name cannot have`},
		}},
		{"api address", validAPIAddress, []parseCase[bool]{
			{in: "127.0.0.1:9337", want: true}, {in: "[::1]:9337", want: true}, {in: "", want: true},
			{in: "localhost:9337", err: `"localhost:9337" is not IP:PORT ("" turns the API off)`},
		}},
		{"state file", validStateFile, []parseCase[bool]{
			{in: "/var/lib/lvs-sync/state.json", want: true},
			{in: "state.json", err: `"state.json" must be an absolute path`},
			{in: "", err: `"" must be an absolute path`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testParser(t, check(tt.valid), tt.cases) })
	}
}

func TestParseLogLevel(t *testing.T) {
	testParser(t, parseLogLevel, []parseCase[string]{
		{in: "trace", want: "trace"}, {in: "DEBUG", want: "debug"}, {in: "Info", want: "info"},
		{in: "warn", want: "warn"}, {in: "error", want: "error"},
		{in: "loud", err: `"loud": want trace, debug, info, warn or error`},
		{in: "warning", err: `"warning": want trace, debug, info, warn or error`},
	})
}

func TestParseOnWarning(t *testing.T) {
	testParser(t, parseOnWarning, []parseCase[OnWarning]{
		{in: "serve", want: OnWarningServe},
		{in: "quiesce", want: OnWarningQuiesce},
		{in: "remove", want: OnWarningRemove},
		{in: "Remove", err: `"Remove": want serve, quiesce or remove`},
		{in: "ignore", err: `"ignore": want serve, quiesce or remove`},
	})
}

func TestLoadPage(t *testing.T) {
	page, err := loadPage("page.html", "testdata/lvs.hcl") // relative to the config file
	if err != nil || !strings.Contains(page, "{{.Service}}") {
		t.Errorf("relative page: %q, %v", page, err)
	}
	abs, _ := filepath.Abs("testdata/page.html")
	if p, err := loadPage(abs, "elsewhere/lvs.hcl"); err != nil || p != page {
		t.Errorf("absolute page: %q, %v", p, err)
	}
	if _, err := loadPage("broken-page.html", "testdata/lvs.hcl"); err == nil || !strings.Contains(err.Error(), "testdata/broken-page.html") {
		t.Errorf("broken template: %v", err)
	}
	if _, err := loadPage("missing.html", "testdata/lvs.hcl"); err == nil || !strings.Contains(err.Error(), "open testdata/missing.html") {
		t.Errorf("missing page: %v", err)
	}
}

func TestFiles(t *testing.T) {
	got, err := Files("testdata/dir")
	want := []string{"testdata/dir/10-web.hcl", "testdata/dir/20-more.hcl", "testdata/dir/30-director.hcl"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("directory: %q, %v; want %q (README.txt left out)", got, err, want)
	}
	if got, err := Files("testdata/invalid.hcl"); err != nil || !slices.Equal(got, []string{"testdata/invalid.hcl"}) {
		t.Errorf("file: %q, %v", got, err)
	}
	// A file is taken whatever its name; only a directory is filtered.
	if got, err := Files("testdata/page.html"); err != nil || !slices.Equal(got, []string{"testdata/page.html"}) {
		t.Errorf("file not named .hcl: %q, %v", got, err)
	}
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Files(empty); err == nil || err.Error() != "config directory "+empty+" has no *.hcl files" {
		t.Errorf("directory without *.hcl: %q, %v", got, err)
	}
	missing := filepath.Join(empty, "missing")
	if got, err := Files(missing); err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "reading config "+missing+": ") {
		t.Errorf("missing path: %q, %v", got, err)
	}
}

func TestNeedsRestart(t *testing.T) {
	base := `
api {
  address = "127.0.0.1:9337"
}
director {
  state_file = "/var/lib/lvs-sync/state.json"
}
virtual_service "web" {
  address    = "10.0.0.1:80"
  forwarding = "gate"
}
`
	old, err := Parse([]byte(base), "a.hcl")
	if err != nil {
		t.Fatal(err)
	}
	same, err := Parse([]byte(base+`virtual_service "shop" {
  address    = "10.0.0.2:80"
  forwarding = "masq"
}`), "b.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := old.NeedsRestart(same); len(got) != 0 {
		t.Errorf("a new virtual service needs a restart of %v, want none", got)
	}
	moved, err := Parse([]byte(`
api {
  address = "127.0.0.1:9444"
}
director {
  state_file    = "/srv/state.json"
  vip_interface = "lvs1"
}
consul {
  datacenter = "dc2"
}
virtual_service "web" {
  address    = "10.0.0.1:80"
  forwarding = "gate"
}
`), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"api.address", "director.state_file", "director.vip_interface", "consul.datacenter"}
	if got := old.NeedsRestart(moved); !slices.Equal(got, want) {
		t.Errorf("NeedsRestart = %v, want %v", got, want)
	}
}

func TestParseMaxRemoval(t *testing.T) {
	for in, want := range map[string]Limit{"50%": {50, true}, "0%": {0, true}, "100%": {100, true}, "3": {3, false}, "0": {0, false}} {
		got, err := parseMaxRemoval(in)
		if err != nil || got != want {
			t.Errorf("parseMaxRemoval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"101%": `"101%" is not a percentage from 0% to 100%, such as "50%"`,
		"-1%":  `"-1%" is not a percentage from 0% to 100%, such as "50%"`,
		"half": `"half" is not a percentage such as "50%" nor a count of reals such as "3"`,
		"-2":   `"-2" is not a percentage such as "50%" nor a count of reals such as "3"`,
	} {
		if _, err := parseMaxRemoval(in); err == nil || err.Error() != want {
			t.Errorf("parseMaxRemoval(%q) error %v, want %q", in, err, want)
		}
	}
	half := Limit{Value: 50, Percent: true}
	for _, tt := range []struct {
		n, total int
		want     bool
	}{{2, 4, false}, {3, 4, true}, {1, 1, true}, {0, 0, false}} {
		if got := half.Exceeded(tt.n, tt.total); got != tt.want {
			t.Errorf("50%%: %d of %d exceeded = %v, want %v", tt.n, tt.total, got, tt.want)
		}
	}
}
