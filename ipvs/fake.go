package ipvs

import (
	"github.com/lvs-sync/lvs-sync/lvs"

	"fmt"
	"maps"
	"sync"
	"syscall"
)

// FakeKernel is an in-memory IPVS table for tests of the code above the
// kernel. It answers like the kernel: EEXIST for a duplicate, ESRCH for a
// missing service, ENOENT for a missing real, and it reports a loopback
// real as a "local node", as the kernel does for local addresses.
type FakeKernel struct {
	mu    sync.Mutex
	state State
	// Calls counts every call, reads included.
	Calls int
	// Writes counts the calls that change the table.
	Writes int
	// FailService makes every change to that service fail with the error.
	FailService map[lvs.ServiceKey]error
}

var _ Kernel = (*FakeKernel)(nil)

// NewFakeKernel returns a fake holding a copy of st.
func NewFakeKernel(st State) *FakeKernel {
	return &FakeKernel{state: st.Clone(), FailService: map[lvs.ServiceKey]error{}}
}

// State returns a copy of the whole table.
func (f *FakeKernel) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Clone()
}

func (f *FakeKernel) Services() (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	st := make(State, len(f.state))
	for k, svc := range f.state {
		cp := *svc
		cp.Reals = nil
		st[k] = &cp
	}
	return st, nil
}

func (f *FakeKernel) Reals(k lvs.ServiceKey) (map[lvs.RealKey]Real, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	svc, ok := f.state[k]
	if !ok {
		return nil, syscall.ESRCH
	}
	return maps.Clone(svc.Reals), nil
}

// change runs a write under the lock, counting it and injecting failures.
func (f *FakeKernel) change(k lvs.ServiceKey, fn func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if err := f.FailService[k]; err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	f.Writes++
	return nil
}

func (f *FakeKernel) AddService(k lvs.ServiceKey, s *Service) error {
	return f.change(k, func() error {
		if _, ok := f.state[k]; ok {
			return syscall.EEXIST
		}
		cp := *s
		cp.Reals = map[lvs.RealKey]Real{}
		f.state[k] = &cp
		return nil
	})
}

func (f *FakeKernel) UpdateService(k lvs.ServiceKey, s *Service) error {
	return f.change(k, func() error {
		svc, ok := f.state[k]
		if !ok {
			return syscall.ESRCH
		}
		svc.Scheduler, svc.Flags, svc.Timeout, svc.Netmask = s.Scheduler, s.Flags, s.Timeout, s.Netmask
		return nil
	})
}

func (f *FakeKernel) DelService(k lvs.ServiceKey) error {
	return f.change(k, func() error {
		if _, ok := f.state[k]; !ok {
			return syscall.ESRCH
		}
		delete(f.state, k)
		return nil
	})
}

func (f *FakeKernel) AddReal(k lvs.ServiceKey, rk lvs.RealKey, r Real) error {
	return f.change(k, func() error {
		svc, ok := f.state[k]
		if !ok {
			return syscall.ESRCH
		}
		if _, ok := svc.Reals[rk]; ok {
			return syscall.EEXIST
		}
		svc.Reals[rk] = kernelReal(rk, r)
		return nil
	})
}

func (f *FakeKernel) UpdateReal(k lvs.ServiceKey, rk lvs.RealKey, r Real) error {
	return f.change(k, func() error {
		svc, ok := f.state[k]
		if !ok {
			return syscall.ESRCH
		}
		old, ok := svc.Reals[rk]
		if !ok {
			return syscall.ENOENT
		}
		nr := kernelReal(rk, r)
		nr.ActiveConns, nr.InactiveConns = old.ActiveConns, old.InactiveConns
		svc.Reals[rk] = nr
		return nil
	})
}

func (f *FakeKernel) DelReal(k lvs.ServiceKey, rk lvs.RealKey) error {
	return f.change(k, func() error {
		svc, ok := f.state[k]
		if !ok {
			return syscall.ESRCH
		}
		if _, ok := svc.Reals[rk]; !ok {
			return syscall.ENOENT
		}
		delete(svc.Reals, rk)
		return nil
	})
}

// SetConns sets a real's connection counts, as traffic would.
func (f *FakeKernel) SetConns(k lvs.ServiceKey, rk lvs.RealKey, active, inactive int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, ok := f.state[k]
	if !ok {
		return fmt.Errorf("no service %s", k)
	}
	r, ok := svc.Reals[rk]
	if !ok {
		return fmt.Errorf("no real %s in %s", rk, k)
	}
	r.ActiveConns, r.InactiveConns = active, inactive
	svc.Reals[rk] = r
	return nil
}

// kernelReal is what the kernel stores for a real: a local address becomes
// a local node whatever method was asked for.
func kernelReal(rk lvs.RealKey, r Real) Real {
	if rk.Addr.IsLoopback() {
		r.Forward = lvs.LocalNode
	}
	return r
}
