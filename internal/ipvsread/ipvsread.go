// Package ipvsread is the tests' independent reader of the kernel's IPVS:
// moby/ipvs, a client written by others, against which lvs-sync's own
// client (ipvs/genl) and the in-memory kernel are checked. Only tests import
// it, so moby/ipvs is not linked into lvs-sync.
package ipvsread

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	mobyipvs "github.com/moby/ipvs"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// Netlink is the kernel's IPVS through generic netlink (moby/ipvs). It is
// safe for concurrent use; calls are serialised, each with a deadline.
type Netlink struct {
	mu      sync.Mutex
	h       *mobyipvs.Handle
	timeout time.Duration
	log     hclog.Logger
	calls   atomic.Uint64
}

var _ ipvs.Kernel = (*Netlink)(nil)

// Open opens the IPVS netlink family of the current network namespace.
// Every call must finish within timeout (default 5s); one that does not
// fails with an error wrapping ipvs.ErrTimeout.
func Open(timeout time.Duration, log hclog.Logger) (*Netlink, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	n := &Netlink{timeout: timeout, log: log}
	h, err := mobyipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("opening ipvs netlink (is the ip_vs module loaded?): %w", err)
	}
	n.h = h
	return n, nil
}

// Close releases the netlink socket.
func (n *Netlink) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
}

// Calls is how many netlink calls were made.
func (n *Netlink) Calls() uint64 { return n.calls.Load() }

// do runs fn against the handle with a deadline. moby/ipvs retries a
// receive timeout forever, so a lost reply would block for good: after the
// deadline the socket is closed, which ends the stuck call, and a new one
// is opened for the next call.
func (n *Netlink) do(what string, fn func(h *mobyipvs.Handle) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls.Add(1)
	if n.h == nil {
		h, err := mobyipvs.New("")
		if err != nil {
			return fmt.Errorf("%s: reopening ipvs netlink: %w", what, err)
		}
		n.h = h
	}
	h := n.h
	done := make(chan error, 1)
	go func() { done <- fn(h) }()
	timer := time.NewTimer(n.timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		n.log.Warn("netlink call timed out; reopening the socket", "call", what, "timeout", n.timeout)
		h.Close()
		n.h = nil
		return fmt.Errorf("%s: %w (%v)", what, ipvs.ErrTimeout, n.timeout)
	}
}

func (n *Netlink) Services() (ipvs.State, error) {
	var svcs []*mobyipvs.Service
	err := n.do("list services", func(h *mobyipvs.Handle) (err error) {
		svcs, err = h.GetServices()
		return err
	})
	if err != nil {
		return nil, err
	}
	st := make(ipvs.State, len(svcs))
	for _, s := range svcs {
		k, svc, err := fromMobyService(s)
		if err != nil {
			n.log.Warn("ignoring a virtual service lvs-sync cannot read", "error", err)
			continue
		}
		st[k] = svc
	}
	return st, nil
}

func (n *Netlink) Reals(k lvs.ServiceKey) (map[lvs.RealKey]ipvs.Real, error) {
	var dsts []*mobyipvs.Destination
	err := n.do("list reals of "+k.String(), func(h *mobyipvs.Handle) (err error) {
		dsts, err = h.GetDestinations(toMobyService(k, nil))
		return err
	})
	if err != nil {
		return nil, err
	}
	reals := make(map[lvs.RealKey]ipvs.Real, len(dsts))
	for i, d := range dsts { // in the kernel's list order
		addr, ok := netip.AddrFromSlice(d.Address)
		if !ok {
			continue
		}
		reals[lvs.RealKey{Addr: addr.Unmap(), Port: d.Port}] = ipvs.Real{
			Weight:         d.Weight,
			Forward:        lvs.Forward(d.ConnectionFlags & lvs.FwdMask),
			UpperThreshold: d.UpperThreshold,
			LowerThreshold: d.LowerThreshold,
			ActiveConns:    d.ActiveConnections,
			InactiveConns:  d.InactiveConnections,
			Position:       i + 1,
		}
	}
	return reals, nil
}

