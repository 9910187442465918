package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// DefaultHoldTime is the hold time a neighbour gets when it names none:
// 9 s, with a keepalive every 3 s (the data-centre default of FRR's
// "datacenter" profile and of Cumulus). BGP's customary 90 s (GoBGP's,
// MetalLB's, kube-router's) would leave a director that dies without
// closing its session (power, kernel, cable) in the router's ECMP set
// for a minute and a half; the hold time is negotiated down to the
// smaller of both sides, so ours bounds that whatever the router says.
// Going lower trades that for false drops: a keepalive missed three
// times in a row (a stalled host, a GC pause under load, a congested
// link) takes the director out of service, and 3 s is the protocol's
// floor anyway. BFD would detect a dead director faster still; see the
// package doc for why it is not built.
const DefaultHoldTime = 9 * time.Second

// defaultConnectRetry is how often a neighbour that does not answer is
// dialled again. GoBGP's default of 120 s would keep a director out of a
// restarted router's ECMP set for up to two minutes.
const defaultConnectRetry = 5 * time.Second

// Config is one speaker: this director's AS and the routers it announces
// its VIPs to.
type Config struct {
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address. Zero: the local
	// address of the session to the first IPv4 neighbour, as Start finds
	// it: that neighbour's LocalAddress if set, else the source address
	// the kernel's routing table chooses towards it (a connected UDP
	// socket, which sends nothing). It is taken once, at Start.
	RouterID netip.Addr
	// ListenPort 0 (the default) listens on no port: the speaker only
	// dials its neighbours. A port > 0 also accepts their connections
	// there, on every address.
	ListenPort int32
	Neighbors  []Neighbor
}

// Neighbor is one router the speaker keeps a session with. Its address
// family decides what it is sent: an IPv4 neighbour the /32s, an IPv6
// neighbour the /128s.
type Neighbor struct {
	Address netip.Addr
	ASN     uint32
	// Port is the neighbour's BGP port; 0: 179.
	Port uint16
	// HoldTime is proposed in OPEN; 0: DefaultHoldTime. At least 3 s,
	// whole seconds. The keepalive interval is a third of it.
	HoldTime time.Duration
	// Password is the TCP MD5 signature key (RFC 2385); "" none.
	Password string
	// LocalAddress is the address the session is dialled from, and so
	// the next hop the VIPs are announced with; zero: the kernel's
	// choice.
	LocalAddress netip.Addr
}

// maxPasswordLen is the kernel's TCP_MD5SIG_MAXKEYLEN.
const maxPasswordLen = 80

// Validate reports every problem of the config, each naming its field
// (and neighbour) by the name of its HCL attribute.
func (c Config) Validate() error {
	var errs []error
	if c.ASN == 0 {
		errs = append(errs, errors.New("asn: must be set (1 to 4294967295)"))
	}
	if c.RouterID.IsValid() && !c.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("router_id %s: must be an IPv4 address", c.RouterID))
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen_port %d: must be 0 (do not listen) or a port", c.ListenPort))
	}
	if len(c.Neighbors) == 0 {
		errs = append(errs, errors.New("neighbor: at least one is needed"))
	}
	seen := map[netip.Addr]bool{}
	for _, n := range c.Neighbors {
		if !n.Address.IsValid() {
			errs = append(errs, errors.New("neighbor: no address"))
			continue
		}
		addr := n.Address.Unmap()
		at := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("neighbor %q: "+format, append([]any{addr.String()}, a...)...))
		}
		if seen[addr] {
			at("listed twice")
		}
		seen[addr] = true
		if n.Address.Zone() != "" {
			at("a zone (link-local neighbour) is not supported")
		}
		if n.ASN == 0 {
			at("asn: must be set")
		}
		if h := n.HoldTime; h != 0 && (h < 3*time.Second || h > 65535*time.Second || h%time.Second != 0) {
			at("hold_time %v: must be whole seconds from 3s to 65535s", h)
		}
		if len(n.Password) > maxPasswordLen {
			at("password: longer than the kernel's %d bytes", maxPasswordLen)
		}
		if l := n.LocalAddress; l.IsValid() && l.Unmap().Is4() != addr.Is4() {
			at("local_address %s: not of the neighbour's address family", l)
		}
	}
	if !c.RouterID.IsValid() && len(c.Neighbors) > 0 {
		if _, ok := firstIPv4(c.Neighbors); !ok {
			errs = append(errs, errors.New("router_id: must be set when no neighbour is IPv4 (a BGP identifier is an IPv4 address)"))
		}
	}
	return errors.Join(errs...)
}

func firstIPv4(ns []Neighbor) (Neighbor, bool) {
	for _, n := range ns {
		if n.Address.Unmap().Is4() {
			return n, true
		}
	}
	return Neighbor{}, false
}

// routerID is c.RouterID, or the local address of the session to the
// first IPv4 neighbour (see Config.RouterID).
func (c Config) routerID() (netip.Addr, error) {
	if c.RouterID.IsValid() {
		return c.RouterID, nil
	}
	n, ok := firstIPv4(c.Neighbors)
	if !ok {
		return netip.Addr{}, errors.New("router_id: must be set when no neighbour is IPv4")
	}
	if n.LocalAddress.IsValid() {
		return n.LocalAddress.Unmap(), nil
	}
	// A connected UDP socket asks the kernel's routing table for the
	// source address, sending nothing.
	conn, err := net.Dial("udp4", net.JoinHostPort(n.Address.Unmap().String(), strconv.Itoa(int(n.port()))))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("router_id: the local address towards neighbour %s: %w", n.Address, err)
	}
	defer conn.Close()
	ap, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("router_id: the local address towards neighbour %s: %w", n.Address, err)
	}
	return ap.Addr().Unmap(), nil
}

func (n Neighbor) port() uint16 {
	if n.Port == 0 {
		return 179
	}
	return n.Port
}

func (n Neighbor) holdTime() time.Duration {
	if n.HoldTime == 0 {
		return DefaultHoldTime
	}
	return n.HoldTime
}
