package render

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
)

// fuzzConfig has every rule render applies: the three forwarding methods,
// both families, quiescent, a local and a remote fallback, hold, slow
// start, tags, on_warning, two virtual services on one Consul service.
const fuzzConfig = `
virtual_service "web" {
  address    = "10.10.10.60:80"
  forwarding = "masq"
  quiescent  = true
  fallback   = "local"
  slow_start = "30s"
}
virtual_service "web-gate" {
  address    = "10.10.10.61:80"
  forwarding = "gate"
  service    = "web"
  tags       = ["prod"]
  hold       = "10s"
  on_warning = "quiesce"
}
virtual_service "api6" {
  address    = "[2001:db8::60]:443"
  forwarding = "ipip"
  service    = "api"
  fallback   = "[2001:db8::99]:443"
  hold       = "5s"
  slow_start = "1m"
}
virtual_service "api-masq6" {
  address    = "[2001:db8::61]:8443"
  protocol   = "tcp"
  forwarding = "masq"
  service    = "api"
  on_warning = "remove"
  fallback   = "local"
}
`

// fuzzBytes reads what the fuzzer gives as a stream of choices; past the
// end every read is zero.
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) bytes(n int) []byte {
	out := make([]byte, n)
	k := copy(out, f.b)
	f.b = f.b[k:]
	return out
}
func (f *fuzzBytes) byte() byte      { return f.bytes(1)[0] }
func (f *fuzzBytes) int32() int      { return int(int32(binary.BigEndian.Uint32(f.bytes(4)))) }
func (f *fuzzBytes) pick(n int) int  { return int(f.byte()) % n }
func (f *fuzzBytes) bool() bool      { return f.byte()&1 == 1 }
func (f *fuzzBytes) more() bool      { return len(f.b) > 0 }
func (f *fuzzBytes) small(n int) int { return int(f.byte()) % (n + 1) }

var fuzzNodes = []string{"n1", "n2", "n3", ""}
var fuzzTags = []string{"prod", "canary", "", "PROD"}

func (f *fuzzBytes) address() string {
	switch f.pick(8) {
	case 0:
		return netip.AddrFrom4([4]byte(f.bytes(4))).String()
	case 1:
		return netip.AddrFrom16([16]byte(f.bytes(16))).String()
	case 2: // IPv4-mapped IPv6
		b := f.bytes(4)
		return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}).String()
	case 3:
		return netip.AddrFrom4([4]byte{10, 1, 0, f.byte()}).String()
	case 4:
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: f.byte()}).String()
	case 5: // the VIPs and fallbacks themselves, and special addresses
		return []string{"10.10.10.60", "2001:db8::60", "2001:db8::99", "0.0.0.0", "::", "224.0.0.1", "255.255.255.255",
			"127.0.0.1", "169.254.1.1", "fe80::1%eth0", "::1"}[f.pick(11)]
	case 6:
		return string(f.bytes(f.small(12))) // anything: a host name, garbage
	}
	return ""
}

func (f *fuzzBytes) port() int {
	switch f.pick(4) {
	case 0:
		return f.int32()
	case 1:
		return []int{0, -1, 65535, 65536, 80, 8080}[f.pick(6)]
	}
	return int(binary.BigEndian.Uint16(f.bytes(2)))
}

func (f *fuzzBytes) weight() int {
	if f.bool() {
		return f.int32()
	}
	return []int{0, 1, 100, -1, MaxWeight, MaxWeight + 1}[f.pick(6)]
}

func (f *fuzzBytes) instance(i int) *catalog.Instance {
	in := &catalog.Instance{
		ID:      fmt.Sprintf("i%d", i),
		Node:    fuzzNodes[f.pick(len(fuzzNodes))],
		Address: f.address(),
		Port:    f.port(),
		Weights: catalog.Weights{Passing: f.weight(), Warning: f.weight()},
		Status:  []catalog.Health{catalog.Passing, catalog.Warning, catalog.Critical, "", "maintenance"}[f.pick(5)],
	}
	flags := f.byte()
	in.NodeMaintenance, in.ServiceMaintenance = flags&1 != 0, flags&2 != 0
	for t := range f.small(3) {
		in.Tags = append(in.Tags, fuzzTags[(int(flags>>2)+t)%len(fuzzTags)])
	}
	if flags&0x80 != 0 { // tagged addresses, of any family or none
		in.TaggedAddresses = map[string]catalog.TaggedAddress{}
		for _, tag := range []string{catalog.LANIPv4, catalog.WANIPv4, catalog.LANIPv6, catalog.WANIPv6} {
			if f.bool() {
				in.TaggedAddresses[tag] = catalog.TaggedAddress{Address: f.address(), Port: f.port()}
			}
		}
	}
	return in
}

// atOneOf reports whether a real's address is the instance's address or
// one of its tagged addresses.
func atOneOf(in *catalog.Instance, a netip.Addr) bool {
	addrs := []string{in.Address}
	for _, ta := range in.TaggedAddresses {
		addrs = append(addrs, ta.Address)
	}
	for _, s := range addrs {
		if b, err := netip.ParseAddr(s); err == nil && b.Unmap() == a {
			return true
		}
	}
	return false
}

