// Package catalog watches the Consul catalog with blocking queries and emits
// immutable snapshots of the instances of the services lvs-sync balances.
package catalog

import (
	"cmp"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Health statuses, as Consul names them.
const (
	Passing  = api.HealthPassing
	Warning  = api.HealthWarning
	Critical = api.HealthCritical
)

// Check is one Consul health check behind an instance's status.
type Check struct {
	CheckID   string
	Name      string
	Status    string
	Output    string
	ServiceID string // empty for a node check
}

// Weights are the instance's Consul weights, used as IPVS weights.
type Weights struct {
	Passing int
	Warning int
}

// Instance is one instance of a Consul service on one node. Snapshots share
// instances: treat every field as read-only.
type Instance struct {
	ID   string // the service ID, unique on its node
	Node string
	// Address is the service address, else the node address, as Consul has
	// it: an IP literal normally, but nothing stops a host name.
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Weights Weights
	// Status aggregates the node's and the service's checks, maintenance
	// aside: critical over warning over passing. No check is passing.
	Status             string
	NodeMaintenance    bool
	ServiceMaintenance bool
	Checks             []Check
}

// InMaintenance reports whether the node or the service is in maintenance.
func (i *Instance) InMaintenance() bool { return i.NodeMaintenance || i.ServiceMaintenance }

// HasTags reports whether the instance carries every one of tags.
func (i *Instance) HasTags(tags []string) bool {
	for _, t := range tags {
		if !slices.Contains(i.Tags, t) {
			return false
		}
	}
	return true
}

// Service is the answer for one watched Consul service.
type Service struct {
	Name string
	// Index is the Consul index of the answer (X-Consul-Index).
	Index uint64
	// Instances sorted by node, then ID. Empty when the service has none
	// or does not exist.
	Instances []*Instance
	// FilteredByACLs is set when Consul left out results the token may not
	// read (X-Consul-Results-Filtered-By-ACLs).
	FilteredByACLs bool
}

// sameContent reports whether two answers carry the same instances, their
// Consul index aside.
func (s *Service) sameContent(o *Service) bool {
	return s.FilteredByACLs == o.FilteredByACLs && reflect.DeepEqual(s.Instances, o.Instances)
}

// Snapshot is the latest answer for every watched service. It is complete:
// the watcher emits one only when each service has answered at least once.
type Snapshot struct {
	Services map[string]*Service
}

// Instances returns the instances of the named service, nil if unknown.
func (s Snapshot) Instances(name string) []*Instance {
	if svc, ok := s.Services[name]; ok {
		return svc.Instances
	}
	return nil
}

// newService converts a health endpoint answer.
func newService(name string, entries []*api.ServiceEntry, meta *api.QueryMeta) *Service {
	svc := &Service{Name: name}
	if meta != nil {
		svc.Index = meta.LastIndex
		svc.FilteredByACLs = meta.ResultsFilteredByACLs
	}
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			continue
		}
		svc.Instances = append(svc.Instances, newInstance(e))
	}
	slices.SortFunc(svc.Instances, func(a, b *Instance) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
	return svc
}

func newInstance(e *api.ServiceEntry) *Instance {
	in := &Instance{
		ID:      e.Service.ID,
		Node:    e.Node.Node,
		Address: e.Service.Address,
		Port:    e.Service.Port,
		Tags:    slices.Clone(e.Service.Tags),
		Weights: Weights{Passing: e.Service.Weights.Passing, Warning: e.Service.Weights.Warning},
		Status:  Passing,
	}
	if in.Address == "" {
		in.Address = e.Node.Address
	}
	if len(e.Service.Meta) > 0 {
		in.Meta = make(map[string]string, len(e.Service.Meta))
		for k, v := range e.Service.Meta {
			in.Meta[k] = v
		}
	}
	if in.Weights == (Weights{}) {
		// Consul fills in 1 and 1 on registration; a catalog from before
		// weights existed has neither.
		in.Weights = Weights{Passing: 1, Warning: 1}
	}
	for _, c := range e.Checks {
		if c == nil {
			continue
		}
		in.Checks = append(in.Checks, Check{
			CheckID: c.CheckID, Name: c.Name, Status: c.Status, Output: c.Output, ServiceID: c.ServiceID,
		})
		switch {
		case c.CheckID == api.NodeMaint:
			in.NodeMaintenance = true
		case strings.HasPrefix(c.CheckID, api.ServiceMaintPrefix):
			in.ServiceMaintenance = true
		default:
			in.Status = worse(in.Status, c.Status)
		}
	}
	slices.SortFunc(in.Checks, func(a, b Check) int {
		return cmp.Or(cmp.Compare(a.ServiceID, b.ServiceID), cmp.Compare(a.CheckID, b.CheckID))
	})
	return in
}

// worse returns the worse of two statuses; an unknown one counts as critical.
func worse(a, b string) string {
	rank := func(s string) int {
		switch s {
		case Passing:
			return 0
		case Warning:
			return 1
		}
		return 2
	}
	if rank(b) > rank(a) {
		if rank(b) == 2 {
			return Critical
		}
		return b
	}
	return a
}
