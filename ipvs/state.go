// Package ipvs holds lvs-sync's model of the kernel's IPVS table: the desired
// state that render produces, the state read back from the kernel, the pure
// diff between the two, and the code that applies a diff through netlink.
//
// The model separates identity from configuration, as Seesaw does: a
// ServiceKey or RealKey says which object it is, and Equal over the other
// fields says whether an object that exists must be updated.
package ipvs

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// Protocol is an IP protocol number as IPVS uses it.
type Protocol uint16

// The protocols a virtual service can balance.
const (
	TCP  Protocol = syscall.IPPROTO_TCP
	UDP  Protocol = syscall.IPPROTO_UDP
	SCTP Protocol = 132 // syscall has no IPPROTO_SCTP on every platform
)

// ParseProtocol parses the config and CLI names of a protocol.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: want tcp, udp or sctp", s)
}

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto(%d)", uint16(p))
}

// ipvsadmFlag is the option ipvsadm uses to name a service of this protocol.
func (p Protocol) ipvsadmFlag() string {
	switch p {
	case UDP:
		return "-u"
	case SCTP:
		return "--sctp-service"
	}
	return "-t"
}

// Forward is an IPVS packet-forwarding method, the low bits of a real
// server's connection flags (IP_VS_CONN_F_FWD_MASK).
type Forward uint32

// Forwarding methods, with the kernel's values.
const (
	Masq      Forward = 0 // NAT: the director rewrites the destination
	LocalNode Forward = 1 // the director itself; the kernel's name for a local real
	Tunnel    Forward = 2 // ipip: encapsulated to the real server
	Route     Forward = 3 // gate, direct routing: the real's MAC, VIP kept
	// FwdMask selects the forwarding method from ConnectionFlags.
	FwdMask uint32 = 0x7
)

// ParseForward parses ldirectord's names of the forwarding methods.
func ParseForward(s string) (Forward, error) {
	switch s {
	case "masq":
		return Masq, nil
	case "gate":
		return Route, nil
	case "ipip":
		return Tunnel, nil
	}
	return 0, fmt.Errorf("unknown forwarding method %q: want masq, gate or ipip", s)
}

// String returns ldirectord's name of the method.
func (f Forward) String() string {
	switch f {
	case Masq:
		return "masq"
	case LocalNode:
		return "local"
	case Tunnel:
		return "ipip"
	case Route:
		return "gate"
	}
	return fmt.Sprintf("fwd(%d)", uint32(f))
}

// TranslatesPort reports whether the kernel can send a connection to a real
// port other than the virtual one with this method. Only NAT rewrites
// packets; gate and ipip deliver them with the virtual port unchanged.
func (f Forward) TranslatesPort() bool { return f == Masq }

// ipvsadmFlag is ipvsadm's switch for the method (fwd_switch in ipvsadm.c).
// A local node is shown as -g, as ipvsadm does.
func (f Forward) ipvsadmFlag() string {
	switch f {
	case Masq:
		return "-m"
	case Tunnel:
		return "-i"
	}
	return "-g"
}

// Service flags lvs-sync sets or reads (IP_VS_SVC_F_*).
const (
	FlagPersistent uint32 = 0x1
	FlagHashed     uint32 = 0x2 // set by the kernel on every service it reports
	FlagOnePacket  uint32 = 0x4
)

// HostMask is the persistence netmask of one client address: what ipvsadm
// sets when -M is not given.
func HostMask(addr netip.Addr) uint32 {
	if addr.Is6() {
		return 128
	}
	return 0xffffffff
}

// ServiceKey identifies a virtual service: protocol, address and port, or
// a firewall mark (then Protocol, Addr and Port are zero, but for the
// address family, carried by Addr).
type ServiceKey struct {
	Protocol Protocol
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
}

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		return fmt.Sprintf("fwmark:%d", k.FWMark)
	}
	return k.Protocol.String() + "://" + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// Compare orders keys as ipvsadm users expect to read them: firewall marks
// last, then by protocol number, address and port.
func (k ServiceKey) Compare(o ServiceKey) int {
	if (k.FWMark != 0) != (o.FWMark != 0) {
		if k.FWMark != 0 {
			return 1
		}
		return -1
	}
	return cmp.Or(
		cmp.Compare(k.FWMark, o.FWMark),
		cmp.Compare(k.Protocol, o.Protocol),
		k.Addr.Compare(o.Addr),
		cmp.Compare(k.Port, o.Port),
	)
}

