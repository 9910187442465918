package ipvs

import (
	"errors"
	"fmt"
	"maps"
	"slices"
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
	// Failed services: a change to the service itself (add, update,
	// delete) failed. When the service is not in the kernel because of
	// it, its real changes were skipped, since none can succeed.
	Failed map[lvs.ServiceKey]error
	// FailedReals are the real changes that failed, each on its own: the
	// service's other changes were still made.
	FailedReals map[lvs.ServiceKey]map[lvs.RealKey]error
	// Done and Errors count the changes made and failed, by kind.
	Done, Errors map[OpKind]int
	// Foreign lists the services Reconcile saw in the kernel that are not
	// lvs-sync's.
	Foreign []lvs.ServiceKey
}

// Err joins the failures, services then reals in ipvsadm order, or is nil.
func (r Result) Err() error {
	keys := slices.Collect(maps.Keys(r.Failed))
	for k := range r.FailedReals {
		if _, ok := r.Failed[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	var errs []error
	for _, k := range keys {
		if err := r.Failed[k]; err != nil {
			errs = append(errs, err)
		}
		reals := slices.SortedFunc(maps.Keys(r.FailedReals[k]), lvs.RealKey.Compare)
		for _, rk := range reals {
			errs = append(errs, r.FailedReals[k][rk])
		}
	}
	return errors.Join(errs...)
}

// Apply carries out a plan. Idempotent calls are made so: adding what
// exists updates it, deleting what is gone succeeds. Failures are isolated
// as narrowly as the kernel allows: a real change that fails fails that
// real alone, and the service's other reals, leaving ones included, are
// still changed; a service that could not be added skips its reals, which
// cannot be added to nothing. Every failure is logged, and the other
// services are applied.
func Apply(k Kernel, plan Plan, log hclog.Logger) Result {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	res := Result{
		Failed: map[lvs.ServiceKey]error{}, FailedReals: map[lvs.ServiceKey]map[lvs.RealKey]error{},
		Done: map[OpKind]int{}, Errors: map[OpKind]int{},
	}
	absent := map[lvs.ServiceKey]bool{} // not in the kernel: its real changes cannot succeed
	for _, op := range plan {
		if absent[op.Service] {
			continue
		}
		if err := applyOp(k, op); err != nil {
			res.Errors[op.Kind]++
			err = fmt.Errorf("%s: %w", op, err)
			switch op.Kind {
			case AddReal, UpdateReal, DeleteReal:
				if res.FailedReals[op.Service] == nil {
					res.FailedReals[op.Service] = map[lvs.RealKey]error{}
				}
				res.FailedReals[op.Service][op.Real] = err
				log.Error("kernel change failed; the other reals are still changed", "service", op.Service, "real", op.Real, "error", err)
			case AddService, UpdateService:
				res.Failed[op.Service] = err
				var missing *serviceMissingError
				if errors.As(err, &missing) {
					absent[op.Service] = true
					log.Error("kernel change failed; skipping this service's reals", "service", op.Service, "error", err)
				} else {
					log.Error("kernel change failed; the service keeps its settings, its reals are still changed", "service", op.Service, "error", err)
				}
			default:
				res.Failed[op.Service] = err
				log.Error("kernel change failed", "service", op.Service, "error", err)
			}
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

// serviceMissingError is a failed add of a service: it is not in the
// kernel, so no real can be added to it.
type serviceMissingError struct{ err error }

func (e *serviceMissingError) Error() string { return e.err.Error() }
func (e *serviceMissingError) Unwrap() error { return e.err }

func applyOp(k Kernel, op Op) error {
	switch op.Kind {
	case AddService:
		return addService(k, op.Service, op.Spec)
	case UpdateService:
		// ESRCH alone means the service is gone: ENOENT is the kernel's
		// answer for a scheduler it cannot load.
		err := k.UpdateService(op.Service, op.Spec)
		if errors.Is(err, syscall.ESRCH) {
			return addService(k, op.Service, op.Spec)
		}
		return schedulerError(op.Spec, err)
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

// addService adds a service, or updates it when it exists already. A
// failed add leaves no service: the error says so.
func addService(k Kernel, key lvs.ServiceKey, spec *Service) error {
	err := k.AddService(key, spec)
	if errors.Is(err, syscall.EEXIST) {
		return schedulerError(spec, k.UpdateService(key, spec))
	}
	if err != nil {
		return &serviceMissingError{schedulerError(spec, err)}
	}
	return nil
}

// schedulerError says what the kernel's ENOENT to an add or update of a
// service means: it has no such scheduler, and could not load its module.
func schedulerError(spec *Service, err error) error {
	if errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("scheduler %s is not available in this kernel (modprobe ip_vs_%s): %w", spec.Scheduler, spec.Scheduler, err)
	}
	return err
}

// isGone reports an error that means the object does not exist: ESRCH for
// a service, ENOENT for a real server (ip_vs_ctl.c).
func isGone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT)
}
