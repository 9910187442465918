package importer

// The firewall-mark services of both tools: ldirectord's virtual = N
// (protocol = fwm) and keepalived's virtual_server fwmark N. Neither
// config names the VIPs the operator's rule marks, and lvs-sync keeps each
// packet's port on every real of a mark: each is a note.

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// mark reads a firewall-mark virtual = N: isMark when the spec is a
// number, mark 0 when it is one the kernel cannot have (reported).
func (p *ldParser) mark(v *ldVirtual) (mark uint32, isMark bool) {
	if !ldNumberRe.MatchString(v.spec) || strings.ContainsAny(v.spec, ".:") {
		return 0, false
	}
	n, err := strconv.ParseUint(v.spec, 10, 32)
	if err != nil || n == 0 {
		p.errorf(v.line, "virtual = %s: a firewall mark is 1 to 4294967295", v.spec)
		return 0, true
	}
	p.addf(v.line, "virtual = %s is a firewall-mark service: the VIPs its rule marks are not in ldirectord.cf; "+
		"list them in vips for lvs-sync to put them on (vip_interface or ha); its reals keep each packet's port", v.spec)
	return uint32(n), true
}

// kaMark imports "virtual_server fwmark N": an IPv4 firewall-mark service,
// without protocol, whose reals and sorry server keep each packet's port.
func (p *kaParser) kaMark(n *kaNode) []*Service {
	m, err := strconv.ParseUint(n.arg(1), 10, 32)
	if err != nil || m == 0 {
		p.errorf(n.line, "virtual_server fwmark %q: a firewall mark is 1 to 4294967295", n.arg(1))
		return nil
	}
	p.addf(n.line, "virtual_server fwmark %d is a firewall-mark service: the VIPs its rule marks are not in keepalived.conf; "+
		"list them in vips for lvs-sync to put them on (vip_interface or ha); its reals keep each packet's port", m)
	s := p.kaService(n, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	s.FWMark, s.Protocol = uint32(m), 0
	s.Name = markName("", s.FWMark)
	if s.Fallback.IsValid() {
		s.Fallback = netip.AddrPortFrom(s.Fallback.Addr(), 0)
	}
	for _, r := range s.Reals {
		if s.Forward == lvs.Masq && r.Addr.Port() != 0 {
			p.addf(r.Pos.Line, "real_server %s: keepalived sends every marked port to port %d with NAT; lvs-sync keeps each packet's port, %d is its checks'",
				r.Addr, r.Addr.Port(), r.Addr.Port())
		}
	}
	return []*Service{s}
}

// markName is the name of the firewall-mark service of mark.
func markName(given string, mark uint32) string {
	if n := sanitize(given); n != "" {
		return n
	}
	return fmt.Sprintf("fwmark-%d", mark)
}
