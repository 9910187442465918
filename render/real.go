package render

import (
	"fmt"
	"net/netip"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/config"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// realOf is the real server an instance is, or why it cannot be one: in
// a warning's words and in explain's shorter ones. An address no real
// server can have is left out here, not sent to the kernel: the kernel
// refuses some (multicast, broadcast, unspecified: EINVAL), and the others
// (loopback, link-local, zoned) mean this host or a link, not a server.
//
// An instance whose address is not of the virtual address's IP family is
// at its tagged address of that family, if it has one: lan_ipv6, then
// wan_ipv6, for an IPv6 virtual address; lan_ipv4, then wan_ipv4, for an
// IPv4 one. So one service backs an IPv4 and an IPv6 virtual service.
// The tagged address's port, if it has one, is the masq real's port.
//
// warn is not empty for a real server that is one all the same but will
// likely not answer: a gate or ipip instance whose port is not the
// virtual port. The kernel cannot translate ports there, so the real gets
// the traffic on the virtual port, where the instance does not say it
// listens. An instance with no port (0), as gate real servers are often
// registered, is not warned about.
func realOf(vs *config.VirtualService, in *catalog.Instance) (rk lvs.RealKey, why, short, warn string) {
	addr, err := netip.ParseAddr(in.Address)
	if err != nil {
		why = fmt.Sprintf("address %q is not an IP address", in.Address)
		return rk, why, why, ""
	}
	if addr.Zone() != "" {
		why = fmt.Sprintf("address %s has a zone: a real server's address cannot", addr)
		return rk, why, why, ""
	}
	addr, instPort, of := addr.Unmap(), in.Port, ""
	if want4 := vs.Address.Addr().Is4(); addr.Is4() != want4 {
		tag, ta, ok := taggedOf(in, want4)
		if !ok {
			return rk, fmt.Sprintf("address %s is not of the IP family of the virtual address %s", addr, vs.VirtualName()),
				fmt.Sprintf("address %s is not of the family of %s", addr, vs.VirtualName()), ""
		}
		of = fmt.Sprintf(" (tagged address %s)", tag)
		if addr, err = netip.ParseAddr(ta.Address); err != nil || addr.Zone() != "" || addr.Unmap().Is4() != want4 {
			family := "IPv6"
			if want4 {
				family = "IPv4"
			}
			why = fmt.Sprintf("tagged address %s %q is not an %s address without a zone", tag, ta.Address, family)
			return rk, why, why, ""
		}
		addr = addr.Unmap()
		if ta.Port != 0 {
			instPort = ta.Port
		}
	}
	if kind := unusable(addr); kind != "" {
		why = fmt.Sprintf("address %s%s is %s: it cannot be a real server's", addr, of, kind)
		return rk, why, why, ""
	}
	// A firewall-mark service's reals have port 0, every method: the
	// kernel keeps each packet's destination port, as a mark covers many.
	port := vs.Address.Port()
	if vs.Forwarding.TranslatesPort() && vs.FWMark == 0 {
		if instPort < 1 || instPort > 65535 {
			why = fmt.Sprintf("port %d%s cannot be a real server's port", instPort, of)
			return rk, why, why, ""
		}
		port = uint16(instPort)
	} else if vs.FWMark == 0 && instPort != 0 && instPort != int(port) {
		warn = fmt.Sprintf("port %d%s is not the virtual port %d: %s cannot translate ports, so the real server gets the traffic on %d",
			instPort, of, port, vs.Forwarding, port)
	}
	return lvs.RealKey{Addr: addr, Port: port}, "", "", warn
}

// taggedOf is the instance's first tagged address of a family, in
// realOf's order, and its tag.
func taggedOf(in *catalog.Instance, is4 bool) (string, catalog.TaggedAddress, bool) {
	tags := [2]string{catalog.LANIPv6, catalog.WANIPv6}
	if is4 {
		tags = [2]string{catalog.LANIPv4, catalog.WANIPv4}
	}
	for _, tag := range tags {
		if ta, ok := in.TaggedAddresses[tag]; ok && ta.Address != "" {
			return tag, ta, true
		}
	}
	return "", catalog.TaggedAddress{}, false
}

// unusable names the kind of an address that cannot be a real server's,
// or is "" for one that can.
func unusable(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast():
		return "multicast"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsLoopback():
		return "loopback"
	}
	return ""
}
