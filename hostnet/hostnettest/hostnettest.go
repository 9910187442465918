// Package hostnettest holds stateful fakes of the kernel for hostnet's
// interfaces: a Netlink with links, flags and addresses that answers as the
// kernel does (EEXIST, EADDRNOTAVAIL, ENODEV, netlink.LinkNotFoundError),
// and a Sysctl table whose per-link keys exist only while the link does.
// They live in their own package, not in hostnet's _test files, so that
// the CLI's tests can run `lvs-sync realserver` against them too; being
// apart, they never reach the binary.
//
// It may import hostnet, vishvananda/netlink and x/sys/unix; nothing else
// of lvs-sync.
package hostnettest

import (
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/hostnet"
)

// Addr is an address on a fake link.
type Addr struct {
	Prefix netip.Prefix
	NoDAD  bool // IFA_F_NODAD
	// Lifetime is the valid lifetime in seconds the address was last
	// given (0: forever). The fake keeps no clock: it never expires.
	Lifetime int
}

func (a Addr) String() string {
	s := a.Prefix.String()
	if a.NoDAD {
		s += " nodad"
	}
	if a.Lifetime > 0 {
		s += fmt.Sprintf(" valid_lft %ds", a.Lifetime)
	}
	return s
}

// Link is a fake link's state.
type Link struct {
	Type      string // "dummy", "ipip", "ip6tnl", "device" (lo), as netlink.Link.Type says
	Up        bool
	NoCarrier bool   // up but without carrier (IFF_LOWER_UP clear): a cut cable, a veth's peer down
	Addrs     []Addr // in the order they were added
}

type link struct {
	index int
	Link
}

// Netlink is a fake network namespace. The zero value is not usable; use
// NewNetlink. It is safe for concurrent use.
type Netlink struct {
	mu          sync.Mutex
	links       map[string]*link
	next        int
	interrupted int
	fail        map[failKey]error
}

var _ hostnet.Netlink = (*Netlink)(nil)

type failKey struct{ op, link string }

// NewNetlink returns a namespace holding only lo, up, with 127.0.0.1/8 and
// ::1/128.
func NewNetlink() *Netlink {
	f := &Netlink{links: map[string]*link{}, next: 1, fail: map[failKey]error{}}
	f.AddLink("lo", Link{Type: "device", Up: true, Addrs: []Addr{
		{Prefix: netip.MustParsePrefix("127.0.0.1/8")},
		{Prefix: netip.MustParsePrefix("::1/128")},
	}})
	return f
}

// AddLink puts a link in the namespace as someone else would, replacing
// one of that name.
func (f *Netlink) AddLink(name string, l Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.Addrs = slices.Clone(l.Addrs)
	f.links[name] = &link{index: f.next, Link: l}
	f.next++
}

// Has says whether the link exists.
func (f *Netlink) Has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links[name] != nil
}

// Link returns a link's state.
func (f *Netlink) Link(name string) (Link, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[name]
	if l == nil {
		return Link{}, false
	}
	out := l.Link
	out.Addrs = slices.Clone(l.Addrs)
	return out, true
}

// String is the whole namespace, a line per link in name order:
// "lvs0 dummy up [10.0.0.1/32 2001:db8::1/128 nodad]".
func (f *Netlink) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.links))
	for n := range f.links {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		l := f.links[n]
		state := "down"
		if l.Up {
			state = "up"
		}
		fmt.Fprintf(&b, "%s %s %s %v\n", n, l.Type, state, l.Addrs)
	}
	return b.String()
}

// SetCarrier gives the link carrier or takes it away, as a cable or a
// veth's peer does.
func (f *Netlink) SetCarrier(name string, carrier bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.links[name]; l != nil {
		l.NoCarrier = !carrier
	}
}

// InterruptDumps makes the next n address dumps return what they hold with
// netlink.ErrDumpInterrupted, as the kernel's do when the addresses change
// midway.
func (f *Netlink) InterruptDumps(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.interrupted = n
}

// Fail makes every call of op ("LinkByName", "LinkAdd", "LinkSetUp",
// "AddrList", "AddrAdd", "AddrDel") on the named link return err, until
// Fail is called again with a nil err.
func (f *Netlink) Fail(op, name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, failKey{op, name})
		return
	}
	f.fail[failKey{op, name}] = err
}

// find returns the link a call names, by index as the kernel does when it
// has one, else by name; ENODEV when there is none.
func (f *Netlink) find(op string, l netlink.Link) (*link, error) {
	a := l.Attrs()
	if err := f.fail[failKey{op, a.Name}]; err != nil {
		return nil, err
	}
	for _, k := range f.links {
		if a.Index != 0 && k.index == a.Index {
			return k, nil
		}
	}
	if k := f.links[a.Name]; k != nil && a.Index == 0 {
		return k, nil
	}
	return nil, unix.ENODEV
}

func (f *Netlink) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[failKey{"LinkByName", name}]; err != nil {
		return nil, err
	}
	l := f.links[name]
	if l == nil {
		return nil, netlink.LinkNotFoundError{}
	}
	attrs := netlink.LinkAttrs{Name: name, Index: l.index, OperState: netlink.OperDown}
	if l.Up {
		attrs.Flags = net.FlagUp
		attrs.RawFlags = unix.IFF_UP
		attrs.OperState = netlink.OperLowerLayerDown
		if !l.NoCarrier {
			attrs.RawFlags |= unix.IFF_LOWER_UP | unix.IFF_RUNNING
			attrs.OperState = netlink.OperUp
		}
	}
	switch l.Type {
	case "dummy":
		return &netlink.Dummy{LinkAttrs: attrs}, nil
	case "ipip":
		return &netlink.Iptun{LinkAttrs: attrs}, nil
	case "ip6tnl":
		return &netlink.Ip6tnl{LinkAttrs: attrs}, nil
	default:
		return &netlink.Device{LinkAttrs: attrs}, nil
	}
}

