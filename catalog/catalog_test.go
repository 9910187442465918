package catalog

import (
	"reflect"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/testenv"
)

func TestSameContent(t *testing.T) {
	base := func() *Service {
		return &Service{Name: "web", Index: 7, Instances: []*Instance{{
			ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Tags: []string{"prod"},
			Meta: map[string]string{"v": "1"}, Weights: Weights{Passing: 1, Warning: 1}, Status: Passing,
			Checks: []Check{{CheckID: "serfHealth", Status: "passing", Output: "Agent alive"}},
		}}}
	}
	tests := []struct {
		name   string
		change func(*Service)
		same   bool
	}{
		{"identical", func(*Service) {}, true},
		{"index aside", func(s *Service) { s.Index = 8 }, true},
		{"check output aside", func(s *Service) { s.Instances[0].Checks[0].Output = "still alive" }, true},
		{"check status", func(s *Service) { s.Instances[0].Checks[0].Status = "critical" }, false},
		{"check added", func(s *Service) { s.Instances[0].Checks = append(s.Instances[0].Checks, Check{CheckID: "x"}) }, false},
		{"status", func(s *Service) { s.Instances[0].Status = Warning }, false},
		{"address", func(s *Service) { s.Instances[0].Address = "10.1.0.12" }, false},
		{"port", func(s *Service) { s.Instances[0].Port = 81 }, false},
		{"weights", func(s *Service) { s.Instances[0].Weights.Passing = 5 }, false},
		{"tags", func(s *Service) { s.Instances[0].Tags = nil }, false},
		{"meta", func(s *Service) { s.Instances[0].Meta["v"] = "2" }, false},
		{"maintenance", func(s *Service) { s.Instances[0].NodeMaintenance = true }, false},
		{"instance gone", func(s *Service) { s.Instances = nil }, false},
		{"acl filtering", func(s *Service) { s.FilteredByACLs = true }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.change(b)
			if got := a.SameContent(b); got != tt.same {
				t.Errorf("SameContent = %v, want %v", got, tt.same)
			}
		})
	}
}

func TestChangedService(t *testing.T) {
	first := Snapshot{}
	if !first.ChangedService("web") {
		t.Error("nil Changed: every service changed")
	}
	later := Snapshot{Changed: map[string]bool{"api": true}}
	if later.ChangedService("web") || !later.ChangedService("api") {
		t.Errorf("Changed %v: want only api", later.Changed)
	}
}

// TestSameContentComparesEveryField changes each field of an instance in
// turn: every change but a check's output is another content.
func TestSameContentComparesEveryField(t *testing.T) {
	base := func() *Instance {
		return &Instance{ID: "web1", Node: "n1", Address: "10.1.0.11", Port: 80, Tags: []string{"prod"},
			Meta: map[string]string{"v": "1"}, TaggedAddresses: map[string]TaggedAddress{LANIPv6: {Address: "fd00::1"}},
			Checks: []Check{{CheckID: "serfHealth", Status: "passing", Output: "Agent alive"}}}
	}
	typ := reflect.TypeFor[Instance]()
	for i := range typ.NumField() {
		a, b := base(), base()
		if !testenv.Change(reflect.ValueOf(b).Elem().Field(i)) {
			t.Fatalf("%s: testenv.Change cannot change it", typ.Field(i).Name)
		}
		if a.sameContent(b) {
			t.Errorf("%s changed: the same content", typ.Field(i).Name)
		}
	}
	ct := reflect.TypeFor[Check]()
	for i := range ct.NumField() {
		a, b := base(), base()
		if !testenv.Change(reflect.ValueOf(&b.Checks[0]).Elem().Field(i)) {
			t.Fatalf("check's %s: testenv.Change cannot change it", ct.Field(i).Name)
		}
		if same, want := a.sameContent(b), ct.Field(i).Name == "Output"; same != want {
			t.Errorf("check's %s changed: same content %v, want %v", ct.Field(i).Name, same, want)
		}
	}
}
