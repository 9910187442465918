package consul

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// newService converts a health endpoint answer.
func newService(name string, entries []*api.ServiceEntry, meta *api.QueryMeta) *catalog.Service {
	svc := &catalog.Service{Name: name}
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
	slices.SortFunc(svc.Instances, func(a, b *catalog.Instance) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
	return svc
}

func newInstance(e *api.ServiceEntry) *catalog.Instance {
	in := &catalog.Instance{
		ID:      e.Service.ID,
		Node:    e.Node.Node,
		Address: e.Service.Address,
		Port:    e.Service.Port,
		Tags:    slices.Clone(e.Service.Tags),
		Weights: catalog.Weights{Passing: e.Service.Weights.Passing, Warning: e.Service.Weights.Warning},
		Status:  catalog.Passing,
	}
	if in.Address == "" {
		in.Address = e.Node.Address
	}
	in.TaggedAddresses = taggedAddresses(e, in.Address)
	if len(e.Service.Meta) > 0 {
		in.Meta = maps.Clone(e.Service.Meta)
	}
	if in.Weights == (catalog.Weights{}) {
		// Consul fills in 1 and 1 on registration; a catalog from before
		// weights existed has neither.
		in.Weights = catalog.Weights{Passing: 1, Warning: 1}
	}
	for _, c := range e.Checks {
		if c == nil {
			continue
		}
		in.Checks = append(in.Checks, catalog.Check{
			CheckID: c.CheckID, Name: c.Name, Status: checkStatus(c.Status), Output: c.Output, ServiceID: c.ServiceID,
		})
		if c.ServiceID == in.ID {
			in.Checks[len(in.Checks)-1].ServiceID = in.ID // one string, not a copy per check
		}
		switch {
		case c.CheckID == api.NodeMaint:
			in.NodeMaintenance = true
		case strings.HasPrefix(c.CheckID, api.ServiceMaintPrefix):
			in.ServiceMaintenance = true
		default:
			in.Status = worse(in.Status, c.Status)
		}
	}
	slices.SortFunc(in.Checks, func(a, b catalog.Check) int {
		return cmp.Or(cmp.Compare(a.ServiceID, b.ServiceID), cmp.Compare(a.CheckID, b.CheckID))
	})
	return in
}

// taggedAddresses are an entry's tagged addresses of the four kinds render
// uses: the service's own, then, for a service that has no address of its
// own and so is at its node's, the node's for the kinds the service lacks.
// A service with an address of its own (a container's, say) is not known
// to be reachable at its node's other addresses: the node's are not used.
// Only the other IP family than main's (the instance's address) is kept:
// render looks a tagged address up only for a VIP of the other family, and
// Consul tags every IPv4 service with lan_ipv4 and wan_ipv4 equal to its
// address, a map per instance that nothing reads.
func taggedAddresses(e *api.ServiceEntry, main string) map[string]catalog.TaggedAddress {
	var m map[string]catalog.TaggedAddress
	mainAddr, err := netip.ParseAddr(main)
	ofMain := func(tag string) bool {
		return err == nil && mainAddr.Unmap().Is4() == (tag == catalog.LANIPv4 || tag == catalog.WANIPv4)
	}
	add := func(tag, addr string, port int) {
		if addr == "" || ofMain(tag) {
			return
		}
		if _, ok := m[tag]; ok {
			return
		}
		if m == nil {
			m = make(map[string]catalog.TaggedAddress, 2)
		}
		m[tag] = catalog.TaggedAddress{Address: addr, Port: port}
	}
	tags := []string{catalog.LANIPv4, catalog.WANIPv4, catalog.LANIPv6, catalog.WANIPv6}
	for _, tag := range tags {
		if sa, ok := e.Service.TaggedAddresses[tag]; ok {
			add(tag, sa.Address, sa.Port)
		}
	}
	if e.Service.Address == "" {
		for _, tag := range tags {
			add(tag, e.Node.TaggedAddresses[tag], 0)
		}
	}
	return m
}

// checkStatus is a check's status as one of Consul's constants when it is
// one: the answer decodes a string of its own for each check, and every
// instance holds its checks as long as it lasts.
func checkStatus(s string) string {
	for _, known := range []string{api.HealthPassing, api.HealthWarning, api.HealthCritical, api.HealthMaint} {
		if s == known {
			return known
		}
	}
	return s
}

// worse returns the worse of a status and a check's; an unknown check
// status counts as critical.
func worse(a catalog.Health, check string) catalog.Health {
	b := catalog.Health(check)
	if b != catalog.Passing && b != catalog.Warning {
		b = catalog.Critical
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

func rank(h catalog.Health) int {
	switch h {
	case catalog.Passing:
		return 0
	case catalog.Warning:
		return 1
	}
	return 2
}

// outputsMoved reports whether a's check outputs differ from b's, given
// that their content is the same.
func outputsMoved(a, b *catalog.Service) bool {
	for i, in := range a.Instances {
		for j, c := range in.Checks {
			if c.Output != b.Instances[i].Checks[j].Output {
				return true
			}
		}
	}
	return false
}
