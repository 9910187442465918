// Package ipvstest is the kernel tests run the code above IPVS against: an
// ipvs.MemKernel behind ipvs.Kernel, with the knobs a test needs and the
// kernel has not: counts of calls and writes, injected failures per service
// or per real, and connection counts and traffic counters set as traffic
// would. It is stateful:
// tests assert on the whole table (State), not on a sequence of calls.
//
// It imports ipvs and lvs only; only tests import it.
package ipvstest

import (
	"fmt"
	"sync"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// Kernel is an in-memory kernel with test knobs. It is safe for
// concurrent use.
type Kernel struct {
	mem *ipvs.MemKernel

	mu          sync.Mutex
	calls       int
	writes      int
	failService map[lvs.ServiceKey]error
	failReal    map[realOf]error
	conns       map[realOf]conns
	// stats are the counters SetStats gave; a service's own under the
	// zero RealKey.
	stats map[realOf]ipvs.Stats
	// failAfter: after this many more writes (when failErr is set), every
	// write fails with failErr; failAt runs at the first that fails.
	failAfter int
	failErr   error
	failAt    func()
}

// realOf names one real of one service.
type realOf struct {
	svc  lvs.ServiceKey
	real lvs.RealKey
}

type conns struct{ active, inactive int }

var (
	_ ipvs.Kernel        = (*Kernel)(nil)
	_ ipvs.ServiceReader = (*Kernel)(nil)
)

// New returns a kernel holding a copy of st.
func New(st ipvs.State) *Kernel {
	return &Kernel{
		mem:         ipvs.NewMemKernel(st),
		failService: map[lvs.ServiceKey]error{},
		failReal:    map[realOf]error{},
		conns:       map[realOf]conns{},
		stats:       map[realOf]ipvs.Stats{},
	}
}

// Calls counts every call, reads included.
func (k *Kernel) Calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// Writes counts the calls that changed the table.
func (k *Kernel) Writes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

// FailService makes every change to the service, its reals included, fail
// with err; a nil err ends that.
func (k *Kernel) FailService(svc lvs.ServiceKey, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.failService, svc)
		return
	}
	k.failService[svc] = err
}

// FailReal makes every change to one real of a service (add, update,
// delete) fail with err, the other reals unaffected; a nil err ends that.
func (k *Kernel) FailReal(svc lvs.ServiceKey, rk lvs.RealKey, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.failReal, realOf{svc, rk})
		return
	}
	k.failReal[realOf{svc, rk}] = err
}

// FailAfter lets the next n writes through and fails every later one with
// err, as a kernel that stops answering in the middle of an apply; at, if
// not nil, runs once, at the first write that fails, under the kernel's
// lock (a test notes there what a process that died at that point left
// behind). A nil err ends that.
func (k *Kernel) FailAfter(n int, err error, at func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failAfter, k.failErr, k.failAt = n, err, at
}

// SetConns sets a real's connection counts, as traffic would: reads report
// them until the real is deleted. The real must exist.
func (k *Kernel) SetConns(svc lvs.ServiceKey, rk lvs.RealKey, active, inactive int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.mem.State()
	if st[svc] == nil {
		return fmt.Errorf("setting connections: no service %s", svc)
	}
	if _, ok := st[svc].Reals[rk]; !ok {
		return fmt.Errorf("setting connections: no real %s in %s", rk, svc)
	}
	k.conns[realOf{svc, rk}] = conns{active, inactive}
	return nil
}

// SetStats sets the traffic counters of a service's real, as traffic
// would: reads report them until the real is deleted. The real must exist.
func (k *Kernel) SetStats(svc lvs.ServiceKey, rk lvs.RealKey, s ipvs.Stats) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	// One service's reals, not a copy of the table: benchmarks set the
	// counters of thousands of reals.
	if _, err := k.mem.Service(svc); err != nil {
		return fmt.Errorf("setting stats: no service %s", svc)
	}
	if reals, _ := k.mem.Reals(svc); !hasReal(reals, rk) {
		return fmt.Errorf("setting stats: no real %s in %s", rk, svc)
	}
	k.stats[realOf{svc, rk}] = s
	return nil
}

func hasReal(reals map[lvs.RealKey]ipvs.Real, rk lvs.RealKey) bool {
	_, ok := reals[rk]
	return ok
}

