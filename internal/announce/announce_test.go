package announce

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

var (
	vip60 = netip.MustParseAddr("10.10.10.60")
	vip61 = netip.MustParseAddr("10.10.10.61")
	vip6  = netip.MustParseAddr("2001:db8::60")
)

// TestRule drives the rule through a director's life on a fake clock,
// one step at a time: each step says what the daemon knows, how much time
// passed, and what each VIP must be, with since when.
func TestRule(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	t0 := clock.Now()
	// web and its IPv6 twin on their own VIPs; api and shop share .61.
	services := func(web, api, shop bool) []Service {
		return []Service{{VIPs: []netip.Addr{vip60}, Serving: web}, {VIPs: []netip.Addr{vip6}, Serving: web},
			{VIPs: []netip.Addr{vip61}, Serving: api}, {VIPs: []netip.Addr{vip61}, Serving: shop}}
	}
	type want struct {
		reason Reason // "" announced
		since  time.Duration
	}
	var r Rule
	for _, step := range []struct {
		name     string
		after    time.Duration
		synced   bool
		stopping bool
		services []Service
		want     map[netip.Addr]want
	}{
		{"booting with an empty table: nothing before the first sync", 0, false, false, services(false, false, false),
			map[netip.Addr]want{vip60: {NotSynced, 0}, vip61: {NotSynced, 0}, vip6: {NotSynced, 0}}},
		{"the catalog answered, not yet applied: still nothing", time.Second, false, false, services(true, true, false),
			map[netip.Addr]want{vip60: {NotSynced, 0}, vip61: {NotSynced, 0}, vip6: {NotSynced, 0}}},
		{"first sync applied: every VIP one of whose services serves", time.Second, true, false, services(true, true, false),
			map[netip.Addr]want{vip60: {"", 2 * time.Second}, vip61: {"", 2 * time.Second}, vip6: {"", 2 * time.Second}}},
		{"consul unreachable: the last answer stays, and so does every route", time.Minute, true, false, services(true, true, false),
			map[netip.Addr]want{vip60: {"", 2 * time.Second}, vip61: {"", 2 * time.Second}, vip6: {"", 2 * time.Second}}},
		{"api's pool empties, shop's still serves: .61 stays", time.Second, true, false, services(true, false, true),
			map[netip.Addr]want{vip60: {"", 2 * time.Second}, vip61: {"", 2 * time.Second}, vip6: {"", 2 * time.Second}}},
		{"web's pool empties without a fallback: withdrawn", time.Second, true, false, services(false, false, true),
			map[netip.Addr]want{vip60: {PoolEmpty, 64 * time.Second}, vip61: {"", 2 * time.Second}, vip6: {PoolEmpty, 64 * time.Second}}},
		{"web back: announced again", 3 * time.Second, true, false, services(true, false, true),
			map[netip.Addr]want{vip60: {"", 67 * time.Second}, vip61: {"", 2 * time.Second}, vip6: {"", 67 * time.Second}}},
		{"SIGTERM: everything withdrawn, first", time.Second, true, true, services(true, false, true),
			map[netip.Addr]want{vip60: {Stopping, 68 * time.Second}, vip61: {Stopping, 68 * time.Second}, vip6: {Stopping, 68 * time.Second}}},
		{"stopping before any sync: stopping says more than not synced", time.Second, false, true, services(true, true, true),
			map[netip.Addr]want{vip60: {Stopping, 68 * time.Second}, vip61: {Stopping, 68 * time.Second}, vip6: {Stopping, 68 * time.Second}}},
	} {
		clock.Advance(step.after)
		got := r.Decide(Input{Synced: step.synced, Stopping: step.stopping, Services: step.services, Now: clock.Now()})
		if len(got) != len(step.want) {
			t.Fatalf("%s: %d VIPs %+v, want %d", step.name, len(got), got, len(step.want))
		}
		var announced []netip.Prefix
		for _, v := range got {
			w := step.want[v.Addr]
			if v.Announced != (w.reason == "") || v.Reason != w.reason || !v.Since.Equal(t0.Add(w.since)) {
				t.Errorf("%s: %s announced=%v reason=%q since +%s; want reason %q since +%s",
					step.name, v.Addr, v.Announced, v.Reason, v.Since.Sub(t0), w.reason, w.since)
			}
			if v.Announced {
				announced = append(announced, netip.PrefixFrom(v.Addr, v.Addr.BitLen()))
			}
		}
		if !slices.IsSortedFunc(got, func(a, b VIP) int { return a.Addr.Compare(b.Addr) }) {
			t.Errorf("%s: VIPs not sorted: %+v", step.name, got)
		}
		if p := Prefixes(got); !slices.Equal(p, announced) {
			t.Errorf("%s: prefixes %v, want %v", step.name, p, announced)
		}
	}
}

func TestPrefixesAreHostRoutes(t *testing.T) {
	got := Prefixes([]VIP{{Addr: vip60, Announced: true}, {Addr: vip61, Reason: PoolEmpty}, {Addr: vip6, Announced: true}})
	want := []netip.Prefix{netip.MustParsePrefix("10.10.10.60/32"), netip.MustParsePrefix("2001:db8::60/128")}
	if !slices.Equal(got, want) {
		t.Errorf("prefixes %v, want %v", got, want)
	}
	if got := Prefixes(nil); got != nil {
		t.Errorf("no VIP: %v, want none", got)
	}
}

func TestChanged(t *testing.T) {
	before := []VIP{{Addr: vip60, Announced: true}, {Addr: vip61, Announced: true}}
	now := []VIP{{Addr: vip60, Announced: true}, {Addr: vip6, Reason: NotSynced}}
	changed, gone := Changed(before, now)
	if len(changed) != 1 || changed[0].Addr != vip6 || !slices.Equal(gone, []netip.Addr{vip61}) {
		t.Errorf("changed %+v, gone %v; want %s changed and %s gone", changed, gone, vip6, vip61)
	}
	now[0] = VIP{Addr: vip60, Reason: Stopping}
	if changed, _ := Changed(before, now); len(changed) != 2 || changed[0].Addr != vip60 {
		t.Errorf("a withdrawn VIP is not a change: %+v", changed)
	}
}

// A service serves when its desired state has a real above weight 0 (its
// fallback is one), or when it is frozen as the kernel has it.
func TestServiceOf(t *testing.T) {
	vips := []netip.Addr{vip60}
	rk := func(s string) lvs.RealKey { return lvs.RealKey{Addr: netip.MustParseAddr(s), Port: 80} }
	for _, tt := range []struct {
		name    string
		desired *ipvs.Service
		frozen  bool
		want    bool
	}{
		{"not rendered", nil, false, false},
		{"no real", &ipvs.Service{}, false, false},
		{"quiesced reals only", &ipvs.Service{Reals: map[lvs.RealKey]ipvs.Real{rk("10.1.0.11"): {Weight: 0}, rk("10.1.0.12"): {Weight: 0}}}, false, false},
		{"one real above 0", &ipvs.Service{Reals: map[lvs.RealKey]ipvs.Real{rk("10.1.0.11"): {Weight: 0}, rk("10.1.0.12"): {Weight: 3}}}, false, true},
		{"the fallback", &ipvs.Service{Reals: map[lvs.RealKey]ipvs.Real{rk("10.9.9.9"): {Weight: 1}}}, false, true},
		{"frozen by acls", nil, true, true},
	} {
		if got := ServiceOf(vips, tt.desired, tt.frozen); got.Serving != tt.want || !slices.Equal(got.VIPs, vips) {
			t.Errorf("%s: %+v, want serving %v", tt.name, got, tt.want)
		}
	}
}
