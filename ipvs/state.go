// Package ipvs holds lvs-sync's model of the kernel's IPVS table: the desired
// state that render produces, the state read back from the kernel, the pure
// diff between the two, and the code that applies a diff through netlink.
//
// The model separates identity from configuration, as Seesaw does: a
// ServiceKey or RealKey says which object it is, and Equal over the other
// fields says whether an object that exists must be updated.
package ipvs

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Service flags lvs-sync sets or reads (IP_VS_SVC_F_*). The scheduler
// flags, 0x8 to 0x20, are lvs.SchedFlags.
const (
	FlagPersistent uint32 = 0x1
	FlagHashed     uint32 = 0x2 // set by the kernel on every service it reports
	FlagOnePacket  uint32 = 0x4
)

// Real is a real server (an IPVS destination).
type Real struct {
	Weight  int
	Forward lvs.Forward
	// UpperThreshold and LowerThreshold are ipvsadm's -x and -y: at
	// UpperThreshold connections (active and inactive) the kernel takes the
	// real out of scheduling until they fall below LowerThreshold (if 0,
	// below three quarters of UpperThreshold). 0 is no limit; the kernel
	// refuses a lower threshold above the upper one (ERANGE).
	UpperThreshold, LowerThreshold uint32
	// Connection counts, as read from the kernel; never part of equality.
	ActiveConns, InactiveConns int
	// Position is the real's place in the kernel's list of the service's
	// destinations, 1 at the head, as read from the kernel; 0 for a real
	// that was not read from one (a desired real). Like the connection
	// counts it is an observation, never part of equality: only mh and sh
	// build their table from the list (see order.go).
	Position int
	// Stats are the kernel's counters for the real, as read; an
	// observation, never part of equality.
	Stats Stats
}

// Stats are the kernel's traffic counters of a virtual service or a real
// (IPVS_*_ATTR_STATS64): totals since it was made, which only grow, so
// that a reader takes rates from them. Like the connection counts they are
// observations of a table read from the kernel, never configuration: no
// Equal, Fingerprint or plan looks at them, and a desired state has none.
type Stats struct {
	Conns    uint64 `json:"conns"` // connections scheduled
	InPkts   uint64 `json:"in_packets"`
	OutPkts  uint64 `json:"out_packets"`
	InBytes  uint64 `json:"in_bytes"`
	OutBytes uint64 `json:"out_bytes"`
}

// Check refuses, before anything reaches the kernel, a real that some
// kernels take and others refuse: a connection threshold above
// lvs.MaxThreshold (INT_MAX). Linux refuses one with EINVAL since the
// stable fix that Debian ships from 6.1.0-5x on (ip_vs_add_dest and
// ip_vs_edit_dest: "u_threshold > INT_MAX"); older 6.1 builds stored it.
// Both clients and MemKernel call it, so the answer is EINVAL on every
// build. The config, Consul meta and the importers already keep
// thresholds within range; this is the last line, for a caller that does not.
func (r Real) Check() error {
	if r.UpperThreshold > lvs.MaxThreshold || r.LowerThreshold > lvs.MaxThreshold {
		return fmt.Errorf("connection thresholds -x %d -y %d: above %d, which the kernel refuses: %w",
			r.UpperThreshold, r.LowerThreshold, lvs.MaxThreshold, syscall.EINVAL)
	}
	return nil
}

// Equal reports whether two reals are configured alike: what an update must
// change. Connection counts are observations, not configuration.
func (r Real) Equal(o Real) bool {
	return r.Weight == o.Weight && r.Forward == o.Forward &&
		r.UpperThreshold == o.UpperThreshold && r.LowerThreshold == o.LowerThreshold
}

// Service is a virtual service and its real servers.
type Service struct {
	Scheduler string
	// Flags are the IP_VS_SVC_F_* flags, without FlagHashed.
	Flags uint32
	// Timeout is the persistence timeout in seconds; 0 unless FlagPersistent.
	Timeout uint32
	// Netmask is the persistence granularity: an IPv4 mask as the kernel
	// stores it (network byte order), or an IPv6 prefix length. The kernel
	// takes 0 literally, as one template for every client: use HostMask.
	Netmask uint32
	// Stats are the kernel's counters for the whole service, as read; an
	// observation, never part of Equal.
	Stats Stats
	Reals map[lvs.RealKey]Real
}

