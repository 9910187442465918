package ipvs

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/jonboulle/clockwork"

	"github.com/lvs-sync/lvs-sync/internal/progress"
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

// BatchKernel is a Kernel that takes many changes at once (genl.Client:
// many netlink requests per sendmsg). Apply uses it when the kernel has it.
type BatchKernel interface {
	Kernel
	// ApplyBatch makes the changes in order, each whatever became of the
	// others, and returns one error per op, nil for a change made. It does
	// no fallback (EEXIST on an add...): Apply does, as for single calls.
	// An error wrapping ErrOutcomeUnknown says the kernel's answer was lost.
	ApplyBatch([]Op) []error
}

// ErrOutcomeUnknown: the kernel's answer to a change was lost (its receive
// buffer overran, or no answer came in time), so the change may or may not
// have been made. Apply counts it as failed; the caller reads the service
// again and diffs anew.
var ErrOutcomeUnknown = errors.New("outcome unknown: the kernel's answer was lost")

// ErrTimeout is wrapped by a kernel client's error when the kernel did not
// answer a netlink call in time.
var ErrTimeout = errors.New("no netlink reply in time")

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

// ServiceReader is a kernel that reads one service by its key (ESRCH if
// it has none), so that a sync of a few services does not list them all.
type ServiceReader interface {
	Service(lvs.ServiceKey) (*Service, error)
}

// ReadKeys returns the services of keys the kernel has, with their reals:
// one request and one dump each where the kernel is a ServiceReader, else
// Read's listing of every service.
func ReadKeys(k Kernel, keys map[lvs.ServiceKey]bool) (State, error) {
	sr, ok := k.(ServiceReader)
	if !ok {
		return Read(k, func(key lvs.ServiceKey) bool { return keys[key] })
	}
	st := make(State, len(keys))
	for key := range keys {
		svc, err := sr.Service(key)
		if isGone(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading ipvs service %s: %w", key, err)
		}
		if svc.Reals, err = k.Reals(key); err != nil {
			if isGone(err) {
				continue
			}
			return nil, fmt.Errorf("listing reals of ipvs service %s: %w", key, err)
		}
		st[key] = svc
	}
	return st, nil
}

