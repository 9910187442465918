//go:build vmguest

package genl

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

func svcKey(proto lvs.Protocol, ap string) lvs.ServiceKey {
	a := netip.MustParseAddrPort(ap)
	return lvs.ServiceKey{Protocol: proto, Addr: a.Addr(), Port: a.Port()}
}

func realKey(ap string) lvs.RealKey {
	a := netip.MustParseAddrPort(ap)
	return lvs.RealKey{Addr: a.Addr(), Port: a.Port()}
}

// Scheduler flags (IP_VS_SVC_F_SCHED1..3): carried through as Flags.
const (
	sched1 = 0x8
	sched2 = 0x10
	sched3 = 0x20
)

// readBackCases is every attribute lvs-sync writes, each with what
// `ipvsadm -Sn` must print of it (ipvsadm 1.31 names the tunnel type of
// an ipip real, ipip being the kernel's default).
var readBackCases = []struct {
	name    string
	key     lvs.ServiceKey
	svc     ipvs.Service
	reals   map[string]ipvs.Real
	ipvsadm []string
}{
	{
		name: "tcp ipv4, persistent with a /24 netmask, every method",
		key:  svcKey(lvs.TCP, "10.20.0.1:80"),
		svc:  ipvs.Service{Scheduler: "wlc", Flags: ipvs.FlagPersistent, Timeout: 300, Netmask: 0x00ffffff},
		reals: map[string]ipvs.Real{
			"10.20.1.1:8080": {Weight: 5, Forward: lvs.Masq},
			"10.20.1.2:80":   {Weight: 0, Forward: lvs.Route},
			"10.20.1.3:80":   {Weight: 65535, Forward: lvs.Tunnel},
		},
		ipvsadm: []string{
			"-A -t 10.20.0.1:80 -s wlc -p 300 -M 255.255.255.0",
			"-a -t 10.20.0.1:80 -r 10.20.1.1:8080 -m -w 5",
			"-a -t 10.20.0.1:80 -r 10.20.1.2:80 -g -w 0",
			"-a -t 10.20.0.1:80 -r 10.20.1.3:80 -i -w 65535 --tun-type ipip",
		},
	},
	{
		name:    "udp ipv4, host netmask, one-packet scheduling",
		key:     svcKey(lvs.UDP, "10.20.0.2:53"),
		svc:     ipvs.Service{Scheduler: "rr", Flags: ipvs.FlagOnePacket, Netmask: 0xffffffff},
		reals:   map[string]ipvs.Real{"10.20.1.4:5353": {Weight: 1, Forward: lvs.Masq}},
		ipvsadm: []string{"-A -u 10.20.0.2:53 -s rr -o", "-a -u 10.20.0.2:53 -r 10.20.1.4:5353 -m -w 1"},
	},
	{
		name:    "sctp ipv4",
		key:     svcKey(lvs.SCTP, "10.20.0.3:3868"),
		svc:     ipvs.Service{Scheduler: "lc", Netmask: 0xffffffff},
		reals:   map[string]ipvs.Real{"10.20.1.5:3868": {Weight: 2, Forward: lvs.Route}},
		ipvsadm: []string{"-A --sctp-service 10.20.0.3:3868 -s lc", "-a --sctp-service 10.20.0.3:3868 -r 10.20.1.5:3868 -g -w 2"},
	},
	{
		name: "tcp ipv6, persistent /64, ipv6 reals",
		key:  svcKey(lvs.TCP, "[2001:db8::80]:443"),
		svc:  ipvs.Service{Scheduler: "wrr", Flags: ipvs.FlagPersistent, Timeout: 60, Netmask: 64},
		reals: map[string]ipvs.Real{
			"[2001:db8::1:1]:8443": {Weight: 3, Forward: lvs.Masq},
			"[2001:db8::1:2]:443":  {Weight: 1, Forward: lvs.Route},
			"[2001:db8::1:3]:443":  {Weight: 7, Forward: lvs.Tunnel},
		},
		ipvsadm: []string{
			"-A -t [2001:db8::80]:443 -s wrr -p 60 -M 64",
			"-a -t [2001:db8::80]:443 -r [2001:db8::1:1]:8443 -m -w 3",
			"-a -t [2001:db8::80]:443 -r [2001:db8::1:2]:443 -g -w 1",
			"-a -t [2001:db8::80]:443 -r [2001:db8::1:3]:443 -i -w 7 --tun-type ipip",
		},
	},
	{
		name:    "udp ipv6, host netmask",
		key:     svcKey(lvs.UDP, "[2001:db8::53]:53"),
		svc:     ipvs.Service{Scheduler: "rr", Netmask: 128},
		reals:   map[string]ipvs.Real{"[2001:db8::11]:5353": {Weight: 2, Forward: lvs.Masq}},
		ipvsadm: []string{"-A -u [2001:db8::53]:53 -s rr", "-a -u [2001:db8::53]:53 -r [2001:db8::11]:5353 -m -w 2"},
	},
	{
		name:    "sctp ipv6",
		key:     svcKey(lvs.SCTP, "[2001:db8::38]:3868"),
		svc:     ipvs.Service{Scheduler: "sh", Netmask: 128},
		reals:   map[string]ipvs.Real{"[2001:db8::12]:3868": {Weight: 1, Forward: lvs.Route}},
		ipvsadm: []string{"-A --sctp-service [2001:db8::38]:3868 -s sh", "-a --sctp-service [2001:db8::38]:3868 -r [2001:db8::12]:3868 -g -w 1"},
	},
	{
		name:    "fwmark ipv4, persistent",
		key:     lvs.ServiceKey{FWMark: 7, Addr: netip.IPv4Unspecified()},
		svc:     ipvs.Service{Scheduler: "wlc", Flags: ipvs.FlagPersistent, Timeout: 120, Netmask: 0x0000ffff},
		reals:   map[string]ipvs.Real{"10.20.1.6:0": {Weight: 4, Forward: lvs.Route}},
		ipvsadm: []string{"-A -f 7 -s wlc -p 120 -M 255.255.0.0", "-a -f 7 -r 10.20.1.6:0 -g -w 4"},
	},
	{
		name:    "fwmark ipv6, the same mark: another service",
		key:     lvs.ServiceKey{FWMark: 7, Addr: netip.IPv6Unspecified()},
		svc:     ipvs.Service{Scheduler: "lc", Netmask: 128},
		reals:   map[string]ipvs.Real{"[2001:db8::13]:0": {Weight: 1, Forward: lvs.Tunnel}},
		ipvsadm: []string{"-A -f 7 -6 -s lc", "-a -f 7 -6 -r [2001:db8::13]:0 -i -w 1 --tun-type ipip"},
	},
	{
		name:    "sh with the fallback and port scheduler flags",
		key:     svcKey(lvs.TCP, "10.20.0.4:80"),
		svc:     ipvs.Service{Scheduler: "sh", Flags: sched1 | sched2, Netmask: 0xffffffff},
		reals:   map[string]ipvs.Real{"10.20.1.7:80": {Weight: 1, Forward: lvs.Route}},
		ipvsadm: []string{"-A -t 10.20.0.4:80 -s sh -b sh-fallback,sh-port", "-a -t 10.20.0.4:80 -r 10.20.1.7:80 -g -w 1"},
	},
	{
		name:    "mh with the fallback flag, persistent",
		key:     svcKey(lvs.TCP, "10.20.0.5:80"),
		svc:     ipvs.Service{Scheduler: "mh", Flags: sched1 | ipvs.FlagPersistent, Timeout: 30, Netmask: 0xffffffff},
		reals:   map[string]ipvs.Real{"10.20.1.8:80": {Weight: 1, Forward: lvs.Masq}},
		ipvsadm: []string{"-A -t 10.20.0.5:80 -s mh -p 30 -b mh-fallback", "-a -t 10.20.0.5:80 -r 10.20.1.8:80 -m -w 1"},
	},
	{
		name:    "the third scheduler flag",
		key:     svcKey(lvs.UDP, "10.20.0.6:500"),
		svc:     ipvs.Service{Scheduler: "wrr", Flags: sched3, Netmask: 0xffffffff},
		reals:   map[string]ipvs.Real{"10.20.1.9:500": {Weight: 9, Forward: lvs.Masq}},
		ipvsadm: []string{"-A -u 10.20.0.6:500 -s wrr -b flag-3", "-a -u 10.20.0.6:500 -r 10.20.1.9:500 -m -w 9"},
	},
	{
		name: "connection thresholds, which ipvsadm -S leaves out",
		key:  svcKey(lvs.TCP, "10.20.0.7:80"),
		svc:  ipvs.Service{Scheduler: "wlc", Netmask: 0xffffffff},
		reals: map[string]ipvs.Real{
			"10.20.1.11:80": {Weight: 1, Forward: lvs.Route, UpperThreshold: 100, LowerThreshold: 50},
			"10.20.1.12:80": {Weight: 2, Forward: lvs.Route, UpperThreshold: lvs.MaxThreshold},
			"10.20.1.13:80": {Weight: 3, Forward: lvs.Route, UpperThreshold: 1, LowerThreshold: 1},
		},
		ipvsadm: []string{
			"-A -t 10.20.0.7:80 -s wlc",
			"-a -t 10.20.0.7:80 -r 10.20.1.11:80 -g -w 1",
			"-a -t 10.20.0.7:80 -r 10.20.1.12:80 -g -w 2",
			"-a -t 10.20.0.7:80 -r 10.20.1.13:80 -g -w 3",
		},
	},
	{
		name:    "an ipv4 real of an ipv6 service, through ipip",
		key:     svcKey(lvs.TCP, "[2001:db8::81]:80"),
		svc:     ipvs.Service{Scheduler: "rr", Netmask: 128},
		reals:   map[string]ipvs.Real{"10.20.1.10:80": {Weight: 1, Forward: lvs.Tunnel}},
		ipvsadm: []string{"-A -t [2001:db8::81]:80 -s rr", "-a -t [2001:db8::81]:80 -r 10.20.1.10:80 -i -w 1 --tun-type ipip"},
	},
}

