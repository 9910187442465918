package genl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// The IPVS generic netlink interface (include/uapi/linux/ip_vs.h).
const (
	ipvsGenlVersion = 1

	cmdNewService = 1
	cmdSetService = 2
	cmdDelService = 3
	cmdGetService = 4
	cmdNewDest    = 5
	cmdSetDest    = 6
	cmdDelDest    = 7
	cmdGetDest    = 8

	attrService = 1 // IPVS_CMD_ATTR_SERVICE, nested
	attrDest    = 2 // IPVS_CMD_ATTR_DEST, nested

	svcAF        = 1  // u16
	svcProtocol  = 2  // u16
	svcAddr      = 3  // 4 or 16 bytes; the kernel answers 16
	svcPort      = 4  // be16
	svcFWMark    = 5  // u32
	svcSchedName = 6  // NUL-terminated
	svcFlags     = 7  // struct ip_vs_flags { flags, mask u32 }
	svcTimeout   = 8  // u32, seconds
	svcNetmask   = 9  // u32: an IPv4 mask in network order, or an IPv6 prefix length
	svcStats     = 10 // nested IPVS_STATS_ATTR_*: conns and packets u32, bytes u64
	svcStats64   = 12 // nested IPVS_STATS_ATTR_*, every counter u64; since Linux 4.1

	destAddr       = 1  // 4 or 16 bytes; the kernel answers 16
	destPort       = 2  // be16
	destFwdMethod  = 3  // u32, IP_VS_CONN_F_FWD_MASK bits
	destWeight     = 4  // u32
	destUThresh    = 5  // u32
	destLThresh    = 6  // u32
	destActive     = 7  // u32
	destInactive   = 8  // u32
	destStats      = 10 // nested, as svcStats
	destAddrFamily = 11 // u16, since Linux 3.18
	destStats64    = 12 // nested, as svcStats64

	// IPVS_STATS_ATTR_*, within svcStats(64) and destStats(64). The rates
	// (6 to 10) are the kernel's 2-second estimates: lvs-sync leaves rates
	// to the reader of its counters.
	statsConns    = 1
	statsInPkts   = 2
	statsOutPkts  = 3
	statsInBytes  = 4
	statsOutBytes = 5

	// The generic netlink controller, to resolve the family "IPVS".
	ctrlCmdGetFamily  = 3
	ctrlAttrFamilyID  = 1
	ctrlAttrFamilyNam = 2

	nlaNested = 0x8000 // NLA_F_NESTED
	nlaType   = 0x3fff // NLA_TYPE_MASK

	nlmsgHdrLen = 16
	genlHdrLen  = 4
)

var native = binary.NativeEndian

// encoder appends netlink messages to one buffer: a batch is one sendmsg.
// Nothing is allocated per message once the buffer has grown.
type encoder struct{ b []byte }

// begin starts a generic netlink message; end patches its length.
func (e *encoder) begin(family, flags uint16, seq uint32, cmd, version uint8) int {
	start := len(e.b)
	e.b = native.AppendUint32(e.b, 0)
	e.b = native.AppendUint16(e.b, family)
	e.b = native.AppendUint16(e.b, flags)
	e.b = native.AppendUint32(e.b, seq)
	e.b = native.AppendUint32(e.b, 0) // port id: the kernel fills it in
	e.b = append(e.b, cmd, version, 0, 0)
	return start
}

func (e *encoder) end(start int) {
	native.PutUint32(e.b[start:], uint32(len(e.b)-start))
}

// attr starts an attribute; attrEnd patches its length and pads it.
func (e *encoder) attr(typ uint16) int {
	start := len(e.b)
	e.b = native.AppendUint16(e.b, 0)
	e.b = native.AppendUint16(e.b, typ)
	return start
}

func (e *encoder) attrEnd(start int) {
	native.PutUint16(e.b[start:], uint16(len(e.b)-start))
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) u16(typ, v uint16) {
	a := e.attr(typ)
	e.b = native.AppendUint16(e.b, v)
	e.attrEnd(a)
}

func (e *encoder) be16(typ, v uint16) {
	a := e.attr(typ)
	e.b = binary.BigEndian.AppendUint16(e.b, v)
	e.attrEnd(a)
}