// Result says what Apply did.
type Result struct {
	Applied int
	// Failed services: a change to the service itself failed. If it could
	// not be added, its real changes were skipped, since none can succeed.
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
// services are applied. On a BatchKernel the plan is sent in batches of
// up to 1024 changes (batchPiece).
//
// Each change is logged at INFO; above summariseAbove changes, at DEBUG,
// with one INFO line of counts by kind. An apply that takes 2 s or more
// says how far it is (progress: msg="applying changes" applied=N of=M) on
// the real clock; Reconcile's is in.Clock.
func Apply(k Kernel, plan Plan, log hclog.Logger) Result {
	return apply(k, plan, log, nil)
}

// apply is Apply, its progress lines spaced by clock (nil: the real one).
func apply(k Kernel, plan Plan, log hclog.Logger, clock clockwork.Clock) Result {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	prog := progress.New(log, clock, "applying changes", "applied", len(plan))
	res := Result{
		Failed: map[lvs.ServiceKey]error{}, FailedReals: map[lvs.ServiceKey]map[lvs.RealKey]error{},
		Done: map[OpKind]int{}, Errors: map[OpKind]int{},
	}
	var batched []error
	var sent Plan // the change each op finally made: its own, or its fallback
	if bk, ok := k.(BatchKernel); ok && len(plan) > 0 {
		batched, sent = applyBatch(bk, plan, prog)
	}
	level := hclog.Info
	if len(plan) > summariseAbove {
		level = hclog.Debug
	}
	// A change's line is made only when the logger writes it: at the
	// first sync, 12,000 ipvsadm commands formatted for a DEBUG nobody
	// reads cost the guest some 70 ms (fmt in a CPU profile of the mh
	// load of 1,000 × 10).
	each := log.IsDebug() || level == hclog.Info && log.IsInfo()
	absent := map[lvs.ServiceKey]bool{} // could not be added: its real changes cannot succeed
	for i, op := range plan {
		if batched == nil {
			prog.Update(i)
		}
		var err error
		final := op
		switch {
		case absent[op.Service]:
			if batched != nil && batched[i] != nil {
				log.Debug("kernel change failed with its service", "service", op.Service, "real", op.Real)
			}
			continue
		case batched != nil:
			err, final = batched[i], sent[i]
		default:
			final, err = applyOp(k, op)
		}
		if err != nil {
			res.Errors[op.Kind]++
			switch op.Kind {
			case AddReal, UpdateReal, DeleteReal:
				err = fmt.Errorf("%s: %w", op, err)
				if res.FailedReals[op.Service] == nil {
					res.FailedReals[op.Service] = map[lvs.RealKey]error{}
				}
				res.FailedReals[op.Service][op.Real] = err
				log.Error("kernel change failed; the other reals are still changed", "service", op.Service, "real", op.Real, "error", err)
			case AddService, UpdateService:
				err = fmt.Errorf("%s: %w", op, schedulerError(op.Spec, err))
				if op.Stage && op.Kind == UpdateService {
					res.Failed[op.Service] = undoStage(k, op, err, log)
					continue
				}
				res.Failed[op.Service] = err
				if final.Kind == AddService {
					absent[op.Service] = true
					log.Error("kernel change failed; skipping this service's reals", "service", op.Service, "error", err)
				} else {
					log.Error("kernel change failed; the service keeps its settings, its reals are still changed", "service", op.Service, "error", err)
				}
			default:
				err = fmt.Errorf("%s: %w", op, err)
				res.Failed[op.Service] = err
				log.Error("kernel change failed", "service", op.Service, "error", err)
			}
			continue
		}
		res.Applied++
		res.Done[op.Kind]++
		if !each {
			continue
		}
		switch op.Kind {
		case AddService, UpdateService:
			log.Log(level, op.Kind.String(), "service", op.Service, "scheduler", op.Spec.Scheduler,
				"persistence", op.Spec.Timeout, "command", op.String())
		case DeleteService:
			log.Log(level, op.Kind.String(), "service", op.Service, "command", op.String())
		case AddReal, UpdateReal:
			log.Log(level, op.Kind.String(), "service", op.Service, "real", op.Real, "weight", op.RealSpec.Weight,
				"forwarding", op.RealSpec.Forward, "command", op.String())
		case DeleteReal:
			if op.Requeue {
				log.Log(level, op.Kind.String(), "service", op.Service, "real", op.Real, "requeue", true, "command", op.String())
				break
			}
			log.Log(level, op.Kind.String(), "service", op.Service, "real", op.Real, "command", op.String())
		}
	}
	if level != hclog.Info {
		args := []any{"changes", len(plan), "applied", res.Applied}
		for kind := range opNames {
			if n := res.Done[OpKind(kind)]; n > 0 {
				args = append(args, strings.ReplaceAll(opNames[kind], " ", "_"), n)
			}
		}
		log.Info("kernel changes applied", args...)
	}
	prog.Done(len(plan))
	return res
}

// summariseAbove is the most changes Apply logs one by one at INFO.
const summariseAbove = 20

// applyOp makes one change, and its fallback when the kernel refuses it;
// final is the change last asked of the kernel.
func applyOp(k Kernel, op Op) (final Op, err error) {
	err = call(k, op)
	if next, ok := fallback(op, err); ok {
		if next == nil {
			return op, nil
		}
		return *next, call(k, *next)
	}
	return op, err
}

// applyBatch is applyOp over a BatchKernel: the whole plan in one batch,
// then the fallbacks of the refused changes in another. A service that
// was gone and is added back by its fallback takes again the changes to
// its reals that were refused for its absence (ESRCH), which may need
// their own fallback: three batches at most. The plan's first pass goes
// in pieces of batchPiece changes, so that a large one can tell prog how
// far it is.
func applyBatch(k BatchKernel, plan Plan, prog *progress.Reporter) ([]error, Plan) {
	errs := make([]error, 0, len(plan))
	for i := 0; i < len(plan); i += batchPiece {
		errs = append(errs, k.ApplyBatch(plan[i:min(i+batchPiece, len(plan))])...)
		prog.Update(len(errs))
	}
	// sent is the plan itself until a change falls back: a copy of the
	// whole plan (the whole table, at the first sync) only when one does.
	sent, copied := plan, false
	fellBack := make([]bool, len(plan))
	for range 2 {
		var retry []int
		added := map[lvs.ServiceKey]bool{}
		for i, err := range errs {
			if err == nil || fellBack[i] {
				continue
			}
			next, ok := fallback(sent[i], err)
			switch {
			case !ok:
				continue
			case next == nil:
				errs[i] = nil
				continue
			case next.Kind == AddService:
				added[next.Service] = true
			}
			if !copied {
				sent, copied = slices.Clone(plan), true
			}
			fellBack[i], sent[i] = true, *next
			retry = append(retry, i)
		}
		for i, err := range errs {
			// (No real's change refused with ESRCH has a fallback.)
			if err != nil && added[sent[i].Service] && isRealOp(sent[i].Kind) && errors.Is(err, syscall.ESRCH) {
				retry = append(retry, i)
			}
		}
		if len(retry) == 0 {
			break
		}
		slices.Sort(retry) // plan order: services before their reals
		again := make(Plan, len(retry))
		for j, i := range retry {
			again[j] = sent[i]
		}
		for j, err := range k.ApplyBatch(again) {
			errs[retry[j]] = err
		}
	}
	return errs, sent
}

// batchPiece is the most changes of a plan applyBatch sends in one
// ApplyBatch: at tens of thousands of changes a second, a piece takes some
// tens of milliseconds, so progress lines are on time. It is a multiple of
// the 256 changes ipvs/genl packs into one sendmsg: the pieces cost no
// extra sendmsg.
const batchPiece = 1024

func isRealOp(kind OpKind) bool { return kind == AddReal || kind == UpdateReal || kind == DeleteReal }

// fallback is what applyOp does when the kernel refuses op with err: ok
// with the change to make instead, or with nil when the refusal means
// done (deleting what is gone).
func fallback(op Op, err error) (next *Op, ok bool) {
	if err == nil {
		return nil, false
	}
	alt := op
	switch {
	case op.Kind == AddService && op.Stage && errors.Is(err, syscall.EEXIST):
		// A staged add (stage.go) of a service that appeared since the
		// read: the switch after its reals gives it its settings; an
		// edit to StageScheduler now would only stop its scheduling.
		return nil, true
	case op.Kind == AddService && errors.Is(err, syscall.EEXIST):
		alt.Kind = UpdateService
	case op.Kind == UpdateService && errors.Is(err, syscall.ESRCH):
		// ESRCH alone means the service is gone: ENOENT is the kernel's
		// answer for a scheduler it cannot load.
		alt.Kind = AddService
	case op.Kind == AddReal && errors.Is(err, syscall.EEXIST):
		alt.Kind = UpdateReal
	case op.Kind == UpdateReal && errors.Is(err, syscall.ENOENT):
		alt.Kind = AddReal
	case (op.Kind == DeleteReal || op.Kind == DeleteService) && isGone(err):
		return nil, true
	default:
		return nil, false
	}
	return &alt, true
}

// call makes one change, as the kernel is asked: no fallback.
func call(k Kernel, op Op) error {
	switch op.Kind {
	case AddService:
		return k.AddService(op.Service, op.Spec)
	case UpdateService:
		return k.UpdateService(op.Service, op.Spec)
	case AddReal:
		return k.AddReal(op.Service, op.Real, op.RealSpec)
	case UpdateReal:
		return k.UpdateReal(op.Service, op.Real, op.RealSpec)
	case DeleteReal:
		return k.DelReal(op.Service, op.Real)
	case DeleteService:
		return k.DelService(op.Service)
	}
	return fmt.Errorf("unknown op kind %d", op.Kind)
}

// undoStage deletes a service whose switch to its scheduler failed
// (stage.go), rather than leave it under StageScheduler, where it
// schedules nothing; err is the switch's error, and the result says what
// became of the service. The service is lvs-sync's: the plan added it.
func undoStage(k Kernel, op Op, err error, log hclog.Logger) error {
	del := k.DelService(op.Service)
	if del != nil && !isGone(del) {
		err = fmt.Errorf("%w; deleting the service, left with no scheduler, failed too: %w", err, del)
		log.Error("kernel change failed; the service schedules no connection until the next sync", "service", op.Service,
			"scheduler", op.Spec.Scheduler, "module", "ip_vs_"+op.Spec.Scheduler, "error", err)
		return err
	}
	err = fmt.Errorf("%w; the service was deleted rather than left with no scheduler", err)
	log.Error("kernel change failed; the service was deleted", "service", op.Service,
		"scheduler", op.Spec.Scheduler, "module", "ip_vs_"+op.Spec.Scheduler, "error", err)
	return err
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
