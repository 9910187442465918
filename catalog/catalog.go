// Package catalog is the neutral model of what lvs-sync balances: services,
// their instances with a typed health, and complete snapshots of them; and
// Source, the interface through which the daemon watches a catalog; and
// Combined, one Source over several (Consul's and Nomad's). It knows
// nothing of Consul or Nomad: catalog/consul and catalog/nomad are each
// one Source. It imports only the standard library.
package catalog

import (
	"context"
	"maps"
	"slices"
)

// Health is an instance's aggregate health.
type Health string

// The health statuses, named as Consul names them.
const (
	Passing  Health = "passing"
	Warning  Health = "warning"
	Critical Health = "critical"
)

// Check is one health check behind an instance's status.
type Check struct {
	CheckID string
	Name    string
	// Status is the check's own status as the catalog reports it; unlike
	// Instance.Status it may be a value lvs-sync does not know.
	Status    string
	Output    string
	ServiceID string // empty for a node check
}

// Weights are the instance's catalog weights, used as IPVS weights.
type Weights struct {
	Passing int
	Warning int
}

// The tags of an instance's other addresses, named as Consul names them.
const (
	LANIPv4 = "lan_ipv4"
	WANIPv4 = "wan_ipv4"
	LANIPv6 = "lan_ipv6"
	WANIPv6 = "wan_ipv6"
)

// TaggedAddress is an address an instance has besides its main one.
type TaggedAddress struct {
	Address string // an IP literal normally, as Instance.Address
	Port    int    // 0 when the catalog gives none: the instance's Port then
}

// Instance is one instance of a service on one node. Snapshots share
// instances: treat every field as read-only.
type Instance struct {
	ID   string // the service ID, unique on its node
	Node string
	// Allocation is the Nomad allocation the instance runs in, for explain
	// to name; "" for Consul's.
	Allocation string
	// Address is the service address, else the node address, as the
	// catalog has it: an IP literal normally, but nothing stops a host name.
	Address string
	Port    int
	// TaggedAddresses are the instance's addresses of the other IP family
	// than Address's, by tag (the keys above), for a virtual service of
	// that family; every kind when Address is no IP. Nil when it has none.
	TaggedAddresses map[string]TaggedAddress
	Tags            []string
	Meta            map[string]string
	Weights         Weights
	// Status aggregates the node's and the service's checks, maintenance
	// aside: critical over warning over passing. No check is passing.
	Status             Health
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

// sameContent reports whether two instances are equal, the outputs of their
// checks aside: an output is news for an operator, not for the kernel.
// TestSameContentComparesEveryField changes each field in turn, so that a
// field added later is not forgotten here (a reflect.DeepEqual was a
// third of a reload's comparison of 100,000 instances).
func (i *Instance) sameContent(o *Instance) bool {
	if i == o {
		return true
	}
	if i.ID != o.ID || i.Node != o.Node || i.Allocation != o.Allocation || i.Address != o.Address || i.Port != o.Port ||
		i.Weights != o.Weights || i.Status != o.Status || i.NodeMaintenance != o.NodeMaintenance ||
		i.ServiceMaintenance != o.ServiceMaintenance || !slices.Equal(i.Tags, o.Tags) ||
		!maps.Equal(i.Meta, o.Meta) || !maps.Equal(i.TaggedAddresses, o.TaggedAddresses) || len(i.Checks) != len(o.Checks) {
		return false
	}
	for k := range i.Checks {
		c, d := i.Checks[k], o.Checks[k]
		c.Output, d.Output = "", ""
		if c != d {
			return false
		}
	}
	return true
}

// Service is the answer for one watched service.
type Service struct {
	Name string
	// Index is the catalog's index of the answer (Consul's X-Consul-Index);
	// 0 when the source has none.
	Index uint64
	// Instances sorted by node, then ID. Empty when the service has none
	// or does not exist.
	Instances []*Instance
	// FilteredByACLs is set when the catalog left out results the reader
	// may not see (Consul's X-Consul-Results-Filtered-By-ACLs).
	FilteredByACLs bool
}

// SameContent reports whether two answers carry the same instances, their
// index and the outputs of their checks aside. Sources emit a snapshot only
// when a service's content changes by this measure.
func (s *Service) SameContent(o *Service) bool {
	if s.FilteredByACLs != o.FilteredByACLs || len(s.Instances) != len(o.Instances) {
		return false
	}
	for k := range s.Instances {
		if !s.Instances[k].sameContent(o.Instances[k]) {
			return false
		}
	}
	return true
}

// Snapshot is the latest answer for every watched service. It is complete:
// a source emits one only when each service has answered at least once.
type Snapshot struct {
	Services map[string]*Service
	// Changed names the services whose content differs from the previous
	// snapshot emitted on the same channel. Nil on the first snapshot, and
	// from Fetch: everything is new.
	Changed map[string]bool
}

// Instances returns the instances of the named service, nil if unknown.
func (s Snapshot) Instances(name string) []*Instance {
	if svc, ok := s.Services[name]; ok {
		return svc.Instances
	}
	return nil
}

// ChangedService reports whether the named service changed since the
// previous snapshot; every service did when Changed is nil.
func (s Snapshot) ChangedService(name string) bool {
	return s.Changed == nil || s.Changed[name]
}

// Source watches a catalog's services (Consul's, or another) and emits
// complete snapshots.
type Source interface {
	// Watch emits a first Snapshot once every service has answered, then
	// one per change; a slow reader gets only the latest; the channel
	// closes when ctx ends.
	Watch(ctx context.Context, services []string, obs Observer) <-chan Snapshot
	// Fetch reads every service once, without blocking: what `lvs-sync
	// render` and `plan` show.
	Fetch(ctx context.Context, services []string) (Snapshot, error)
}

// Observer hears of every catalog query: what it asked (a service name, or
// the source's name for a query that is not one service's), the index the
// catalog answered with, and the error if it failed. It must not block.
// A nil Observer hears nothing.
type Observer interface {
	ObserveQuery(query string, index uint64, err error)
}
