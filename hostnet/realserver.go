package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// RealServer configures this host as a real server of gate (direct
// routing) or ipip VIPs: the chore every ldirectord article does by hand.
//
//   - gate: each VIP on lo. ipip: each IPv4 VIP on tunl0 (the ipip
//     module's fallback tunnel, which decapsulates what the director
//     sends), each IPv6 VIP on ip6tnl0 (ip6_tunnel's, for the IPv6-in-IPv6
//     the director's tunnel method sends to an IPv6 real).
//   - for a link with an IPv4 VIP, arp_ignore=1 and arp_announce=2 (all,
//     and the link): the host must not answer ARP for the VIP nor use it
//     as an ARP source, or it would steal the VIP from the director — the
//     ARP problem. IPv6 has none: the kernel answers a neighbour
//     solicitation only for an address of the link it came in on, and the
//     VIP is on lo or the tunnel, not on the real's network link.
//   - ipip: rp_filter=0 on all and tunl0, since decapsulated packets come
//     from clients that are routed through another interface. IPv6 has no
//     rp_filter.
type RealServer struct {
	nl  Netlink
	sys Sysctl
	log hclog.Logger
}

// NewRealServer drives the host through nl (Default() when nil) and sys
// (ProcSys{} when nil), logging to log (none when nil).
func NewRealServer(nl Netlink, sys Sysctl, log hclog.Logger) *RealServer {
	if nl == nil {
		nl = Default()
	}
	if sys == nil {
		sys = ProcSys{}
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &RealServer{nl: nl, sys: sys, log: log}
}

// rsLink is a link a forwarding method's VIPs go on, with those VIPs.
type rsLink struct {
	name   string
	mk     func() netlink.Link // how to make it if it is missing; nil: it always exists
	module string              // the module that makes it, for an error
	vips   []netip.Addr
	has4   bool // some VIP is IPv4: the link needs the ARP sysctls
}

// realServerLinks are the links a forwarding method's VIPs go on.
func realServerLinks(vips []netip.Addr, mode lvs.Forward) ([]rsLink, error) {
	has4 := func(vips []netip.Addr) bool { return slices.ContainsFunc(vips, netip.Addr.Is4) }
	switch mode {
	case lvs.Route:
		return []rsLink{{name: "lo", vips: vips, has4: has4(vips)}}, nil
	case lvs.Tunnel:
		var v4, v6 []netip.Addr
		for _, a := range vips {
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
		var out []rsLink
		if len(v4) > 0 {
			out = append(out, rsLink{name: "tunl0", module: "ipip", vips: v4, has4: true,
				mk: func() netlink.Link { return &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tunl0"}} }})
		}
		if len(v6) > 0 {
			out = append(out, rsLink{name: "ip6tnl0", module: "ip6_tunnel", vips: v6,
				mk: func() netlink.Link { return &netlink.Ip6tnl{LinkAttrs: netlink.LinkAttrs{Name: "ip6tnl0"}} }})
		}
		return out, nil
	default:
		return nil, fmt.Errorf("real servers need gate or ipip, not %s (masq needs nothing on the real server but a route back through the director)", mode)
	}
}

// Setup puts the VIPs on the mode's links, creating and upping them as
// need be, and sets the sysctls that have another value. It is
// idempotent: run again, it changes (and logs) nothing.
func (r *RealServer) Setup(vips []netip.Addr, mode lvs.Forward) error {
	rls, err := realServerLinks(vips, mode)
	if err != nil {
		return err
	}
	links := make([]netlink.Link, len(rls))
	for i, rl := range rls {
		if links[i], err = ensureLink(r.nl, rl.name, rl.mk, r.log); err != nil {
			if rl.module != "" {
				err = fmt.Errorf("%w (is the %s module loaded? modprobe %s)", err, rl.module, rl.module)
			}
			return err
		}
	}
	// After the links: their conf directories appear with them.
	var sysctls [][2]string
	for _, rl := range rls {
		if !rl.has4 {
			continue
		}
		sysctls = append(sysctls,
			[2]string{"net/ipv4/conf/all/arp_ignore", "1"},
			[2]string{"net/ipv4/conf/all/arp_announce", "2"},
			[2]string{"net/ipv4/conf/" + rl.name + "/arp_ignore", "1"},
			[2]string{"net/ipv4/conf/" + rl.name + "/arp_announce", "2"})
		if mode == lvs.Tunnel {
			sysctls = append(sysctls,
				[2]string{"net/ipv4/conf/all/rp_filter", "0"},
				[2]string{"net/ipv4/conf/" + rl.name + "/rp_filter", "0"})
		}
	}
	for _, s := range sysctls {
		changed, err := setSysctl(r.sys, s[0], s[1])
		if err != nil {
			return err
		}
		if changed {
			r.log.Info("set sysctl", "key", s[0], "value", s[1])
		}
	}
	var errs []error
	for i, rl := range rls {
		for _, a := range rl.vips {
			added, err := addHostAddr(r.nl, links[i], a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if added {
				r.log.Info("added vip", "link", rl.name, "vip", a)
			}
		}
	}
	return errors.Join(errs...)
}

// Remove takes the VIPs off the mode's links; the sysctls stay. A VIP that
// is not there, or a tunnel link that does not exist, is no error.
func (r *RealServer) Remove(vips []netip.Addr, mode lvs.Forward) error {
	rls, err := realServerLinks(vips, mode)
	if err != nil {
		return err
	}
	var errs []error
	for _, rl := range rls {
		link, err := r.nl.LinkByName(rl.name)
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("finding link %s: %w", rl.name, err))
			continue
		}
		for _, a := range rl.vips {
			removed, err := delHostAddr(r.nl, link, a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if removed {
				r.log.Info("removed vip", "link", rl.name, "vip", a)
			}
		}
	}
	return errors.Join(errs...)
}
