package consul

import (
	"reflect"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
)

func entry(node, id, addr string, port int, checks ...*api.HealthCheck) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: "192.0.2.1"},
		Service: &api.AgentService{ID: id, Service: "web", Address: addr, Port: port, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
		Checks:  checks,
	}
}

func check(id, status string) *api.HealthCheck {
	return &api.HealthCheck{CheckID: id, Name: id, Status: status}
}

func TestNewInstance(t *testing.T) {
	tests := []struct {
		name  string
		entry *api.ServiceEntry
		want  catalog.Instance
	}{
		{
			name:  "no checks is passing; service address wins",
			entry: entry("n1", "web1", "10.1.0.11", 80),
			want:  catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing},
		},
		{
			name:  "node address when the service has none",
			entry: entry("n1", "web1", "", 80),
			want:  catalog.Instance{ID: "web1", Node: "n1", Address: "192.0.2.1", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing},
		},
		{
			name: "worst of node and service checks",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("serfHealth", "passing"), check("web1-http", "warning")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Warning},
		},
		{
			name: "a critical node check makes the instance critical",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("serfHealth", "critical"), check("web1-http", "passing")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Critical},
		},
		{
			name: "an unknown status counts as critical",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("web1-http", "bogus")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Critical},
		},
		{
			name: "maintenance is apart from status",
			entry: entry("n1", "web1", "10.1.0.11", 80,
				check("_node_maintenance", "critical"), check("_service_maintenance:web1", "critical"), check("web1-http", "passing")),
			want: catalog.Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Weights: catalog.Weights{Passing: 1, Warning: 1}, Status: catalog.Passing,
				NodeMaintenance: true, ServiceMaintenance: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := *newInstance(tt.entry)
			got.Checks = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// Weights missing from an old catalog default to Consul's 1 and 1.
	e := entry("n1", "web1", "10.1.0.11", 80)
	e.Service.Weights = api.AgentWeights{}
	if got := newInstance(e).Weights; got != (catalog.Weights{Passing: 1, Warning: 1}) {
		t.Errorf("default weights = %+v", got)
	}
}

// TestTaggedAddresses: the service's tagged addresses of the four kinds,
// and the node's only for a service at its node's address; only those of
// the other family than the instance's address.
func TestTaggedAddresses(t *testing.T) {
	node := map[string]string{"lan": "192.0.2.1", "lan_ipv4": "192.0.2.1", "lan_ipv6": "2001:db8::1", "wan_ipv6": "2001:db8:1::1"}
	svc := map[string]api.ServiceAddress{
		"lan_ipv4":       {Address: "10.1.0.11", Port: 80},
		"lan_ipv6":       {Address: "fd00::11", Port: 8080},
		"wan_ipv4":       {Address: ""}, // no address: not one
		"consul-virtual": {Address: "240.0.0.1", Port: 20000},
	}
	tests := []struct {
		name    string
		address string
		node    map[string]string
		service map[string]api.ServiceAddress
		want    map[string]catalog.TaggedAddress
	}{
		{name: "none", address: "10.1.0.11"},
		{
			name: "the service's, of the four kinds, with their ports", address: "10.1.0.11", node: node, service: svc,
			want: map[string]catalog.TaggedAddress{"lan_ipv6": {Address: "fd00::11", Port: 8080}},
		},
		{
			name: "at its node's address: the node's fill in what the service lacks", address: "", node: node, service: svc,
			want: map[string]catalog.TaggedAddress{"lan_ipv6": {Address: "fd00::11", Port: 8080}, "wan_ipv6": {Address: "2001:db8:1::1", Port: 0}},
		},
		{
			name: "at its node's address, none of its own", address: "", node: node,
			want: map[string]catalog.TaggedAddress{"lan_ipv6": {Address: "2001:db8::1", Port: 0}, "wan_ipv6": {Address: "2001:db8:1::1", Port: 0}},
		},
		{name: "an address of its own: not the node's", address: "10.1.0.11", node: node},
		{
			name: "an IPv6 address: the IPv4 ones", address: "fd00::11", service: svc,
			want: map[string]catalog.TaggedAddress{"lan_ipv4": {Address: "10.1.0.11", Port: 80}},
		},
		{
			name: "a host name: every kind", address: "web1.example", service: svc,
			want: map[string]catalog.TaggedAddress{"lan_ipv4": {Address: "10.1.0.11", Port: 80}, "lan_ipv6": {Address: "fd00::11", Port: 8080}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry("n1", "web1", tt.address, 80)
			e.Node.TaggedAddresses, e.Service.TaggedAddresses = tt.node, tt.service
			if got := newInstance(e).TaggedAddresses; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}
