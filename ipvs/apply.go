package ipvs

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Kernel is the part of the kernel's IPVS that lvs-sync uses. Netlink is
// the real one; MemKernel keeps a State in memory (-dry-run, tests).
type Kernel interface {
	// Services lists every virtual service, without reals.
	Services() (State, error)
	// Reals lists the real servers of one service.
	Reals(lvs.ServiceKey) (map[lvs.RealKey]Real, error)
	AddService(lvs.ServiceKey, *Service) error
	UpdateService(lvs.ServiceKey, *Service) error
	DelService(lvs.ServiceKey) error
	AddReal(lvs.ServiceKey, lvs.RealKey, Real) error
	UpdateReal(lvs.ServiceKey, lvs.RealKey, Real) error
	DelReal(lvs.ServiceKey, lvs.RealKey) error
}

// Read returns the kernel's table: every service, and the reals of those
// that want says are of interest (nil: all of them). Reading the reals of
// foreign services is wasted netlink traffic on a busy director.
func Read(k Kernel, want func(lvs.ServiceKey) bool) (State, error) {
	st, err := k.Services()
	if err != nil {
		return nil, fmt.Errorf("listing ipvs services: %w", err)
	}
	for key, svc := range st {
		if want != nil && !want(key) {
			continue
		}
		reals, err := k.Reals(key)
		if err != nil {
			if isGone(err) {
				delete(st, key) // deleted between the two calls
				continue
			}
			return nil, fmt.Errorf("listing reals of ipvs service %s: %w", key, err)
		}
		svc.Reals = reals
	}
	return st, nil
}

// Result says what Apply did.
type Result struct {
	Applied int
	// Failed services: their remaining changes were skipped.
	Failed map[lvs.ServiceKey]error
	// Done and Errors count the changes made and failed, by kind.
	Done, Errors map[OpKind]int
	// Foreign lists the services Reconcile saw in the kernel that are not
	// lvs-sync's.
	Foreign []lvs.ServiceKey
}

// Err joins the failures, or is nil.
func (r Result) Err() error {
	errs := make([]error, 0, len(r.Failed))
	for _, err := range r.Failed {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Apply carries out a plan. Idempotent calls are made so: adding what
// exists updates it, deleting what is gone succeeds. A change that fails
// skips the rest of its service's changes, is logged, and the other
// services are still applied.
func Apply(k Kernel, plan Plan, log hclog.Logger) Result {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	res := Result{Failed: map[lvs.ServiceKey]error{}, Done: map[OpKind]int{}, Errors: map[OpKind]int{}}
	for _, op := range plan {
		if _, failed := res.Failed[op.Service]; failed {
			continue
		}
		if err := applyOp(k, op); err != nil {
			res.Errors[op.Kind]++
			err = fmt.Errorf("%s: %w", op, err)
			res.Failed[op.Service] = err
			log.Error("kernel change failed; skipping the rest of this service", "service", op.Service, "error", err)
			continue
		}
		res.Applied++
		res.Done[op.Kind]++
		switch op.Kind {
		case AddService, UpdateService:
			log.Info(op.Kind.String(), "service", op.Service, "scheduler", op.Spec.Scheduler,
				"persistence", op.Spec.Timeout, "command", op.String())
		case DeleteService:
			log.Info(op.Kind.String(), "service", op.Service, "command", op.String())
		case AddReal, UpdateReal:
			log.Info(op.Kind.String(), "service", op.Service, "real", op.Real, "weight", op.RealSpec.Weight,
				"forwarding", op.RealSpec.Forward, "command", op.String())
		case DeleteReal:
			log.Info(op.Kind.String(), "service", op.Service, "real", op.Real, "command", op.String())
		}
	}
	return res
}

func applyOp(k Kernel, op Op) error {
	switch op.Kind {
	case AddService:
		err := k.AddService(op.Service, op.Spec)
		if errors.Is(err, syscall.EEXIST) {
			return k.UpdateService(op.Service, op.Spec)
		}
		return err
	case UpdateService:
		err := k.UpdateService(op.Service, op.Spec)
		if isGone(err) {
			return k.AddService(op.Service, op.Spec)
		}
		return err
	case AddReal:
		err := k.AddReal(op.Service, op.Real, op.RealSpec)
		if errors.Is(err, syscall.EEXIST) {
			return k.UpdateReal(op.Service, op.Real, op.RealSpec)
		}
		return err
	case UpdateReal:
		err := k.UpdateReal(op.Service, op.Real, op.RealSpec)
		if errors.Is(err, syscall.ENOENT) {
			return k.AddReal(op.Service, op.Real, op.RealSpec)
		}
		return err
	case DeleteReal:
		if err := k.DelReal(op.Service, op.Real); !isGone(err) {
			return err
		}
		return nil
	case DeleteService:
		if err := k.DelService(op.Service); !isGone(err) {
			return err
		}
		return nil
	}
	return fmt.Errorf("unknown op kind %d", op.Kind)
}

// isGone reports an error that means the object does not exist: ESRCH for
// a service, ENOENT for a real server (ip_vs_ctl.c).
func isGone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT)
}