func (n *Netlink) AddService(k lvs.ServiceKey, s *ipvs.Service) error {
	return n.do("add service "+k.String(), func(h *mobyipvs.Handle) error { return h.NewService(toMobyService(k, s)) })
}

func (n *Netlink) UpdateService(k lvs.ServiceKey, s *ipvs.Service) error {
	return n.do("update service "+k.String(), func(h *mobyipvs.Handle) error { return h.UpdateService(toMobyService(k, s)) })
}

func (n *Netlink) DelService(k lvs.ServiceKey) error {
	return n.do("delete service "+k.String(), func(h *mobyipvs.Handle) error { return h.DelService(toMobyService(k, nil)) })
}

func (n *Netlink) AddReal(k lvs.ServiceKey, rk lvs.RealKey, r ipvs.Real) error {
	if err := r.Check(); err != nil {
		return err
	}
	return n.do("add real "+rk.String()+" to "+k.String(), func(h *mobyipvs.Handle) error {
		return h.NewDestination(toMobyService(k, nil), toMobyDest(rk, r))
	})
}

func (n *Netlink) UpdateReal(k lvs.ServiceKey, rk lvs.RealKey, r ipvs.Real) error {
	if err := r.Check(); err != nil {
		return err
	}
	return n.do("update real "+rk.String()+" of "+k.String(), func(h *mobyipvs.Handle) error {
		return h.UpdateDestination(toMobyService(k, nil), toMobyDest(rk, r))
	})
}

func (n *Netlink) DelReal(k lvs.ServiceKey, rk lvs.RealKey) error {
	return n.do("delete real "+rk.String()+" of "+k.String(), func(h *mobyipvs.Handle) error {
		return h.DelDestination(toMobyService(k, nil), toMobyDest(rk, ipvs.Real{}))
	})
}

func family(a netip.Addr) uint16 {
	if a.Is6() {
		return syscall.AF_INET6
	}
	return syscall.AF_INET
}

// toMobyService converts a key and, when s is not nil, its settings. The
// kernel finds a service by key alone, so deletes and real changes pass nil.
func toMobyService(k lvs.ServiceKey, s *ipvs.Service) *mobyipvs.Service {
	ms := &mobyipvs.Service{
		AddressFamily: family(k.Addr),
		FWMark:        k.FWMark,
	}
	if k.FWMark == 0 {
		ms.Address = net.IP(k.Addr.AsSlice())
		ms.Protocol = uint16(k.Protocol)
		ms.Port = k.Port
	}
	if s != nil {
		ms.SchedName = s.Scheduler
		ms.Flags = s.Flags
		ms.Timeout = s.Timeout
		ms.Netmask = s.Netmask
	}
	return ms
}

func toMobyDest(rk lvs.RealKey, r ipvs.Real) *mobyipvs.Destination {
	return &mobyipvs.Destination{
		Address:         net.IP(rk.Addr.AsSlice()),
		Port:            rk.Port,
		Weight:          r.Weight,
		ConnectionFlags: uint32(r.Forward),
		UpperThreshold:  r.UpperThreshold,
		LowerThreshold:  r.LowerThreshold,
		AddressFamily:   family(rk.Addr),
	}
}

// fromMobyService normalises what the kernel reports: the "hashed" flag it
// sets on every service is dropped, so that it compares with desired state.
func fromMobyService(s *mobyipvs.Service) (lvs.ServiceKey, *ipvs.Service, error) {
	k := lvs.ServiceKey{FWMark: s.FWMark}
	if s.FWMark == 0 {
		addr, ok := netip.AddrFromSlice(s.Address)
		if !ok {
			return k, nil, fmt.Errorf("service with address %v", s.Address)
		}
		k.Addr, k.Protocol, k.Port = addr.Unmap(), lvs.Protocol(s.Protocol), s.Port
	} else if s.AddressFamily == syscall.AF_INET6 {
		k.Addr = netip.IPv6Unspecified()
	} else {
		k.Addr = netip.IPv4Unspecified()
	}
	return k, &ipvs.Service{
		Scheduler: s.SchedName,
		Flags:     s.Flags &^ ipvs.FlagHashed,
		Timeout:   s.Timeout,
		Netmask:   s.Netmask,
	}, nil
}
