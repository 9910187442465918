package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"
)

// LeaseStore is the lease in Consul; *ConsulLease is one.
type LeaseStore interface {
	Watch(ctx context.Context, observe func(Observation, error))
	Write(ctx context.Context, w Write) WriteResult
}

// Transport carries heartbeats; *Memberlist is one.
type Transport interface {
	Send(Heartbeat) error
	Received() <-chan Heartbeat
}

// Roles are the role's effects on the host; *Host is one.
type Roles interface {
	BecomeActive(epoch uint64) error
	StepDown(reason string) error
	// Drained ends a step-down's drain: the director stops scheduling.
	Drained() error
	Announce() error
	// KeepVIPs refreshes the lifetime of the VIPs on the interface.
	KeepVIPs() error
	DaemonState() string
}

// Reporter receives the role for metrics; nil reports nothing.
type Reporter interface {
	HARole(active bool, epoch uint64)
	HATakeover()
}

// Options wire a Runner. Name, Lease, Transport, Roles and Carrier are
// required.
type Options struct {
	// Name is this director's name in the lease and the heartbeat.
	Name      string
	Lease     LeaseStore
	Transport Transport
	Roles     Roles
	// Carrier reports whether the interface has carrier.
	Carrier  func() (bool, error)
	Timings  Timings // default DefaultTimings()
	Clock    clockwork.Clock
	Reporter Reporter
	Logger   hclog.Logger
}

// Runner runs the machine against its drivers.
type Runner struct {
	opts Options
	log  hclog.Logger
	inc  uint64

	// mu serialises the machine and the actions it asks for: the loop,
	// the lease watch, write results and the API all take it.
	mu       sync.Mutex
	m        *Machine
	ctx      context.Context
	writes   sync.WaitGroup
	lastRole Role
	lastEp   uint64
	takeover int
	hbErr    bool
	// beatNow asks the loop for a heartbeat at once: a new active's
	// tells its draining peer to stop scheduling (see Machine).
	beatNow chan struct{}
	keepErr bool
	// ready says whether this director could serve, and why not.
	ready func() (bool, string)
	// servesItself says whether this host is a real server of its own
	// virtual services.
	servesItself func() bool
}

// NewRunner checks the options.
func NewRunner(opts Options) (*Runner, error) {
	if opts.Name == "" || opts.Lease == nil || opts.Transport == nil || opts.Roles == nil || opts.Carrier == nil {
		return nil, errors.New("ha: Name, Lease, Transport, Roles and Carrier are required")
	}
	if opts.Timings == (Timings{}) {
		opts.Timings = DefaultTimings()
	}
	if err := opts.Timings.Validate(); err != nil {
		return nil, fmt.Errorf("ha timings: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	inc := uint64(opts.Clock.Now().UnixNano()) | 1 // never 0
	return &Runner{opts: opts, log: opts.Logger, inc: inc, m: NewMachine(opts.Name, inc, opts.Timings, opts.Clock),
		beatNow: make(chan struct{}, 1)}, nil
}

// Run runs until ctx ends; then, if active, it steps down and releases
// the lease (waiting for that write, at most Fence), so that the peer
// takes over at once, and drains (at most DrainMax) before it returns.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go r.opts.Lease.Watch(watchCtx, func(o Observation, err error) {
		r.input(func(m *Machine) []Action {
			if err != nil {
				return m.ConsulFailed()
			}
			return m.Observed(o)
		})
	})
	t := r.opts.Timings
	tick := r.opts.Clock.NewTicker(t.Heartbeat / 2)
	defer tick.Stop()
	beat := r.opts.Clock.NewTicker(t.Heartbeat)
	defer beat.Stop()
	r.carrier()
	r.log.Info("ha started as standby", "name", r.opts.Name, "heartbeat", t.Heartbeat, "peer_timeout", t.PeerTimeout,
		"renew", t.Renew, "ttl", t.TTL)
	// Once ctx ends the machine stops (Stop) and the loop goes on until
	// it is drained: it keeps scheduling for the clients whose ARP caches
	// still name it until its peer is active.
	done, stopping := ctx.Done(), false
	for {
		if stopping && !r.draining() {
			r.writes.Wait()
			return nil
		}
		select {
		case <-done:
			r.input((*Machine).Stop)
			done, stopping = nil, true
		case hb := <-r.opts.Transport.Received():
			r.input(func(m *Machine) []Action { return m.Heard(hb) })
		case <-tick.Chan():
			r.carrier()
			r.input((*Machine).Tick)
		case <-beat.Chan():
			r.beat()
		case <-r.beatNow:
			r.beat()
		}
	}
}

