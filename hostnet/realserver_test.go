package hostnet_test

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// defaults are the "all" keys a fresh namespace has, as Debian sets them.
var defaults = map[string]string{
	"net/ipv4/conf/all/arp_ignore":    "0",
	"net/ipv4/conf/all/arp_announce":  "0",
	"net/ipv4/conf/all/rp_filter":     "2",
	"net/ipv4/conf/default/rp_filter": "2", // what a new link starts from
}

var sysctlKeys = []string{
	"net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/all/arp_announce", "net/ipv4/conf/all/rp_filter",
	"net/ipv4/conf/default/rp_filter",
	"net/ipv4/conf/lo/arp_ignore", "net/ipv4/conf/lo/arp_announce", "net/ipv4/conf/lo/rp_filter",
	"net/ipv4/conf/tunl0/arp_ignore", "net/ipv4/conf/tunl0/arp_announce", "net/ipv4/conf/tunl0/rp_filter",
}

// sysctls is the table's state over sysctlKeys, the keys that exist.
func sysctls(s *hostnettest.Sysctl) map[string]string {
	out := map[string]string{}
	for _, k := range sysctlKeys {
		if v, err := s.Get(k); err == nil {
			out[k] = v
		}
	}
	return out
}

func TestRealServer(t *testing.T) {
	// What the keys hold with nothing done, and after gate and ipip setups.
	untouched := with(defaults, "net/ipv4/conf/lo/arp_ignore", "0", "net/ipv4/conf/lo/arp_announce", "0", "net/ipv4/conf/lo/rp_filter", "2")
	arp := []string{"net/ipv4/conf/all/arp_ignore", "1", "net/ipv4/conf/all/arp_announce", "2"}
	gateSysctls := with(untouched, append(arp, "net/ipv4/conf/lo/arp_ignore", "1", "net/ipv4/conf/lo/arp_announce", "2")...)
	ipipSysctls := with(untouched, append(arp, "net/ipv4/conf/all/rp_filter", "0",
		"net/ipv4/conf/tunl0/arp_ignore", "1", "net/ipv4/conf/tunl0/arp_announce", "2", "net/ipv4/conf/tunl0/rp_filter", "0")...)
	type step struct {
		remove bool
		mode   lvs.Forward
		vips   []string
	}
	for _, tc := range []struct {
		name    string
		before  func(*hostnettest.Netlink)
		steps   []step
		after   string
		sysctls map[string]string
		err     string
		errIs   error
	}{{
		name:    "gate: VIPs on lo, ARP sysctls on all and lo",
		steps:   []step{{mode: lvs.Route, vips: []string{"10.10.10.60", "2001:db8::60"}}},
		after:   "lo device up [127.0.0.1/8 ::1/128 10.10.10.60/32 2001:db8::60/128 nodad]\n",
		sysctls: gateSysctls,
	}, {
		name:    "ipip: makes and ups tunl0, VIPs on it, ARP sysctls and rp_filter=0",
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"10.10.10.61"}}},
		after:   loLine + "tunl0 ipip up [10.10.10.61/32]\n",
		sysctls: ipipSysctls,
	}, {
		name:    "ipip: a tunl0 that is down is set up",
		before:  func(f *hostnettest.Netlink) { f.AddLink("tunl0", hostnettest.Link{Type: "ipip"}) },
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"10.10.10.61"}}},
		after:   loLine + "tunl0 ipip up [10.10.10.61/32]\n",
		sysctls: ipipSysctls,
	}, {
		name:    "ipip: IPv6 VIPs on ip6tnl0, made and upped; IPv4 ones on tunl0",
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"10.10.10.61", "2001:db8::61", "2001:db8::62"}}},
		after:   "ip6tnl0 ip6tnl up [2001:db8::61/128 nodad 2001:db8::62/128 nodad]\n" + loLine + "tunl0 ipip up [10.10.10.61/32]\n",
		sysctls: ipipSysctls,
	}, {
		name:    "ipip, IPv6 only: ip6tnl0 and no ARP or rp_filter sysctl (IPv6 has neither)",
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"2001:db8::61"}}},
		after:   "ip6tnl0 ip6tnl up [2001:db8::61/128 nodad]\n" + loLine,
		sysctls: untouched,
	}, {
		name:    "ipip: the fallback ip6tnl0 the module made, down, is set up",
		before:  func(f *hostnettest.Netlink) { f.AddLink("ip6tnl0", hostnettest.Link{Type: "ip6tnl"}) },
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"2001:db8::61"}}},
		after:   "ip6tnl0 ip6tnl up [2001:db8::61/128 nodad]\n" + loLine,
		sysctls: untouched,
	}, {
		name:    "ipip IPv6 without the module: says which, with the kernel's error, before any VIP",
		before:  func(f *hostnettest.Netlink) { f.Fail("LinkAdd", "ip6tnl0", unix.EOPNOTSUPP) },
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"10.10.10.61", "2001:db8::61"}}},
		after:   loLine + "tunl0 ipip up []\n",
		sysctls: with(untouched, "net/ipv4/conf/tunl0/arp_ignore", "0", "net/ipv4/conf/tunl0/arp_announce", "0", "net/ipv4/conf/tunl0/rp_filter", "2"),
		err:     "creating link ip6tnl0: operation not supported (is the ip6_tunnel module loaded? modprobe ip6_tunnel)", errIs: unix.EOPNOTSUPP,
	}, {
		name:    "gate, IPv6 only: the VIP on lo and no ARP sysctl",
		steps:   []step{{mode: lvs.Route, vips: []string{"2001:db8::60"}}},
		after:   "lo device up [127.0.0.1/8 ::1/128 2001:db8::60/128 nodad]\n",
		sysctls: untouched,
	}, {
		name: "remove ipip: each family's VIPs off its tunnel",
		steps: []step{
			{mode: lvs.Tunnel, vips: []string{"10.10.10.61", "2001:db8::61", "2001:db8::62"}},
			{remove: true, mode: lvs.Tunnel, vips: []string{"10.10.10.61", "2001:db8::61"}},
		},
		after:   "ip6tnl0 ip6tnl up [2001:db8::62/128 nodad]\n" + loLine + "tunl0 ipip up []\n",
		sysctls: ipipSysctls,
	}, {
		name:    "masq has nothing to set up",
		steps:   []step{{mode: lvs.Masq, vips: []string{"10.10.10.62"}}},
		after:   loLine,
		sysctls: untouched,
		err:     "real servers need gate or ipip, not masq",
	}, {
		name:    "ipip without the module: says so, with the kernel's error",
		before:  func(f *hostnettest.Netlink) { f.Fail("LinkAdd", "tunl0", unix.EOPNOTSUPP) },
		steps:   []step{{mode: lvs.Tunnel, vips: []string{"10.10.10.61"}}},
		after:   loLine,
		sysctls: untouched,
		err:     "creating link tunl0: operation not supported (is the ipip module loaded? modprobe ipip)", errIs: unix.EOPNOTSUPP,
	}, {
		name:   "a VIP that cannot be added names itself and the link",
		before: func(f *hostnettest.Netlink) { f.Fail("AddrAdd", "lo", unix.EPERM) },
		steps:  []step{{mode: lvs.Route, vips: []string{"10.10.10.60"}}},
		after:  loLine, sysctls: gateSysctls,
		err: "adding vip 10.10.10.60 to lo: operation not permitted", errIs: unix.EPERM,
	}, {
		name: "remove: the VIPs go, the sysctls and other addresses stay, a missing VIP is fine",
		steps: []step{
			{mode: lvs.Route, vips: []string{"10.10.10.60", "10.10.10.63"}},
			{remove: true, mode: lvs.Route, vips: []string{"10.10.10.60", "10.10.10.64"}},
		},
		after:   "lo device up [127.0.0.1/8 ::1/128 10.10.10.63/32]\n",
		sysctls: gateSysctls,
	}, {
		name:    "remove ipip without a tunl0 or ip6tnl0 makes none",
		steps:   []step{{remove: true, mode: lvs.Tunnel, vips: []string{"10.10.10.61", "2001:db8::61"}}},
		after:   loLine,
		sysctls: untouched,
	}, {
		name:    "remove: a VIP that cannot be removed names itself and the link",
		before:  func(f *hostnettest.Netlink) { f.Fail("AddrDel", "lo", unix.EPERM) },
		steps:   []step{{remove: true, mode: lvs.Route, vips: []string{"10.10.10.60"}}},
		after:   loLine,
		sysctls: untouched,
		err:     "removing vip 10.10.10.60 from lo: operation not permitted", errIs: unix.EPERM,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			nl := hostnettest.NewNetlink()
			if tc.before != nil {
				tc.before(nl)
			}
			sys := hostnettest.NewSysctl(nl, defaults)
			rs := hostnet.NewRealServer(nl, sys, nil)
			var err error
			for _, s := range tc.steps {
				if s.remove {
					err = rs.Remove(addrs(s.vips...), s.mode)
				} else {
					err = rs.Setup(addrs(s.vips...), s.mode)
				}
			}
			if got := nl.String(); got != tc.after {
				t.Errorf("namespace:\n%swant:\n%s", got, tc.after)
			}
			if got := sysctls(sys); !maps.Equal(got, tc.sysctls) {
				t.Errorf("sysctls %v\nwant     %v", got, tc.sysctls)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one with %q", err, tc.err)
			case tc.errIs != nil && !errors.Is(err, tc.errIs):
				t.Errorf("error %v does not wrap %v", err, tc.errIs)
			}
		})
	}
}

