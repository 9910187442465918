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

// Source says which rule gave a real server its weight.
type Source string

// The rules of render.
const (
	SourcePassing     Source = "passing"     // Weights.Passing of a passing instance
	SourceWarning     Source = "warning"     // Weights.Warning of an instance in warning
	SourceQuiescent   Source = "quiescent"   // critical, kept at 0 by quiescent = true
	SourceMaintenance Source = "maintenance" // node or service in maintenance: 0, draining
	SourceFallback    Source = "fallback"    // no instance can take traffic
	SourceQuiesced    Source = "quiesced"    // in warning, with on_warning = "quiesce"
	SourceSlowStart   Source = "slow start"  // passing or warning, ramping up after slow_start
)

// Origin tells where a desired real server comes from.
type Origin struct {
	Source Source
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

// Decision is what render made of one instance, for `lvs-sync explain`.
type Decision struct {
	Instance *catalog.Instance
	// In tells whether the instance is a real server; Real and Weight
	// are its key and weight then.
	In     bool
	Real   lvs.RealKey
	Weight int
	Source Source
	// rule is the rule in words when render had to say it at once (a rare
	// "left out"); otherwise why holds what Rule formats on demand, so
	// that a render of thousands of instances formats nothing.
	rule string
	why  ruleArgs
}

// ruleArgs are the inputs of describeRule.
type ruleArgs struct {
	vs           *config.VirtualService
	weight       int
	source       Source
	ok           bool
	lastCritical time.Time
	now          time.Time
}

// Rule is the rule of the config that applied, in words.
func (d Decision) Rule() string {
	if d.why.vs == nil {
		return d.rule
	}
	return describeRule(d.why.vs, d.Instance, d.why.weight, d.why.source, d.why.ok, d.why.lastCritical, d.why.now)
}

// Result is the desired state and how it came about.
type Result struct {
	// Decisions for every instance of each virtual service's Consul
	// service, by virtual service name.
	Decisions map[string][]Decision
	// NextChange is when the result changes with time alone (a hold ends,
	// a slow start steps up); zero if never.
	NextChange time.Time
	State      ipvs.State
	Origins    map[lvs.ServiceKey]map[lvs.RealKey]Origin
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
	if vs.Persistence > 0 {
		svc.Flags |= ipvs.FlagPersistent
		svc.Timeout = uint32(vs.Persistence.Seconds())
	}
	origins := make(map[lvs.RealKey]Origin, len(instances))
	note := func(in *catalog.Instance, format string, args ...any) {
		res.Notes = append(res.Notes, Note{VirtualService: vs.Name, Node: in.Node, InstanceID: in.ID, Message: fmt.Sprintf(format, args...)})
	}

	serving := false
	decisions := make([]Decision, 0, len(instances))
	defer func() { res.Decisions[vs.Name] = decisions }()
	decide := func(in *catalog.Instance, d Decision) {
		d.Instance = in
		decisions = append(decisions, d)
	}
	for _, in := range instances {
		if !in.HasTags(vs.Tags) {
			decide(in, Decision{rule: fmt.Sprintf("left out: lacks one of the tags %q", vs.Tags)})
			continue
		}
		weight, source, ok := weigh(vs, in, h, res)
		why := ruleArgs{vs: vs, weight: weight, source: source, ok: ok, lastCritical: h.LastCritical[InstanceKey{Node: in.Node, ID: in.ID}], now: h.Now}
		if !ok {
			decide(in, Decision{why: why})
			continue
		}
		addr, err := netip.ParseAddr(in.Address)
		if err != nil {
			note(in, "address %q is not an IP address", in.Address)
			decide(in, Decision{rule: fmt.Sprintf("left out: address %q is not an IP address", in.Address)})
			continue
		}
		addr = addr.Unmap()
		if addr.Is4() != vs.Address.Addr().Is4() {
			note(in, "address %s is not of the IP family of the virtual address %s", addr, vs.Address.Addr())
			decide(in, Decision{rule: fmt.Sprintf("left out: address %s is not of the family of %s", addr, vs.Address.Addr())})
			continue
		}
		port := vs.Address.Port()
		if vs.Forwarding.TranslatesPort() {
			if in.Port < 1 || in.Port > 65535 {
				note(in, "port %d cannot be a real server's port", in.Port)
				decide(in, Decision{rule: fmt.Sprintf("left out: port %d cannot be a real server's port", in.Port)})
				continue
			}
			port = uint16(in.Port)
		}
		if weight > MaxWeight {
			note(in, "weight %d clamped to %d", weight, MaxWeight)
			weight = MaxWeight
		}
		rk := lvs.RealKey{Addr: addr, Port: port}
		if prev, dup := svc.Reals[rk]; dup {
			// Two instances behind one real server (gate and ipip keep the
			// virtual port): the one that can take the most traffic wins.
			note(in, "same real server %s as instance %q", rk, origins[rk].InstanceID)
			if prev.Weight >= weight {
				decide(in, Decision{rule: fmt.Sprintf("left out: real server %s is instance %q's, with a weight as large", rk, origins[rk].InstanceID)})
				continue
			}
			for i := range decisions {
				if decisions[i].In && decisions[i].Real == rk {
					decisions[i].In = false
					decisions[i].rule, decisions[i].why = fmt.Sprintf("left out: real server %s is instance %q's, with a larger weight", rk, in.ID), ruleArgs{}
				}
			}
		}
		svc.Reals[rk] = ipvs.Real{Weight: weight, Forward: vs.Forwarding}
		origins[rk] = Origin{Source: source, Node: in.Node, InstanceID: in.ID, Status: string(in.Status)}
		decide(in, Decision{In: true, Real: rk, Weight: weight, Source: source, why: why})
		serving = serving || weight > 0
	}

	if !serving && vs.Fallback.IsSet() {
		rk := fallbackKey(vs)
		svc.Reals[rk] = ipvs.Real{Weight: 1, Forward: vs.Forwarding}
		origins[rk] = Origin{Source: SourceFallback}
	}
	return svc, origins
}

// weigh applies the health rules to one instance: its weight, the rule that
// gave it, and whether it is a real server at all.
func weigh(vs *config.VirtualService, in *catalog.Instance, h History, res *Result) (int, Source, bool) {
	status := in.Status
	key := InstanceKey{Node: in.Node, ID: in.ID}
	// Flap damping: an instance that was critical less than hold ago is
	// held out as if it still were.
	heldUntil := time.Time{}
	if vs.Hold > 0 && status != catalog.Critical {
		if last, ok := h.LastCritical[key]; ok && h.Now.Before(last.Add(vs.Hold)) {
			heldUntil = last.Add(vs.Hold)
			res.wake(heldUntil)
			status = catalog.Critical
		}
	}
	var weight int
	var source Source
	switch {
	case in.InMaintenance():
		return 0, SourceMaintenance, true
	case status == catalog.Passing:
		weight, source = in.Weights.Passing, SourcePassing
	case status == catalog.Warning && vs.OnWarning == "quiesce":
		return 0, SourceQuiesced, true
	case status == catalog.Warning && vs.OnWarning == "remove":
		return 0, "", false
	case status == catalog.Warning:
		weight, source = in.Weights.Warning, SourceWarning
	case vs.Quiescent:
		return 0, SourceQuiescent, true
	default:
		return 0, "", false
	}
	// Slow start: from 1 to the full weight over slow_start, counted from
	// when the instance started serving (or its hold ended).
	if vs.SlowStart > 0 && weight > 1 {
		start := h.ServingSince[key]
		if last, ok := h.LastCritical[key]; ok && vs.Hold > 0 && last.Add(vs.Hold).After(start) {
			start = last.Add(vs.Hold)
		}
		if !start.IsZero() && h.Now.Before(start.Add(vs.SlowStart)) {
			elapsed := h.Now.Sub(start)
			w := max(1, int(int64(weight)*int64(elapsed)/int64(vs.SlowStart)))
			// The weight steps up when elapsed reaches (w+1)/weight of it.
			res.wake(start.Add(time.Duration(int64(vs.SlowStart) * int64(w+1) / int64(weight))))
			return w, SourceSlowStart, true
		}
	}
	return weight, source, true
}

// describeRule says in words which rule gave an instance its fate.
func describeRule(vs *config.VirtualService, in *catalog.Instance, weight int, source Source, ok bool, lastCritical, now time.Time) string {
	switch {
	case in.NodeMaintenance:
		return "node in maintenance: weight 0, draining until its connections end or drain_timeout " + vs.DrainTimeout.String()
	case in.ServiceMaintenance:
		return "service in maintenance: weight 0, draining until its connections end or drain_timeout " + vs.DrainTimeout.String()
	case !ok && in.Status != catalog.Critical && in.Status == catalog.Warning && vs.OnWarning == "remove":
		return "warning, on_warning = \"remove\": removed"
	case in.Status != catalog.Critical && vs.Hold > 0 && !lastCritical.IsZero() && lastCritical.Add(vs.Hold).After(now):
		until := lastCritical.Add(vs.Hold)
		if ok {
			return fmt.Sprintf("held out by hold %s until %s (critical at %s): quiescent, weight 0", vs.Hold, until.Format(time.RFC3339), lastCritical.Format(time.RFC3339))
		}
		return fmt.Sprintf("held out by hold %s until %s (critical at %s)", vs.Hold, until.Format(time.RFC3339), lastCritical.Format(time.RFC3339))
	case source == SourceQuiescent:
		return "critical, quiescent = true: kept at weight 0"
	case !ok:
		return "critical: removed (quiescent = false)"
	case source == SourceQuiesced:
		return "warning, on_warning = \"quiesce\": weight 0"
	case source == SourceSlowStart:
		full := in.Weights.Passing
		if in.Status == catalog.Warning {
			full = in.Weights.Warning
		}
		return fmt.Sprintf("slow_start %s: weight %d rising to %d", vs.SlowStart, weight, full)
	case source == SourceWarning:
		return fmt.Sprintf("warning, on_warning = \"serve\": weight = Consul Weights.Warning (%d)", weight)
	}
	return fmt.Sprintf("passing: weight = Consul Weights.Passing (%d)", weight)
}

// wake notes a time at which the result changes by itself.
func (r *Result) wake(t time.Time) {
	if r.NextChange.IsZero() || t.Before(r.NextChange) {
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
