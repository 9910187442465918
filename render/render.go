// Package render turns the config and a catalog snapshot into the desired
// IPVS state. Render is a pure function: the same inputs give the same
// state, and it touches neither Consul nor the kernel.
package render

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// MaxWeight is the largest weight ipvsadm accepts; larger Consul weights
// are clamped to it.
const MaxWeight = 65535

// Origin tells where a desired real server comes from.
type Origin struct {
	Source Source
	// The Consul instance behind the real; empty for a fallback.
	Node, InstanceID string
	Status           catalog.Health
}

// Note is catalog data render had to leave out or change, for the caller
// to log; or, InUse, a caveat about an instance that is a real server as it
// is (a gate or ipip port that is not the virtual port).
type Note struct {
	VirtualService string
	Node           string
	InstanceID     string
	Message        string
	InUse          bool
}

func (n Note) String() string {
	return fmt.Sprintf("virtual_service %q: instance %q on node %q: %s", n.VirtualService, n.InstanceID, n.Node, n.Message)
}

// Log is the warning to log for a note, as a message and key/value
// pairs: "skipped catalog data" for data left out or changed, "real server
// port not the instance's" for a caveat (InUse).
func (n Note) Log() (msg string, keyvals []any) {
	msg = "skipped catalog data"
	if n.InUse {
		msg = "real server port not the instance's"
	}
	return msg, []any{"virtual_service", n.VirtualService, "node", n.Node, "instance", n.InstanceID, "reason", n.Message}
}

// Decision is what render made of one instance, for status and explain.
type Decision struct {
	Instance *catalog.Instance
	// In tells whether the instance is a real server of the desired
	// state, Real and Weight its key and weight then. An instance in
	// maintenance is not, but Real still names the real it drains from.
	In     bool
	Real   lvs.RealKey
	Weight int
	Rule   Rule
	// Warning is a caveat about a real that is in as it is, also in the
	// result's notes: a gate or ipip port that is not the virtual port.
	Warning string
}

// Source is the weight source of the instance's real.
func (d Decision) Source() Source { return d.Rule.Source() }

// Result is the desired state and how it came about.
type Result struct {
	// State is exactly what run wants in the kernel, drains aside: the
	// planner keeps leaving reals at weight 0 while connections finish.
	State ipvs.State
	// Decisions for every instance of each virtual service's Consul
	// service, by virtual service name.
	Decisions map[string][]Decision
	// Origins index the decisions by real: every real of State, and the
	// reals instances in maintenance drain from.
	Origins map[lvs.ServiceKey]map[lvs.RealKey]Origin
	// NextChange is when the result changes with time alone (a hold ends,
	// a slow start steps up); zero if never.
	NextChange time.Time
	// Holds are the mass removal guard's, for the caller to log.
	Holds []Hold
	// Rendered names the virtual services Update rendered anew; the
	// others are the previous result's.
	Rendered []string

	// Each virtual service's next change, notes and holds, for Update.
	next  map[string]time.Time
	notes map[string][]Note
	holds map[string][]Hold
	// cfg is the config rendered: its virtual services are the order of
	// Notes, and Update compares a new config's with them.
	cfg *config.Config
}

// Notes are the notes of every virtual service, in the config's order.
// They are kept by virtual service, not as one list, so that Update does
// not copy every note at each sync (ten thousand of them, at 1,000
// services of 10 gate instances that all listen on another port than the
// virtual one): the daemon looks only at NotesOf the services rendered
// anew.
func (r Result) Notes() []Note {
	var out []Note
	if r.cfg == nil {
		return nil
	}
	for _, vs := range r.cfg.VirtualServices {
		out = append(out, r.notes[vs.Name]...)
	}
	return out
}

// NotesOf are the notes of one virtual service.
func (r Result) NotesOf(name string) []Note { return r.notes[name] }

// Render computes the desired state of every configured virtual service,
// with no history: no instance is held out or ramping.
func Render(cfg *config.Config, snap catalog.Snapshot) Result {
	return RenderAt(cfg, snap, History{})
}

