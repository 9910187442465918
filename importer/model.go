// Package importer turns the configs of the directors lvs-sync replaces,
// ldirectord's ldirectord.cf and keepalived's virtual_server blocks, into
// lvs-sync's HCL and the Consul service definitions of their static real
// servers, with the checks mapped to Consul checks. What has no equivalent
// is not dropped silently: it is a Note with its file and line.
//
// The files: model.go the neutral model both parsers produce;
// ldirectord.go, ldreal.go and ldcheck.go the ldirectord.cf parser (its
// blocks, real and fallback lines, checks); keepalived.go and kacheck.go
// keepalived's (its blocks, its checkers); marks.go the firewall-mark
// services of both; emit.go the two output files; names.go the names given
// to services and instances.
//
// It is a leaf beside config: it may import the standard library,
// hashicorp/hcl's hclwrite and lvs-sync's vocabulary package lvs. It does
// not import config; `lvs-sync import` checks the HCL it writes with
// config.Load.
package importer

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Pos is a place in an imported file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Note is something of the imported config that lvs-sync or Consul has no
// equivalent for, or that was changed on the way: a warning for the user.
type Note struct {
	Pos     Pos
	Message string
}

func (n Note) String() string { return fmt.Sprintf("%s: warning: %s", n.Pos, n.Message) }

// Error is a config the importer cannot read, at its place.
type Error struct {
	Pos     Pos
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: error: %s", e.Pos, e.Message) }

// Errors are every problem of a file that could not be imported.
type Errors []*Error

func (es Errors) Error() string {
	s := ""
	for i, e := range es {
		if i > 0 {
			s += "\n"
		}
		s += e.Error()
	}
	return s
}

// Result is an imported config.
type Result struct {
	// Source is the imported file, as named on the command line.
	Source string
	// Tool is "ldirectord" or "keepalived".
	Tool     string
	Services []*Service
	Notes    []Note
	// CleanupOnExit is ldirectord's cleanstop = yes, said explicitly.
	CleanupOnExit bool
}

// Service is one virtual service and its static real servers.
type Service struct {
	// Name is the virtual_service label, and its Consul service unless
	// Consul names another.
	Name string
	// Consul is the Consul service when several virtual services share
	// one (a keepalived virtual_server_group); "" is Name.
	Consul string
	// Comment is carried into the HCL (ldirectord's comment).
	Comment  string
	Pos      Pos
	Protocol lvs.Protocol
	Address  netip.AddrPort
	// FWMark, when not 0, makes it a firewall-mark service: Protocol is
	// then 0 and Address the family's unspecified address with port 0,
	// as in config; its VIPs are not in either tool's config.
	FWMark      uint32
	Scheduler   string
	Forward     lvs.Forward
	Persistence time.Duration
	// PersistenceNetmask is a prefix length (ipvsadm -M); 0 is none.
	PersistenceNetmask int
	// OnePacket is one-packet scheduling (ipvsadm -o), for UDP.
	OnePacket bool
	Quiescent bool
	// Fallback is the sorry server; invalid when there is none.
	Fallback netip.AddrPort
	Reals    []*Real
}

// Real is one static real server: a Consul service instance.
type Real struct {
	Pos    Pos
	Addr   netip.AddrPort
	Weight int
	// UpperThreshold and LowerThreshold are its connection thresholds
	// (ipvsadm -x, -y), 0 for none: Consul meta lvs-upper-threshold and
	// lvs-lower-threshold.
	UpperThreshold, LowerThreshold int
	// Checks are its Consul checks; none means always passing, as
	// ldirectord's checktype = on.
	Checks []Check
}

// Check is a Consul agent check of one instance.
type Check struct {
	Name string
	// HTTP is the URL of an HTTP check; TCP and UDP the ADDR:PORT of a
	// TCP or UDP check. Exactly one is set.
	HTTP          string
	Method        string
	Host          string
	TLSSkipVerify bool
	TLSServerName string
	TCP           string
	UDP           string
	Interval      time.Duration
	Timeout       time.Duration
	// FailuresBeforeCritical is ldirectord's failurecount, keepalived's
	// retry; 0 or 1 is Consul's default.
	FailuresBeforeCritical int
}

// notes collects the notes of one file.
type notes struct {
	file string
	list []Note
}

func (n *notes) addf(line int, format string, args ...any) {
	n.list = append(n.list, Note{Pos: Pos{File: n.file, Line: line}, Message: fmt.Sprintf(format, args...)})
}

// ConsulService is the Consul service of s's instances.
func (s *Service) ConsulService() string {
	if s.Consul != "" {
		return s.Consul
	}
	return s.Name
}

// sorted returns the notes in line order, those of one line as found.
func (n *notes) sorted() []Note {
	out := slices.Clone(n.list)
	slices.SortStableFunc(out, func(a, b Note) int { return cmp.Compare(a.Pos.Line, b.Pos.Line) })
	return out
}

// persistenceNetmask reads a service's persistence netmask (what names the
// directive) once its address, protocol and persistence are known: a
// prefix length, 0 for the host mask, or for one that is left out, with a
// note.
func (n *notes) persistenceNetmask(value string, line int, what string, s *Service) int {
	bits, err := lvs.ParsePersistenceNetmask(value, s.Address.Addr())
	switch {
	case err != nil:
		n.addf(line, "%s %s: %v: left out", what, value, err)
		return 0
	case bits == s.Address.Addr().BitLen():
		return 0 // each client on its own, as without it
	case s.Persistence == 0:
		n.addf(line, "%s %s groups the clients of a persistent service, and this one is not: left out", what, value)
		return 0
	}
	return bits
}

// onePacket tells whether a service's one-packet scheduling (what names
// the directive) is carried over: for UDP only, as the kernel has it.
func (n *notes) onePacket(line int, what string, s *Service) bool {
	if s.Protocol != lvs.UDP {
		n.addf(line, "%s: one-packet scheduling is for UDP, and this service is %s: left out", what, s.Protocol)
		return false
	}
	return true
}
