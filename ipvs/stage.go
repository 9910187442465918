package ipvs

import "github.com/lvs-sync/lvs-sync/lvs"

// Staged adds: a new mh service is created under no scheduler, its reals
// added, then its scheduler bound, in the same plan.
//
// Why: mh builds its lookup table (4093 slots on Debian's kernels) on
// every change to the service's list of destinations. In Linux 6.1
// ip_vs_mh.c, add_dest, del_dest and upd_dest are all
// ip_vs_mh_dest_changed, which recomputes the weights' gcd and shift and
// calls ip_vs_mh_reassign: a permutation per destination and a fill of
// the whole table. So a service added with N reals under mh costs N
// table builds; in our guest, 506 µs a real against wlc's 50
// (/work/shared/notes/netlink-batching.md), and the full load of
// 1,000 × 10 under mh was only 2.3–4.4 × `ipvsadm -R` (2.4 and 2.8 × in
// two boots of ours: 3,473 and 3,455 ms).
//
// What it leaves is one table build per service, which no client can
// avoid, and the most costly one (ip_vs_mh_populate probes more as more
// destinations contend for the slots): in the guest, the mh load of
// 1,000 × 10 took 433 ms more than the same load under wlc in one boot
// (775.3 against 342.1 ms), 1,069 ms more in another (1,300.6 against
// 231.5 ms, under a CPU profile), where ipvsadm -R took 1.9 to 4.6 s
// more. The rest is the wlc load's.
//
// How: Diff plans a new mh service as AddService under the scheduler
// "none" (StageScheduler), its reals in canonical order, then an
// UpdateService to mh with its flags (the switch, Op.Stage), after every
// real of the plan. The kernel takes "none" as no scheduler at all
// (ip_vs_ctl.c ip_vs_add_service and ip_vs_edit_service:
// `if (strcmp(u->sched_name, "none"))` looks a scheduler up only for
// another name), so an add of a real calls no scheduler hook, and the
// switch, from no scheduler, skips the unbind and its synchronize_rcu()
// (ip_vs_edit_service: `if (old_sched) { ip_vs_unbind_scheduler(svc);
// synchronize_rcu(); }`). A cheap scheduler such as wlc in place of
// "none" would wait there for an RCU grace period per service (not
// measured here: the kernel's source says it, and "none" needs none),
// and would schedule the flows of those microseconds to a real mh might
// not pick.
//
// Why the table is the same as a direct add's (the all-active contract,
// order.go): ip_vs_bind_scheduler calls mh's init_service,
// ip_vs_mh_init_svc, which computes the gcd and shift from the
// destinations' last_weight and calls the same ip_vs_mh_reassign over
// svc->destinations in list order, into a zeroed table; a rebuild after
// an add fills every slot anew (ip_vs_mh_populate sets each of the
// IP_VS_MH_TAB_SIZE slots once), or clears them all when every
// last_weight is 0, so neither depends on the table before it. The list
// order is the adds' (__ip_vs_update_dest puts each new destination at
// the head whatever the scheduler), and last_weight is set by
// __ip_vs_update_dest whatever the scheduler too. The hash keys are
// constants (generate_hash_secret). So the table after the switch is a
// function of the same list and weights as after the last direct add.
//
// If the switch fails (no ip_vs_mh: ip_vs_scheduler_get's request_module
// found none, ENOENT, before anything is changed), Apply deletes the
// service (Apply: undoStage), and its error names the service and the
// module. A service left under "none" would schedule nothing: packets to
// it get ICMP unreachable (ip_vs_schedule finds no scheduler, ip_vs_leave)
// but never the wrong real; and the next sync, which reads its scheduler
// as "none", edits it to mh as for any other change of scheduler.
//
// sh is not staged: its table is 256 buckets (ip_vs_sh_reassign), 94 µs
// a real against wlc's 50 in the same measurement, not worth a second
// path; and an edit of a service that exists is never staged: it has its
// reals already, and switching it away from its scheduler would stop
// scheduling its traffic.

// StageScheduler is the scheduler a staged service is created under: none,
// which the kernel takes as no scheduler.
const StageScheduler = "none"

// Staged reports whether a new service under scheduler is added staged:
// under StageScheduler, its reals, then its own scheduler. mh alone.
func Staged(scheduler string) bool { return scheduler == "mh" }

// stagedAdd emits the ops that add the service staged: the service under
// StageScheduler, its reals, and the switch to its scheduler.
func stagedAdd(k lvs.ServiceKey, want *Service, emit func(Op)) {
	under := &Service{
		Scheduler: StageScheduler,
		Flags:     want.Flags &^ uint32(lvs.SchedFlagsMask),
		Timeout:   want.Timeout,
		Netmask:   want.Netmask,
	}
	emit(Op{Kind: AddService, Service: k, Spec: under, Stage: true})
	for _, rk := range want.SortedReals() {
		emit(Op{Kind: AddReal, Service: k, Real: rk, RealSpec: want.Reals[rk]})
	}
	emit(Op{Kind: UpdateService, Service: k, Spec: want, Stage: true})
}
