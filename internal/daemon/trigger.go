package daemon

import "time"

// Trigger is what calls for a sync.
type Trigger int

// The triggers, fullest first: when several are due at once, the first
// one's sync does the work of the others.
const (
	// TriggerRetry repeats a sync that failed, after a backoff. It reads
	// and compares everything.
	TriggerRetry Trigger = iota
	// TriggerReconcile is the periodic full comparison that repairs drift
	// (a real deleted by hand).
	TriggerReconcile
	// TriggerCatalog is a catalog change, once a burst has settled. It
	// looks only at the services whose desired state changed.
	TriggerCatalog
	// TriggerTimer is time alone changing the desired state (a hold
	// ending, a slow start stepping up) or a drain (settling, timing out,
	// its connections to poll).
	TriggerTimer
	numTriggers
)

var triggerNames = [numTriggers]string{"retry", "reconcile", "catalog", "timer"}

// String is the trigger as the logs, reports and metrics name it.
func (t Trigger) String() string { return triggerNames[t] }

// Full reports whether the trigger's sync reads and compares every
// service rather than only the changed ones.
func (t Trigger) Full() bool { return t == TriggerRetry || t == TriggerReconcile }

// schedule is when each trigger is next due; the zero time is never. The
// loop keeps one timer, to the earliest.
type schedule struct {
	due [numTriggers]time.Time
}

func (s *schedule) at(t Trigger, when time.Time) { s.due[t] = when }

func (s *schedule) cancel(t Trigger) { s.due[t] = time.Time{} }

// next is the earliest due trigger and when; ok is false if none is.
func (s *schedule) next() (t Trigger, when time.Time, ok bool) {
	for i, d := range s.due {
		if d.IsZero() {
			continue
		}
		if !ok || d.Before(when) {
			t, when, ok = Trigger(i), d, true
		}
	}
	return t, when, ok
}

// fire returns the fullest trigger due at now, and clears what its sync
// covers: every other due catalog, retry and timer trigger.
func (s *schedule) fire(now time.Time) (Trigger, bool) {
	for i, d := range s.due {
		if d.IsZero() || d.After(now) {
			continue
		}
		t := Trigger(i)
		s.cancel(t)
		if t.Full() {
			s.cancel(TriggerCatalog)
		}
		return t, true
	}
	return 0, false
}
