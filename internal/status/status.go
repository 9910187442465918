// Package status is the annotated view of the live IPVS table: the
// kernel's services and reals, named from the config, marked with what
// lvs-sync owns, decided and drains. The daemon's API (/v1/status,
// /v1/explain), `lvs-sync status` without a daemon and the metrics all
// read it, so a real is classified in one place. Without a daemon there
// are no decisions: the view is the kernel named from the config.
//
// It may import config, catalog, render, ipvs, lvs, internal/announce
// (the VIPs a bgp director announces) and, for the pair's view (HAOf),
// ha; it changes nothing and reads nothing itself: its
// callers hand it the kernel's table and the pair's state.
package status

import (
	"cmp"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// View is the live table as lvs-sync sees it.
type View struct {
	// Synced is when the first sync was applied; zero before.
	Synced    time.Time `json:"synced"`
	LastSync  time.Time `json:"last_sync"`
	LastError string    `json:"last_error,omitempty"`
	// Warnings are conditions that keep lvs-sync from following Consul
	// for some services (an answer filtered by ACLs).
	Warnings []string `json:"warnings,omitempty"`
	// Pending are the changes the next sync would make, as ipvsadm
	// commands: the plan run applies, from the kernel as it is now.
	Pending []string `json:"pending,omitempty"`
	// HA is the director's place in its pair, with director.ha.
	HA *HAView `json:"ha,omitempty"`
	// BGP is what a director of an all-active tier announces, with
	// director.bgp.
	BGP      *BGPView      `json:"bgp,omitempty"`
	Services []ServiceView `json:"services"`
}

// HAView is a director of an HA pair: its role, the lease as it last saw
// it in Consul, its peer and its kernel sync daemons.
type HAView struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Epoch uint64 `json:"epoch,omitempty"`
	// LockHolder is the lease's holder, "" when released or absent.
	LockHolder  string    `json:"lock_holder"`
	LeaseEpoch  uint64    `json:"lease_epoch"`
	Peer        string    `json:"peer,omitempty"`
	PeerRole    string    `json:"peer_role,omitempty"`
	PeerHeard   time.Time `json:"peer_heard,omitzero"`
	ConsulOK    bool      `json:"consul_ok"`
	Carrier     bool      `json:"carrier"`
	SyncDaemons string    `json:"sync_daemons"`
	Takeovers   int       `json:"takeovers"`
	// LastTakeover is when this director last became active.
	LastTakeover time.Time `json:"last_takeover,omitzero"`
	LastStepDown string    `json:"last_step_down,omitempty"`
	// LeaseError is why Consul refuses the director's lease writes (its
	// ACLs), while it does: no write of it takes, it is never active.
	LeaseError string `json:"lease_error,omitempty"`
	// Unready and PeerUnready are why the director and its peer could
	// not serve now ("" when they can): a handover to an unready peer
	// is refused.
	Unready     string `json:"unready,omitempty"`
	PeerUnready string `json:"peer_unready,omitempty"`
}

// ServiceView is one virtual service of the kernel's table.
type ServiceView struct {
	Key       string `json:"key"` // tcp://10.0.0.1:80
	Protocol  string `json:"protocol"`
	Address   string `json:"address"`
	Scheduler string `json:"scheduler"`
	// Persistence in seconds, 0 for none.
	Persistence uint32 `json:"persistence"`
	// Netmask is the persistence netmask as ipvsadm -S gives it
	// ("255.255.255.0", "64"), empty for one client per template.
	Netmask string `json:"netmask,omitempty"`
	// OnePacket is ops: every UDP datagram scheduled on its own.
	OnePacket bool `json:"ops,omitempty"`
	// Name is the config label; empty, with Foreign, for a service
	// lvs-sync does not own.
	Name string `json:"name,omitempty"`
	// ConsulService or NomadService is the virtual service's service, by
	// the catalog it is in (its provider).
	ConsulService string `json:"consul_service,omitempty"`
	NomadService  string `json:"nomad_service,omitempty"`
	Forwarding    string `json:"forwarding,omitempty"`
	Foreign       bool   `json:"foreign"`
	// Conflict is a service the config names but lvs-sync did not make:
	// left untouched unless the virtual service says adopt = true.
	Conflict bool `json:"conflict,omitempty"`
	// Fingerprint is ipvs.Service.Fingerprint as 12 hex digits: a hash of
	// the scheduler, the flags and the reals with their weights, in the
	// kernel's order for mh and sh. Directors whose fingerprints agree map
	// a flow to the same real: compare them across an all-active tier.
	Fingerprint string `json:"fingerprint"`
	// Stats are the kernel's counters for the service since it was made,
	// absent when zero (a table not read from a kernel has none).
	Stats ipvs.Stats `json:"stats,omitzero"`
	Reals []RealView `json:"reals"`
}