// snapshotAndHistory builds a snapshot of the services "web" and "api"
// (and one the config does not watch), with up to 16 instances each, and a
// history in which some of them were critical or started serving lately.
func (f *fuzzBytes) snapshotAndHistory() (catalog.Snapshot, History) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := History{Now: now, LastCritical: map[InstanceKey]time.Time{}, ServingSince: map[InstanceKey]time.Time{}}
	snap := catalog.Snapshot{Services: map[string]*catalog.Service{}}
	n := 0
	for _, name := range []string{"web", "api", "other"} {
		if f.pick(8) == 0 {
			continue // the service is unknown to the catalog
		}
		svc := &catalog.Service{Name: name, Index: uint64(f.byte())}
		for f.more() && len(svc.Instances) < f.small(16) {
			in := f.instance(n)
			n++
			svc.Instances = append(svc.Instances, in)
			key := InstanceKey{Node: in.Node, ID: in.ID}
			ago := func() time.Time { return now.Add(-time.Duration(f.byte()) * 500 * time.Millisecond) }
			switch f.pick(4) {
			case 0:
				h.LastCritical[key] = ago()
			case 1:
				h.ServingSince[key] = ago()
			case 2:
				h.LastCritical[key], h.ServingSince[key] = ago(), ago()
			}
		}
		slices.SortFunc(svc.Instances, func(a, b *catalog.Instance) int {
			return strings.Compare(a.Node+"\x00"+a.ID, b.Node+"\x00"+b.ID)
		})
		snap.Services[name] = svc
	}
	return snap, h
}

// FuzzRender renders random snapshots with a fixed config: render must not
// panic, must be pure, and its State must be one the kernel takes and the
// rules allow: weights within 0..MaxWeight, reals of the VIP's family with
// the service's forwarding, no instance in maintenance, an origin for every
// real, and a fallback only when nothing else serves.
func FuzzRender(f *testing.F) {
	cfg, err := config.Parse([]byte(fuzzConfig), "fuzz.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte("\x01\x01\x04\x03\x00\x00\x01\x00\x50\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00"))
	f.Add([]byte(strings.Repeat("\x03\x07\x03\x2a\x02\x00\x1f\x90\x01\x00\x00\x00\x05\x01\x00\x00\x00\x03\x01\x01\x04", 8)))
	f.Add([]byte(strings.Repeat("\xff\x10\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09\x01\x01\xbb", 6)))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, h := (&fuzzBytes{b: data}).snapshotAndHistory()
		res := RenderAt(cfg, snap, h)
		if again := RenderAt(cfg, snap, h); !reflect.DeepEqual(res, again) {
			t.Fatalf("not pure: two renders of one input differ:\n%v\n%v", res.State, again.State)
		}
		instances := map[InstanceKey]*catalog.Instance{}
		for _, svc := range snap.Services {
			for _, in := range svc.Instances {
				instances[InstanceKey{Node: in.Node, ID: in.ID}] = in
			}
		}
		if len(res.State) != len(cfg.VirtualServices) {
			t.Fatalf("state has %d services, config %d", len(res.State), len(cfg.VirtualServices))
		}
		for _, vs := range cfg.VirtualServices {
			svc := res.State[vs.Key()]
			if svc == nil {
				t.Fatalf("%s: not in the state", vs.Name)
			}
			serving := false
			for rk, r := range svc.Reals {
				where := fmt.Sprintf("%s: real %s (weight %d)", vs.Name, rk, r.Weight)
				if r.Weight < 0 || r.Weight > MaxWeight {
					t.Fatalf("%s: weight out of 0..%d", where, MaxWeight)
				}
				if !rk.Addr.IsValid() || rk.Addr.Is4() != vs.Address.Addr().Is4() || rk.Addr.Is4In6() {
					t.Fatalf("%s: not of the family of %s", where, vs.Address)
				}
				if rk.Port == 0 {
					t.Fatalf("%s: port 0", where)
				}
				if r.Forward != vs.Forwarding {
					t.Fatalf("%s: forwarding %v, want %v", where, r.Forward, vs.Forwarding)
				}
				origin, ok := res.Origins[vs.Key()][rk]
				if !ok {
					t.Fatalf("%s: no origin", where)
				}
				if origin.Source == SourceFallback {
					continue
				}
				serving = serving || r.Weight > 0
				in := instances[InstanceKey{Node: origin.Node, ID: origin.InstanceID}]
				switch {
				case in == nil:
					t.Fatalf("%s: origin %+v is no instance of the snapshot", where, origin)
				case in.InMaintenance():
					t.Fatalf("%s: instance %q in maintenance is in the state", where, in.ID)
				case !in.HasTags(vs.Tags):
					t.Fatalf("%s: instance %q lacks the tags %q", where, in.ID, vs.Tags)
				case !atOneOf(in, rk.Addr):
					t.Fatalf("%s: at none of instance %q's addresses", where, in.ID)
				}
			}
			fb := fallbackKey(vs)
			_, hasFallback := svc.Reals[fb]
			if hasFallback && res.Origins[vs.Key()][fb].Source == SourceFallback && serving {
				t.Fatalf("%s: fallback %s beside a serving real:\n%s", vs.Name, fb, res.State)
			}
			if vs.Fallback.IsSet() && !serving && !hasFallback {
				t.Fatalf("%s: nothing serves and no fallback %s:\n%s", vs.Name, fb, res.State)
			}
		}
		if !res.NextChange.IsZero() && !res.NextChange.After(h.Now) {
			t.Fatalf("next change %v is not after now %v", res.NextChange, h.Now)
		}
	})
}
