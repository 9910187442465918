// Package render turns the config and a catalog snapshot into the desired
// IPVS state. Render is a pure function: the same inputs give the same
// state, and it touches neither Consul nor the kernel.
package render

import (
	"fmt"
	"net/netip"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
)

// MaxWeight is the largest weight ipvsadm accepts; larger Consul weights
// are clamped to it.
const MaxWeight = 65535

// Source says which rule gave a real server its weight.
type Source string

// The rules of render.
const (
	SourcePassing     Source = "passing"     // Weights.Passing of a passing instance
	SourceWarning     Source = "warning"     // Weights.Warning of an instance in warning
	SourceQuiescent   Source = "quiescent"   // critical, kept at 0 by quiescent = true
	SourceMaintenance Source = "maintenance" // node or service in maintenance: 0, draining
	SourceFallback    Source = "fallback"    // no instance can take traffic
)

// Origin tells where a desired real server comes from.
type Origin struct {
	VirtualService string
	Source         Source
	// The Consul instance behind the real; empty for a fallback.
	Node, InstanceID, Status string
}

// Note is catalog data render had to leave out, for the caller to log.
type Note struct {
	VirtualService string
	Node           string
	InstanceID     string
	Message        string
}

func (n Note) String() string {
	return fmt.Sprintf("virtual_service %q: instance %q on node %q: %s", n.VirtualService, n.InstanceID, n.Node, n.Message)
}

// Result is the desired state and how it came about.
type Result struct {
	State ipvs.State
	// Owners maps each desired service to the label of its virtual_service.
	Owners  map[ipvs.ServiceKey]string
	Origins map[ipvs.ServiceKey]map[ipvs.RealKey]Origin
	Notes   []Note
}

// Render computes the desired state of every configured virtual service.
func Render(cfg *config.Config, snap catalog.Snapshot) Result {
	res := Result{
		State:   make(ipvs.State, len(cfg.VirtualServices)),
		Owners:  make(map[ipvs.ServiceKey]string, len(cfg.VirtualServices)),
		Origins: make(map[ipvs.ServiceKey]map[ipvs.RealKey]Origin, len(cfg.VirtualServices)),
	}
	for _, vs := range cfg.VirtualServices {
		key := vs.Key()
		svc, origins := renderService(vs, snap.Instances(vs.Service), &res.Notes)
		res.State[key] = svc
		res.Owners[key] = vs.Name
		res.Origins[key] = origins
	}
	return res
}

func renderService(vs *config.VirtualService, instances []*catalog.Instance, notes *[]Note) (*ipvs.Service, map[ipvs.RealKey]Origin) {
	svc := &ipvs.Service{
		Scheduler: vs.Scheduler,
		Netmask:   ipvs.HostMask(vs.Address.Addr()),
		Reals:     make(map[ipvs.RealKey]ipvs.Real, len(instances)),
	}
	if vs.Persistence > 0 {
		svc.Flags |= ipvs.FlagPersistent
		svc.Timeout = uint32(vs.Persistence.Seconds())
	}
	origins := make(map[ipvs.RealKey]Origin, len(instances))
	note := func(in *catalog.Instance, format string, args ...any) {
		*notes = append(*notes, Note{VirtualService: vs.Name, Node: in.Node, InstanceID: in.ID, Message: fmt.Sprintf(format, args...)})
	}

	serving := false
	for _, in := range instances {
		if !in.HasTags(vs.Tags) {
			continue
		}
		weight, source, ok := weigh(vs, in)
		if !ok {
			continue
		}
		addr, err := netip.ParseAddr(in.Address)
		if err != nil {
			note(in, "address %q is not an IP address", in.Address)
			continue
		}
		addr = addr.Unmap()
		if addr.Is4() != vs.Address.Addr().Is4() {
			note(in, "address %s is not of the IP family of the virtual address %s", addr, vs.Address.Addr())
			continue
		}
		port := vs.Address.Port()
		if vs.Forwarding.TranslatesPort() {
			if in.Port < 1 || in.Port > 65535 {
				note(in, "port %d cannot be a real server's port", in.Port)
				continue
			}
			port = uint16(in.Port)
		}
		if weight > MaxWeight {
			note(in, "weight %d clamped to %d", weight, MaxWeight)
			weight = MaxWeight
		}
		rk := ipvs.RealKey{Addr: addr, Port: port}
		if prev, dup := svc.Reals[rk]; dup {
			// Two instances behind one real server (gate and ipip keep the
			// virtual port): the one that can take the most traffic wins.
			note(in, "same real server %s as instance %q", rk, origins[rk].InstanceID)
			if prev.Weight >= weight {
				continue
			}
		}
		svc.Reals[rk] = ipvs.Real{Weight: weight, Forward: vs.Forwarding}
		origins[rk] = Origin{VirtualService: vs.Name, Source: source, Node: in.Node, InstanceID: in.ID, Status: in.Status}
		serving = serving || weight > 0
	}

	if !serving && vs.Fallback.IsSet() {
		rk := fallbackKey(vs)
		svc.Reals[rk] = ipvs.Real{Weight: 1, Forward: vs.Forwarding}
		origins[rk] = Origin{VirtualService: vs.Name, Source: SourceFallback}
	}
	return svc, origins
}

// weigh applies the health rules to one instance: its weight, the rule that
// gave it, and whether it is a real server at all.
func weigh(vs *config.VirtualService, in *catalog.Instance) (int, Source, bool) {
	switch {
	case in.InMaintenance():
		return 0, SourceMaintenance, true
	case in.Status == catalog.Passing:
		return in.Weights.Passing, SourcePassing, true
	case in.Status == catalog.Warning:
		return in.Weights.Warning, SourceWarning, true
	case vs.Quiescent:
		return 0, SourceQuiescent, true
	}
	return 0, "", false
}

// LocalFallback is where the local maintenance page is reached: the
// loopback address of the VIP's family, on the virtual port. The kernel makes
// a local address a "local node" destination, delivered to this host.
func LocalFallback(vip netip.AddrPort) ipvs.RealKey {
	if vip.Addr().Is6() {
		return ipvs.RealKey{Addr: netip.IPv6Loopback(), Port: vip.Port()}
	}
	return ipvs.RealKey{Addr: netip.AddrFrom4([4]byte{127, 0, 0, 1}), Port: vip.Port()}
}

func fallbackKey(vs *config.VirtualService) ipvs.RealKey {
	if vs.Fallback.Local {
		return LocalFallback(vs.Address)
	}
	return ipvs.RealKey{Addr: vs.Fallback.Addr.Addr(), Port: vs.Fallback.Addr.Port()}
}