// RealView is one real server of a service.
type RealView struct {
	Address       string `json:"address"`
	Forwarding    string `json:"forwarding"`
	Weight        int    `json:"weight"`
	ActiveConns   int    `json:"active_conns"`
	InactiveConns int    `json:"inactive_conns"`
	// Position is the real's place in the kernel's list of the service's
	// reals, 1 at the head (mh and sh build their table from it); 0 when
	// the view is not of a table read from the kernel.
	Position int `json:"position,omitempty"`
	// The connection thresholds, ipvsadm's -x and -y; 0 is none.
	UpperThreshold uint32 `json:"upper_threshold,omitempty"`
	LowerThreshold uint32 `json:"lower_threshold,omitempty"`
	// Stats are the kernel's counters for the real since it was added,
	// absent when zero.
	Stats ipvs.Stats `json:"stats,omitzero"`
	// What lvs-sync knows of it, for a service it owns.
	Node       string `json:"node,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	Health     string `json:"health,omitempty"`
	// Allocation is a Nomad instance's allocation ID; "" for Consul's.
	Allocation string `json:"allocation,omitempty"`
	// Source is the rule behind the weight: passing, warning, quiescent,
	// quiesced, maintenance, slow start, fallback, or draining.
	Source render.Source `json:"source,omitempty"`
	// Rule is that rule as explain words it, with the setting behind it
	// ("passing: weight 10 (weights.passing)"): the dashboard shows it
	// beside the weight without asking explain for every service.
	Rule          string    `json:"rule,omitempty"`
	DrainingSince time.Time `json:"draining_since,omitzero"`
	// DrainDeadline is when the planner deletes a draining real whose
	// connections have not ended: DrainingSince plus drain_timeout.
	DrainDeadline time.Time `json:"drain_deadline,omitzero"`
	Changed       time.Time `json:"changed,omitzero"`
}

// Explanation is why each instance of a virtual service's catalog
// service is in, out, or at its weight.
type Explanation struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	// ConsulService is the service of a Consul virtual service; "" for a
	// Nomad one, whose NomadService names it.
	ConsulService string         `json:"consul_service"`
	NomadService  string         `json:"nomad_service,omitempty"`
	Forwarding    string         `json:"forwarding"`
	Scheduler     string         `json:"scheduler"`
	Instances     []InstanceView `json:"instances"`
	// Others are reals in the kernel no instance accounts for: the
	// fallback, or reals draining after their instance left.
	Others []RealView `json:"others,omitempty"`
}

// InstanceView is one catalog instance and what lvs-sync made of it.
type InstanceView struct {
	Node string `json:"node"`
	ID   string `json:"id"`
	// Allocation is a Nomad instance's allocation ID; "" for Consul's.
	Allocation string          `json:"allocation,omitempty"`
	Address    string          `json:"address"`
	Port       int             `json:"port"`
	Health     string          `json:"health"`
	Checks     []catalog.Check `json:"checks"`
	In         bool            `json:"in"`
	Real       string          `json:"real,omitempty"`
	Weight     int             `json:"weight"`
	Rule       string          `json:"rule"`
	// Warning is a caveat about a real that is in as it is: a gate or
	// ipip port that is not the virtual port.
	Warning string `json:"warning,omitempty"`
	// Kernel is the real as the kernel has it now, if it has it.
	Kernel  *RealView `json:"kernel,omitempty"`
	Changed time.Time `json:"changed,omitzero"`
}

// Input is what lvs-sync knows beside the kernel's table. The zero value
// is the kernel alone; Config names its services; Desired (a running
// daemon's last render) and Draining say what each real is.
type Input struct {
	Config *config.Config
	// Owns reports the services lvs-sync made (its state file); nil owns
	// none but those of the config.
	Owns     func(lvs.ServiceKey) bool
	Desired  *render.Result
	Draining map[lvs.ServiceKey]map[lvs.RealKey]time.Time
	// ChangedAt is when the decision for an instance of a virtual service
	// last changed; nil if unknown.
	ChangedAt func(vs string, in render.InstanceKey) time.Time
}

// owner is ipvs's rule of whose a service is, for a view with a config.
// Without a record (Owns nil) the config's services count as adopted.
func (in Input) owner() ipvs.Owner {
	o := ipvs.Owner{Owned: in.Owns, Adopt: in.Config.Adopts,
		Desired: func(k lvs.ServiceKey) bool { return in.Config.VirtualServiceAt(k) != nil }}
	if in.Owns == nil {
		o.Adopt = func(lvs.ServiceKey) bool { return true }
	}
	return o
}

// Services annotates every service of the kernel's table, in ipvsadm
// order.
func Services(kernel ipvs.State, in Input) []ServiceView {
	out := make([]ServiceView, 0, len(kernel))
	for _, k := range kernel.SortedKeys() {
		out = append(out, in.service(k, kernel[k]))
	}
	return out
}

// service annotates one kernel service.
func (in Input) service(k lvs.ServiceKey, svc *ipvs.Service) ServiceView {
	out := kernelService(k, svc)
	if in.Config == nil {
		return out // without a config to tell, say nothing rather than call lvs-sync's own foreign
	}
	whose := in.owner().Whose(k, true)
	vs := in.Config.VirtualServiceAt(k)
	if vs == nil {
		// Owned and out of the config: being deleted.
		out.Foreign = whose == ipvs.Foreign
		return out
	}
	out.Name, out.Forwarding = vs.Name, vs.Forwarding.String()
	out.ConsulService, out.NomadService = byProvider(vs)
	if whose == ipvs.Conflict {
		out.Conflict = true
		return out // not lvs-sync's: nothing it decided applies
	}
	if in.Desired == nil {
		return out
	}
	want := in.Desired.State[k]
	decisions := map[render.InstanceKey]render.Decision{}
	for _, dec := range in.Desired.Decisions[vs.Name] {
		decisions[render.InstanceKey{Node: dec.Instance.Node, ID: dec.Instance.ID}] = dec
	}
	for i, rk := range svc.SortedReals() { // the order kernelService listed them in
		r := &out.Reals[i]
		o, known := in.Desired.Origins[k][rk]
		since, draining := in.Draining[k][rk]
		desired := false
		if want != nil {
			_, desired = want.Reals[rk]
		}
		r.Source = Classify(o, known, draining, desired)
		r.DrainingSince = since
		if draining {
			r.DrainDeadline = since.Add(vs.DrainTimeout) // the drainer's deadline (ipvs.Drainer.Timeout)
		}
		if !known {
			continue
		}
		r.Node, r.InstanceID, r.Health = o.Node, o.InstanceID, string(o.Status)
		if dec, ok := decisions[render.InstanceKey{Node: o.Node, ID: o.InstanceID}]; ok && o.InstanceID != "" {
			r.Rule, r.Allocation = dec.Rule.String(), dec.Instance.Allocation
		}
		if o.Source == render.SourceMaintenance {
			r.Health = "maintenance"
		}
		if o.InstanceID != "" && in.ChangedAt != nil {
			r.Changed = in.ChangedAt(vs.Name, render.InstanceKey{Node: o.Node, ID: o.InstanceID})
		}
	}
	return out
}

// Classify is the one answer to "what is this real": the rule behind its
// weight. A real the planner keeps at weight 0 while its connections end
// is draining, whatever its instance says; one desired is what render
// decided; one neither desired nor known is left over from an instance
// that went, so draining too.
func Classify(o render.Origin, known, draining, desired bool) render.Source {
	switch {
	case draining:
		return render.SourceDraining
	case known && (desired || o.Source == render.SourceMaintenance):
		return o.Source
	}
	return render.SourceDraining
}

// State is a real's state as the lvs_sync_reals metric counts it:
// serving, quiesced, draining, fallback, or held (by the mass removal
// guard).
func State(source render.Source, weight int) string {
	switch {
	case source == render.SourceFallback:
		return "fallback"
	case source == render.SourceDraining || source == render.SourceMaintenance:
		return "draining"
	case source == render.SourceHeld:
		return "held"
	case weight > 0:
		return "serving"
	}
	return "quiesced"
}

// kernelService describes a kernel service with nothing of lvs-sync's.
func kernelService(k lvs.ServiceKey, svc *ipvs.Service) ServiceView {
	// A firewall mark is protocol "fwm" (ldirectord's word) at "fwmark:N".
	out := ServiceView{Key: k.String(), Protocol: "fwm", Scheduler: svc.Scheduler, Address: k.String(), Fingerprint: svc.Fingerprint().String(), Stats: svc.Stats}
	if k.FWMark == 0 {
		out.Protocol = k.Protocol.String()
		out.Address = lvs.RealKey{Addr: k.Addr, Port: k.Port}.String()
	}
	if svc.Flags&ipvs.FlagPersistent != 0 {
		out.Persistence = svc.Timeout
		out.Netmask = ipvs.NetmaskString(k.Addr, svc.Netmask)
	}
	out.OnePacket = svc.Flags&ipvs.FlagOnePacket != 0
	for _, rk := range svc.SortedReals() {
		r := svc.Reals[rk]
		out.Reals = append(out.Reals, RealView{
			Address: rk.String(), Forwarding: r.Forward.String(), Weight: r.Weight,
			ActiveConns: r.ActiveConns, InactiveConns: r.InactiveConns, Position: r.Position,
			UpperThreshold: r.UpperThreshold, LowerThreshold: r.LowerThreshold, Stats: r.Stats,
		})
	}
	return out
}

// byProvider is the virtual service's service as Consul's or as Nomad's.
func byProvider(vs *config.VirtualService) (consulService, nomadService string) {
	if vs.Provider == config.ProviderNomad {
		return "", vs.Service
	}
	return vs.Service, ""
}

// Explain tells why each instance of a virtual service is where it is;
// kernel is the service as the kernel has it, nil if it has not.
func Explain(vs *config.VirtualService, kernel *ipvs.Service, in Input) Explanation {
	k := vs.Key()
	ex := Explanation{Name: vs.Name, Key: k.String(), Forwarding: vs.Forwarding.String(), Scheduler: vs.Scheduler}
	ex.ConsulService, ex.NomadService = byProvider(vs)
	var reals []RealView
	if kernel != nil {
		reals = in.service(k, kernel).Reals
	}
	realOf := func(addr string) *RealView {
		for i := range reals {
			if reals[i].Address == addr {
				return &reals[i]
			}
		}
		return nil
	}
	accounted := map[string]bool{}
	if in.Desired != nil {
		for _, dec := range in.Desired.Decisions[vs.Name] {
			i := dec.Instance
			iv := InstanceView{
				Node: i.Node, ID: i.ID, Allocation: i.Allocation, Address: i.Address, Port: i.Port, Health: string(i.Status), Checks: i.Checks,
				In: dec.In, Weight: dec.Weight, Rule: dec.Rule.String(), Warning: dec.Warning,
			}
			if in.ChangedAt != nil {
				iv.Changed = in.ChangedAt(vs.Name, render.InstanceKey{Node: i.Node, ID: i.ID})
			}
			if i.InMaintenance() {
				iv.Health = "maintenance"
			}
			if dec.In || dec.Source() == render.SourceMaintenance {
				iv.Real = dec.Real.String()
				iv.Kernel = realOf(iv.Real)
				accounted[iv.Real] = iv.Kernel != nil
			}
			ex.Instances = append(ex.Instances, iv)
		}
	}
	slices.SortFunc(ex.Instances, func(a, b InstanceView) int { return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID)) })
	for _, r := range reals {
		if !accounted[r.Address] {
			ex.Others = append(ex.Others, r)
		}
	}
	return ex
}
