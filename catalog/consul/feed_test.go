package consul

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// TestAgreesWithState: a read agrees with a health-state feed's answer
// when its checks in that status are exactly the feed's for its nodes and
// instances, outputs and other instances on the same node aside.
func TestAgreesWithState(t *testing.T) {
	read := func(nodeCheck, svcCheck string) *catalog.Service {
		return &catalog.Service{Name: "web", Instances: []*catalog.Instance{{ID: "web1", Node: "n1", Checks: []catalog.Check{
			{CheckID: "serfHealth", Status: nodeCheck, Output: "read"},
			{CheckID: "web1-http", Status: svcCheck, ServiceID: "web1"},
		}}}}
	}
	serf := &api.HealthCheck{Node: "n1", CheckID: "serfHealth", Status: api.HealthCritical, Output: "feed"}
	http := &api.HealthCheck{Node: "n1", CheckID: "web1-http", Status: api.HealthCritical, ServiceID: "web1", ServiceName: "web"}
	other := &api.HealthCheck{Node: "n1", CheckID: "db1-tcp", Status: api.HealthCritical, ServiceID: "db1", ServiceName: "db"}
	elsewhere := &api.HealthCheck{Node: "n2", CheckID: "serfHealth", Status: api.HealthCritical}
	for _, tt := range []struct {
		name  string
		feed  api.HealthChecks
		read  *catalog.Service
		agree bool
	}{
		{"both critical in both", api.HealthChecks{serf, http}, read(api.HealthCritical, api.HealthCritical), true},
		{"none critical in either", api.HealthChecks{other, elsewhere}, read(api.HealthPassing, api.HealthWarning), true},
		{"other instances and nodes aside", api.HealthChecks{serf, other, elsewhere}, read(api.HealthCritical, api.HealthPassing), true},
		{"node check critical in the read only", api.HealthChecks{http}, read(api.HealthCritical, api.HealthCritical), false},
		{"node check critical in the feed only", api.HealthChecks{serf, http}, read(api.HealthPassing, api.HealthCritical), false},
		{"service check critical in the feed only", api.HealthChecks{serf, http}, read(api.HealthCritical, api.HealthWarning), false},
		{"node check the feed has that the read lacks", api.HealthChecks{serf, http,
			{Node: "n1", CheckID: "_node_maintenance", Status: api.HealthCritical}}, read(api.HealthCritical, api.HealthCritical), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := agreesWithState(newStateView(tt.feed), api.HealthCritical, tt.read); got != tt.agree {
				t.Errorf("agreesWithState = %v, want %v", got, tt.agree)
			}
		})
	}
}

func TestAgreesWithNodes(t *testing.T) {
	feed := map[string]string{"n1": "192.0.2.1", "n2": "192.0.2.2"}
	for _, tt := range []struct {
		name  string
		read  map[string]string
		agree bool
	}{
		{"same address", map[string]string{"n1": "192.0.2.1"}, true},
		{"no instances", map[string]string{}, true},
		{"address moved", map[string]string{"n1": "192.0.2.11"}, false},
		{"node the feed has not shown", map[string]string{"n3": "192.0.2.3"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := agreesWithNodes(feed, tt.read); got != tt.agree {
				t.Errorf("agreesWithNodes = %v, want %v", got, tt.agree)
			}
		})
	}
}
