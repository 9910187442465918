package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddrSet keeps host addresses (/32, /128; IPv6 without duplicate address
// detection) on an existing link, eth0 or lo: the VIPs an HA director puts
// on its interface while it is active, or on lo while it is standby. It
// never creates the link, nor sets it up or down: that link is the
// operator's.
type AddrSet struct {
	link     string
	nl       Netlink
	log      hclog.Logger
	lifetime time.Duration
}

// NewAddrSet drives the link called link through nl (Default() when nil),
// logging to log (none when nil).
func NewAddrSet(link string, nl Netlink, log hclog.Logger) *AddrSet {
	if nl == nil {
		nl = Default()
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &AddrSet{link: link, nl: nl, log: log}
}

// WithLifetime makes every Sync (re)set the wanted addresses to expire
// after d (whole seconds): addresses a dead process kept lapse by
// themselves. It returns a.
func (a *AddrSet) WithLifetime(d time.Duration) *AddrSet {
	a.lifetime = d
	return a
}

// Link is the link's name.
func (a *AddrSet) Link() string { return a.link }

// Sync adds every wanted address and removes those on the link that owned
// says were lvs-sync's and are no longer wanted (owned nil: none); every
// other address is left alone. A link that does not exist is an error.
func (a *AddrSet) Sync(want []netip.Addr, owned func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	link, err := a.nl.LinkByName(a.link)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil, fmt.Errorf("link %s does not exist (lvs-sync never creates it): %w", a.link, unix.ENODEV)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finding link %s: %w", a.link, err)
	}
	return syncHostAddrs(a.nl, link, want, owned, a.lifetime, a.log)
}

// Addrs lists the host addresses on the link, sorted; none if it does not
// exist.
func (a *AddrSet) Addrs() ([]netip.Addr, error) { return linkHostAddrs(a.nl, a.link) }

// CarrierOn says whether the link is up and has carrier (IFF_UP and
// IFF_LOWER_UP): a veth whose peer is down, or a NIC whose cable is out,
// has none.
func CarrierOn(nl Netlink, link string) (bool, error) {
	l, err := nl.LinkByName(link)
	if err != nil {
		return false, fmt.Errorf("reading the state of link %s: %w", link, err)
	}
	at := l.Attrs()
	return at.Flags&net.FlagUp != 0 && at.RawFlags&unix.IFF_LOWER_UP != 0, nil
}

// carrierNL is the rtnetlink handle Carrier reads through, opened on first
// use in the caller's network namespace and kept.
var carrierNL = sync.OnceValue(Default)

// Carrier is CarrierOn through the process's own rtnetlink handle.
func Carrier(link string) (bool, error) { return CarrierOn(carrierNL(), link) }