func (f *Netlink) LinkAdd(l netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := l.Attrs()
	if err := f.fail[failKey{"LinkAdd", a.Name}]; err != nil {
		return err
	}
	if f.links[a.Name] != nil {
		return unix.EEXIST
	}
	f.links[a.Name] = &link{index: f.next, Link: Link{Type: l.Type(), Up: a.Flags&net.FlagUp != 0}}
	f.next++
	return nil
}

func (f *Netlink) LinkSetUp(l netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.find("LinkSetUp", l)
	if err != nil {
		return err
	}
	k.Up = true
	return nil
}

func (f *Netlink) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.find("AddrList", l)
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, a := range k.Addrs {
		if family == netlink.FAMILY_V4 && !a.Prefix.Addr().Is4() || family == netlink.FAMILY_V6 && !a.Prefix.Addr().Is6() {
			continue
		}
		p := a.Prefix
		na := netlink.Addr{
			IPNet:     &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
			LinkIndex: k.index,
		}
		if a.NoDAD {
			na.Flags = unix.IFA_F_NODAD
		}
		na.ValidLft, na.PreferedLft = a.Lifetime, a.Lifetime
		out = append(out, na)
	}
	if f.interrupted > 0 {
		f.interrupted--
		return out, netlink.ErrDumpInterrupted
	}
	return out, nil
}

// prefixOf is the address a call names; same is the kernel's test for
// "that address": the same IPv4 address and prefix length, or the same
// IPv6 address.
func prefixOf(a *netlink.Addr) (netip.Prefix, error) {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok || a.IPNet == nil {
		return netip.Prefix{}, unix.EINVAL
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), nil
}

func same(a, b netip.Prefix) bool {
	if a.Addr().Is6() {
		return a.Addr() == b.Addr()
	}
	return a == b
}

func (f *Netlink) AddrAdd(l netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.find("AddrAdd", l)
	if err != nil {
		return err
	}
	p, err := prefixOf(addr)
	if err != nil {
		return err
	}
	for _, a := range k.Addrs {
		if same(a.Prefix, p) {
			return unix.EEXIST
		}
	}
	k.Addrs = append(k.Addrs, Addr{Prefix: p, NoDAD: addr.Flags&unix.IFA_F_NODAD != 0})
	return nil
}

// AddrReplace adds the address or, when there, sets its flags and
// lifetime anew (NLM_F_REPLACE).
func (f *Netlink) AddrReplace(l netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.find("AddrReplace", l)
	if err != nil {
		return err
	}
	p, err := prefixOf(addr)
	if err != nil {
		return err
	}
	a := Addr{Prefix: p, NoDAD: addr.Flags&unix.IFA_F_NODAD != 0, Lifetime: addr.ValidLft}
	for i := range k.Addrs {
		if same(k.Addrs[i].Prefix, p) {
			k.Addrs[i] = a
			return nil
		}
	}
	k.Addrs = append(k.Addrs, a)
	return nil
}

func (f *Netlink) AddrDel(l netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.find("AddrDel", l)
	if err != nil {
		return err
	}
	p, err := prefixOf(addr)
	if err != nil {
		return err
	}
	for i, a := range k.Addrs {
		if same(a.Prefix, p) {
			k.Addrs = slices.Delete(k.Addrs, i, i+1)
			return nil
		}
	}
	return unix.EADDRNOTAVAIL
}

// Sysctl is a fake /proc/sys: a table of keys. As in the kernel, a key
// that is not there cannot be read or written (fs.ErrNotExist), and
// net/ipv4/conf/LINK/KEY exists exactly while LINK is in the Netlink given
// to NewSysctl, starting from net/ipv4/conf/default/KEY (else "0"). It is safe for concurrent use.
type Sysctl struct {
	mu     sync.Mutex
	links  *Netlink
	values map[string]string
	writes map[string]int
}

var _ hostnet.Sysctl = (*Sysctl)(nil)

// NewSysctl returns a table holding seed, with per-link keys following
// links (none when nil).
func NewSysctl(links *Netlink, seed map[string]string) *Sysctl {
	s := &Sysctl{links: links, values: map[string]string{}, writes: map[string]int{}}
	for k, v := range seed {
		s.values[k] = v
	}
	return s
}

// exists says whether key is in the table, adding a per-link key of a
// link that exists.
func (s *Sysctl) exists(key string) bool {
	if rest, ok := strings.CutPrefix(key, "net/ipv4/conf/"); ok && s.links != nil {
		dev, _, _ := strings.Cut(rest, "/")
		if dev != "all" && dev != "default" {
			if !s.links.Has(dev) {
				return false
			}
			if _, ok := s.values[key]; !ok {
				s.values[key] = "0"
				if v, ok := s.values["net/ipv4/conf/default/"+strings.TrimPrefix(rest, dev+"/")]; ok {
					s.values[key] = v
				}
			}
		}
	}
	_, ok := s.values[key]
	return ok
}

func (s *Sysctl) Get(key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.exists(key) {
		return "", fmt.Errorf("reading sysctl %s: %w", key, fs.ErrNotExist)
	}
	return s.values[key], nil
}

func (s *Sysctl) Set(key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.exists(key) {
		return fmt.Errorf("setting sysctl %s=%s: %w", key, value, fs.ErrNotExist)
	}
	s.values[key] = value
	s.writes[key]++
	return nil
}

// Value is a key's value; "" if it is not there.
func (s *Sysctl) Value(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// Writes is how many times the key was written.
func (s *Sysctl) Writes(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[key]
}
