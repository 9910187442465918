package importer

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// ldCheck is a virtual block's check, before it is made for each real.
type ldCheck struct {
	// kind is what the instances get: "http", "tcp", "udp", or "" for
	// no check (always passing).
	kind        string
	scheme      string
	request     string
	receive     string
	receiveLine int
	port        uint16
	method      string
	host        string
	interval    time.Duration
	timeout     time.Duration
	failures    int
	// off is checktype = off: ldirectord never activates the reals.
	off bool
}

// seconds returns the first of the directives that is set, in seconds.
func seconds(def int, ds ...ldDirective) time.Duration {
	for _, d := range ds {
		if d.line > 0 {
			n, _ := strconv.Atoi(d.value)
			return time.Duration(n) * time.Second
		}
	}
	return time.Duration(def) * time.Second
}

var ldSchemeRe = regexp.MustCompile(`^https?://`)

// checkTemplate maps the block's checktype and service to a Consul check
// kind, with a note for every part Consul cannot do.
func (p *ldParser) checkTemplate(g ldGlobal, v *ldVirtual, s *Service) ldCheck {
	c := ldCheck{request: "/", method: "GET", failures: 1}
	checktype, ctLine := "negotiate", v.line
	if d, ok := v.d["checktype"]; ok {
		checktype, ctLine = d.value, d.line
	}
	service := ldPortToService[s.Address.Port()]
	if service == "" {
		service = "none"
	}
	svcLine := ctLine
	if d, ok := v.d["service"]; ok {
		service, svcLine = d.value, d.line
	}
	if d, ok := v.d["request"]; ok {
		c.request = d.value
	}
	if !strings.HasPrefix(c.request, "/") && !ldSchemeRe.MatchString(c.request) {
		c.request = "/" + c.request
	}
	if d, ok := v.d["receive"]; ok {
		c.receive, c.receiveLine = d.value, d.line
	}
	if d, ok := v.d["checkport"]; ok {
		n, err := strconv.ParseUint(d.value, 10, 16)
		if err != nil || n == 0 {
			p.errorf(d.line, "checkport must be 1 to 65535, not %q", d.value)
		}
		c.port = uint16(n)
	}
	if d, ok := v.d["httpmethod"]; ok {
		c.method = strings.ToUpper(d.value)
		if c.method != "GET" && c.method != "HEAD" {
			p.errorf(d.line, "httpmethod must be GET or HEAD, not %q", d.value)
		}
	}
	c.host = v.d["virtualhost"].value
	iv, _ := v.setting(g, "checkinterval")
	c.interval = seconds(10, iv)
	if fc, ok := v.setting(g, "failurecount"); ok {
		c.failures, _ = strconv.Atoi(fc.value)
	}
	vct, vnt, gct, gnt := v.d["checktimeout"], v.d["negotiatetimeout"], g.d["checktimeout"], g.d["negotiatetimeout"]
	connectTimeout := seconds(5, vct, vnt, gct, gnt)
	negotiateTimeout := seconds(30, vnt, vct, gnt, gct)

	if n, err := strconv.Atoi(checktype); err == nil && n >= 0 {
		p.addf(ctLine, "checktype = %d (a negotiate check every %d connect checks) has no Consul equivalent: the negotiate check runs every time", n, n)
		checktype = "negotiate"
	}
	udp := s.Protocol == lvs.UDP
	switch checktype {
	case "on":
	case "off":
		c.off = true
		p.addf(ctLine, "checktype = off: ldirectord never activates these real servers; none is registered")
	case "ping":
		p.addf(ctLine, "checktype = ping: Consul has no ICMP check; the instances are registered without a check (always passing)")
	case "connect":
		c.timeout = connectTimeout
		c.kind = "tcp"
		if udp {
			c.kind = ""
			p.addf(ctLine, "checktype = connect on a UDP service is a ping check in ldirectord: Consul has no ICMP check; the instances are registered without a check (always passing)")
		}
	case "external", "external-perl":
		p.addf(ctLine, "checktype = %s (checkcommand %q) is not imported: Consul runs scripts only on agents with enable_local_script_checks; add an args check there. The instances are registered without a check", checktype, v.d["checkcommand"].value)
	case "negotiate":
		c.timeout = negotiateTimeout
		p.negotiate(&c, service, svcLine, udp)
	default:
		p.errorf(ctLine, "checktype must be connect, negotiate, on, off, ping, external, external-perl or a number, not %q", checktype)
	}
	return c
}

// negotiate maps checktype = negotiate of a service.
func (p *ldParser) negotiate(c *ldCheck, service string, line int, udp bool) {
	switch service {
	case "http", "https":
		c.kind, c.scheme = "http", service
		p.receiveNote(c.receive, c.receiveLine)
		if service == "https" && c.host == "" {
			p.addf(line, "service = https without virtualhost: ldirectord verifies the certificate's chain but not its name, Consul both; the check gets tls_skip_verify = true, which verifies neither (set tls_server_name to the certificate's name instead)")
		}
	case "none":
	case "dns", "radius", "sip":
		if udp {
			c.kind = "udp"
			p.addf(line, "service = %s negotiates the protocol; Consul has no %s check: a UDP check (which fails only on an ICMP error) takes its place", service, service)
			return
		}
		fallthrough
	default:
		known := map[string]bool{"ftp": true, "http_proxy": true, "imap": true, "imaps": true, "ldap": true, "ldaps": true,
			"mysql": true, "nntp": true, "oracle": true, "pgsql": true, "pop": true, "pops": true, "simpletcp": true,
			"smtp": true, "submission": true, "dns": true, "radius": true, "sip": true}
		if !known[service] {
			p.errorf(line, "service %q is not one ldirectord knows", service)
			return
		}
		if udp {
			p.addf(line, "service = %s over UDP has no Consul check: the instances are registered without a check (always passing)", service)
			return
		}
		c.kind = "tcp"
		p.addf(line, "service = %s negotiates the protocol; Consul has no %s check: a TCP check takes its place", service, service)
	}
}

// receiveNote says that Consul's HTTP check cannot match a body.
func (p *ldParser) receiveNote(receive string, line int) {
	if receive == "" {
		return
	}
	p.addf(line, "receive %q: Consul's HTTP check passes on any 2xx status and cannot match the body against a regexp; the status is all that is checked", receive)
}

// checks makes the Consul checks of the real at ap.
func (p *ldParser) checks(c ldCheck, ap netip.AddrPort) []Check {
	port := ap.Port()
	if c.port != 0 {
		port = c.port
	}
	target := netip.AddrPortFrom(ap.Addr(), port).String()
	base := Check{Interval: c.interval, Timeout: c.timeout}
	if c.failures > 1 {
		base.FailuresBeforeCritical = c.failures
	}
	switch c.kind {
	case "http":
		url := c.request
		if !ldSchemeRe.MatchString(url) {
			url = fmt.Sprintf("%s://%s%s", c.scheme, target, c.request)
		}
		base.Name = fmt.Sprintf("%s %s", c.method, url)
		base.HTTP = url
		if c.method != "GET" {
			base.Method = c.method
		}
		base.Host = c.host
		if c.scheme == "https" {
			// ldirectord verifies the chain, not the name; Consul does
			// both: the name to check is the virtualhost, which the
			// certificate must then carry, as ldirectord's manual says.
			base.TLSServerName = c.host
			base.TLSSkipVerify = c.host == ""
		}
	case "tcp":
		base.Name = "TCP " + target
		base.TCP = target
	case "udp":
		base.Name = "UDP " + target
		base.UDP = target
	default:
		return nil
	}
	return []Check{base}
}
