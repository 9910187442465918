package render

import (
	"strconv"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// serviceOf is the virtual service's settings in the kernel's terms, its
// reals map made for n of them: ipvsadm's -s, -b, -p, -M and -o.
func serviceOf(vs *config.VirtualService, n int) *ipvs.Service {
	svc := &ipvs.Service{
		Scheduler: vs.Scheduler,
		Flags:     uint32(vs.SchedulerFlags),
		Netmask:   lvs.PrefixMask(vs.Address.Addr(), vs.PersistenceNetmask),
		Reals:     make(map[lvs.RealKey]ipvs.Real, n),
	}
	if vs.OnePacket {
		svc.Flags |= ipvs.FlagOnePacket
	}
	if vs.Persistence > 0 {
		svc.Flags |= ipvs.FlagPersistent
		svc.Timeout = uint32(vs.Persistence.Seconds())
	}
	return svc
}

// thresholds are the connection thresholds of an instance's real: the
// virtual service's, each overridden by the instance's meta. A meta value
// that is no count, or a pair the kernel refuses (lower above upper), is
// noted and the virtual service's value is used.
func thresholds(vs *config.VirtualService, in *catalog.Instance, note func(format string, args ...any)) (upper, lower uint32) {
	read := func(key string, def uint32) uint32 {
		s, ok := in.Meta[key]
		if !ok {
			return def
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n > lvs.MaxThreshold {
			note("meta %s = %q is not a connection count from 0 to %d: using %d", key, s, lvs.MaxThreshold, def)
			return def
		}
		return uint32(n)
	}
	upper, lower = read(lvs.MetaUpperThreshold, vs.UpperThreshold), read(lvs.MetaLowerThreshold, vs.LowerThreshold)
	if lower > upper {
		note("meta thresholds: lower %d is above upper %d, which the kernel refuses: using upper %d, lower %d",
			lower, upper, vs.UpperThreshold, vs.LowerThreshold)
		return vs.UpperThreshold, vs.LowerThreshold
	}
	return upper, lower
}
