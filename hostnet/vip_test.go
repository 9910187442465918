package hostnet_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
	"github.com/lvs-sync/lvs-sync/hostnet/hostnettest"
)

const loLine = "lo device up [127.0.0.1/8 ::1/128]\n"

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func addr(s string) hostnettest.Addr {
	p := netip.MustParsePrefix(s)
	return hostnettest.Addr{Prefix: p, NoDAD: p.Addr().Is6()}
}

func TestVIPLinkSync(t *testing.T) {
	for _, tc := range []struct {
		name    string
		before  func(*hostnettest.Netlink)
		want    []string
		owned   []string // nil: owned is nil
		after   string   // the whole namespace
		added   string
		removed string
		err     string // "" for none
		errIs   error
	}{{
		name:  "creates the link, ups it, adds /32 and /128 nodad",
		want:  []string{"10.0.0.1", "2001:db8::1"},
		after: loLine + "lvs0 dummy up [10.0.0.1/32 2001:db8::1/128 nodad]\n",
		added: "[10.0.0.1 2001:db8::1]", removed: "[]",
	}, {
		name: "ups a link that is down and removes only owned unwanted host addresses",
		before: func(f *hostnettest.Netlink) {
			f.AddLink("lvs0", hostnettest.Link{Type: "dummy", Addrs: []hostnettest.Addr{
				addr("10.0.0.2/32"),     // owned, unwanted: goes
				addr("192.0.2.7/32"),    // added by hand: stays
				addr("10.0.0.3/24"),     // owned, but not a host address: stays
				addr("2001:db8::2/128"), // owned, unwanted: goes
			}})
		},
		want:    []string{"10.0.0.1"},
		owned:   []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::2"},
		after:   loLine + "lvs0 dummy up [192.0.2.7/32 10.0.0.3/24 10.0.0.1/32]\n",
		added:   "[10.0.0.1]",
		removed: "[10.0.0.2 2001:db8::2]",
	}, {
		name: "in sync: changes nothing",
		before: func(f *hostnettest.Netlink) {
			f.AddLink("lvs0", hostnettest.Link{Type: "dummy", Up: true, Addrs: []hostnettest.Addr{addr("10.0.0.1/32")}})
		},
		want:  []string{"10.0.0.1"},
		owned: []string{"10.0.0.1"},
		after: loLine + "lvs0 dummy up [10.0.0.1/32]\n",
		added: "[]", removed: "[]",
	}, {
		name: "without owned, removes nothing",
		before: func(f *hostnettest.Netlink) {
			f.AddLink("lvs0", hostnettest.Link{Type: "dummy", Up: true, Addrs: []hostnettest.Addr{addr("10.0.0.2/32")}})
		},
		want:  []string{"10.0.0.1"},
		after: loLine + "lvs0 dummy up [10.0.0.2/32 10.0.0.1/32]\n",
		added: "[10.0.0.1]", removed: "[]",
	}, {
		name:   "asks again for an interrupted dump",
		before: func(f *hostnettest.Netlink) { f.InterruptDumps(4) },
		want:   []string{"10.0.0.1"},
		after:  loLine + "lvs0 dummy up [10.0.0.1/32]\n",
		added:  "[10.0.0.1]", removed: "[]",
	}, {
		name:   "gives up on a dump interrupted every time",
		before: func(f *hostnettest.Netlink) { f.InterruptDumps(5) },
		want:   []string{"10.0.0.1"},
		after:  loLine + "lvs0 dummy up []\n",
		added:  "[]", removed: "[]",
		err: "listing addresses of lvs0: ", errIs: netlink.ErrDumpInterrupted,
	}, {
		name:   "a link that cannot be made",
		before: func(f *hostnettest.Netlink) { f.Fail("LinkAdd", "lvs0", unix.EPERM) },
		want:   []string{"10.0.0.1"},
		after:  loLine,
		added:  "[]", removed: "[]",
		err: "creating link lvs0: operation not permitted", errIs: unix.EPERM,
	}, {
		name: "a link that cannot be set up",
		before: func(f *hostnettest.Netlink) {
			f.AddLink("lvs0", hostnettest.Link{Type: "dummy"})
			f.Fail("LinkSetUp", "lvs0", unix.EPERM)
		},
		want:  []string{"10.0.0.1"},
		after: loLine + "lvs0 dummy down []\n",
		added: "[]", removed: "[]",
		err: "setting link lvs0 up: operation not permitted", errIs: unix.EPERM,
	}, {
		name: "VIPs that cannot be removed: the rest is still done",
		before: func(f *hostnettest.Netlink) {
			f.AddLink("lvs0", hostnettest.Link{Type: "dummy", Up: true, Addrs: []hostnettest.Addr{addr("10.0.0.8/32"), addr("10.0.0.9/32")}})
			f.Fail("AddrDel", "lvs0", unix.ENOBUFS)
		},
		want:  []string{"10.0.0.1"},
		owned: []string{"10.0.0.8", "10.0.0.9"},
		after: loLine + "lvs0 dummy up [10.0.0.8/32 10.0.0.9/32 10.0.0.1/32]\n",
		added: "[10.0.0.1]", removed: "[]",
		err: "removing vip 10.0.0.8 from lvs0: no buffer space available", errIs: unix.ENOBUFS,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := hostnettest.NewNetlink()
			if tc.before != nil {
				tc.before(f)
			}
			var owned func(netip.Addr) bool
			if tc.owned != nil {
				set := map[netip.Addr]bool{}
				for _, a := range addrs(tc.owned...) {
					set[a] = true
				}
				owned = func(a netip.Addr) bool { return set[a] }
			}
			added, removed, err := hostnet.NewVIPLink("lvs0", f, nil).Sync(addrs(tc.want...), owned)
			if got := f.String(); got != tc.after {
				t.Errorf("namespace after sync:\n%swant:\n%s", got, tc.after)
			}
			if fmt.Sprint(added) != tc.added || fmt.Sprint(removed) != tc.removed {
				t.Errorf("added %v removed %v, want %s %s", added, removed, tc.added, tc.removed)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("sync: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, tc.errIs)):
				t.Errorf("sync error %v, want one with %q wrapping %v", err, tc.err, tc.errIs)
			}
		})
	}
}

func TestVIPLinkAddrs(t *testing.T) {
	f := hostnettest.NewNetlink()
	v := hostnet.NewVIPLink("lvs0", f, nil)
	if got, err := v.Addrs(); got != nil || err != nil {
		t.Errorf("no link: %v, %v; want none, no error", got, err)
	}
	f.AddLink("lvs0", hostnettest.Link{Type: "dummy", Addrs: []hostnettest.Addr{
		addr("2001:db8::1/128"), addr("10.0.0.9/32"), addr("10.0.1.0/24"), addr("10.0.0.1/32"),
	}})
	if got, err := v.Addrs(); fmt.Sprint(got) != "[10.0.0.1 10.0.0.9 2001:db8::1]" || err != nil {
		t.Errorf("addrs %v, %v; want the host addresses, sorted", got, err)
	}
	f.Fail("LinkByName", "lvs0", unix.EPERM)
	if _, err := v.Addrs(); !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "finding link lvs0") {
		t.Errorf("a lookup that fails: %v", err)
	}
}