// RenderAt computes the desired state given what is known of the past, for
// flap damping (hold) and slow start. It is pure: time is h.Now.
func RenderAt(cfg *config.Config, snap catalog.Snapshot, h History) Result {
	return Update(Result{}, cfg, snap, h, nil)
}

// Update renders again only what may have changed since prev: the
// virtual services for which changed holds (nil: every one), those whose
// own next change (a hold ending, a slow start step) is due at h.Now, and,
// when prev was rendered from another config (a reload), those whose
// definition is new or differs from prev's of the same name. The others
// are taken from prev as they are; prev's services that cfg no longer
// names are left out. Like RenderAt it is pure, and it leaves prev
// intact: a flip among ten thousand services renders one, and copies
// prev's maps whole (maps.Clone copies a map's memory, where ten thousand
// inserts cost each a hash: 10 ms a flip at 10,000 services on a loaded
// host); a reload deletes from the copies what it does not keep.
func Update(prev Result, cfg *config.Config, snap catalog.Snapshot, h History, changed func(*config.VirtualService) bool) Result {
	n := len(cfg.VirtualServices)
	res := Result{cfg: cfg}
	update := prev.State != nil && prev.cfg != nil && changed != nil
	// anew are, after a reload, the services defined anew.
	var anew map[string]bool
	if update {
		res.State, res.Origins, res.Decisions = maps.Clone(prev.State), maps.Clone(prev.Origins), maps.Clone(prev.Decisions)
		res.next, res.notes, res.holds = maps.Clone(prev.next), maps.Clone(prev.notes), maps.Clone(prev.holds)
		if prev.cfg != cfg {
			anew = res.forget(prev.cfg, cfg)
		}
	} else {
		res.State, res.Origins, res.Decisions = make(ipvs.State, n), make(map[lvs.ServiceKey]map[lvs.RealKey]Origin, n), make(map[string][]Decision, n)
		res.next, res.notes, res.holds = map[string]time.Time{}, map[string][]Note{}, map[string][]Hold{}
	}
	for _, vs := range cfg.VirtualServices {
		if update && !changed(vs) && !anew[vs.Name] {
			if next, waking := prev.next[vs.Name]; !waking || h.Now.Before(next) {
				continue // prev's, cloned
			}
		}
		key := vs.Key()
		res.Rendered = append(res.Rendered, vs.Name)
		r := renderService(vs, snap.Instances(vs.CatalogKey()), h)
		res.State[key], res.Origins[key], res.Decisions[vs.Name] = r.svc, r.origins, r.decisions
		setOrDelete(res.next, vs.Name, r.next, !r.next.IsZero())
		setOrDelete(res.notes, vs.Name, r.notes, r.notes != nil)
		setOrDelete(res.holds, vs.Name, r.holds, r.holds != nil)
	}
	if len(res.holds) > 0 { // rare: a pass over the config only then
		for _, vs := range cfg.VirtualServices {
			res.Holds = append(res.Holds, res.holds[vs.Name]...)
		}
	}
	for _, t := range res.next {
		if res.NextChange.IsZero() || t.Before(res.NextChange) {
			res.NextChange = t
		}
	}
	return res
}

// forget deletes from res, a copy of a render of before, the entries of
// every virtual service that after does not define as before did, and
// names those after defines anew (changed, added or renamed), which must
// be rendered. What both define alike stays: a reload that edits one of
// ten thousand services looks each up, and deletes and renders one.
func (res *Result) forget(before, after *config.Config) (anew map[string]bool) {
	anew = map[string]bool{}
	for _, vs := range after.VirtualServices {
		if old := before.VirtualService(vs.Name); old == nil || !old.SameDefinition(vs) {
			anew[vs.Name] = true
		}
	}
	for _, old := range before.VirtualServices {
		if after.VirtualService(old.Name) != nil && !anew[old.Name] {
			continue
		}
		key, name := old.Key(), old.Name
		delete(res.State, key)
		delete(res.Origins, key)
		delete(res.Decisions, name)
		delete(res.next, name)
		delete(res.notes, name)
		delete(res.holds, name)
	}
	return anew
}

// setOrDelete sets m[k] to v if set, else deletes it: an entry of prev's
// that a new render no longer has goes.
func setOrDelete[V any](m map[string]V, k string, v V, set bool) {
	if set {
		m[k] = v
	} else {
		delete(m, k)
	}
}

