package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VIPLink keeps the director's VIPs on a dummy link that lvs-sync owns.
type VIPLink struct {
	name string
	nl   Netlink
	log  hclog.Logger
}

// NewVIPLink drives the link called name through nl (Default() when nil),
// logging to log (none when nil).
func NewVIPLink(name string, nl Netlink, log hclog.Logger) *VIPLink {
	if nl == nil {
		nl = Default()
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &VIPLink{name: name, nl: nl, log: log}
}

// Name is the link's name.
func (v *VIPLink) Name() string { return v.name }

// Sync makes the link exist and be up, adds every wanted VIP as a host
// address (/32, /128), and removes the VIPs on it that owned says were
// lvs-sync's and are no longer wanted. Every other address is left alone.
func (v *VIPLink) Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	link, err := ensureLink(v.nl, v.name, func() netlink.Link {
		return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: v.name}}
	}, v.log)
	if err != nil {
		return nil, nil, err
	}
	return syncHostAddrs(v.nl, link, want, owned, 0, v.log)
}

// Addrs lists the host addresses on the link, sorted; none if it does not
// exist.
func (v *VIPLink) Addrs() ([]netip.Addr, error) { return linkHostAddrs(v.nl, v.name) }

// syncHostAddrs adds every wanted address to link as a host address and
// removes those on it that owned says were lvs-sync's and are not wanted;
// every other address is left alone. With a lifetime, every wanted
// address is (re)set to expire that long from now; 0 is forever.
func syncHostAddrs(nl Netlink, link netlink.Link, want []netip.Addr, owned func(netip.Addr) bool, lifetime time.Duration, log hclog.Logger) (added, removed []netip.Addr, err error) {
	name := link.Attrs().Name
	have, err := hostAddrs(nl, link)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, a := range want {
		switch {
		case lifetime > 0:
			if err := setHostAddr(nl, link, a, lifetime); err != nil {
				errs = append(errs, err)
				continue
			}
		case have[a]:
			continue
		default:
			if _, err := addHostAddr(nl, link, a); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if !have[a] {
			log.Info("added vip", "link", name, "vip", a, "lifetime", lifetime)
			added = append(added, a)
		}
	}
	for a := range have {
		if slices.Contains(want, a) || owned == nil || !owned(a) {
			continue
		}
		// One gone meanwhile (EADDRNOTAVAIL) is removed all the same.
		if _, err := delHostAddr(nl, link, a); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("removed vip", "link", name, "vip", a)
		removed = append(removed, a)
	}
	slices.SortFunc(removed, netip.Addr.Compare)
	return added, removed, errors.Join(errs...)
}

// linkHostAddrs lists the host addresses on the named link, sorted; none
// if it does not exist.
func linkHostAddrs(nl Netlink, name string) ([]netip.Addr, error) {
	link, err := nl.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding link %s: %w", name, err)
	}
	have, err := hostAddrs(nl, link)
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

// ensureLink finds a link by name, creating it with mk when missing (and
// mk is not nil), and sets it up.
func ensureLink(nl Netlink, name string, mk func() netlink.Link, log hclog.Logger) (netlink.Link, error) {
	link, err := nl.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) && mk != nil {
		if err := nl.LinkAdd(mk()); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating link %s: %w", name, err)
		}
		log.Info("created link", "link", name)
		link, err = nl.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("finding link %s: %w", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := nl.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("setting link %s up: %w", name, err)
		}
	}
	return link, nil
}

// dumpTries is how often an address dump the kernel marked interrupted is
// asked for, in all.
const dumpTries = 5

// hostAddrs returns the link's addresses with a full-length prefix.
func hostAddrs(nl Netlink, link netlink.Link) (map[netip.Addr]bool, error) {
	// A dump the kernel saw change midway (an address settling) is marked
	// interrupted and must be asked again.
	addrs, err := nl.AddrList(link, netlink.FAMILY_ALL)
	for try := 1; errors.Is(err, netlink.ErrDumpInterrupted) && try < dumpTries; try++ {
		addrs, err = nl.AddrList(link, netlink.FAMILY_ALL)
	}
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	have := map[netip.Addr]bool{}
	for _, a := range addrs {
		ones, bits := a.Mask.Size()
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && bits != 0 && ones == bits {
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
func addHostAddr(nl Netlink, link netlink.Link, a netip.Addr) (added bool, err error) {
	err = nl.AddrAdd(link, hostAddr(a))
	switch {
	case errors.Is(err, unix.EEXIST):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("adding vip %s to %s: %w", a, link.Attrs().Name, err)
	}
	return true, nil
}

// setHostAddr adds a host address, or replaces it, to expire after
// lifetime: valid and preferred, in whole seconds (at least one).
func setHostAddr(nl Netlink, link netlink.Link, a netip.Addr, lifetime time.Duration) error {
	addr := hostAddr(a)
	secs := int((lifetime + time.Second - 1) / time.Second)
	addr.ValidLft, addr.PreferedLft = secs, secs
	if err := nl.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("setting vip %s on %s for %ds: %w", a, link.Attrs().Name, secs, err)
	}
	return nil
}

// delHostAddr removes a host address; removed is false if it was not
// there.
func delHostAddr(nl Netlink, link netlink.Link, a netip.Addr) (removed bool, err error) {
	err = nl.AddrDel(link, hostAddr(a))
	switch {
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("removing vip %s from %s: %w", a, link.Attrs().Name, err)
	}
	return true, nil
}
