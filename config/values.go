package config

import (
	"fmt"
	"html/template"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The parsers and checks of single attribute values. Each returns an error
// whose text is the detail of the diagnostic, after "block: attribute: ".

// parseAddrPort parses "10.0.0.1:80" or "[2001:db8::1]:80" as an address a
// virtual or real server can have.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP:PORT (use [IPv6]:PORT for IPv6; host names are not allowed)", s)
	}
	addr := ap.Addr().Unmap()
	switch {
	case ap.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("%q: port must be 1 to 65535", s)
	case addr.Zone() != "":
		return netip.AddrPort{}, fmt.Errorf("%q: an address with a zone cannot be balanced", s)
	case addr.IsUnspecified(), addr.IsMulticast():
		return netip.AddrPort{}, fmt.Errorf("%q: address must be a unicast address", s)
	}
	return netip.AddrPortFrom(addr, ap.Port()), nil
}

// parseFallback parses fallback: "local" or a real server's IP:PORT.
func parseFallback(s string) (Fallback, error) {
	if s == "local" {
		return Fallback{Local: true}, nil
	}
	ap, err := parseAddrPort(s)
	if err != nil {
		return Fallback{}, fmt.Errorf("want \"local\" or IP:PORT: %w", err)
	}
	return Fallback{Addr: ap}, nil
}

// maxPersistence is the longest timeout the kernel's u32 field can hold.
const maxPersistence = time.Duration(1<<32-1) * time.Second

// parsePersistence parses persistence: whole seconds the kernel can keep.
func parsePersistence(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration such as \"300s\" or \"5m\"", s)
	case d < 0:
		return 0, fmt.Errorf("%q must not be negative", s)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%q must be whole seconds: IPVS keeps persistence in seconds", s)
	case d > maxPersistence:
		return 0, fmt.Errorf("%q is longer than IPVS can keep", s)
	}
	return d, nil
}

// parseNonNegative parses drain_timeout, hold and slow_start, where 0 is
// allowed.
func parseNonNegative(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration of 0s or more, such as \"30s\"", s)
	}
	return d, nil
}

// parsePositive parses consul_unreachable_after, which must be above 0.
func parsePositive(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as \"30s\"", s)
	}
	return d, nil
}

// parseReconcileInterval parses reconcile_interval: at least a second.
func parseReconcileInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("%q must be a duration of at least 1s, such as \"60s\"", s)
	}
	return d, nil
}

// validScheduler accepts the kernel's schedulers (lvs.Schedulers): a name
// the kernel has no module for would fail every sync.
func validScheduler(s string) error {
	if !lvs.KnownScheduler(s) {
		return fmt.Errorf("unknown scheduler %q: the kernel has %s", s, strings.Join(lvs.Schedulers, ", "))
	}
	return nil
}

// validServiceName rejects names that cannot be put in a Consul API path.
func validServiceName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == '?' || r == '#' || r == '%' || r > '~' {
			return fmt.Errorf("%q has %q, which a Consul service name cannot have", s, r)
		}
	}
	return nil
}

// validInterfaceName applies the kernel's rules for link names.
func validInterfaceName(s string) error {
	if s == "" || len(s) > 15 {
		return fmt.Errorf("%q must be 1 to 15 characters long", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a valid link name", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Errorf("%q has %q, which a link name cannot have", s, r)
		}
	}
	return nil
}

// validLockKey checks ha's lock_key: a Consul KV key, not a folder.
func validLockKey(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("must not be empty")
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return fmt.Errorf("%q must not begin or end with /", s)
	}
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("%q has %q, which a Consul key should not have", s, r)
		}
	}
	return nil
}

// validAPIAddress checks api's address: IP:PORT, or "" for no API.
func validAPIAddress(s string) error {
	if s == "" {
		return nil
	}
	if _, err := netip.ParseAddrPort(s); err != nil {
		return fmt.Errorf("%q is not IP:PORT (\"\" turns the API off)", s)
	}
	return nil
}

// validStateFile checks state_file, which must not depend on the directory
// lvs-sync happens to be started in.
func validStateFile(s string) error {
	if !filepath.IsAbs(s) {
		return fmt.Errorf("%q must be an absolute path", s)
	}
	return nil
}

// parseLogLevel parses log_level, in any case, to go-hclog's lower-case name.
func parseLogLevel(s string) (string, error) {
	switch l := strings.ToLower(s); l {
	case "trace", "debug", "info", "warn", "error":
		return l, nil
	}
	return "", fmt.Errorf("%q: want trace, debug, info, warn or error", s)
}

// parseOnWarning parses on_warning.
func parseOnWarning(s string) (OnWarning, error) {
	switch w := OnWarning(s); w {
	case OnWarningServe, OnWarningQuiesce, OnWarningRemove:
		return w, nil
	}
	return "", fmt.Errorf("%q: want serve, quiesce or remove", s)
}

// loadPage reads a maintenance page template, relative paths from the
// config file's directory, and checks that it parses.
func loadPage(path, configFile string) (string, error) {
	if !filepath.IsAbs(path) && configFile != "" {
		path = filepath.Join(filepath.Dir(configFile), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if _, err := template.New(path).Parse(string(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

// parseMaxRemoval parses max_removal: a percentage from 0% to 100%, or a
// count of reals.
func parseMaxRemoval(s string) (Limit, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 100 {
			return Limit{}, fmt.Errorf("%q is not a percentage from 0%% to 100%%, such as \"50%%\"", s)
		}
		return Limit{Value: n, Percent: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Limit{}, fmt.Errorf("%q is not a percentage such as \"50%%\" nor a count of reals such as \"3\"", s)
	}
	return Limit{Value: n}, nil
}
