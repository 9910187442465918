package genl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/ipvs"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// header is a netlink message header.
type header struct {
	len   uint32
	typ   uint16
	flags uint16
	seq   uint32
}

// nextMessage splits the first message off b: its header, its payload and
// the rest.
func nextMessage(b []byte) (h header, payload, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return h, nil, nil, fmt.Errorf("netlink message of %d bytes", len(b))
	}
	h = header{len: native.Uint32(b), typ: native.Uint16(b[4:]), flags: native.Uint16(b[6:]), seq: native.Uint32(b[8:])}
	if h.len < nlmsgHdrLen || int(h.len) > len(b) {
		return h, nil, nil, fmt.Errorf("netlink message length %d of %d bytes", h.len, len(b))
	}
	next := align(int(h.len))
	if next > len(b) {
		next = len(b)
	}
	return h, b[nlmsgHdrLen:h.len], b[next:], nil
}

// errorCode is the errno of an NLMSG_ERROR (0: an ack) or NLMSG_DONE.
func errorCode(payload []byte) error {
	if len(payload) < 4 {
		return nil
	}
	if code := int32(native.Uint32(payload)); code < 0 {
		return syscall.Errno(-code)
	}
	return nil
}

func align(n int) int { return (n + 3) &^ 3 }

// attrs walks a run of attributes.
type attrs struct{ b []byte }

func (a *attrs) next() (typ uint16, v []byte, ok bool) {
	if len(a.b) < 4 {
		return 0, nil, false
	}
	l := int(native.Uint16(a.b))
	if l < 4 || l > len(a.b) {
		return 0, nil, false
	}
	typ, v = native.Uint16(a.b[2:])&nlaType, a.b[4:l]
	if n := align(l); n < len(a.b) {
		a.b = a.b[n:]
	} else {
		a.b = nil
	}
	return typ, v, true
}

// nested finds the nested attribute typ among the attributes of a generic
// netlink message's payload.
func nested(payload []byte, typ uint16) ([]byte, bool) {
	if len(payload) < genlHdrLen {
		return nil, false
	}
	it := attrs{payload[genlHdrLen:]}
	for t, v, ok := it.next(); ok; t, v, ok = it.next() {
		if t == typ {
			return v, true
		}
	}
	return nil, false
}

func u16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return native.Uint16(v)
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return native.Uint32(v)
}

func be16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

// ipOf reads an address the kernel sends as 16 bytes whatever the family.
func ipOf(v []byte, af uint16) (netip.Addr, bool) {
	switch {
	case af == unix.AF_INET && len(v) >= 4:
		return netip.AddrFrom4([4]byte(v[:4])), true
	case af == unix.AF_INET6 && len(v) >= 16:
		return netip.AddrFrom16([16]byte(v[:16])), true
	}
	return netip.Addr{}, false
}

// parseStats reads a nested IPVS_STATS_ATTR_* run. The kernel sends the
// 32-bit run (connections and packets u32, which wrap) and, since 4.1,
// the 64-bit one: the callers keep the 64-bit one whatever the order, and
// each counter is read by its length, so either run fits.
func parseStats(b []byte) ipvs.Stats {
	var s ipvs.Stats
	it := attrs{b}
	for t, v, ok := it.next(); ok; t, v, ok = it.next() {
		switch t {
		case statsConns:
			s.Conns = counter(v)
		case statsInPkts:
			s.InPkts = counter(v)
		case statsOutPkts:
			s.OutPkts = counter(v)
		case statsInBytes:
			s.InBytes = counter(v)
		case statsOutBytes:
			s.OutBytes = counter(v)
		}
	}
	return s
}

// counter reads a counter of 8 or 4 bytes.
func counter(v []byte) uint64 {
	if len(v) >= 8 {
		return native.Uint64(v)
	}
	return uint64(u32(v))
}

// parseService reads one service of a dump, as ipvs.Service keeps it: the
// hashed flag the kernel sets on every service dropped, reals nil.
func parseService(payload []byte) (lvs.ServiceKey, *ipvs.Service, error) {
	var k lvs.ServiceKey
	v, ok := nested(payload, attrService)
	if !ok {
		return k, nil, errors.New("a service message without a service")
	}
	var af uint16
	var addr []byte
	var has64 bool
	s := &ipvs.Service{}
	it := attrs{v}
	for t, v, ok := it.next(); ok; t, v, ok = it.next() {
		switch t {
		case svcAF:
			af = u16(v)
		case svcProtocol:
			k.Protocol = lvs.Protocol(u16(v))
		case svcAddr:
			addr = v
		case svcPort:
			k.Port = be16(v)
		case svcFWMark:
			k.FWMark = u32(v)
		case svcSchedName:
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i]
			}
			s.Scheduler = string(v)
		case svcFlags:
			s.Flags = u32(v) &^ ipvs.FlagHashed
		case svcTimeout:
			s.Timeout = u32(v)
		case svcNetmask:
			s.Netmask = u32(v)
		case svcStats64:
			s.Stats, has64 = parseStats(v), true
		case svcStats:
			if !has64 {
				s.Stats = parseStats(v)
			}
		}
	}
	switch {
	case af != unix.AF_INET && af != unix.AF_INET6:
		return k, nil, fmt.Errorf("a service of address family %d", af)
	case k.FWMark != 0:
		// lvs.ServiceKey: a mark, and the family in Addr.
		k.Protocol, k.Port = 0, 0
		k.Addr = netip.IPv4Unspecified()
		if af == unix.AF_INET6 {
			k.Addr = netip.IPv6Unspecified()
		}
	default:
		ip, ok := ipOf(addr, af)
		if !ok {
			return k, nil, fmt.Errorf("a service with address %x", addr)
		}
		k.Addr = ip
	}
	return k, s, nil
}

// parseReal reads one real server of a dump; svcAF is its service's
// family, for a kernel that does not send the real's own.
func parseReal(payload []byte, svcAF uint16) (lvs.RealKey, ipvs.Real, error) {
	var rk lvs.RealKey
	var r ipvs.Real
	v, ok := nested(payload, attrDest)
	if !ok {
		return rk, r, errors.New("a destination message without a destination")
	}
	af := svcAF
	var addr []byte
	var has64 bool
	it := attrs{v}
	for t, v, ok := it.next(); ok; t, v, ok = it.next() {
		switch t {
		case destAddr:
			addr = v
		case destPort:
			rk.Port = be16(v)
		case destFwdMethod:
			r.Forward = lvs.Forward(u32(v) & lvs.FwdMask)
		case destWeight:
			r.Weight = int(int32(u32(v)))
		case destUThresh:
			r.UpperThreshold = u32(v)
		case destLThresh:
			r.LowerThreshold = u32(v)
		case destActive:
			r.ActiveConns = int(u32(v))
		case destInactive:
			r.InactiveConns = int(u32(v))
		case destAddrFamily:
			af = u16(v)
		case destStats64:
			r.Stats, has64 = parseStats(v), true
		case destStats:
			if !has64 {
				r.Stats = parseStats(v)
			}
		}
	}
	ip, ok := ipOf(addr, af)
	if !ok {
		return rk, r, fmt.Errorf("a real with address %x, family %d", addr, af)
	}
	rk.Addr = ip
	return rk, r, nil
}
