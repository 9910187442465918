package config

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// BGP is director's bgp block: this director is one of an all-active
// tier, announcing each VIP it can serve as a host route (/32, /128) to
// the routers of its neighbor blocks, which spread flows over every
// director with ECMP. It is config's own type: cmd maps it onto the
// speaker's (package bgp), which config does not import.
type BGP struct {
	// ASN is this director's AS (asn); every director of a tier may share it.
	ASN uint32
	// RouterID is router_id, an IPv4 address; the zero Addr lets the
	// speaker take the address it speaks BGP from.
	RouterID netip.Addr
	// ListenPort is listen_port: 0 (the default) listens on no port, the
	// speaker only connects out; a director is a speaker, not a router.
	ListenPort int32
	// ShutdownDelay is how long lvs-sync keeps running after it withdrew
	// its VIPs on SIGTERM, the kernel still forwarding, while the routers
	// converge (shutdown_delay, default DefaultShutdownDelay).
	ShutdownDelay time.Duration
	Neighbors     []Neighbor
	DeclRange     hcl.Range
}

// Neighbor is a bgp neighbor block: a router this director announces to.
type Neighbor struct {
	// Address is the block's label, the router's address.
	Address netip.Addr
	ASN     uint32
	// Port is the router's BGP port (port, default 179).
	Port uint16
	// HoldTime is hold_time; 0 (not set) is the speaker's default,
	// bgp.DefaultHoldTime (9 s). A
	// director that dies without closing its session (power, a cable)
	// leaves the route after the hold time.
	HoldTime time.Duration
	// Password is the TCP MD5 password (password, RFC 2385); "" none.
	Password string
}

// Defaults of the bgp block.
const (
	DefaultBGPPort = 179
	// DefaultShutdownDelay covers a router that takes a moment to act on
	// a withdrawal (a hardware FIB, a busy BIRD): 2 s, well inside the
	// Nomad job's kill_timeout of 10 s.
	DefaultShutdownDelay = 2 * time.Second
	// MinHoldTime is BGP's least hold time but 0 (RFC 4271 4.2), which
	// lvs-sync refuses: a director that died would never be noticed.
	MinHoldTime = 3 * time.Second
	// maxPasswordLen is the kernel's TCP_MD5SIG_MAXKEYLEN.
	maxPasswordLen = 80
)

// Equal reports whether two bgp blocks say the same, nil being none.
// shutdown_delay is left out: a reload takes it on.
func (b *BGP) Equal(o *BGP) bool {
	if b == nil || o == nil {
		return b == o
	}
	return b.ASN == o.ASN && b.RouterID == o.RouterID && b.ListenPort == o.ListenPort && slices.Equal(b.Neighbors, o.Neighbors)
}

// rawBGP is director's bgp block; gohcl reports its unknown attributes
// and blocks.
type rawBGP struct {
	ASN           int            `hcl:"asn"`
	RouterID      *string        `hcl:"router_id,optional"`
	ListenPort    *int           `hcl:"listen_port,optional"`
	ShutdownDelay *string        `hcl:"shutdown_delay,optional"`
	Neighbors     []*rawNeighbor `hcl:"neighbor,block"`
	Body          hcl.Body       `hcl:",body"`
	DefRange      hcl.Range      `hcl:",def_range"`
}

type rawNeighbor struct {
	Address  string    `hcl:"address,label"`
	ASN      int       `hcl:"asn"`
	Port     *int      `hcl:"port,optional"`
	HoldTime *string   `hcl:"hold_time,optional"`
	Password *string   `hcl:"password,optional"`
	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

func decodeBGP(rb *rawBGP) (*BGP, hcl.Diagnostics) {
	at := newAttrs("director.bgp", rb.Body, rb.DefRange)
	var diags hcl.Diagnostics
	b := &BGP{ShutdownDelay: DefaultShutdownDelay, DeclRange: rb.DefRange}
	if asn, err := validASN(rb.ASN); err != nil {
		diags = append(diags, at.errorf("asn", "Invalid AS number", "%s", err))
	} else {
		b.ASN = asn
	}
	if rb.RouterID != nil {
		id, err := netip.ParseAddr(*rb.RouterID)
		switch {
		case err != nil || !id.Is4() || id.IsUnspecified():
			diags = append(diags, at.errorf("router_id", "Invalid router id",
				"%q: a BGP identifier is an IPv4 address other than 0.0.0.0 (leave it out for the address lvs-sync speaks BGP from)", *rb.RouterID))
		default:
			b.RouterID = id
		}
	}
	if rb.ListenPort != nil {
		if *rb.ListenPort < 1 || *rb.ListenPort > 65535 {
			diags = append(diags, at.errorf("listen_port", "Invalid port", "%d: want 1 to 65535, or leave it out to listen on none", *rb.ListenPort))
		} else {
			b.ListenPort = int32(*rb.ListenPort)
		}
	}
	if rb.ShutdownDelay != nil {
		d, err := parseNonNegative(*rb.ShutdownDelay)
		if err != nil {
			diags = append(diags, at.errorf("shutdown_delay", "Invalid duration", "%s", err))
		}
		b.ShutdownDelay = d
	}
	if len(rb.Neighbors) == 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing neighbor",
			Detail:  "director.bgp: neighbor: a bgp block needs a neighbor block for each router it announces to, such as neighbor \"10.7.0.1\" { asn = 65000 }",
			Subject: rb.DefRange.Ptr()})
	}
	seen := map[netip.Addr]hcl.Range{}
	for _, rn := range rb.Neighbors {
		n, d := decodeNeighbor(rn)
		diags = append(diags, d...)
		if !n.Address.IsValid() {
			continue
		}
		if first, dup := seen[n.Address]; dup {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate neighbor",
				Detail:  fmt.Sprintf("director.bgp: neighbor %q is already declared at %s.", rn.Address, first),
				Subject: rn.DefRange.Ptr()})
			continue
		}
		seen[n.Address] = rn.DefRange
		b.Neighbors = append(b.Neighbors, n)
	}
	return b, diags
}

