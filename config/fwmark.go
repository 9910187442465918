package config

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/hashicorp/hcl/v2"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// What a virtual service balances: an address (protocol://IP:PORT) or a
// firewall mark (ipvsadm -f). A firewall-mark service matches the packets
// the operator's own nftables or iptables rules mark; its VIPs, which the
// mark does not name, are listed in vips so that vip_interface and ha
// still put them on the director.

// maxMark is the largest mark the kernel's u32 can hold.
const maxMark = 1<<32 - 1

// checkMarkVIPs asks for the vips of every firewall-mark service when the
// director puts VIPs on (vip_interface, ha): a mark names no address, so
// without them its VIPs would be missing. Without either, the VIPs are the
// operator's, as they are for ldirectord, and vips may be left out.
func checkMarkVIPs(cfg *Config) hcl.Diagnostics {
	if cfg.Director.VIPInterface == "" && cfg.Director.HA == nil {
		return nil
	}
	var diags hcl.Diagnostics
	for _, vs := range cfg.VirtualServices {
		if vs.FWMark != 0 && len(vs.VIPs) == 0 {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing VIPs",
				Detail: fmt.Sprintf("virtual_service %q: vips: the director puts the VIPs on (vip_interface or ha) and a mark names none: "+
					"list the addresses its rule marks packets to", vs.Name),
				Subject: vs.DeclRange.Ptr()})
		}
	}
	return diags
}

// decodeTarget decodes address and protocol, or fwmark, family and vips.
func decodeTarget(vs *VirtualService, rv *rawVS, at attrs) hcl.Diagnostics {
	switch {
	case rv.Address != nil && rv.FWMark != nil:
		return hcl.Diagnostics{at.errorf("fwmark", "Address and firewall mark",
			"a virtual service is an address or a firewall mark, not both: leave address or fwmark out")}
	case rv.Address == nil && rv.FWMark == nil:
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Missing required argument",
			Detail:  fmt.Sprintf("virtual_service %q needs address (IP:PORT) or fwmark (a firewall mark).", rv.Name),
			Subject: rv.Body.MissingItemRange().Ptr()}}
	case rv.FWMark != nil:
		return decodeMark(vs, rv, at)
	}
	var diags hcl.Diagnostics
	for _, f := range []struct {
		name  string
		given bool
	}{{"family", rv.Family != nil}, {"vips", rv.VIPs != nil}} {
		if f.given {
			diags = append(diags, at.errorf(f.name, "Only for a firewall mark",
				"%s is for fwmark services; the VIP of an address service is its address", f.name))
		}
	}
	proto := DefaultProtocol
	if rv.Protocol != nil {
		proto = *rv.Protocol
	}
	var err error
	if vs.Protocol, err = lvs.ParseProtocol(proto); err != nil {
		diags = append(diags, at.errorf("protocol", "Invalid protocol", "%s", err))
	}
	if vs.Address, err = parseAddrPort(*rv.Address); err != nil {
		diags = append(diags, at.errorf("address", "Invalid address", "%s", err))
	}
	return diags
}

// decodeMark decodes a firewall-mark service: Protocol stays 0 (a mark
// covers whatever the rule marks) and Address is the family's unspecified
// address with port 0, as lvs.ServiceKey carries a mark's family.
func decodeMark(vs *VirtualService, rv *rawVS, at attrs) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if *rv.FWMark < 1 || *rv.FWMark > maxMark {
		diags = append(diags, at.errorf("fwmark", "Invalid firewall mark", "%d: want 1 to %d", *rv.FWMark, maxMark))
	}
	if rv.Protocol != nil {
		diags = append(diags, at.errorf("protocol", "Protocol with a firewall mark",
			"a fwmark service takes every packet the rule marks, whatever its protocol; leave protocol out"))
	}
	family, ok := netip.IPv4Unspecified(), true
	if rv.Family != nil {
		switch *rv.Family {
		case "ipv4":
		case "ipv6":
			family = netip.IPv6Unspecified()
		default:
			diags = append(diags, at.errorf("family", "Invalid address family", "%q: want \"ipv4\" or \"ipv6\"", *rv.Family))
			ok = false
		}
	}
	vips := make([]netip.Addr, 0, len(rv.VIPs))
	for _, s := range rv.VIPs {
		a, err := parseVIP(s)
		switch {
		case err != nil:
			diags = append(diags, at.errorf("vips", "Invalid VIP", "%s", err))
		case ok && a.Is6() != family.Is6():
			diags = append(diags, at.errorf("vips", "Mixed address families",
				"%s is not of the family %s; a fwmark service is of one family", a, familyName(family)))
		case slices.Contains(vips, a):
			diags = append(diags, at.errorf("vips", "Duplicate VIP", "%s is listed twice", a))
		default:
			vips = append(vips, a)
		}
	}
	if diags.HasErrors() {
		return diags
	}
	vs.FWMark, vs.VIPs = uint32(*rv.FWMark), vips
	vs.Address = netip.AddrPortFrom(family, 0)
	return diags
}

// parseVIP parses one of vips, or a fwmark service's fallback: a unicast
// address without a zone.
func parseVIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%q: an address with a zone cannot be balanced", s)
	case a.IsUnspecified(), a.IsMulticast():
		return netip.Addr{}, fmt.Errorf("%q: must be a unicast address", s)
	}
	return a, nil
}

func familyName(a netip.Addr) string {
	if a.Is6() {
		return "ipv6"
	}
	return "ipv4"
}

// decodeMarkFallback decodes a firewall-mark service's fallback. Its reals
// keep each packet's destination port (port 0), so a remote fallback is an
// address alone. The local maintenance page cannot be one: it listens on
// one VIP:port, and a mark covers ports the page does not know.
func decodeMarkFallback(vs *VirtualService, s string, at attrs) hcl.Diagnostics {
	if s == "local" {
		return hcl.Diagnostics{at.errorf("fallback", "Local fallback with a firewall mark",
			"the local maintenance page listens on one VIP:port and a fwmark service has no port; give a fallback server's address")}
	}
	a, err := parseVIP(s)
	if err != nil {
		return hcl.Diagnostics{at.errorf("fallback", "Invalid fallback",
			"a fwmark service's fallback is an IP address alone, as its reals keep each packet's port: %s", err)}
	}
	if a.Is6() != vs.Address.Addr().Is6() {
		return hcl.Diagnostics{at.errorf("fallback", "Mixed address families",
			"fallback %s is not of the family %s of the fwmark service", a, familyName(vs.Address.Addr()))}
	}
	vs.Fallback = Fallback{Addr: netip.AddrPortFrom(a, 0)}
	return nil
}