// rendered is one virtual service's part of a Result.
type rendered struct {
	svc       *ipvs.Service
	origins   map[lvs.RealKey]Origin
	decisions []Decision
	notes     []Note
	holds     []Hold
	next      time.Time
}

// Hold is the mass removal guard at work on a virtual service: Vanished
// of its Of reals left the catalog at once and are held until Until.
type Hold struct {
	VirtualService string
	Vanished, Of   int
	Until          time.Time
}

func renderService(vs *config.VirtualService, instances []*catalog.Instance, h History) (out rendered) {
	svc := serviceOf(vs, len(instances))
	origins := make(map[lvs.RealKey]Origin, len(instances))
	note := func(in *catalog.Instance, format string, args ...any) {
		out.notes = append(out.notes, Note{VirtualService: vs.Name, Node: in.Node, InstanceID: in.ID, Message: fmt.Sprintf(format, args...)})
	}
	decisions := make([]Decision, 0, len(instances))
	// draining are the reals of instances in maintenance: not in the
	// state, but named in Origins unless an instance serves there.
	var draining []Decision

	// The instances of a service often share a caveat, word for word (a
	// gate port that is not the virtual port): each decision and note
	// holds one copy of it, not one each.
	var texts map[string]string
	intern := func(s string) string {
		if t, ok := texts[s]; ok || s == "" {
			return t
		}
		if texts == nil {
			texts = map[string]string{}
		}
		texts[s] = s
		return s
	}
	serving := false
	for _, in := range instances {
		c := candidateOf(vs, in, h, func(msg string, inUse bool) {
			out.notes = append(out.notes, Note{VirtualService: vs.Name, Node: in.Node, InstanceID: in.ID, Message: intern(msg), InUse: inUse})
		})
		c.warn = intern(c.warn)
		if !c.next.IsZero() && (out.next.IsZero() || c.next.Before(out.next)) {
			out.next = c.next
		}
		if !c.ok {
			decisions = append(decisions, Decision{Instance: in, Rule: c.rule})
			continue
		}
		rule, rk, weight, warn := c.rule, c.rk, c.weight, c.warn
		if rule.Source() == SourceMaintenance {
			d := Decision{Instance: in, Real: rk, Rule: rule, Warning: warn}
			decisions = append(decisions, d)
			draining = append(draining, d)
			continue
		}
		if prev, dup := svc.Reals[rk]; dup {
			// Two instances behind one real server (gate and ipip keep the
			// virtual port): the one that can take the most traffic wins.
			note(in, "same real server %s as instance %q", rk, origins[rk].InstanceID)
			if prev.Weight >= weight {
				decisions = append(decisions, Decision{Instance: in, Rule: leftOut("real server %s is instance %q's, with a weight as large", rk, origins[rk].InstanceID)})
				continue
			}
			for i := range decisions {
				if decisions[i].In && decisions[i].Real == rk {
					decisions[i].In = false
					decisions[i].Rule = leftOut("real server %s is instance %q's, with a larger weight", rk, in.ID)
				}
			}
		}
		svc.Reals[rk] = c.server(vs, in, func(format string, args ...any) { note(in, format, args...) })
		origins[rk] = Origin{Source: rule.Source(), Node: in.Node, InstanceID: in.ID, Status: in.Status}
		decisions = append(decisions, Decision{Instance: in, In: true, Real: rk, Weight: weight, Rule: rule, Warning: warn})
		serving = serving || weight > 0
	}
	serving = holdVanished(vs, h, svc, origins, &decisions, &out) || serving
	for _, d := range draining {
		if _, taken := origins[d.Real]; !taken {
			origins[d.Real] = Origin{Source: SourceMaintenance, Node: d.Instance.Node, InstanceID: d.Instance.ID, Status: d.Instance.Status}
		}
	}

	if !serving && vs.Fallback.Local && h.PagesDown[vs.Name] {
		out.notes = append(out.notes, Note{VirtualService: vs.Name, Message: "the local maintenance page cannot be served: no fallback real"})
	} else if !serving && vs.Fallback.IsSet() {
		rk := fallbackKey(vs)
		svc.Reals[rk] = ipvs.Real{Weight: 1, Forward: vs.Forwarding}
		origins[rk] = Origin{Source: SourceFallback}
	}
	out.svc, out.origins, out.decisions = svc, origins, decisions
	if cap(out.notes) > len(out.notes) {
		// Kept until the service changes: not with the room appending
		// one by one left (16 for 10 instances that each have a caveat).
		out.notes = slices.Clone(out.notes)
	}
	return out
}