// beat sends the peer this director's heartbeat, with its readiness.
func (r *Runner) beat() {
	r.mu.Lock()
	ready, self := r.ready, r.servesItself
	r.mu.Unlock()
	why := ""
	if ready != nil { // asked without mu: it takes the daemon's locks
		if ok, reason := ready(); !ok {
			why = reason
		}
	}
	serves := self != nil && self()
	r.mu.Lock()
	r.m.SetServesItself(serves)
	if why != r.m.Unready() {
		r.log.Info("readiness to serve changed", "ready", why == "", "reason", why)
	}
	r.m.SetUnready(why)
	hb := r.m.Heartbeat()
	r.mu.Unlock()
	err := r.opts.Transport.Send(hb)
	if (err != nil) != r.hbErr {
		r.hbErr = err != nil
		if err != nil {
			r.log.Warn("cannot send the heartbeat", "error", err)
		} else {
			r.log.Info("heartbeat sent again")
		}
	}
}

// draining is whether the machine stepped down and still schedules.
func (r *Runner) draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.Draining()
}

// carrier reads the interface's carrier for the machine. A read that
// fails is made again at once: only a second failure in a row counts
// the carrier lost, so one lost netlink answer moves no VIP.
func (r *Runner) carrier() {
	up, err := r.opts.Carrier()
	if err != nil {
		up, err = r.opts.Carrier()
	}
	if err != nil {
		r.log.Debug("cannot read the carrier; counting it lost", "error", err)
		up = false
	}
	r.input(func(m *Machine) []Action { return m.Carrier(up) })
}

// input runs one input of the machine and the actions it asks for.
func (r *Runner) input(f func(*Machine) []Action) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.do(f(r.m))
}

// do runs actions in order, with mu held. A lease write runs on its own:
// its result is an input.
func (r *Runner) do(acts []Action) {
	for _, a := range acts {
		var err error
		switch a.Kind {
		case BecomeActive:
			if why := r.m.Unready(); why != "" {
				r.log.Warn("taking over while not ready to serve: the active is gone and nobody else can", "reason", why)
			}
			err = r.opts.Roles.BecomeActive(a.Epoch)
			select {
			case r.beatNow <- struct{}{}:
			default:
			}
		case StepDown:
			err = r.opts.Roles.StepDown(a.Reason)
		case Drained:
			err = r.opts.Roles.Drained()
		case Announce:
			err = r.opts.Roles.Announce()
		case WriteLease:
			r.write(a.Write)
		case KeepVIPs:
			// Every VIPRefresh: said once when it starts failing, once
			// when it works again.
			err = r.opts.Roles.KeepVIPs()
			if (err != nil) != r.keepErr {
				r.keepErr = err != nil
				if err != nil {
					r.log.Warn("cannot refresh the vips' lifetime: they lapse unless it works again", "error", err)
				} else {
					r.log.Info("vips' lifetime refreshed again")
				}
			}
			err = nil
		}
		if err != nil {
			r.log.Error("role change incomplete", "action", a.String(), "error", err)
		}
		if a.Kind == BecomeActive || a.Kind == StepDown || a.Kind == Drained {
			r.log.Info("role changed", "action", a.String())
		}
	}
	role, epoch := r.m.Role()
	if r.opts.Reporter != nil && (role != r.lastRole || epoch != r.lastEp) {
		r.opts.Reporter.HARole(role == Active, epoch)
	}
	if r.opts.Reporter != nil && r.m.takeovers > r.takeover {
		r.opts.Reporter.HATakeover()
	}
	r.lastRole, r.lastEp, r.takeover = role, epoch, r.m.takeovers
}

func (r *Runner) write(w Write) {
	ctx := r.ctx
	if ctx == nil || ctx.Err() != nil {
		ctx = context.Background() // a last release while stopping
	}
	r.writes.Add(1)
	go func() {
		defer r.writes.Done()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timings.Fence())
		defer cancel()
		res := r.opts.Lease.Write(wctx, w)
		r.log.Trace("lease written", "write", w.Kind, "ok", res.OK, "error", res.Err)
		// Once stopped, the machine writes nothing but its release.
		r.input(func(m *Machine) []Action { return m.Written(res) })
	}()
}

// SetReady gives the runner what says whether this director could serve
// (the daemon's health: a sync applied, Consul reachable); its
// heartbeats carry it, and its peer hands over to it only when ready.
func (r *Runner) SetReady(ready func() (bool, string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready = ready
}

// SetServesItself gives the runner what says whether this host is a real
// server of its own virtual services (the daemon's last sync), asked at
// every heartbeat: such a director ends its drain the moment it hears its
// peer active.
func (r *Runner) SetServesItself(f func() bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.servesItself = f
}

// Handover makes this active director hand the lease to its peer.
func (r *Runner) Handover() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	acts, err := r.m.Handover()
	if err != nil {
		return err
	}
	r.do(acts)
	return nil
}

// State is the runner's status.
type State struct {
	Status
	// SyncDaemons is which sync daemons run: master+backup, backup.
	SyncDaemons string `json:"sync_daemons"`
}

// State reports the machine and the sync daemons.
func (r *Runner) State() State {
	r.mu.Lock()
	st := r.m.Status()
	r.mu.Unlock()
	return State{Status: st, SyncDaemons: r.opts.Roles.DaemonState()}
}

// WaitRole waits until the runner has role, or d passed (for tests and
// operators' scripts).
func (r *Runner) WaitRole(role Role, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got, _ := r.m.Role()
		r.mu.Unlock()
		if got == role {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}
