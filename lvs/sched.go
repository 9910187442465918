package lvs

import (
	"fmt"
	"slices"
)

// Schedulers are the kernel's IPVS schedulers (net/netfilter/ipvs/Kconfig):
// each one a module, ip_vs_<name>, that the kernel loads on demand. twos
// came with Linux 6.2; the others are in every kernel lvs-sync runs on.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// KnownScheduler reports whether name is one of Schedulers.
func KnownScheduler(name string) bool { return slices.Contains(Schedulers, name) }

// SchedFlags are a virtual service's scheduler flags, IP_VS_SVC_F_SCHED1..3
// of include/uapi/linux/ip_vs.h: three bits whose meaning is the
// scheduler's. sh and mh read the first two (ip_vs_sh.c, ip_vs_mh.c).
type SchedFlags uint32

// The scheduler flag bits, as the kernel has them.
const (
	SchedFlag1 SchedFlags = 0x0008 // sh-fallback, mh-fallback
	SchedFlag2 SchedFlags = 0x0010 // sh-port, mh-port
	SchedFlag3 SchedFlags = 0x0020 // read by no scheduler

	SchedFlagsMask = SchedFlag1 | SchedFlag2 | SchedFlag3
)

// schedFlagNames are the names of the flags a scheduler reads, as
// ipvsadm -b takes them and ipvsadm -S prints them.
var schedFlagNames = map[string][2]string{
	"sh": {"sh-fallback", "sh-port"},
	"mh": {"mh-fallback", "mh-port"},
}

// ParseSchedFlags parses the flag names of scheduler_flags (ipvsadm -b):
// sh-fallback and sh-port for sh, mh-fallback and mh-port for mh. A flag
// of another scheduler, or of none, is an error.
func ParseSchedFlags(scheduler string, names []string) (SchedFlags, error) {
	var f SchedFlags
	for _, n := range names {
		bit, ok := schedFlag(scheduler, n)
		if !ok {
			return 0, schedFlagError(scheduler, n)
		}
		f |= bit
	}
	return f, nil
}

func schedFlag(scheduler, name string) (SchedFlags, bool) {
	own, ok := schedFlagNames[scheduler]
	switch {
	case !ok:
	case name == own[0]:
		return SchedFlag1, true
	case name == own[1]:
		return SchedFlag2, true
	}
	return 0, false
}

func schedFlagError(scheduler, name string) error {
	for sched, own := range schedFlagNames {
		if name == own[0] || name == own[1] {
			return fmt.Errorf("%s is a flag of the %s scheduler, not of %s", name, sched, scheduler)
		}
	}
	if own, ok := schedFlagNames[scheduler]; ok {
		return fmt.Errorf("unknown scheduler flag %q: the %s scheduler has %s and %s", name, scheduler, own[0], own[1])
	}
	return fmt.Errorf("unknown scheduler flag %q: only sh (sh-fallback, sh-port) and mh (mh-fallback, mh-port) have flags", name)
}

// Names are the flags as ipvsadm -S prints them after -b for this
// scheduler: its own names, else flag-1, flag-2, flag-3.
func (f SchedFlags) Names(scheduler string) []string {
	own, ok := schedFlagNames[scheduler]
	names := []string{"flag-1", "flag-2", "flag-3"}
	if ok {
		names[0], names[1] = own[0], own[1]
	}
	var out []string
	for i, bit := range []SchedFlags{SchedFlag1, SchedFlag2, SchedFlag3} {
		if f&bit != 0 {
			out = append(out, names[i])
		}
	}
	return out
}

// HashesByClient reports whether a scheduler picks the real from a hash of
// the client (sh, mh). Such a scheduler sends the clients that hash to a
// real at weight 0 nowhere, unless its fallback flag is set.
func HashesByClient(scheduler string) bool {
	_, ok := schedFlagNames[scheduler]
	return ok
}

// FallbackFlag is the flag that makes a hashing scheduler pass over a real
// at weight 0 to the next one: "sh-fallback" for sh. It is SchedFlag1.
func FallbackFlag(scheduler string) string { return schedFlagNames[scheduler][0] }