func decodeNeighbor(rn *rawNeighbor) (Neighbor, hcl.Diagnostics) {
	at := newAttrs(fmt.Sprintf("director.bgp.neighbor %q", rn.Address), rn.Body, rn.DefRange)
	var diags hcl.Diagnostics
	n := Neighbor{Port: DefaultBGPPort}
	addr, err := netip.ParseAddr(rn.Address)
	switch {
	case err != nil || addr.Zone() != "":
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid neighbor address",
			Detail:  fmt.Sprintf("director.bgp: neighbor %q: the label is the router's IP address, such as \"10.7.0.1\" (no zone)", rn.Address),
			Subject: rn.DefRange.Ptr()})
	case addr.IsUnspecified() || addr.IsMulticast():
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid neighbor address",
			Detail:  fmt.Sprintf("director.bgp: neighbor %q: not an address a router has", rn.Address),
			Subject: rn.DefRange.Ptr()})
	default:
		n.Address = addr
	}
	if asn, err := validASN(rn.ASN); err != nil {
		diags = append(diags, at.errorf("asn", "Invalid AS number", "%s", err))
	} else {
		n.ASN = asn
	}
	if rn.Port != nil {
		if *rn.Port < 1 || *rn.Port > 65535 {
			diags = append(diags, at.errorf("port", "Invalid port", "%d: want 1 to 65535", *rn.Port))
		} else {
			n.Port = uint16(*rn.Port)
		}
	}
	if rn.HoldTime != nil {
		d, err := time.ParseDuration(*rn.HoldTime)
		switch {
		case err != nil:
			diags = append(diags, at.errorf("hold_time", "Invalid duration", "%q is not a duration such as \"9s\"", *rn.HoldTime))
		case d < MinHoldTime || d > 65535*time.Second || d%time.Second != 0:
			diags = append(diags, at.errorf("hold_time", "Invalid hold time",
				"%s: BGP's hold time is whole seconds, from 3s to 65535s (lvs-sync refuses 0, which would never notice a dead director)", d))
		default:
			n.HoldTime = d
		}
	}
	if rn.Password != nil {
		switch p := *rn.Password; {
		case p == "":
			diags = append(diags, at.errorf("password", "Empty value", "must not be empty; leave it out for no TCP MD5 password"))
		case len(p) > maxPasswordLen:
			diags = append(diags, at.errorf("password", "Invalid password", "%d bytes: the kernel's TCP MD5 keys are at most %d", len(p), maxPasswordLen))
		default:
			n.Password = p
		}
	}
	return n, diags
}

// validASN checks an AS number: 1 to 4294967294, not AS_TRANS (23456,
// RFC 6793), which stands in for a 4-byte AS in 2-byte sessions.
func validASN(v int) (uint32, error) {
	switch {
	case v < 1 || v > 4294967294:
		return 0, fmt.Errorf("%d: an AS number is 1 to 4294967294", v)
	case v == 23456:
		return 0, fmt.Errorf("23456 is AS_TRANS, reserved (RFC 6793)")
	}
	return uint32(v), nil
}

// declared is a virtual service and where its attributes are, for the
// checks made once the whole config is read.
type declared struct {
	vs *VirtualService
	at attrs
}

// checkBGP warns about what an all-active tier cannot keep: a virtual
// service whose scheduler does not give a flow the same real on every
// director (only sh and mh hash the client), so that a flow ECMP moves
// to another director is reset; one forwarded by masq, whose replies
// must come back through the director that holds the NAT state, which
// ECMP does not promise; and VIPs that lvs-sync does not put on the
// director (no vip_interface) although it announces them.
func checkBGP(cfg *Config, vss []declared) hcl.Diagnostics {
	b := cfg.Director.BGP
	if b == nil {
		return nil
	}
	var diags hcl.Diagnostics
	if cfg.Director.VIPInterface == "" && cfg.Director.HA == nil { // with ha, bgp is an error already
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "BGP without vip_interface",
			Detail: "director.bgp: the VIPs are announced, but without vip_interface lvs-sync does not put them on the director: " +
				"the kernel takes a virtual service's packets only for an address of its own; set vip_interface, or put them on yourself",
			Subject: b.DeclRange.Ptr()})
	}
	for _, d := range vss {
		vs := d.vs
		if !lvs.HashesByClient(vs.Scheduler) && lvs.KnownScheduler(vs.Scheduler) {
			diags = append(diags, d.at.warnf("scheduler", "Scheduler not consistent across directors",
				"%s picks the real from this director's own state: with director.bgp, a flow that ECMP moves to another director "+
					"(one leaving, or joining) meets another real there and is reset; use \"mh\" (with scheduler_flags = [\"mh-port\"]) or \"sh\"", vs.Scheduler))
		}
		if vs.Forwarding == lvs.Masq {
			diags = append(diags, d.at.warnf("forwarding", "masq behind ECMP",
				"with director.bgp, masq's replies must come back through the director that holds the connection's NAT state, "+
					"and ECMP does not send them there; use gate or ipip"))
		}
	}
	return diags
}
