package nomad

import (
	"slices"
	"testing"

	"github.com/lvs-sync/lvs-sync/catalog"
)

// TestNewInstance: the tag convention, and health from the check results
// for the instance's own service.
func TestNewInstance(t *testing.T) {
	reg := registration{ID: "_nomad-task-a1-group-g-web-http", ServiceName: "web", NodeID: "n1", AllocID: "a1",
		Address: "10.0.0.5", Port: 8080}
	ok := checkResult{ID: "c1", Check: "alive", Service: "web", Status: "success", Output: "nomad: http ok"}
	for _, tc := range []struct {
		name    string
		tags    []string
		results []checkResult
		unread  string
		weights catalog.Weights
		meta    map[string]string
		status  catalog.Health
		checks  []string
		bad     []string
	}{
		{name: "no tags, no checks", weights: catalog.Weights{Passing: 1, Warning: 1}, status: catalog.Passing},
		{name: "weight and thresholds", tags: []string{"prod", "lvs-weight=7", "lvs-upper-threshold=100", "lvs-lower-threshold=x"},
			results: []checkResult{ok}, weights: catalog.Weights{Passing: 7, Warning: 1},
			meta: map[string]string{"lvs-upper-threshold": "100", "lvs-lower-threshold": "x"}, status: catalog.Passing, checks: []string{"alive=success"}},
		{name: "weight 0 drains", tags: []string{"lvs-weight=0"}, weights: catalog.Weights{Warning: 1}, status: catalog.Passing},
		{name: "a bad weight is ignored", tags: []string{"lvs-weight=-1", "lvs-weight=70000", "lvs-weight=two"},
			weights: catalog.Weights{Passing: 1, Warning: 1}, status: catalog.Passing, bad: []string{"lvs-weight=-1", "lvs-weight=70000", "lvs-weight=two"}},
		{name: "one failing check of two", results: []checkResult{ok, {ID: "c2", Check: "ready", Service: "web", Status: "failure", Output: "500"}},
			weights: catalog.Weights{Passing: 1, Warning: 1}, status: catalog.Critical, checks: []string{"alive=success", "ready=failure"}},
		{name: "pending is not passing", results: []checkResult{{ID: "c1", Check: "alive", Service: "web", Status: "pending"}},
			weights: catalog.Weights{Passing: 1, Warning: 1}, status: catalog.Critical, checks: []string{"alive=pending"}},
		{name: "another service's check is not this one's", results: []checkResult{ok, {ID: "c3", Check: "db", Service: "db", Status: "failure"}},
			weights: catalog.Weights{Passing: 1, Warning: 1}, status: catalog.Passing, checks: []string{"alive=success"}},
		{name: "results never read", results: []checkResult{ok}, unread: "403",
			weights: catalog.Weights{Passing: 1, Warning: 1}, status: catalog.Critical, checks: []string{"nomad check results=unread"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := reg
			r.Tags = tc.tags
			var bad []string
			in := newInstance(r, tc.results, tc.unread, func(tag string) { bad = append(bad, tag) })
			var checks []string
			for _, c := range in.Checks {
				checks = append(checks, c.Name+"="+c.Status)
				if c.ServiceID != reg.ID {
					t.Errorf("check %s: ServiceID %q, want the instance's", c.Name, c.ServiceID)
				}
			}
			if in.ID != reg.ID || in.Node != "n1" || in.Allocation != "a1" || in.Address != "10.0.0.5" || in.Port != 8080 {
				t.Errorf("identity %+v", in)
			}
			if in.Weights != tc.weights || !mapsEqual(in.Meta, tc.meta) || in.Status != tc.status || !slices.Equal(checks, tc.checks) || !slices.Equal(bad, tc.bad) {
				t.Errorf("got weights %v meta %v status %s checks %v bad %v\nwant       %v      %v        %s        %v     %v",
					in.Weights, in.Meta, in.Status, checks, bad, tc.weights, tc.meta, tc.status, tc.checks, tc.bad)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