// ipvsadm is the service as ipvsadm names it: "-t 10.0.0.1:80" or "-f 7".
func (k ServiceKey) ipvsadm() string {
	if k.FWMark != 0 {
		return fmt.Sprintf("-f %d", k.FWMark)
	}
	return k.Protocol.ipvsadmFlag() + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// RealKey identifies a real server within a virtual service.
type RealKey struct {
	Addr netip.Addr
	Port uint16
}

func (k RealKey) String() string { return netip.AddrPortFrom(k.Addr, k.Port).String() }

// Compare orders real servers by address, then port.
func (k RealKey) Compare(o RealKey) int {
	return cmp.Or(k.Addr.Compare(o.Addr), cmp.Compare(k.Port, o.Port))
}

// Real is a real server (an IPVS destination).
type Real struct {
	Weight  int
	Forward Forward
	// Connection counts, as read from the kernel; never part of equality.
	ActiveConns, InactiveConns int
}

// Equal reports whether two reals are configured alike: what an update must
// change. Connection counts are observations, not configuration.
func (r Real) Equal(o Real) bool {
	return r.Weight == o.Weight && r.Forward == o.Forward
}

// Service is a virtual service and its real servers.
type Service struct {
	Scheduler string
	// Flags are the IP_VS_SVC_F_* flags, without FlagHashed.
	Flags uint32
	// Timeout is the persistence timeout in seconds; 0 unless FlagPersistent.
	Timeout uint32
	// Netmask is the persistence granularity: an IPv4 mask as the kernel
	// stores it (network byte order), or an IPv6 prefix length. The kernel
	// takes 0 literally, as one template for every client: use HostMask.
	Netmask uint32
	Reals   map[RealKey]Real
}

// Equal reports whether two services are configured alike, reals aside.
func (s *Service) Equal(o *Service) bool {
	return s.Scheduler == o.Scheduler && s.Flags == o.Flags &&
		s.Timeout == o.Timeout && s.Netmask == o.Netmask
}

// SortedReals returns the service's real keys in address, port order.
func (s *Service) SortedReals() []RealKey {
	keys := make([]RealKey, 0, len(s.Reals))
	for k := range s.Reals {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, RealKey.Compare)
	return keys
}

// State is a set of virtual services: the kernel's table, or part of it.
type State map[ServiceKey]*Service

// SortedKeys returns the state's service keys in ipvsadm reading order.
func (s State) SortedKeys() []ServiceKey {
	keys := make([]ServiceKey, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, ServiceKey.Compare)
	return keys
}

// ServiceRule is the ipvsadm command that creates the service, without the
// leading -A: "-t 10.0.0.1:80 -s wlc -p 300".
func ServiceRule(k ServiceKey, s *Service) string {
	var b strings.Builder
	b.WriteString(k.ipvsadm())
	b.WriteString(" -s ")
	b.WriteString(s.Scheduler)
	if s.Flags&FlagPersistent != 0 {
		fmt.Fprintf(&b, " -p %d", s.Timeout)
		if m := netmaskString(k.Addr, s.Netmask); m != "" {
			b.WriteString(" -M " + m)
		}
	}
	if s.Flags&FlagOnePacket != 0 {
		b.WriteString(" -o")
	}
	return b.String()
}

// RealRule is the ipvsadm command that creates the real, without the
// leading -a: "-t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 5".
func RealRule(k ServiceKey, rk RealKey, r Real) string {
	return fmt.Sprintf("%s -r %s %s -w %d", k.ipvsadm(), rk, r.Forward.ipvsadmFlag(), r.Weight)
}

// netmaskString renders a persistence netmask as ipvsadm -S does, or ""
// when it is the host mask that ipvsadm leaves out.
func netmaskString(addr netip.Addr, mask uint32) string {
	if addr.Is6() {
		if mask == 0 || mask == 128 {
			return ""
		}
		return fmt.Sprint(mask)
	}
	if mask == 0 || mask == 0xffffffff {
		return ""
	}
	// The kernel keeps the IPv4 mask in network byte order.
	b := [4]byte{byte(mask), byte(mask >> 8), byte(mask >> 16), byte(mask >> 24)}
	return netip.AddrFrom4(b).String()
}

// String is the state in exactly the format of `ipvsadm -S -n`, sorted, so
// that users can diff lvs-sync's desired state with the kernel's.
func (s State) String() string {
	var b strings.Builder
	for _, k := range s.SortedKeys() {
		svc := s[k]
		b.WriteString("-A " + ServiceRule(k, svc) + "\n")
		for _, rk := range svc.SortedReals() {
			b.WriteString("-a " + RealRule(k, rk, svc.Reals[rk]) + "\n")
		}
	}
	return b.String()
}

// ParseServiceKey parses the form String gives: "tcp://10.0.0.1:80",
// "udp://[2001:db8::1]:53" or "fwmark:7".
func ParseServiceKey(s string) (ServiceKey, error) {
	if m, ok := strings.CutPrefix(s, "fwmark:"); ok {
		var mark uint32
		if _, err := fmt.Sscanf(m, "%d", &mark); err != nil || mark == 0 {
			return ServiceKey{}, fmt.Errorf("bad firewall mark in %q", s)
		}
		return ServiceKey{FWMark: mark, Addr: netip.IPv4Unspecified()}, nil
	}
	proto, addr, ok := strings.Cut(s, "://")
	if !ok {
		return ServiceKey{}, fmt.Errorf("%q is not PROTOCOL://ADDRESS:PORT", s)
	}
	p, err := ParseProtocol(proto)
	if err != nil {
		return ServiceKey{}, err
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ServiceKey{}, fmt.Errorf("%q: %w", s, err)
	}
	return ServiceKey{Protocol: p, Addr: ap.Addr(), Port: ap.Port()}, nil
}