// candidate is what one instance makes of a real server of vs, before the
// virtual service's other instances are looked at (two behind one real):
// what the reals render keeps and those the mass removal guard holds are
// both built by candidateOf and server.
type candidate struct {
	rule Rule      // what decides the instance, or why it is left out
	next time.Time // when time alone changes the rule (zero: never)
	// ok tells whether the instance is a real at all: serving (rule.In),
	// or in maintenance, draining. rk is its key, weight its rule's weight
	// within what the kernel takes, warn a caveat about it.
	ok     bool
	rk     lvs.RealKey
	weight int
	warn   string
}

// candidateOf puts an instance through the pipeline of a real: tags,
// decide, realOf, the weight's bounds. noted receives what it notes, in
// order: why the instance cannot be a real, a caveat about one it is
// (inUse), a weight out of bounds.
func candidateOf(vs *config.VirtualService, in *catalog.Instance, h History, noted func(msg string, inUse bool)) (c candidate) {
	if !in.HasTags(vs.Tags) {
		c.rule = leftOut("lacks one of the tags %q", vs.Tags)
		return c
	}
	c.rule, c.next = decide(vs, in, h)
	if !c.rule.In() && c.rule.Source() != SourceMaintenance {
		return c
	}
	rk, why, short, warn := realOf(vs, in)
	if why != "" {
		noted(why, false)
		c.rule = leftOut("%s", short)
		return c
	}
	if warn != "" {
		noted(warn, true)
	}
	c.ok, c.rk, c.warn = true, rk, warn
	if c.rule.Source() == SourceMaintenance {
		return c
	}
	c.weight = c.rule.Weight // Consul's, which the rule quotes
	switch {
	case c.weight > MaxWeight:
		noted(fmt.Sprintf("weight %d clamped to %d", c.weight, MaxWeight), false)
		c.weight = MaxWeight
	case c.weight < 0: // the kernel refuses it (ERANGE); found by FuzzRender
		noted(fmt.Sprintf("weight %d raised to 0", c.weight), false)
		c.weight = 0
	}
	return c
}

// server is the real server a candidate makes: its weight, vs's forwarding
// and the instance's connection thresholds.
func (c candidate) server(vs *config.VirtualService, in *catalog.Instance, note func(format string, args ...any)) ipvs.Real {
	upper, lower := thresholds(vs, in, note)
	return ipvs.Real{Weight: c.weight, Forward: vs.Forwarding, UpperThreshold: upper, LowerThreshold: lower}
}

