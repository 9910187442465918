package render

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
)

// Source says which rule gave a real server its weight: the words status
// shows beside a real, and the label of lvs_sync_reals' states.
type Source string

// The weight sources. Draining is not render's: it is the planner's, for a
// real that left the desired state and waits for its connections.
const (
	SourcePassing     Source = "passing"      // Weights.Passing of a passing instance
	SourceWarning     Source = "warning"      // Weights.Warning of an instance in warning
	SourceQuiescent   Source = "quiescent"    // critical, kept at 0 by quiescent = true
	SourceMaintenance Source = "maintenance"  // node or service in maintenance: drains
	SourceFallback    Source = "fallback"     // no instance can take traffic
	SourceQuiesced    Source = "quiesced"     // in warning, with on_warning = "quiesce"
	SourceSlowStart   Source = "slow start"   // passing or warning, ramping up after slow_start
	SourceDraining    Source = "draining"     // left the desired state; weight 0 until its connections end
	SourceHeld        Source = "removal hold" // vanished with too many others: held as it was
)

// RuleKind is which rule of the config decided an instance's fate.
type RuleKind int

// The rules, each with its outcome.
const (
	RulePassing            RuleKind = iota // in, at Weights.Passing
	RuleWarning                            // in, at Weights.Warning (on_warning = "serve")
	RuleQuiesced                           // in at 0 (on_warning = "quiesce")
	RuleWarningRemoved                     // out (on_warning = "remove")
	RuleQuiescent                          // critical, in at 0 (quiescent = true)
	RuleCritical                           // critical, out
	RuleHeld                               // passing again within hold: as if critical
	RuleSlowStart                          // in, ramping from 1 to its full weight
	RuleNodeMaintenance                    // out of the state: drains
	RuleServiceMaintenance                 // out of the state: drains
	RuleLeftOut                            // not a real at all: tags, address, port, a duplicate
	RuleRemovalHold                        // vanished from the catalog with too many others: held as it was
)

// Rule is the outcome of the health rules for one instance: whether it is
// a real server, at which weight, and why. String says it in words, on
// demand, so that a render of thousands of instances formats nothing.
type Rule struct {
	Kind   RuleKind
	Weight int
	// Full is the weight a ramping instance rises to.
	Full int
	// LastCritical, Recovered and Until, for a held instance: when it was
	// last critical, when it passed again and when its hold ends.
	LastCritical, Recovered, Until time.Time
	// Quiescent, for a held instance: kept at weight 0 rather than out.
	Quiescent bool
	// Why, for RuleLeftOut.
	Why string
	// Vanished and Of, for RuleRemovalHold: how many of the service's
	// reals vanished at once, and the limit they went over.
	Vanished, Of int
	limit        config.Limit
	// The settings the words quote.
	drainTimeout, hold, slowStart time.Duration
}

// In reports whether the rule makes the instance a real server of the
// desired state.
func (r Rule) In() bool {
	switch r.Kind {
	case RulePassing, RuleWarning, RuleQuiesced, RuleQuiescent, RuleSlowStart, RuleRemovalHold:
		return true
	case RuleHeld:
		return r.Quiescent
	}
	return false
}

// Source is the weight source of a real the rule puts in the state; ""
// for one it leaves out, and maintenance for one that drains.
func (r Rule) Source() Source {
	switch r.Kind {
	case RulePassing:
		return SourcePassing
	case RuleWarning:
		return SourceWarning
	case RuleQuiesced:
		return SourceQuiesced
	case RuleQuiescent:
		return SourceQuiescent
	case RuleSlowStart:
		return SourceSlowStart
	case RuleRemovalHold:
		return SourceHeld
	case RuleHeld:
		if r.Quiescent {
			return SourceQuiescent
		}
	case RuleNodeMaintenance, RuleServiceMaintenance:
		return SourceMaintenance
	}
	return ""
}

