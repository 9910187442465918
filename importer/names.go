package importer

import (
	"fmt"
	"net/netip"
	"strings"
)

// The names the importer gives: a virtual service's label (also its
// Consul service) and an instance's ID, both made of [a-z0-9-] so that
// they are valid HCL labels and DNS-compatible Consul names.

// serviceName is a virtual service's name: the tool's own name for it
// when it has one, else its protocol, address and port
// ("tcp-10-10-10-60-80").
func serviceName(given, proto string, addr netip.AddrPort) string {
	if n := sanitize(given); n != "" {
		return n
	}
	return sanitize(fmt.Sprintf("%s-%s-%d", proto, addr.Addr(), addr.Port()))
}

// instanceID is the Consul service ID of a real server of service.
func instanceID(service string, addr netip.AddrPort) string {
	return sanitize(fmt.Sprintf("%s-%s-%d", service, addr.Addr(), addr.Port()))
}

// sanitize lowers s and turns every run of other characters than a-z
// and 0-9 into one dash.
func sanitize(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// uniqueNames makes the names of services unique, in order, by adding
// "-2", "-3"... to the later ones, and names their instances' checks.
func uniqueNames(svcs []*Service) {
	seen := map[string]bool{}
	for _, s := range svcs {
		name := s.Name
		for i := 2; seen[name]; i++ {
			name = fmt.Sprintf("%s-%d", s.Name, i)
		}
		s.Name = name
		seen[name] = true
	}
}

// wellKnownPorts resolves the service names both tools accept in place of
// a port, as /etc/services has them.
var wellKnownPorts = map[string]uint16{
	"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "www": 80,
	"pop3": 110, "nntp": 119, "imap2": 143, "imap": 143, "ldap": 389, "https": 443,
	"submission": 587, "ldaps": 636, "imaps": 993, "pop3s": 995, "ms-sql-s": 1433,
	"radius": 1812, "http-alt": 8080, "mysql": 3306, "sip": 5060, "postgresql": 5432,
}
