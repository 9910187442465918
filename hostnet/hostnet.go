// Package hostnet is the host's own networking, apart from IPVS: the VIPs on
// the director's dummy link, the director's kernel settings that make weight
// 0 and deletes safe (DirectorSettings), and a real server's VIPs (on lo,
// tunl0 or ip6tnl0) with the ARP and rp_filter sysctls that gate and ipip need; for an
// HA director, the VIPs on an existing link (AddrSet), their announcement
// (gratuitous ARP, unsolicited neighbour advertisements: Announcer, over
// raw sockets) and the link's carrier. It drives the
// kernel through two narrow interfaces it owns — Netlink, the few rtnetlink
// calls it makes, which *netlink.Handle satisfies, and Sysctl, keys under
// /proc/sys — so that the fakes in hostnettest can stand in for the kernel
// in unit tests; the VM tests prove the real thing.
//
// It may import the lvs leaf package, vishvananda/netlink, x/sys/unix and
// go-hclog; never config, render, catalog, ipvs or the daemon.
package hostnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the part of a netlink handle hostnet uses.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

var _ Netlink = (*netlink.Handle)(nil)

// Default returns an rtnetlink handle on the caller's network namespace,
// opened with netlink.NewHandle and kept for the life of the process. If it
// cannot be opened, every call returns why. It asks for NETLINK_ROUTE
// alone: NewHandle() with no family also opens xfrm and netfilter sockets,
// and fails with "protocol not supported" on a kernel without xfrm.
func Default() Netlink {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return brokenNetlink{fmt.Errorf("opening an rtnetlink socket: %w", err)}
	}
	return h
}

// brokenNetlink answers every call with the error that kept the handle
// from opening.
type brokenNetlink struct{ err error }

func (b brokenNetlink) LinkByName(string) (netlink.Link, error)            { return nil, b.err }
func (b brokenNetlink) LinkAdd(netlink.Link) error                         { return b.err }
func (b brokenNetlink) LinkSetUp(netlink.Link) error                       { return b.err }
func (b brokenNetlink) AddrList(netlink.Link, int) ([]netlink.Addr, error) { return nil, b.err }
func (b brokenNetlink) AddrAdd(netlink.Link, *netlink.Addr) error          { return b.err }
func (b brokenNetlink) AddrDel(netlink.Link, *netlink.Addr) error          { return b.err }
func (b brokenNetlink) AddrReplace(netlink.Link, *netlink.Addr) error      { return b.err }

// Sysctl reads and writes kernel parameters by their key under /proc/sys,
// slash-separated: "net/ipv4/conf/all/arp_ignore".
type Sysctl interface {
	Get(key string) (string, error)
	Set(key, value string) error
}

// ProcSys is the Sysctl of the caller's namespaces: files under Root,
// /proc/sys when empty.
type ProcSys struct{ Root string }

var _ Sysctl = ProcSys{}

func (p ProcSys) path(key string) string {
	root := p.Root
	if root == "" {
		root = "/proc/sys"
	}
	return filepath.Join(root, filepath.FromSlash(key))
}

// Get returns the key's value without its trailing newline.
func (p ProcSys) Get(key string) (string, error) {
	b, err := os.ReadFile(p.path(key))
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes the key; it never creates one that does not exist.
func (p ProcSys) Set(key, value string) error {
	f, err := os.OpenFile(p.path(key), os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(value)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		return fmt.Errorf("setting sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// setSysctl sets a key unless it has that value already; changed says
// whether it wrote. A key that cannot be read is written all the same.
func setSysctl(s Sysctl, key, value string) (changed bool, err error) {
	if old, err := s.Get(key); err == nil && old == value {
		return false, nil
	}
	if err := s.Set(key, value); err != nil {
		return false, err
	}
	return true, nil
}
