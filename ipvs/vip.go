package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// VIPLink keeps the VIPs on a dummy link that lvs-sync owns.
type VIPLink struct {
	Name string
	Log  hclog.Logger
}

// Sync makes the link exist and be up, adds every wanted VIP as a host
// address (/32, /128), and removes the VIPs on it that owned says were
// lvs-sync's and are no longer wanted. Every other address is left alone.
func (v *VIPLink) Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	log := v.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	link, err := ensureLink(v.Name, func() netlink.Link {
		return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: v.Name}}
	}, log)
	if err != nil {
		return nil, nil, err
	}
	have, err := hostAddrs(link)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, a := range want {
		if have[a] {
			continue
		}
		if _, err := addHostAddr(link, a); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("added vip", "link", v.Name, "vip", a)
		added = append(added, a)
	}
	for a := range have {
		if slices.Contains(want, a) || owned == nil || !owned(a) {
			continue
		}
		if err := netlink.AddrDel(link, hostAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("removing vip %s from %s: %w", a, v.Name, err))
			continue
		}
		log.Info("removed vip", "link", v.Name, "vip", a)
		removed = append(removed, a)
	}
	slices.SortFunc(removed, netip.Addr.Compare)
	return added, removed, errors.Join(errs...)
}

// Addrs lists the host addresses on the link; none if it does not exist.
func (v *VIPLink) Addrs() ([]netip.Addr, error) {
	link, err := netlink.LinkByName(v.Name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding link %s: %w", v.Name, err)
	}
	have, err := hostAddrs(link)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(have))
	for a := range have {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, nil
}

// ensureLink finds a link by name, creating it with mk when missing, and
// sets it up.
func ensureLink(name string, mk func() netlink.Link, log hclog.Logger) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) && mk != nil {
		if err := netlink.LinkAdd(mk()); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating link %s: %w", name, err)
		}
		log.Info("created link", "link", name)
		link, err = netlink.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("finding link %s: %w", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("setting link %s up: %w", name, err)
		}
	}
	return link, nil
}

// hostAddrs returns the link's addresses with a full-length prefix.
func hostAddrs(link netlink.Link) (map[netip.Addr]bool, error) {
	// A dump the kernel saw change midway (an address settling) is marked
	// interrupted and must be asked again.
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		addrs, err = netlink.AddrList(link, netlink.FAMILY_ALL)
	}
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	have := map[netip.Addr]bool{}
	for _, a := range addrs {
		ones, bits := a.Mask.Size()
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && ones == bits {
			have[ip.Unmap()] = true
		}
	}
	return have, nil
}

func hostAddr(a netip.Addr) *netlink.Addr {
	bits := a.BitLen()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, bits)}}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection wait
	}
	return addr
}

// addHostAddr adds a host address; added is false if it was there.
func addHostAddr(link netlink.Link, a netip.Addr) (added bool, err error) {
	err = netlink.AddrAdd(link, hostAddr(a))
	switch {
	case errors.Is(err, unix.EEXIST):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("adding %s to %s: %w", a, link.Attrs().Name, err)
	}
	return true, nil
}

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
//
// With remove, the VIPs are taken off again; the sysctls stay.
func RealServer(vips []netip.Addr, mode lvs.Forward, remove bool, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var name string
	var mk func() netlink.Link
	switch mode {
	case lvs.Route:
		name = "lo"
	case lvs.Tunnel:
		name = "tunl0"
		mk = func() netlink.Link { return &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tunl0"}} }
		for _, a := range vips {
			if a.Is6() {
				return fmt.Errorf("vip %s: ipip real servers take IPv4 VIPs only", a)
			}
		}
	default:
		return fmt.Errorf("real servers need gate or ipip, not %s (masq needs nothing on the real server but a route back through the director)", mode)
	}
	link, err := ensureLink(name, mk, log)
	if err != nil {
		if mode == lvs.Tunnel {
			err = fmt.Errorf("%w (is the ipip module loaded? modprobe ipip)", err)
		}
		return err
	}
	if !remove {
		sysctls := [][2]string{
			{"net/ipv4/conf/all/arp_ignore", "1"},
			{"net/ipv4/conf/all/arp_announce", "2"},
			{"net/ipv4/conf/" + name + "/arp_ignore", "1"},
			{"net/ipv4/conf/" + name + "/arp_announce", "2"},
		}
		if mode == lvs.Tunnel {
			sysctls = append(sysctls,
				[2]string{"net/ipv4/conf/all/rp_filter", "0"},
				[2]string{"net/ipv4/conf/tunl0/rp_filter", "0"})
		}
		for _, s := range sysctls {
			changed, err := writeSysctl(s[0], s[1])
			if err != nil {
				return err
			}
			if changed {
				log.Info("set sysctl", "key", s[0], "value", s[1])
			}
		}
	}
	for _, a := range vips {
		if remove {
			if err := netlink.AddrDel(link, hostAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("removing vip %s from %s: %w", a, name, err)
			}
			log.Info("removed vip", "link", name, "vip", a)
			continue
		}
		added, err := addHostAddr(link, a)
		if err != nil {
			return err
		}
		if added {
			log.Info("added vip", "link", name, "vip", a)
		}
	}
	return nil
}

// writeSysctl sets a sysctl; changed is false if it had that value.
func writeSysctl(key, value string) (changed bool, err error) {
	p := filepath.Join("/proc/sys", key)
	if old, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(old)) == value {
		return false, nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("setting %s=%s: %w", key, value, err)
	}
	return true, nil
}
