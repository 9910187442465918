// Package progress logs how far a long piece of work is: the first sync of
// thousands of services, the apply of a large plan, an import, a catalog
// validation. Work that ends within Every logs nothing: a sync of ten
// services is as quiet as it was. Work that takes longer logs a line at
// most every Every, and a last one saying it is done, so that an operator
// watching a slow start sees it move and sees it end.
package progress

import (
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"
)

// Every is the least time between two progress lines of one piece of work,
// and how long work runs before its first one.
const Every = 2 * time.Second

// Reporter is the progress of one piece of work of a known size. Its lines
// are log.Info(msg, verb, n, "of", total), e.g.
// `msg="first sync" read=120 of=5000`, and the last one adds done=true. It
// is not safe for concurrent use: one goroutine does the work and counts.
// A nil *Reporter does nothing, so that callers need no branch.
type Reporter struct {
	log   hclog.Logger
	clock clockwork.Clock
	msg   string
	verb  string
	total int
	start time.Time
	next  time.Time // when the next line may be logged
	spoke bool      // a line was logged: Done says so
	done  bool      // Done was called: no line after the last
}

// New starts the progress of work of total units, at clock's now. A nil
// log logs nothing; a nil clock is the real one.
func New(log hclog.Logger, clock clockwork.Clock, msg, verb string, total int) *Reporter {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	r := &Reporter{log: log, clock: clock, msg: msg, verb: verb, total: total}
	r.start = clock.Now()
	r.next = r.start.Add(Every)
	return r
}

// Update says n units of the work are done, and logs so if Every has
// passed since the work began or since the last line.
func (r *Reporter) Update(n int) {
	if r == nil || r.done {
		return
	}
	now := r.clock.Now()
	if now.Before(r.next) {
		return
	}
	r.next = now.Add(Every)
	r.spoke = true
	r.log.Info(r.msg, r.verb, n, "of", r.total)
}

// SetTotal changes the size of the work, for work whose size grows as it
// is found (the services a catalog lists).
func (r *Reporter) SetTotal(total int) {
	if r != nil {
		r.total = total
	}
}

// Done ends the work with n units done. It logs a last line, with
// done=true and how long the work took, if the work took Every or more
// (whether or not Update logged): a short piece of work logs nothing.
func (r *Reporter) Done(n int) {
	if r == nil || r.done {
		return
	}
	r.done = true
	took := r.clock.Since(r.start)
	if !r.spoke && took < Every {
		return
	}
	r.log.Info(r.msg, r.verb, n, "of", r.total, "done", true, "took", took.Round(time.Millisecond))
}
