package hostnet

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// RealServer configures this host as a real server of gate (direct
// routing) or ipip VIPs: the chore every ldirectord article does by hand.
//
//   - gate: each VIP on lo. ipip: each VIP on tunl0 (the ipip module's
//     fallback tunnel, which decapsulates what the director sends).
//   - arp_ignore=1 and arp_announce=2 (all, and the VIP's link): the host
//     must not answer ARP for the VIP nor use it as an ARP source, or it
//     would steal the VIP from the director — the ARP problem.
//   - ipip: rp_filter=0 on all and tunl0, since decapsulated packets come
//     from clients that are routed through another interface.
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

// realServerLink is the link a forwarding method's VIPs go on, and how to
// make it if it is missing (nil: it always exists).
func realServerLink(vips []netip.Addr, mode lvs.Forward) (string, func() netlink.Link, error) {
	switch mode {
	case lvs.Route:
		return "lo", nil, nil
	case lvs.Tunnel:
		for _, a := range vips {
			if a.Is6() {
				return "", nil, fmt.Errorf("vip %s: ipip real servers take IPv4 VIPs only", a)
			}
		}
		return "tunl0", func() netlink.Link { return &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tunl0"}} }, nil
	default:
		return "", nil, fmt.Errorf("real servers need gate or ipip, not %s (masq needs nothing on the real server but a route back through the director)", mode)
	}
}

// Setup puts the VIPs on the mode's link, creating and upping it as need
// be, and sets the sysctls that have another value. It is idempotent: run
// again, it changes (and logs) nothing.
func (r *RealServer) Setup(vips []netip.Addr, mode lvs.Forward) error {
	name, mk, err := realServerLink(vips, mode)
	if err != nil {
		return err
	}
	link, err := ensureLink(r.nl, name, mk, r.log)
	if err != nil {
		if mode == lvs.Tunnel {
			err = fmt.Errorf("%w (is the ipip module loaded? modprobe ipip)", err)
		}
		return err
	}
	// After the link: its conf directory appears with it.
	sysctls := [][2]string{
		{"net/ipv4/conf/all/arp_ignore", "1"},
		{"net/ipv4/conf/all/arp_announce", "2"},
		{"net/ipv4/conf/" + name + "/arp_ignore", "1"},
		{"net/ipv4/conf/" + name + "/arp_announce", "2"},
	}
	if mode == lvs.Tunnel {
		sysctls = append(sysctls,
			[2]string{"net/ipv4/conf/all/rp_filter", "0"},
			[2]string{"net/ipv4/conf/" + name + "/rp_filter", "0"})
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
	for _, a := range vips {
		added, err := addHostAddr(r.nl, link, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if added {
			r.log.Info("added vip", "link", name, "vip", a)
		}
	}
	return errors.Join(errs...)
}

// Remove takes the VIPs off the mode's link; the sysctls stay. A VIP that
// is not there, or a tunl0 that does not exist, is no error.
func (r *RealServer) Remove(vips []netip.Addr, mode lvs.Forward) error {
	name, _, err := realServerLink(vips, mode)
	if err != nil {
		return err
	}
	link, err := r.nl.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	var errs []error
	for _, a := range vips {
		removed, err := delHostAddr(r.nl, link, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if removed {
			r.log.Info("removed vip", "link", name, "vip", a)
		}
	}
	return errors.Join(errs...)
}