// SetServiceStats sets the traffic counters of a service itself (the
// kernel's sum over its reals, past ones included): reads report them
// until the service is deleted. The service must exist.
func (k *Kernel) SetServiceStats(svc lvs.ServiceKey, s ipvs.Stats) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.mem.Service(svc); err != nil {
		return fmt.Errorf("setting stats: no service %s", svc)
	}
	k.stats[realOf{svc: svc}] = s
	return nil
}

// State returns a copy of the whole table, connection counts and
// counters included.
func (k *Kernel) State() ipvs.State {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.mem.State()
	for key, svc := range st {
		k.overlayService(key, svc)
		k.overlay(key, svc.Reals)
	}
	return st
}

// overlay sets the connection counts SetConns gave and the counters
// SetStats gave on the reals of svc.
func (k *Kernel) overlay(svc lvs.ServiceKey, reals map[lvs.RealKey]ipvs.Real) {
	for rk, r := range reals {
		c, hasConns := k.conns[realOf{svc, rk}]
		s, hasStats := k.stats[realOf{svc, rk}]
		if hasConns {
			r.ActiveConns, r.InactiveConns = c.active, c.inactive
		}
		if hasStats {
			r.Stats = s
		}
		if hasConns || hasStats {
			reals[rk] = r
		}
	}
}

// overlayService sets the counters SetServiceStats gave on svc.
func (k *Kernel) overlayService(key lvs.ServiceKey, svc *ipvs.Service) {
	if svc != nil {
		svc.Stats = k.stats[realOf{svc: key}]
	}
}

func (k *Kernel) Services() (ipvs.State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	st, err := k.mem.Services()
	for key, svc := range st {
		k.overlayService(key, svc)
	}
	return st, err
}

func (k *Kernel) Service(svc lvs.ServiceKey) (*ipvs.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	s, err := k.mem.Service(svc)
	k.overlayService(svc, s)
	return s, err
}

func (k *Kernel) Reals(svc lvs.ServiceKey) (map[lvs.RealKey]ipvs.Real, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	reals, err := k.mem.Reals(svc)
	k.overlay(svc, reals)
	return reals, err
}

// change makes one write under the lock: counted, and failed if a test
// said so.
func (k *Kernel) change(svc lvs.ServiceKey, rk *lvs.RealKey, write func() error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if k.failErr != nil {
		if k.failAfter <= 0 {
			if at := k.failAt; at != nil {
				k.failAt = nil
				at()
			}
			return k.failErr
		}
		k.failAfter--
	}
	if err := k.failService[svc]; err != nil {
		return err
	}
	if rk != nil {
		if err := k.failReal[realOf{svc, *rk}]; err != nil {
			return err
		}
	}
	if err := write(); err != nil {
		return err
	}
	k.writes++
	return nil
}

func (k *Kernel) AddService(svc lvs.ServiceKey, s *ipvs.Service) error {
	return k.change(svc, nil, func() error { return k.mem.AddService(svc, s) })
}

func (k *Kernel) UpdateService(svc lvs.ServiceKey, s *ipvs.Service) error {
	return k.change(svc, nil, func() error { return k.mem.UpdateService(svc, s) })
}

// DelService also ends the connections of its reals and forgets the
// counters.
func (k *Kernel) DelService(svc lvs.ServiceKey) error {
	return k.change(svc, nil, func() error {
		if err := k.mem.DelService(svc); err != nil {
			return err
		}
		for r := range k.conns {
			if r.svc == svc {
				delete(k.conns, r)
			}
		}
		for r := range k.stats {
			if r.svc == svc {
				delete(k.stats, r)
			}
		}
		return nil
	})
}

func (k *Kernel) AddReal(svc lvs.ServiceKey, rk lvs.RealKey, r ipvs.Real) error {
	return k.change(svc, &rk, func() error { return k.mem.AddReal(svc, rk, r) })
}

// UpdateReal keeps the connection counts and counters, as the kernel does.
func (k *Kernel) UpdateReal(svc lvs.ServiceKey, rk lvs.RealKey, r ipvs.Real) error {
	return k.change(svc, &rk, func() error { return k.mem.UpdateReal(svc, rk, r) })
}

// DelReal also ends the real's connections and forgets its counters.
func (k *Kernel) DelReal(svc lvs.ServiceKey, rk lvs.RealKey) error {
	return k.change(svc, &rk, func() error {
		if err := k.mem.DelReal(svc, rk); err != nil {
			return err
		}
		delete(k.conns, realOf{svc, rk})
		delete(k.stats, realOf{svc, rk})
		return nil
	})
}
