package daemon

import (
	"net/netip"
	"testing"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// TestServesItself: a virtual service with one of the host's addresses
// among its reals makes the director serve itself; scoped syncs update
// only their services; a full one starts over.
func TestServesItself(t *testing.T) {
	self, other := netip.MustParseAddr("10.5.0.2"), netip.MustParseAddr("10.5.0.11")
	was := hostAddrs
	hostAddrs = func() map[netip.Addr]bool { return map[netip.Addr]bool{self: true} }
	t.Cleanup(func() { hostAddrs = was })
	key := func(port uint16) lvs.ServiceKey {
		return lvs.ServiceKey{Protocol: lvs.TCP, Addr: netip.MustParseAddr("10.5.0.50"), Port: port}
	}
	svc := func(addrs ...netip.Addr) *ipvs.Service {
		s := &ipvs.Service{Reals: map[lvs.RealKey]ipvs.Real{}}
		for _, a := range addrs {
			s.Reals[lvs.RealKey{Addr: a, Port: 80}] = ipvs.Real{Weight: 1}
		}
		return s
	}
	var s shared
	s.init()
	desired := ipvs.State{key(80): svc(other), key(81): svc(self, other)}
	s.noteSelfReals(desired, ipvs.All)
	if len(s.selfReals) != 1 || !s.selfReals[key(81)] {
		t.Fatalf("full: %v, want :81 alone", s.selfReals)
	}
	desired[key(81)] = svc(other) // this host left :81's pool
	s.noteSelfReals(desired, ipvs.Scope{Keys: map[lvs.ServiceKey]bool{key(81): true}})
	if len(s.selfReals) != 0 {
		t.Fatalf("after :81 dropped the host: %v", s.selfReals)
	}
	desired[key(80)] = svc(self)
	s.noteSelfReals(desired, ipvs.Scope{Keys: map[lvs.ServiceKey]bool{key(80): true}})
	delete(desired, key(80))
	s.noteSelfReals(desired, ipvs.All)
	if len(s.selfReals) != 0 {
		t.Fatalf("a full sync without :80 kept it: %v", s.selfReals)
	}
}