// holdVanished is the mass removal guard: when instances that vanished
// from the catalog (not for their health) within removal_hold, in one
// update or several, less those that arrived since and serve, are more
// than max_removal of the reals the service had before the first of them,
// their reals are kept as they were until removal_hold after that first, so that an agent that restarts and re-registers, a
// snapshot restore or a renamed service does not empty the pool. It tells
// whether a held real serves.
func holdVanished(vs *config.VirtualService, h History, svc *ipvs.Service, origins map[lvs.RealKey]Origin, decisions *[]Decision, out *rendered) (serving bool) {
	if vs.RemovalHold <= 0 || len(h.Vanished[vs.CatalogKey()]) == 0 {
		return false
	}
	present := make(map[InstanceKey]bool, len(*decisions))
	var rendered []InstanceKey // the reals of the catalog now
	for _, d := range *decisions {
		k := InstanceKey{Node: d.Instance.Node, ID: d.Instance.ID}
		present[k] = true
		if d.In {
			rendered = append(rendered, k)
		}
	}
	// reals counts the instances of a list that were serving reals of this
	// virtual service, as they were last seen (their notes were logged
	// while they were there).
	reals := func(ins []*catalog.Instance, each func(*catalog.Instance, candidate)) int {
		n := 0
		for _, in := range ins {
			c := candidateOf(vs, in, h, func(string, bool) {})
			if !c.ok || !c.rule.In() {
				continue
			}
			n++
			if each != nil {
				each(in, c)
			}
		}
		return n
	}
	// A burst of vanishings is judged like one update: from the oldest
	// remembered, each vanishing not yet in a burst starts one, in which
	// the reals the service had just before it that vanished within
	// removal_hold of it, less the reals rendered now that were not there
	// before it, are the reals lost: a rolling deploy, one instance at a
	// time, however fast, loses none. A burst that loses more than
	// max_removal holds what vanished in it until removal_hold after its
	// first, and takes in the vanishings it counted; one that does not
	// leaves the next vanishing to start its own. Split over any number of
	// updates, a mass removal is still one.
	vanishings := h.Vanished[vs.CatalogKey()]
	for i := 0; i < len(vanishings); i++ {
		first := vanishings[i]
		until := first.At.Add(vs.RemovalHold)
		had := make(map[InstanceKey]bool, len(first.Before))
		for _, in := range first.Before {
			had[InstanceKey{Node: in.Node, ID: in.ID}] = true
		}
		var burst, lost []*catalog.Instance
		counted := map[InstanceKey]bool{}
		last := i
		for j := i; j < len(vanishings) && vanishings[j].At.Before(until); j++ {
			last = j
			for _, in := range vanishings[j].Gone {
				if k := (InstanceKey{Node: in.Node, ID: in.ID}); !counted[k] {
					counted[k] = true
					burst = append(burst, in)
					if had[k] {
						lost = append(lost, in)
					}
				}
			}
		}
		arrived := 0
		for _, k := range rendered {
			if !had[k] {
				arrived++
			}
		}
		gone, before := reals(lost, nil), reals(first.Before, nil)
		if gone-arrived <= 0 || !vs.MaxRemoval.Exceeded(gone-arrived, before) {
			continue // no mass removal: those reals simply went
		}
		i = last // the burst's vanishings start none of their own
		if !h.Now.Before(until) {
			continue // held, and the hold is over
		}
		held := 0
		reals(burst, func(in *catalog.Instance, c candidate) {
			rk := c.rk
			if present[InstanceKey{Node: in.Node, ID: in.ID}] {
				return // back
			}
			if _, taken := svc.Reals[rk]; taken {
				return
			}
			r := Rule{Kind: RuleRemovalHold, Weight: c.weight, Until: until, Vanished: gone, Of: before,
				limit: vs.MaxRemoval, hold: vs.RemovalHold}
			svc.Reals[rk] = c.server(vs, in, func(string, ...any) {})
			origins[rk] = Origin{Source: SourceHeld, Node: in.Node, InstanceID: in.ID, Status: in.Status}
			*decisions = append(*decisions, Decision{Instance: in, In: true, Real: rk, Weight: r.Weight, Rule: r})
			serving = serving || r.Weight > 0
			held++
		})
		if held == 0 {
			continue
		}
		if out.next.IsZero() || until.Before(out.next) {
			out.next = until
		}
		out.holds = append(out.holds, Hold{VirtualService: vs.Name, Vanished: gone, Of: before, Until: until})
	}
	return serving
}

// LocalFallback is where the local maintenance page is reached: the VIP
// itself, on the virtual port. A real whose address is local to the
// director is delivered to this host with the packet's VIP:port unchanged
// (gate keeps it; masq rewrites it to the same). A loopback real would not
// do: the kernel refuses to DNAT outside traffic to 127.0.0.1 ("stopping
// DNAT to loopback address").
func LocalFallback(vip netip.AddrPort) lvs.RealKey {
	return lvs.RealKey{Addr: vip.Addr(), Port: vip.Port()}
}

func fallbackKey(vs *config.VirtualService) lvs.RealKey {
	if vs.Fallback.Local {
		return LocalFallback(vs.Address)
	}
	return lvs.RealKey{Addr: vs.Fallback.Addr.Addr(), Port: vs.Fallback.Addr.Port()}
}
