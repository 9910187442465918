// Package lvs is the vocabulary that config, render and ipvs share: the
// protocols a virtual service balances, the forwarding methods, the
// schedulers and their flags (sched.go), and the identity of a virtual
// service and of a real server. It is a leaf: it
// imports nothing of lvs-sync, so that config can speak of forwarding
// methods without knowing how the kernel is driven.
package lvs

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"net"
	"net/netip"
	"strconv"
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

// IpvsadmFlag is the option ipvsadm uses to name a service of this protocol.
func (p Protocol) IpvsadmFlag() string {
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

// ParseForwardName parses a method as String or IpvsadmName give it, the
// inverse of both (for wire formats that carry the name).
func ParseForwardName(s string) (Forward, bool) {
	for _, f := range []Forward{Masq, LocalNode, Tunnel, Route} {
		if s == f.String() || s == f.IpvsadmName() {
			return f, true
		}
	}
	return 0, false
}

// IpvsadmName is the method as `ipvsadm -Ln` shows it.
func (f Forward) IpvsadmName() string {
	switch f {
	case Masq:
		return "Masq"
	case LocalNode:
		return "Local"
	case Tunnel:
		return "Tunnel"
	case Route:
		return "Route"
	}
	return f.String()
}

// IpvsadmFlag is ipvsadm's switch for the method (fwd_switch in ipvsadm.c).
// A local node is shown as -g, as ipvsadm does.
func (f Forward) IpvsadmFlag() string {
	switch f {
	case Masq:
		return "-m"
	case Tunnel:
		return "-i"
	}
	return "-g"
}

// TranslatesPort reports whether the kernel can send a connection to a real
// port other than the virtual one with this method. Only NAT rewrites
// packets; gate and ipip deliver them with the virtual port unchanged.
func (f Forward) TranslatesPort() bool { return f == Masq }

// HostMask is the persistence netmask of one client address: what ipvsadm
// sets when -M is not given.
func HostMask(addr netip.Addr) uint32 {
	if addr.Is6() {
		return 128
	}
	return 0xffffffff
}

// MaxThreshold is the largest connection threshold ipvsadm takes (-x, -y:
// INT_MAX), and so the largest lvs-sync takes, from its config, an
// instance's meta or an imported config.
const MaxThreshold = math.MaxInt32

// The Consul service meta an instance sets its own real's connection
// thresholds with (ipvsadm -x, -y), in place of the virtual service's
// upper_threshold and lower_threshold: a count of connections, 0 for none.
const (
	MetaUpperThreshold = "lvs-upper-threshold"
	MetaLowerThreshold = "lvs-lower-threshold"
)

// PrefixMask is the persistence netmask that puts the clients sharing
// their first length bits on one template, as the kernel keeps it for a
// service at addr: an IPv6 prefix length, or an IPv4 mask in network byte
// order read as a little-endian u32 (/24, 255.255.255.0, is 0x00ffffff).
// length 0 (or the full length) is the host mask.
func PrefixMask(addr netip.Addr, length int) uint32 {
	if length <= 0 || length >= addr.BitLen() {
		return HostMask(addr)
	}
	if addr.Is6() {
		return uint32(length)
	}
	return bits.ReverseBytes32(^uint32(0) << (32 - length))
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

// String is "tcp://10.0.0.1:80", or "fwmark:7" for an IPv4 mark and
// "fwmark6:7" for an IPv6 one: the same mark in two families is two
// services, which the state file must tell apart.
func (k ServiceKey) String() string {
	if k.FWMark != 0 && k.Addr.Is6() {
		return fmt.Sprintf("fwmark6:%d", k.FWMark)
	}
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

// Ipvsadm is the service as ipvsadm names it: "-t 10.0.0.1:80", "-f 7",
// or "-f 7 -6" for an IPv6 mark (as ipvsadm -S writes it).
func (k ServiceKey) Ipvsadm() string {
	if k.FWMark != 0 && k.Addr.Is6() {
		return fmt.Sprintf("-f %d -6", k.FWMark)
	}
	if k.FWMark != 0 {
		return fmt.Sprintf("-f %d", k.FWMark)
	}
	return k.Protocol.IpvsadmFlag() + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// ParseServiceKey parses the form String gives: "tcp://10.0.0.1:80",
// "udp://[2001:db8::1]:53", "fwmark:7" or "fwmark6:7".
func ParseServiceKey(s string) (ServiceKey, error) {
	for prefix, family := range map[string]netip.Addr{"fwmark:": netip.IPv4Unspecified(), "fwmark6:": netip.IPv6Unspecified()} {
		m, ok := strings.CutPrefix(s, prefix)
		if !ok {
			continue
		}
		mark, err := strconv.ParseUint(m, 10, 32)
		if err != nil || mark == 0 {
			return ServiceKey{}, fmt.Errorf("bad firewall mark in %q", s)
		}
		return ServiceKey{FWMark: uint32(mark), Addr: family}, nil
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

// ParsePersistenceNetmask parses a persistence netmask as ipvsadm's -M
// takes it (config's persistence_netmask, ldirectord's netmask,
// keepalived's persistence_granularity), into a prefix length: a dotted mask such as "255.255.255.0" for an
// IPv4 service, a prefix length such as 64 for an IPv6 one.
func ParsePersistenceNetmask(s string, vip netip.Addr) (int, error) {
	if vip.Is6() {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 128 {
			return 0, fmt.Errorf("%q: want a prefix length from 1 to 128 for the IPv6 address %s", s, vip)
		}
		return n, nil
	}
	mask, err := netip.ParseAddr(s)
	if err != nil || !mask.Is4() {
		return 0, fmt.Errorf("%q: want a dotted netmask such as \"255.255.255.0\" for the IPv4 address %s", s, vip)
	}
	b := mask.As4()
	ones, size := net.IPMask(b[:]).Size()
	switch {
	case size == 0:
		return 0, fmt.Errorf("%q: the mask's ones must come first, as in 255.255.255.0", s)
	case ones == 0:
		return 0, fmt.Errorf("%q would put every client on one real server", s)
	}
	return ones, nil
}

// FormatPersistenceNetmask is a prefix length as ParsePersistenceNetmask
// reads it for a service at vip: "255.255.255.0" or "64".
func FormatPersistenceNetmask(vip netip.Addr, length int) string {
	if vip.Is6() {
		return strconv.Itoa(length)
	}
	return net.IP(net.CIDRMask(length, 32)).String()
}
