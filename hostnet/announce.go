package hostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Announcer sends gratuitous ARP (IPv4) and unsolicited neighbour
// advertisements (IPv6) for addresses on a link. Linux announces nothing
// when an address is added, so a director taking over the VIPs tells the
// segment itself; receivers ignore ARP updates within their locktime
// (1 s), so the caller announces again after a second.
type Announcer interface {
	Announce(link string, addrs []netip.Addr) error
}

// NewAnnouncer returns the Announcer of the caller's network namespace:
// one AF_PACKET socket (IPv4) and one ICMPv6 raw socket (IPv6) per call,
// bound to the link.
func NewAnnouncer(log hclog.Logger) Announcer {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &rawAnnouncer{log: log}
}

type rawAnnouncer struct{ log hclog.Logger }

// Announce sends one announcement per address, from the link's hardware
// address; every address is tried, and the error names each that failed.
func (r *rawAnnouncer) Announce(link string, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	ifi, err := net.InterfaceByName(link)
	if err != nil {
		return fmt.Errorf("announcing %v on %s: %w", addrs, link, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("announcing %v on %s: the link has no Ethernet address (%q)", addrs, link, ifi.HardwareAddr)
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var errs []error
	if len(v4) > 0 {
		errs = append(errs, sendGARP(ifi, v4))
	}
	if len(v6) > 0 {
		errs = append(errs, sendNA(ifi, v6))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.log.Debug("announced", "link", link, "addrs", addrs)
	return nil
}

// sendGARP broadcasts a gratuitous ARP request (sender and target the
// address) per address: Linux updates an entry it has with it even within
// locktime, and so do switches and routers.
func sendGARP(ifi *net.Interface, addrs []netip.Addr) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: receives nothing
	if err != nil {
		return fmt.Errorf("announcing %v on %s: opening a packet socket: %w", addrs, ifi.Name, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("announcing %v on %s: binding a packet socket: %w", addrs, ifi.Name, err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], broadcastMAC)
	var errs []error
	for _, a := range addrs {
		if err := unix.Sendto(fd, garpFrame(ifi.HardwareAddr, a), 0, to); err != nil {
			errs = append(errs, fmt.Errorf("sending gratuitous arp for %s on %s: %w", a, ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garpFrame is an Ethernet broadcast of an ARP request for ip from mac,
// padded to the minimum frame.
func garpFrame(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 0, 60)
	b = append(b, broadcastMAC...)
	b = append(b, mac...)
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_ARP)
	b = binary.BigEndian.AppendUint16(b, 1)      // hardware: Ethernet
	b = binary.BigEndian.AppendUint16(b, 0x0800) // protocol: IPv4
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, 1) // request
	ip4 := ip.As4()
	b = append(b, mac...)
	b = append(b, ip4[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0) // target hardware: unknown
	b = append(b, ip4[:]...)
	return b[:60]
}

// allNodes is ff02::1, where unsolicited advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// sendNA sends an unsolicited neighbour advertisement (override set,
// solicited clear, the target link-layer address option) per address to
// all nodes. The kernel fills in the ICMPv6 checksum of a raw ICMPv6
// socket; the hop limit must be 255 or receivers drop it.
func sendNA(ifi *net.Interface, addrs []netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("announcing %v on %s: opening an icmpv6 socket: %w", addrs, ifi.Name, err)
	}
	defer unix.Close(fd)
	// Nothing to receive: filter out every ICMPv6 type.
	var filter unix.ICMPv6Filter
	for i := range filter.Data {
		filter.Data[i] = ^uint32(0)
	}
	for _, o := range []struct {
		name string
		set  func() error
	}{
		{"SO_BINDTODEVICE", func() error { return unix.BindToDevice(fd, ifi.Name) }},
		{"IPV6_MULTICAST_IF", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index) }},
		{"IPV6_MULTICAST_HOPS", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255) }},
		{"IPV6_MULTICAST_LOOP", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0) }},
		{"ICMP6_FILTER", func() error { return unix.SetsockoptICMPv6Filter(fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &filter) }},
	} {
		if err := o.set(); err != nil {
			return fmt.Errorf("announcing %v on %s: setting %s: %w", addrs, ifi.Name, o.name, err)
		}
	}
	to := &unix.SockaddrInet6{Addr: allNodes.As16(), ZoneId: uint32(ifi.Index)}
	var errs []error
	for _, a := range addrs {
		if err := unix.Sendto(fd, naMessage(ifi.HardwareAddr, a), 0, to); err != nil {
			errs = append(errs, fmt.Errorf("sending a neighbour advertisement for %s on %s: %w", a, ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

// naMessage is an ICMPv6 neighbour advertisement of target at mac, its
// checksum left for the kernel.
func naMessage(mac net.HardwareAddr, target netip.Addr) []byte {
	const (
		typeNA         = 136
		flagOverride   = 0x20
		optTargetLLA   = 2
		optLenIn8Bytes = 1
	)
	b := make([]byte, 0, 32)
	b = append(b, typeNA, 0, 0, 0) // type, code, checksum
	b = append(b, flagOverride, 0, 0, 0)
	t := target.As16()
	b = append(b, t[:]...)
	b = append(b, optTargetLLA, optLenIn8Bytes)
	return append(b, mac...)
}