// TestReadBack: what the client writes, in one batch, reads back as
// intended through moby/ipvs, through ipvsadm -Sn and through the client.
func TestReadBack(t *testing.T) {
	ns := freshNetns(t)
	c := openIn(t, ns, 5*time.Second)
	want := ipvs.State{}
	var plan ipvs.Plan
	var lines []string
	for _, tc := range readBackCases {
		svc := tc.svc
		svc.Reals = map[lvs.RealKey]ipvs.Real{}
		for ap, r := range tc.reals {
			svc.Reals[realKey(ap)] = r
		}
		want[tc.key] = &svc
		lines = append(lines, tc.ipvsadm...)
	}
	plan = ipvs.Diff(want, ipvs.State{}, nil)
	sends := c.Sends()
	for i, err := range c.ApplyBatch(plan) {
		if err != nil {
			t.Errorf("%s: %v", plan[i], err)
		}
	}
	if n := c.Sends() - sends; n != 1 {
		t.Errorf("%d changes in %d sendmsg, want 1", len(plan), n)
	}

	t.Run("moby", func(t *testing.T) {
		h := moby(t, ns)
		svcs, err := h.GetServices()
		if err != nil {
			t.Fatal(err)
		}
		if len(svcs) != len(readBackCases) {
			t.Errorf("moby reads %d services, want %d", len(svcs), len(readBackCases))
		}
		for _, tc := range readBackCases {
			t.Run(tc.name, func(t *testing.T) {
				ms := mobyFind(svcs, tc.key)
				if ms == nil {
					t.Fatalf("moby does not see %s", tc.key)
				}
				if ms.SchedName != tc.svc.Scheduler || ms.Flags&^ipvs.FlagHashed != tc.svc.Flags ||
					ms.Timeout != tc.svc.Timeout || ms.Netmask != tc.svc.Netmask || ms.AddressFamily != family(tc.key.Addr) {
					t.Errorf("moby reads %+v, want %+v", *ms, tc.svc)
				}
				if ms.Flags&ipvs.FlagHashed == 0 {
					t.Errorf("the kernel did not report its hashed flag: %#x", ms.Flags)
				}
				dsts, err := h.GetDestinations(ms)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]ipvs.Real{}
				for _, d := range dsts {
					a, _ := netip.AddrFromSlice(d.Address)
					ap := netip.AddrPortFrom(a.Unmap(), d.Port).String()
					if d.AddressFamily != family(a.Unmap()) {
						t.Errorf("%s: family %d", ap, d.AddressFamily)
					}
					got[ap] = ipvs.Real{Weight: d.Weight, Forward: lvs.Forward(d.ConnectionFlags & lvs.FwdMask),
						UpperThreshold: d.UpperThreshold, LowerThreshold: d.LowerThreshold}
				}
				if !mapsEqual(got, tc.reals) {
					t.Errorf("moby reads reals %v, want %v", got, tc.reals)
				}
			})
		}
	})

	t.Run("ipvsadm", func(t *testing.T) {
		got := strings.Split(strings.TrimSpace(ipvsadm(t, ns, "", "-Sn")), "\n")
		slices.Sort(got)
		slices.Sort(lines)
		if !slices.Equal(got, lines) {
			t.Errorf("ipvsadm -Sn:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	})

	t.Run("ipvsadm thresholds", func(t *testing.T) {
		// -Ln --thresholds: "  -> 10.20.1.11:80  100  50  0  0" under
		// each service's line, whose second field is its address or mark.
		want, got := map[string]string{}, map[string]string{}
		for _, tc := range readBackCases {
			svc := netip.AddrPortFrom(tc.key.Addr, tc.key.Port).String()
			if tc.key.FWMark != 0 {
				svc = fmt.Sprint(tc.key.FWMark)
			}
			for ap, r := range tc.reals {
				want[svc+" "+ap] = fmt.Sprintf("%d %d", r.UpperThreshold, r.LowerThreshold)
			}
		}
		var svc string
		for _, line := range strings.Split(ipvsadm(t, ns, "", "-Ln", "--thresholds"), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port":
				got[svc+" "+f[1]] = f[2] + " " + f[3]
			case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM"):
				svc = f[1]
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("ipvsadm -Ln --thresholds: %v\nwant %v", got, want)
		}
	})

	t.Run("client", func(t *testing.T) {
		got, err := ipvs.Read(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() || len(got) != len(want) {
			t.Errorf("the client reads:\n%s\nwant:\n%s", got, want)
		}
		for k, w := range want {
			if g := got[k]; g == nil || !g.Equal(w) || !mapsEqual(g.Reals, w.Reals) {
				t.Errorf("%s: read %+v, want %+v", k, g, w)
			}
			// Written by one plan, the reals are in the canonical order,
			// and the client reads the kernel's.
			if order, ok := ipvs.KernelOrder(got[k].Reals); !ok || !slices.Equal(order, ipvs.CanonicalOrder(w.Reals)) {
				t.Errorf("%s: the client reads the order %v (known: %v), want %v", k, order, ok, ipvs.CanonicalOrder(w.Reals))
			}
		}
	})
}

func mobyFind(svcs []*mobyipvs.Service, k lvs.ServiceKey) *mobyipvs.Service {
	for _, s := range svcs {
		if k.FWMark != 0 {
			if s.FWMark == k.FWMark && s.AddressFamily == family(k.Addr) {
				return s
			}
			continue
		}
		if a, ok := netip.AddrFromSlice(s.Address); ok && s.FWMark == 0 && a.Unmap() == k.Addr &&
			s.Port == k.Port && s.Protocol == uint16(k.Protocol) && s.AddressFamily == family(k.Addr) {
			return s
		}
	}
	return nil
}

// mapsEqual compares the reals a client read with the wanted ones, their
// place in the kernel's list aside where the wanted one has none.
func mapsEqual[K comparable](a, b map[K]ipvs.Real) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if w.Position == 0 {
			v.Position = 0
		}
		if !ok || v != w {
			return false
		}
	}
	return true
}

// TestWrittenByMobyReadByClient: the other way round, what moby/ipvs
// writes the client reads, thresholds included.
func TestWrittenByMobyReadByClient(t *testing.T) {
	ns := freshNetns(t)
	c := openIn(t, ns, 5*time.Second)
	h := moby(t, ns)
	ms := &mobyipvs.Service{AddressFamily: syscall.AF_INET6, Protocol: syscall.IPPROTO_UDP, Address: net.ParseIP("2001:db8::99"),
		Port: 53, SchedName: "wrr", Flags: ipvs.FlagPersistent | sched2, Timeout: 90, Netmask: 56}
	if err := h.NewService(ms); err != nil {
		t.Fatal(err)
	}
	if err := h.NewDestination(ms, &mobyipvs.Destination{AddressFamily: syscall.AF_INET6, Address: net.ParseIP("2001:db8::1:9"),
		Port: 5353, Weight: 12, ConnectionFlags: uint32(lvs.Route), UpperThreshold: 8, LowerThreshold: 4}); err != nil {
		t.Fatal(err)
	}
	key := svcKey(lvs.UDP, "[2001:db8::99]:53")
	st, err := ipvs.Read(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ipvs.State{key: {Scheduler: "wrr", Flags: ipvs.FlagPersistent | sched2, Timeout: 90, Netmask: 56,
		Reals: map[lvs.RealKey]ipvs.Real{realKey("[2001:db8::1:9]:5353"): {Weight: 12, Forward: lvs.Route, UpperThreshold: 8, LowerThreshold: 4}}}}
	if st.String() != want.String() || !st[key].Equal(want[key]) || !mapsEqual(st[key].Reals, want[key].Reals) {
		t.Errorf("read %s (%+v), want %s", st, st[key], want)
	}
}
