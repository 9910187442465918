package daemon

import (
	"net"
	"net/netip"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// hostAddrs are this host's addresses; a variable for tests.
var hostAddrs = func() map[netip.Addr]bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
}

// noteSelfReals notes which virtual services in scope have one of this
// host's addresses among their reals (the streamline set-up: the
// director is a real server of its own services); call with s.mu held.
// The host's addresses are read again at each full sync (every
// reconcile_interval at least), not at every sync: a flip's sync stays
// free of the syscall, and an address added to the host is seen by the
// next reconcile.
func (s *shared) noteSelfReals(desired ipvs.State, scope ipvs.Scope) {
	if scope.Full() || s.hostAddrs == nil {
		s.hostAddrs = hostAddrs()
	}
	host := s.hostAddrs
	if scope.Full() {
		clear(s.selfReals)
	}
	note := func(k lvs.ServiceKey, svc *ipvs.Service) {
		delete(s.selfReals, k)
		if svc == nil {
			return
		}
		for rk := range svc.Reals {
			if host[rk.Addr] {
				s.selfReals[k] = true
				return
			}
		}
	}
	if scope.Full() {
		for k, svc := range desired {
			note(k, svc)
		}
		return
	}
	for k := range scope.Keys {
		note(k, desired[k])
	}
}

// ServesItself says whether this host is a real server of one of its own
// virtual services, as of the last sync. A director of a pair that is
// stops its drain the moment it hears its new active peer (ha.Machine):
// from then the peer may send it connections as a real server, and a
// director still scheduling could balance them back to the peer.
func (d *Daemon) ServesItself() bool {
	s := &d.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.selfReals) > 0
}
