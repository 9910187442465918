package daemon

import (
	"maps"
	"slices"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// aclGuard keeps catalog answers that ACLs filtered from emptying pools.
// A token whose policy lost a read (node_prefix, say) gets `200 []` with
// X-Consul-Results-Filtered-By-ACLs: that is not "no instances", it is "no
// answer". Such a service keeps its last good answer; after a restart,
// with none, its virtual services are frozen: the kernel keeps what it
// has of them, untouched, until Consul answers in full again.
type aclGuard struct {
	lastGood map[string]*catalog.Service
	// filtered are the services whose latest answer is filtered, each
	// warned about once.
	filtered warned[string]
}

func (g *aclGuard) init() {
	g.lastGood = map[string]*catalog.Service{}
	g.filtered = warned[string]{}
}

// guardSnapshot returns the snapshot to render: every filtered answer
// replaced by the service's last good one, if any. It logs each change of
// a service's state once.
func (d *Daemon) guardSnapshot(s catalog.Snapshot) catalog.Snapshot {
	g := &d.state.acl
	var out catalog.Snapshot
	var filtered []string // the services whose answer is filtered now
	look := func(name string, svc *catalog.Service) {
		if s.Changed != nil && !s.Changed[name] && g.lastGood[name] == svc {
			return // unchanged: looked at when it changed
		}
		if !svc.FilteredByACLs {
			g.lastGood[name] = svc
			return
		}
		filtered = append(filtered, name)
		if out.Services == nil {
			out = catalog.Snapshot{Services: maps.Clone(s.Services), Changed: s.Changed}
		}
		if good := g.lastGood[name]; good != nil {
			out.Services[name] = good
		}
	}
	if s.Changed == nil {
		for name, svc := range s.Services {
			look(name, svc)
		}
	} else {
		// Only a changed service can have become filtered or good again;
		// one still filtered is replaced again in this snapshot. The
		// others were looked at when they changed: a flip among ten
		// thousand services looks at one. (An answer whose check outputs
		// alone moved is not looked at: its last good one keeps the
		// previous outputs, the same instances.)
		for name := range s.Changed {
			if svc, ok := s.Services[name]; ok {
				look(name, svc)
			}
		}
		for name := range g.filtered {
			if svc, ok := s.Services[name]; ok && !s.Changed[name] {
				look(name, svc)
			}
		}
	}
	if len(filtered) > 0 || len(g.filtered) > 0 {
		// A service answered in full is no longer filtered; one absent
		// is forgotten below, on a snapshot of every service.
		inFull := func(name string) bool { svc := s.Services[name]; return svc != nil && !svc.FilteredByACLs }
		began, ended := update(g.filtered, filtered, func(name string) string { return name }, inFull)
		for _, name := range ended {
			d.log.Named("catalog").Info("consul answers the service in full again", "service", name)
		}
		for _, name := range began {
			kept := "its last good answer is kept"
			if g.lastGood[name] == nil {
				kept = "no good answer yet: its virtual services are left as the kernel has them"
			}
			d.log.Named("catalog").Warn("consul filtered the answer by acls: the token cannot read every instance (it needs service and node read); "+kept,
				"service", name, "index", s.Services[name].Index)
		}
	}
	if s.Changed == nil {
		for name := range g.lastGood { // forget services no longer watched
			if _, ok := s.Services[name]; !ok {
				delete(g.lastGood, name)
				delete(g.filtered, name)
			}
		}
	}
	if out.Services == nil {
		return s
	}
	return out
}

// frozen are the keys of the virtual services whose Consul service is
// filtered with no good answer to keep: the plan leaves them untouched.
func (g *aclGuard) frozen(cfg *config.Config) map[lvs.ServiceKey]bool {
	if len(g.filtered) == 0 {
		return nil // the common case, on every sync: nothing to look at
	}
	var keys map[lvs.ServiceKey]bool
	for _, vs := range cfg.VirtualServices {
		if g.filtered[vs.CatalogKey()] && g.lastGood[vs.CatalogKey()] == nil {
			if keys == nil {
				keys = map[lvs.ServiceKey]bool{}
			}
			keys[vs.Key()] = true
		}
	}
	return keys
}

// filteredServices lists the services whose answers are filtered now.
func (g *aclGuard) filteredServices() []string {
	names := slices.Collect(maps.Keys(g.filtered))
	slices.Sort(names)
	return names
}
