package daemon

// warned remembers the conditions already logged, so that each is logged
// once when it begins, not at every sync while it lasts.
type warned[K comparable] map[K]bool

// update makes now the conditions that hold and returns those that were
// not held before, in now's order, and those held before that ended.
// within limits what now tells of (nil: every condition); those outside
// it are held as they were. key names a condition.
func update[T any, K comparable](w warned[K], now []T, key func(T) K, within func(K) bool) (began []T, ended []K) {
	if len(now) == 0 && len(w) == 0 {
		return nil, nil // the common case, on every sync
	}
	var held map[K]bool
	if len(w) > 0 {
		held = make(map[K]bool, len(now))
	}
	for _, c := range now {
		k := key(c)
		if !w[k] {
			began = append(began, c)
		}
		if held != nil {
			held[k] = true
		}
	}
	for k := range w {
		if !held[k] && (within == nil || within(k)) {
			delete(w, k)
			ended = append(ended, k)
		}
	}
	for _, c := range now {
		w[key(c)] = true
	}
	return began, ended
}

// updateErr is update for a single condition, an error: its message is
// the condition, and the empty message none.
func updateErr(w warned[string], msg string) (began, ended bool) {
	var now []string
	if msg != "" {
		now = []string{msg}
	}
	b, e := update(w, now, func(s string) string { return s }, nil)
	return len(b) > 0, len(e) > 0
}

// message is the condition held by a warned error, "" if none.
func message(w warned[string]) string {
	for msg := range w {
		return msg
	}
	return ""
}
