package hostnet

// STUB for branch h/ha-core only: the minimal Announcer, AddrSet and
// Carrier that the ha wiring needs to compile and run. The real ones are
// built by helper ha-kernel (raw-socket announcements, tested in the VM);
// the lead replaces this whole file with theirs at merge.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Announcer sends gratuitous ARP (IPv4) and unsolicited neighbour
// advertisements (IPv6) for addresses on a link.
type Announcer interface {
	Announce(link string, addrs []netip.Addr) error
}

// NewAnnouncer is a stub that announces nothing and says so once.
func NewAnnouncer(log hclog.Logger) Announcer { return &stubAnnouncer{log: log} }

type stubAnnouncer struct {
	log  hclog.Logger
	once sync.Once
}

func (s *stubAnnouncer) Announce(link string, addrs []netip.Addr) error {
	s.once.Do(func() {
		s.log.Warn("announcing is not in this build; neighbours learn the vips when their entries expire", "link", link)
	})
	return nil
}

// AddrSet keeps host addresses on an existing link (eth0 or lo), never
// creating the link.
type AddrSet struct {
	link string
	nl   Netlink
	log  hclog.Logger
}

// NewAddrSet drives link through nl (Default() when nil).
func NewAddrSet(link string, nl Netlink, log hclog.Logger) *AddrSet {
	if nl == nil {
		nl = Default()
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &AddrSet{link: link, nl: nl, log: log}
}

// Sync adds every wanted address as a host address and removes those on
// the link that owned says are lvs-sync's and are not wanted.
func (a *AddrSet) Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	link, err := ensureLink(a.nl, a.link, nil, a.log)
	if err != nil {
		return nil, nil, err
	}
	have, err := hostAddrs(a.nl, link)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, v := range want {
		if have[v] {
			continue
		}
		if ok, err := addHostAddr(a.nl, link, v); err != nil {
			errs = append(errs, err)
		} else if ok {
			a.log.Info("added vip", "link", a.link, "vip", v)
			added = append(added, v)
		}
	}
	for v := range have {
		if slices.Contains(want, v) || owned == nil || !owned(v) {
			continue
		}
		if ok, err := delHostAddr(a.nl, link, v); err != nil {
			errs = append(errs, err)
		} else if ok {
			a.log.Info("removed vip", "link", a.link, "vip", v)
			removed = append(removed, v)
		}
	}
	return added, removed, errors.Join(errs...)
}

// Carrier reports whether the link has carrier (IFF_LOWER_UP).
func Carrier(link string) (bool, error) {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return false, fmt.Errorf("finding link %s: %w", link, err)
	}
	return l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, nil
}