func (e *encoder) u32(typ uint16, v uint32) {
	a := e.attr(typ)
	e.b = native.AppendUint32(e.b, v)
	e.attrEnd(a)
}

func (e *encoder) str(typ uint16, s string) {
	a := e.attr(typ)
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
	e.attrEnd(a)
}

func (e *encoder) addr(typ uint16, ip netip.Addr) {
	a := e.attr(typ)
	if ip.Is6() {
		b := ip.As16()
		e.b = append(e.b, b[:]...)
	} else {
		b := ip.As4()
		e.b = append(e.b, b[:]...)
	}
	e.attrEnd(a)
}

func family(a netip.Addr) uint16 {
	if a.Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// service writes the service attribute: the key the kernel finds it by (a
// firewall-mark service is its mark and address family) and, when s is
// not nil, every setting, as a full entry must have them all.
func (e *encoder) service(k lvs.ServiceKey, s *ipvs.Service) {
	n := e.attr(attrService | nlaNested)
	e.u16(svcAF, family(k.Addr))
	if k.FWMark != 0 {
		e.u32(svcFWMark, k.FWMark)
	} else {
		e.u16(svcProtocol, uint16(k.Protocol))
		e.addr(svcAddr, k.Addr)
		e.be16(svcPort, k.Port)
	}
	if s != nil {
		e.str(svcSchedName, s.Scheduler)
		a := e.attr(svcFlags)
		// Every flag is set from Flags (the mask covers them all); the
		// kernel adds its hashed flag itself.
		e.b = native.AppendUint32(e.b, s.Flags&^ipvs.FlagHashed)
		e.b = native.AppendUint32(e.b, ^uint32(0))
		e.attrEnd(a)
		e.u32(svcTimeout, s.Timeout)
		e.u32(svcNetmask, s.Netmask)
	}
	e.attrEnd(n)
}

// dest writes the destination attribute: its address, port and family,
// and, when full, the settings a full entry must have (the thresholds
// among them: 0 is "no limit").
func (e *encoder) dest(rk lvs.RealKey, r ipvs.Real, full bool) {
	n := e.attr(attrDest | nlaNested)
	e.addr(destAddr, rk.Addr)
	e.be16(destPort, rk.Port)
	e.u16(destAddrFamily, family(rk.Addr))
	if full {
		e.u32(destFwdMethod, uint32(r.Forward)&lvs.FwdMask)
		e.u32(destWeight, uint32(int32(r.Weight)))
		e.u32(destUThresh, r.UpperThreshold)
		e.u32(destLThresh, r.LowerThreshold)
	}
	e.attrEnd(n)
}

// op writes one change as one request; the kernel answers only if it
// fails, or if flags ask for an ack.
func (e *encoder) op(familyID, flags uint16, seq uint32, op ipvs.Op) error {
	var cmd uint8
	switch op.Kind {
	case ipvs.AddService:
		cmd = cmdNewService
	case ipvs.UpdateService:
		cmd = cmdSetService
	case ipvs.DeleteService:
		cmd = cmdDelService
	case ipvs.AddReal:
		cmd = cmdNewDest
	case ipvs.UpdateReal:
		cmd = cmdSetDest
	case ipvs.DeleteReal:
		cmd = cmdDelDest
	default:
		return fmt.Errorf("unknown op kind %d", op.Kind)
	}
	if (cmd == cmdNewService || cmd == cmdSetService) && op.Spec == nil {
		return errors.New("a service change without the service")
	}
	if cmd == cmdNewDest || cmd == cmdSetDest {
		if err := op.RealSpec.Check(); err != nil {
			return err
		}
	}
	m := e.begin(familyID, flags, seq, cmd, ipvsGenlVersion)
	switch cmd {
	case cmdNewService, cmdSetService:
		e.service(op.Service, op.Spec)
	case cmdDelService:
		e.service(op.Service, nil)
	default:
		e.service(op.Service, nil)
		e.dest(op.Real, op.RealSpec, cmd != cmdDelDest)
	}
	e.end(m)
	return nil
}