// Equal reports whether two services are configured alike, reals aside.
func (s *Service) Equal(o *Service) bool {
	return s.Scheduler == o.Scheduler && s.Flags == o.Flags &&
		s.Timeout == o.Timeout && s.Netmask == o.Netmask
}

// SortedReals returns the service's real keys in address, port order.
func (s *Service) SortedReals() []lvs.RealKey {
	keys := make([]lvs.RealKey, 0, len(s.Reals))
	for k := range s.Reals {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, lvs.RealKey.Compare)
	return keys
}

// State is a set of virtual services: the kernel's table, or part of it.
type State map[lvs.ServiceKey]*Service

// Clone returns a deep copy of the state; every service has a reals map.
func (s State) Clone() State {
	c := make(State, len(s))
	for k, svc := range s {
		cp := *svc
		cp.Reals = maps.Clone(svc.Reals)
		if cp.Reals == nil {
			cp.Reals = map[lvs.RealKey]Real{}
		}
		c[k] = &cp
	}
	return c
}

// SortedKeys returns the state's service keys in ipvsadm reading order.
func (s State) SortedKeys() []lvs.ServiceKey {
	keys := make([]lvs.ServiceKey, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	return keys
}

// ServiceRule is the ipvsadm command that creates the service, without the
// leading -A, as ipvsadm -S prints it: "-t 10.0.0.1:80 -s sh -p 300 -b
// sh-fallback,sh-port".
func ServiceRule(k lvs.ServiceKey, s *Service) string {
	var b strings.Builder
	b.WriteString(k.Ipvsadm())
	b.WriteString(" -s ")
	b.WriteString(s.Scheduler)
	if s.Flags&FlagPersistent != 0 {
		fmt.Fprintf(&b, " -p %d", s.Timeout)
		if m := NetmaskString(k.Addr, s.Netmask); m != "" {
			b.WriteString(" -M " + m)
		}
	}
	if s.Flags&FlagOnePacket != 0 {
		b.WriteString(" -o")
	}
	if names := lvs.SchedFlags(s.Flags).Names(s.Scheduler); len(names) > 0 {
		b.WriteString(" -b " + strings.Join(names, ","))
	}
	return b.String()
}

// RealRule is the ipvsadm command that creates the real, without the
// leading -a, as ipvsadm -S prints it: "-t 10.0.0.1:80 -r 10.1.0.11:80 -g
// -w 5", then "-x N" and "-y N" for the thresholds that are not 0.
func RealRule(k lvs.ServiceKey, rk lvs.RealKey, r Real) string {
	rule := fmt.Sprintf("%s -r %s %s -w %d", k.Ipvsadm(), rk, r.Forward.IpvsadmFlag(), r.Weight)
	if r.UpperThreshold != 0 {
		rule += fmt.Sprintf(" -x %d", r.UpperThreshold)
	}
	if r.LowerThreshold != 0 {
		rule += fmt.Sprintf(" -y %d", r.LowerThreshold)
	}
	return rule
}

// NetmaskString renders a persistence netmask as ipvsadm -S does, or ""
// when it is the host mask that ipvsadm leaves out.
func NetmaskString(addr netip.Addr, mask uint32) string {
	if addr.Is6() {
		if mask == 0 || mask == 128 {
			return ""
		}
		return fmt.Sprint(mask)
	}
	if mask == 0 || mask == 0xffffffff {
		return ""
	}
	// The kernel keeps the IPv4 mask in network byte order.
	b := [4]byte{byte(mask), byte(mask >> 8), byte(mask >> 16), byte(mask >> 24)}
	return netip.AddrFrom4(b).String()
}

// String is the state in exactly the format of `ipvsadm -S -n`, sorted, so
// that users can diff lvs-sync's desired state with the kernel's.
func (s State) String() string {
	var b strings.Builder
	for _, k := range s.SortedKeys() {
		svc := s[k]
		b.WriteString("-A " + ServiceRule(k, svc) + "\n")
		for _, rk := range svc.SortedReals() {
			b.WriteString("-a " + RealRule(k, rk, svc.Reals[rk]) + "\n")
		}
	}
	return b.String()
}
