// Package render turns the config and a catalog snapshot into the desired
// IPVS state. Render is a pure function: the same inputs give the same
// state, and it touches neither Consul nor the kernel.
package render

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// MaxWeight is the largest weight ipvsadm accepts; larger Consul weights
// are clamped to it.
const MaxWeight = 65535

// Origin tells where a desired real server comes from.
type Origin struct {
	Source Source
	// The Consul instance behind the real; empty for a fallback.
	Node, InstanceID string
	Status           catalog.Health
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

// Decision is what render made of one instance, for status and explain.
type Decision struct {
	Instance *catalog.Instance
	// In tells whether the instance is a real server of the desired
	// state, Real and Weight its key and weight then. An instance in
	// maintenance is not, but Real still names the real it drains from.
	In     bool
	Real   lvs.RealKey
	Weight int
	Rule   Rule
}

// Source is the weight source of the instance's real.
func (d Decision) Source() Source { return d.Rule.Source() }

// Result is the desired state and how it came about.
type Result struct {
	// State is exactly what run wants in the kernel, drains aside: the
	// planner keeps leaving reals at weight 0 while connections finish.
	State ipvs.State
	// Decisions for every instance of each virtual service's Consul
	// service, by virtual service name.
	Decisions map[string][]Decision
	// Origins index the decisions by real: every real of State, and the
	// reals instances in maintenance drain from.
	Origins map[lvs.ServiceKey]map[lvs.RealKey]Origin
	// NextChange is when the result changes with time alone (a hold ends,
	// a slow start steps up); zero if never.
	NextChange time.Time
	Notes      []Note
}

// Render computes the desired state of every configured virtual service,
// with no history: no instance is held out or ramping.
func Render(cfg *config.Config, snap catalog.Snapshot) Result {
	return RenderAt(cfg, snap, History{})
}

// RenderAt computes the desired state given what is known of the past, for
// flap damping (hold) and slow start. It is pure: time is h.Now.
func RenderAt(cfg *config.Config, snap catalog.Snapshot, h History) Result {
	res := Result{
		State:     make(ipvs.State, len(cfg.VirtualServices)),
		Origins:   make(map[lvs.ServiceKey]map[lvs.RealKey]Origin, len(cfg.VirtualServices)),
		Decisions: make(map[string][]Decision, len(cfg.VirtualServices)),
	}
	for _, vs := range cfg.VirtualServices {
		key := vs.Key()
		svc, origins := renderService(vs, snap.Instances(vs.Service), h, &res)
		res.State[key] = svc
		res.Origins[key] = origins
	}
	return res
}

func renderService(vs *config.VirtualService, instances []*catalog.Instance, h History, res *Result) (*ipvs.Service, map[lvs.RealKey]Origin) {
	svc := &ipvs.Service{
		Scheduler: vs.Scheduler,
		Netmask:   lvs.HostMask(vs.Address.Addr()),
		Reals:     make(map[lvs.RealKey]ipvs.Real, len(instances)),
	}
	svc.Flags |= uint32(vs.SchedulerFlags)
	if vs.Persistence > 0 {
		svc.Flags |= ipvs.FlagPersistent
		svc.Timeout = uint32(vs.Persistence.Seconds())
	}
	origins := make(map[lvs.RealKey]Origin, len(instances))
	note := func(in *catalog.Instance, format string, args ...any) {
		res.Notes = append(res.Notes, Note{VirtualService: vs.Name, Node: in.Node, InstanceID: in.ID, Message: fmt.Sprintf(format, args...)})
	}
	decisions := make([]Decision, 0, len(instances))
	defer func() { res.Decisions[vs.Name] = decisions }()
	// draining are the reals of instances in maintenance: not in the
	// state, but named in Origins unless an instance serves there.
	var draining []Decision

	serving := false
	for _, in := range instances {
		if !in.HasTags(vs.Tags) {
			decisions = append(decisions, Decision{Instance: in, Rule: leftOut("lacks one of the tags %q", vs.Tags)})
			continue
		}
		rule, next := decide(vs, in, h)
		res.wake(next)
		if !rule.In() && rule.Source() != SourceMaintenance {
			decisions = append(decisions, Decision{Instance: in, Rule: rule})
			continue
		}
		rk, why, short := realOf(vs, in)
		if why != "" {
			note(in, "%s", why)
			decisions = append(decisions, Decision{Instance: in, Rule: leftOut("%s", short)})
			continue
		}
		if rule.Source() == SourceMaintenance {
			d := Decision{Instance: in, Real: rk, Rule: rule}
			decisions = append(decisions, d)
			draining = append(draining, d)
			continue
		}
		weight := rule.Weight // Consul's, which the rule quotes
		switch {
		case weight > MaxWeight:
			note(in, "weight %d clamped to %d", weight, MaxWeight)
			weight = MaxWeight
		case weight < 0: // the kernel refuses it (ERANGE)
			note(in, "weight %d raised to 0", weight)
			weight = 0
		}
		if prev, dup := svc.Reals[rk]; dup {
			// Two instances behind one real server (gate and ipip keep the
			// virtual port): the one that can take the most traffic wins.
			note(in, "same real server %s as instance %q", rk, origins[rk].InstanceID)
			if prev.Weight >= weight {
				decisions = append(decisions, Decision{Instance: in, Rule: leftOut("real server %s is instance %q's, with a weight as large", rk, origins[rk].InstanceID)})
				continue
			}
			for i := range decisions {
				if decisions[i].In && decisions[i].Real == rk {
					decisions[i].In = false
					decisions[i].Rule = leftOut("real server %s is instance %q's, with a larger weight", rk, in.ID)
				}
			}
		}
		svc.Reals[rk] = ipvs.Real{Weight: weight, Forward: vs.Forwarding}
		origins[rk] = Origin{Source: rule.Source(), Node: in.Node, InstanceID: in.ID, Status: in.Status}
		decisions = append(decisions, Decision{Instance: in, In: true, Real: rk, Weight: weight, Rule: rule})
		serving = serving || weight > 0
	}
	for _, d := range draining {
		if _, taken := origins[d.Real]; !taken {
			origins[d.Real] = Origin{Source: SourceMaintenance, Node: d.Instance.Node, InstanceID: d.Instance.ID, Status: d.Instance.Status}
		}
	}

	if !serving && vs.Fallback.IsSet() {
		rk := fallbackKey(vs)
		svc.Reals[rk] = ipvs.Real{Weight: 1, Forward: vs.Forwarding}
		origins[rk] = Origin{Source: SourceFallback}
	}
	return svc, origins
}

// realOf is the real server an instance is, or why it cannot be one: in
// a warning's words and in explain's shorter ones. An address no real
// server can have is left out here, not sent to the kernel: the kernel
// refuses some (multicast, broadcast, unspecified: EINVAL), and the others
// (loopback, link-local, zoned) mean this host or a link, not a server.
func realOf(vs *config.VirtualService, in *catalog.Instance) (rk lvs.RealKey, why, short string) {
	addr, err := netip.ParseAddr(in.Address)
	if err != nil {
		why = fmt.Sprintf("address %q is not an IP address", in.Address)
		return rk, why, why
	}
	if addr.Zone() != "" {
		why = fmt.Sprintf("address %s has a zone: a real server's address cannot", addr)
		return rk, why, why
	}
	addr = addr.Unmap()
	if addr.Is4() != vs.Address.Addr().Is4() {
		return rk, fmt.Sprintf("address %s is not of the IP family of the virtual address %s", addr, vs.Address.Addr()),
			fmt.Sprintf("address %s is not of the family of %s", addr, vs.Address.Addr())
	}
	if kind := unusable(addr); kind != "" {
		why = fmt.Sprintf("address %s is %s: it cannot be a real server's", addr, kind)
		return rk, why, why
	}
	port := vs.Address.Port()
	if vs.Forwarding.TranslatesPort() {
		if in.Port < 1 || in.Port > 65535 {
			why = fmt.Sprintf("port %d cannot be a real server's port", in.Port)
			return rk, why, why
		}
		port = uint16(in.Port)
	}
	return lvs.RealKey{Addr: addr, Port: port}, "", ""
}

// unusable names the kind of an address that cannot be a real server's,
// or is "" for one that can.
func unusable(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast():
		return "multicast"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsLoopback():
		return "loopback"
	}
	return ""
}

// wake notes a time at which the result changes by itself.
func (r *Result) wake(t time.Time) {
	if !t.IsZero() && (r.NextChange.IsZero() || t.Before(r.NextChange)) {
		r.NextChange = t
	}
}

// LocalFallback is where the local maintenance page is reached: the VIP
// itself, on the virtual port. A real whose address is local to the
// director is delivered to this host with the packet's VIP:port unchanged
// (gate keeps it; masq rewrites it to the same). A loopback real would not
// do: the kernel refuses to DNAT outside traffic to 127.0.0.1 ("stopping
// DNAT to loopback address").
func LocalFallback(vip netip.AddrPort) lvs.RealKey {
	return lvs.RealKey{Addr: vip.Addr(), Port: vip.Port()}
}

func fallbackKey(vs *config.VirtualService) lvs.RealKey {
	if vs.Fallback.Local {
		return LocalFallback(vs.Address)
	}
	return lvs.RealKey{Addr: vs.Fallback.Addr.Addr(), Port: vs.Fallback.Addr.Port()}
}
