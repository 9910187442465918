package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
	"github.com/lvs-sync/lvs-sync/render"
)

// Status is the live IPVS table as lvs-sync sees it: /v1/status and
// `lvs-sync status`.
type Status struct {
	// Synced is when the first sync was applied; zero before.
	Synced    time.Time `json:"synced"`
	LastSync  time.Time `json:"last_sync"`
	LastError string    `json:"last_error,omitempty"`
	Services  []Service `json:"services"`
}

// Service is one virtual service of the kernel's table.
type Service struct {
	Key       string `json:"key"` // tcp://10.0.0.1:80
	Protocol  string `json:"protocol"`
	Address   string `json:"address"`
	Scheduler string `json:"scheduler"`
	// Persistence in seconds, 0 for none.
	Persistence uint32 `json:"persistence"`
	// Name is the config label; empty, with Foreign, for a service
	// lvs-sync does not own.
	Name          string `json:"name,omitempty"`
	ConsulService string `json:"consul_service,omitempty"`
	Forwarding    string `json:"forwarding,omitempty"`
	Foreign       bool   `json:"foreign"`
	Reals         []Real `json:"reals"`
}

// Real is one real server of a service.
type Real struct {
	Address       string `json:"address"`
	Forwarding    string `json:"forwarding"`
	Weight        int    `json:"weight"`
	ActiveConns   int    `json:"active_conns"`
	InactiveConns int    `json:"inactive_conns"`
	// What lvs-sync knows of it, for a service it owns.
	Node       string `json:"node,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	Health     string `json:"health,omitempty"`
	// Source is the rule behind the weight: passing, warning, quiescent,
	// quiesced, maintenance, slow start, fallback, or draining.
	Source        string    `json:"source,omitempty"`
	DrainingSince time.Time `json:"draining_since,omitzero"`
	Changed       time.Time `json:"changed,omitzero"`
}

// Explanation is why each instance of a virtual service's Consul service
// is in, out, or at its weight: /v1/explain and `lvs-sync explain`.
type Explanation struct {
	Name          string     `json:"name"`
	Key           string     `json:"key"`
	ConsulService string     `json:"consul_service"`
	Forwarding    string     `json:"forwarding"`
	Scheduler     string     `json:"scheduler"`
	Instances     []Instance `json:"instances"`
	// Others are reals in the kernel no instance accounts for: the
	// fallback, or reals draining after their instance left.
	Others []Real `json:"others,omitempty"`
}

// Instance is one Consul instance and what lvs-sync made of it.
type Instance struct {
	Node    string          `json:"node"`
	ID      string          `json:"id"`
	Address string          `json:"address"`
	Port    int             `json:"port"`
	Health  string          `json:"health"`
	Checks  []catalog.Check `json:"checks"`
	In      bool            `json:"in"`
	Real    string          `json:"real,omitempty"`
	Weight  int             `json:"weight"`
	Rule    string          `json:"rule"`
	// Kernel is the real as the kernel has it now, if it has it.
	Kernel  *Real     `json:"kernel,omitempty"`
	Changed time.Time `json:"changed,omitzero"`
}

// publish shares a sync's outcome with Status, Explain and Health.
func (d *Daemon) publish(r Report) {
	draining := d.drainer.Draining()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.shared.lastSync = r.At
	d.shared.lastErr = r.Err
	if r.Err == nil && d.shared.synced.IsZero() {
		d.shared.synced = r.At
	}
	d.shared.result = r.Desired
	d.shared.draining = draining
	// Note when each instance's decision last changed.
	for name, ds := range r.Desired.Decisions {
		for _, dec := range ds {
			k := decisionKey(name, dec.Instance.Node, dec.Instance.ID)
			sig := fmt.Sprintf("%t %d %s", dec.In, dec.Weight, dec.Source)
			if d.shared.signature[k] != sig {
				d.shared.signature[k] = sig
				d.shared.changedAt[k] = r.At
			}
		}
	}
	d.opts.Metrics.sawState(d.shared.cfg, r.Desired, draining, r.Err == nil)
}

func decisionKey(vs, node, id string) string { return vs + "\x00" + node + "\x00" + id }

// Health reports whether lvs-sync is doing its job: it has applied a first
// sync, and Consul has not been unreachable for longer than the config's
// consul_unreachable_after.
func (d *Daemon) Health() (bool, string) {
	d.mu.Lock()
	synced, cfg := d.shared.synced, d.shared.cfg
	d.mu.Unlock()
	if synced.IsZero() {
		return false, "no sync applied yet"
	}
	d.consulMu.Lock()
	defer d.consulMu.Unlock()
	limit := cfg.API.ConsulUnreachableAfter
	for service, q := range d.lastQuery {
		if q.err != nil && q.lastErrAt.After(q.lastOK) && time.Since(q.lastOK) > limit {
			return false, fmt.Sprintf("consul unreachable for %s (service %q): %v", time.Since(q.lastOK).Round(time.Second), service, q.err)
		}
	}
	return true, "synced"
}

// ObserveQuery hears from the catalog watcher.
func (d *Daemon) ObserveQuery(service string, index uint64, err error) {
	d.consulMu.Lock()
	q := d.lastQuery[service]
	if err != nil {
		q.err, q.lastErrAt = err, time.Now()
	} else {
		q.err, q.lastOK = nil, time.Now()
	}
	d.lastQuery[service] = q
	d.consulMu.Unlock()
	d.opts.Metrics.sawQuery(service, index, err)
}

// Status reads the kernel's whole table and annotates what lvs-sync owns.
func (d *Daemon) Status() (Status, error) {
	current, err := ipvs.Read(d.opts.Kernel, nil)
	if err != nil {
		return Status{}, fmt.Errorf("reading the kernel: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{Synced: d.shared.synced, LastSync: d.shared.lastSync}
	if d.shared.lastErr != nil {
		st.LastError = d.shared.lastErr.Error()
	}
	for _, k := range current.SortedKeys() {
		st.Services = append(st.Services, d.describeService(k, current[k], d.shared.cfg.VirtualServiceAt(k)))
	}
	return st, nil
}

// describeService annotates one kernel service, vs its virtual service (nil
// if the config has none); call with d.mu held.
func (d *Daemon) describeService(k lvs.ServiceKey, svc *ipvs.Service, vs *config.VirtualService) Service {
	out := KernelService(k, svc)
	if vs == nil {
		out.Foreign = !d.opts.Ownership.Owns(k)
		return out
	}
	out.Name, out.ConsulService, out.Forwarding = vs.Name, vs.Service, vs.Forwarding.String()
	origins := d.shared.result.Origins[k]
	keys := svc.SortedReals() // the order KernelService listed them in
	for i := range out.Reals {
		r := &out.Reals[i]
		rk := keys[i]
		if since, ok := d.shared.draining[k][rk]; ok {
			r.Source, r.DrainingSince = "draining", since
		}
		o, ok := origins[rk]
		if !ok {
			if r.Source == "" {
				r.Source = "draining" // weight 0, no longer desired
			}
			continue
		}
		r.Node, r.InstanceID, r.Health = o.Node, o.InstanceID, o.Status
		if o.Source == render.SourceMaintenance {
			r.Health = "maintenance"
		}
		if r.Source == "" {
			r.Source = string(o.Source)
		}
		if o.InstanceID != "" {
			r.Changed = d.shared.changedAt[decisionKey(vs.Name, o.Node, o.InstanceID)]
		}
	}
	return out
}

// KernelService describes a kernel service with nothing of lvs-sync's:
// what `lvs-sync status` shows when the daemon is not running.
func KernelService(k lvs.ServiceKey, svc *ipvs.Service) Service {
	out := Service{Key: k.String(), Protocol: k.Protocol.String(), Scheduler: svc.Scheduler, Address: k.String()}
	if k.FWMark == 0 {
		out.Address = lvs.RealKey{Addr: k.Addr, Port: k.Port}.String()
	}
	if svc.Flags&ipvs.FlagPersistent != 0 {
		out.Persistence = svc.Timeout
	}
	for _, rk := range svc.SortedReals() {
		r := svc.Reals[rk]
		out.Reals = append(out.Reals, Real{
			Address: rk.String(), Forwarding: r.Forward.String(), Weight: r.Weight,
			ActiveConns: r.ActiveConns, InactiveConns: r.InactiveConns,
		})
	}
	return out
}

// Explain tells why each instance of a virtual service is where it is.
func (d *Daemon) Explain(name string) (Explanation, error) {
	d.mu.Lock()
	vs := d.shared.cfg.VirtualService(name)
	d.mu.Unlock()
	if vs == nil {
		return Explanation{}, fmt.Errorf("no virtual_service %q in the config", name)
	}
	k := vs.Key()
	current, err := ipvs.Read(d.opts.Kernel, func(key lvs.ServiceKey) bool { return key == k })
	if err != nil {
		return Explanation{}, fmt.Errorf("reading the kernel: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ex := Explanation{Name: vs.Name, Key: k.String(), ConsulService: vs.Service, Forwarding: vs.Forwarding.String(), Scheduler: vs.Scheduler}
	var kernel Service
	accounted := map[string]bool{}
	if svc := current[k]; svc != nil {
		kernel = d.describeService(k, svc, vs)
	}
	realOf := func(addr string) *Real {
		for i := range kernel.Reals {
			if kernel.Reals[i].Address == addr {
				return &kernel.Reals[i]
			}
		}
		return nil
	}
	for _, dec := range d.shared.result.Decisions[vs.Name] {
		in := dec.Instance
		inst := Instance{
			Node: in.Node, ID: in.ID, Address: in.Address, Port: in.Port, Health: string(in.Status), Checks: in.Checks,
			In: dec.In, Weight: dec.Weight, Rule: dec.Rule(),
			Changed: d.shared.changedAt[decisionKey(vs.Name, in.Node, in.ID)],
		}
		if in.InMaintenance() {
			inst.Health = "maintenance"
		}
		if dec.In {
			inst.Real = dec.Real.String()
			inst.Kernel = realOf(inst.Real)
			accounted[inst.Real] = true
		}
		ex.Instances = append(ex.Instances, inst)
	}
	slices.SortFunc(ex.Instances, func(a, b Instance) int { return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID)) })
	for _, r := range kernel.Reals {
		if !accounted[r.Address] {
			ex.Others = append(ex.Others, r)
		}
	}
	return ex, nil
}
