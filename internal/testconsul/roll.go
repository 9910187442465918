package testconsul

import (
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"
)

// Roll is a rolling deploy of one service through the catalog API, the way
// a scheduler replaces instances: each generation has new instance IDs and
// ports, on the next nodes of a rotating pool; Next registers it beside the
// previous one, Retire then deregisters the previous one.
type Roll struct {
	Service string
	// Instances a generation has, of which the first Critical register
	// with a critical check, the rest passing.
	Instances, Critical int
	// Nodes is the size of the service's node pool ("SERVICE-node-N");
	// 0 puts every generation on new nodes, deregistered as it retires.
	Nodes int

	a          *Agent
	gen        int
	live, prev []*api.CatalogRegistration
}

// NewRoll is a rolling deploy of service on the agent; nothing is
// registered until Next.
func (a *Agent) NewRoll(service string, instances, critical, nodes int) *Roll {
	return &Roll{Service: service, Instances: instances, Critical: critical, Nodes: nodes, a: a}
}

// Next registers a new generation; the previous one stays until Retire.
func (r *Roll) Next(t testing.TB) {
	t.Helper()
	r.gen++
	r.prev, r.live = r.live, nil
	for j := range r.Instances {
		id := fmt.Sprintf("%s-g%d-%d", r.Service, r.gen, j)
		n := r.gen*r.Instances + j
		if r.Nodes > 0 {
			n %= r.Nodes
		}
		status := api.HealthPassing
		if j < r.Critical {
			status = api.HealthCritical
		}
		reg := &api.CatalogRegistration{
			Node: fmt.Sprintf("%s-node-%d", r.Service, n), Address: fmt.Sprintf("10.77.%d.%d", n/250, 1+n%250),
			Service: &api.AgentService{ID: id, Service: r.Service, Port: r.Port(),
				Weights: api.AgentWeights{Passing: 1, Warning: 1}},
			Check: &api.AgentCheck{CheckID: id + "-check", Name: id, ServiceID: id, Status: status},
		}
		if _, err := r.a.Client.Catalog().Register(reg, nil); err != nil {
			t.Fatalf("rolling %s: registering %s: %v", r.Service, id, err)
		}
		r.live = append(r.live, reg)
	}
}

// Port is the port of the last generation's instances.
func (r *Roll) Port() int { return 10000 + r.gen%50000 }

// IDs are the instance IDs of the last generation; Prev those of the one
// before it, until Retire.
func (r *Roll) IDs() []string { return ids(r.live) }

// Prev: see IDs.
func (r *Roll) Prev() []string { return ids(r.prev) }

func ids(regs []*api.CatalogRegistration) []string {
	var out []string
	for _, reg := range regs {
		out = append(out, reg.Service.ID)
	}
	return out
}

// Retire deregisters the generation before the last Next (its checks go
// with it), and its nodes if each generation has its own.
func (r *Roll) Retire(t testing.TB) {
	t.Helper()
	for _, reg := range r.prev {
		if _, err := r.a.Client.Catalog().Deregister(&api.CatalogDeregistration{Node: reg.Node, ServiceID: reg.Service.ID}, nil); err != nil {
			t.Fatalf("rolling %s: deregistering %s: %v", r.Service, reg.Service.ID, err)
		}
		if r.Nodes > 0 {
			continue
		}
		if _, err := r.a.Client.Catalog().Deregister(&api.CatalogDeregistration{Node: reg.Node}, nil); err != nil {
			t.Fatalf("rolling %s: deregistering node %s: %v", r.Service, reg.Node, err)
		}
	}
	r.prev = nil
}