func (r Rule) String() string {
	switch r.Kind {
	case RuleNodeMaintenance:
		return "node in maintenance: weight 0, draining until its connections end or drain_timeout " + r.drainTimeout.String()
	case RuleServiceMaintenance:
		return "service in maintenance: weight 0, draining until its connections end or drain_timeout " + r.drainTimeout.String()
	case RuleWarningRemoved:
		return "warning, on_warning = \"remove\": removed"
	case RuleHeld:
		s := fmt.Sprintf("held out by hold %s until %s (passing again since %s, critical at %s)", r.hold,
			r.Until.Format(time.RFC3339), r.Recovered.Format(time.RFC3339), r.LastCritical.Format(time.RFC3339))
		if r.Quiescent {
			s += ": quiescent, weight 0"
		}
		return s
	case RuleQuiescent:
		return "critical, quiescent = true: kept at weight 0"
	case RuleCritical:
		return "critical: removed (quiescent = false)"
	case RuleQuiesced:
		return "warning, on_warning = \"quiesce\": weight 0"
	case RuleSlowStart:
		return fmt.Sprintf("slow_start %s: weight %d rising to %d", r.slowStart, r.Weight, r.Full)
	case RuleWarning:
		return fmt.Sprintf("warning, on_warning = \"serve\": weight = Consul Weights.Warning (%d)", r.Weight)
	case RuleLeftOut:
		return "left out: " + r.Why
	case RuleRemovalHold:
		return fmt.Sprintf("vanished from the catalog with %d of %d reals, over max_removal %s: held at weight %d until %s (removal_hold %s)",
			r.Vanished, r.Of, r.limit, r.Weight, r.Until.Format(time.RFC3339), r.hold)
	}
	return fmt.Sprintf("passing: weight = Consul Weights.Passing (%d)", r.Weight)
}

// leftOut is the rule for an instance that cannot be a real server.
func leftOut(format string, args ...any) Rule {
	return Rule{Kind: RuleLeftOut, Why: fmt.Sprintf(format, args...)}
}

// decide applies the health rules to one instance: the one place that
// says what an instance's health, the config and its history make of it.
// It returns the rule and the next time the rule changes by time alone
// (a hold ending, a slow start stepping up), zero if never.
func decide(vs *config.VirtualService, in *catalog.Instance, h History) (Rule, time.Time) {
	r := Rule{drainTimeout: vs.DrainTimeout, hold: vs.Hold, slowStart: vs.SlowStart}
	switch {
	case in.NodeMaintenance:
		r.Kind = RuleNodeMaintenance
		return r, time.Time{}
	case in.ServiceMaintenance:
		r.Kind = RuleServiceMaintenance
		return r, time.Time{}
	}
	key := InstanceKey{Node: in.Node, ID: in.ID}
	status := in.Status
	// Flap damping: an instance that came back from critical less than
	// hold ago is held out as if it still were: it must have passed for
	// the whole hold, however often it failed before.
	if vs.Hold > 0 && status != catalog.Critical {
		if back, ok := h.Recovered[key]; ok && h.Now.Before(back.Add(vs.Hold)) {
			r.Kind, r.LastCritical, r.Until, r.Quiescent = RuleHeld, h.LastCritical[key], back.Add(vs.Hold), vs.Quiescent
			r.Recovered = back
			return r, r.Until
		}
	}
	switch {
	case status == catalog.Passing:
		r.Kind, r.Weight = RulePassing, in.Weights.Passing
	case status == catalog.Warning && vs.OnWarning == config.OnWarningQuiesce:
		r.Kind = RuleQuiesced
		return r, time.Time{}
	case status == catalog.Warning && vs.OnWarning == config.OnWarningRemove:
		r.Kind = RuleWarningRemoved
		return r, time.Time{}
	case status == catalog.Warning:
		r.Kind, r.Weight = RuleWarning, in.Weights.Warning
	case vs.Quiescent:
		r.Kind = RuleQuiescent
		return r, time.Time{}
	default:
		r.Kind = RuleCritical
		return r, time.Time{}
	}
	// Slow start: from 1 to the full weight over slow_start, counted from
	// when the instance started serving (or its hold ended).
	if vs.SlowStart > 0 && r.Weight > 1 {
		start := h.ServingSince[key]
		if back, ok := h.Recovered[key]; ok && vs.Hold > 0 && back.Add(vs.Hold).After(start) {
			start = back.Add(vs.Hold)
		}
		if !start.IsZero() && h.Now.Before(start.Add(vs.SlowStart)) {
			full := r.Weight
			elapsed := max(0, h.Now.Sub(start))
			w := max(1, int(mulDiv(int64(full), int64(elapsed), int64(vs.SlowStart), false)))
			r.Kind, r.Weight, r.Full = RuleSlowStart, w, full
			// The weight steps up when elapsed reaches (w+1)/full of it:
			// rounded up, or the wake-up could fall on now itself.
			return r, start.Add(time.Duration(mulDiv(int64(vs.SlowStart), int64(w+1), int64(full), true)))
		}
	}
	return r, time.Time{}
}

// mulDiv is a*b/c, rounded down or up, for 0 <= a, b, 0 < c and
// a*b/c < 2^63, without the overflow of a*b (a Consul weight of 2^31 times
// a minute in nanoseconds overflows int64; found by FuzzRender).
func mulDiv(a, b, c int64, up bool) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, rem := bits.Div64(hi, lo, uint64(c))
	if up && rem != 0 {
		q++
	}
	return int64(q)
}