// with is m with the key/value pairs kv added.
func with(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestRealServerAgain: applied again (as -hold does), Setup writes no
// sysctl and logs nothing; a sysctl someone reset is set, and logged, again.
func TestRealServerAgain(t *testing.T) {
	nl := hostnettest.NewNetlink()
	sys := hostnettest.NewSysctl(nl, with(defaults, "net/ipv4/conf/all/arp_ignore", "1"))
	var logs strings.Builder
	rs := hostnet.NewRealServer(nl, sys, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	vips := addrs("10.10.10.61")
	if err := rs.Setup(vips, lvs.Tunnel); err != nil {
		t.Fatal(err)
	}
	if n := sys.Writes("net/ipv4/conf/all/arp_ignore"); n != 0 {
		t.Errorf("arp_ignore, already 1, written %d times", n)
	}
	for _, k := range []string{"net/ipv4/conf/all/arp_announce", "net/ipv4/conf/tunl0/rp_filter"} {
		if n := sys.Writes(k); n != 1 {
			t.Errorf("%s written %d times, want once", k, n)
		}
	}
	first := logs.String()
	for _, w := range []string{"created link: link=tunl0", "set sysctl: key=net/ipv4/conf/all/arp_announce value=2", "added vip: link=tunl0 vip=10.10.10.61"} {
		if !strings.Contains(first, w) {
			t.Errorf("first setup's log lacks %q:\n%s", w, first)
		}
	}
	logs.Reset()
	if err := rs.Setup(vips, lvs.Tunnel); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Errorf("setup again logged:\n%s", logs.String())
	}
	if n := sys.Writes("net/ipv4/conf/all/arp_announce"); n != 1 {
		t.Errorf("arp_announce written %d times after a second setup, want once", n)
	}
	if err := sys.Set("net/ipv4/conf/all/rp_filter", "1"); err != nil {
		t.Fatal(err)
	}
	if err := rs.Setup(vips, lvs.Tunnel); err != nil {
		t.Fatal(err)
	}
	if got := sys.Value("net/ipv4/conf/all/rp_filter"); got != "0" || !strings.Contains(logs.String(), "set sysctl: key=net/ipv4/conf/all/rp_filter value=0") {
		t.Errorf("a reset rp_filter is %q after setup; log:\n%s", got, logs.String())
	}
}

// TestRealServerSysctlMissing: a key that cannot be written fails Setup,
// named, before any VIP goes up.
func TestRealServerSysctlMissing(t *testing.T) {
	nl := hostnettest.NewNetlink()
	seed := maps.Clone(defaults)
	delete(seed, "net/ipv4/conf/all/arp_announce")
	err := hostnet.NewRealServer(nl, hostnettest.NewSysctl(nl, seed), nil).Setup(addrs("10.10.10.60"), lvs.Route)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "net/ipv4/conf/all/arp_announce=2") {
		t.Errorf("error %v, want the key, wrapping fs.ErrNotExist", err)
	}
	if got := nl.String(); got != loLine {
		t.Errorf("a VIP went up all the same:\n%s", got)
	}
}

func TestProcSys(t *testing.T) {
	root := t.TempDir()
	key := "net/ipv4/conf/all/arp_ignore"
	if err := os.MkdirAll(filepath.Join(root, "net/ipv4/conf/all"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, key), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := hostnet.ProcSys{Root: root}
	if v, err := s.Get(key); v != "0" || err != nil {
		t.Errorf("get: %q, %v; want 0", v, err)
	}
	if err := s.Set(key, "1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, key)); string(b) != "1" {
		t.Errorf("file holds %q after set, want 1", b)
	}
	missing := "net/ipv4/conf/tunl0/rp_filter"
	if err := s.Set(missing, "0"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "setting sysctl "+missing+"=0") {
		t.Errorf("set a missing key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, missing)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("set made a key that was not there: %v", err)
	}
	if _, err := s.Get(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("get a missing key: %v", err)
	}
}
