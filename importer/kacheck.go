package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// keepalived's checkers, HTTP_GET, SSL_GET and TCP_CHECK, as Consul checks.

// kaCommon reads the settings every checker has.
type kaCommon struct {
	port     uint16
	ip       netip.Addr
	timeout  time.Duration
	interval time.Duration
	failures int
}

func (p *kaParser) kaCommon(n *kaNode, ap netip.AddrPort, interval time.Duration) kaCommon {
	c := kaCommon{port: ap.Port(), ip: ap.Addr(), timeout: 5 * time.Second, interval: interval}
	for _, o := range n.children {
		switch o.key() {
		case "connect_port":
			port, ok := resolvePort(o.arg(0))
			if !ok {
				p.errorf(o.line, "connect_port: %q is not a port", o.arg(0))
			}
			c.port = port
		case "connect_ip":
			a, err := netip.ParseAddr(o.arg(0))
			if err != nil {
				p.errorf(o.line, "connect_ip: %q is not an IP address", o.arg(0))
			} else {
				c.ip = a
			}
		case "connect_timeout":
			c.timeout = p.kaSeconds(o, 5)
		case "delay_loop":
			c.interval = p.kaSeconds(o, 60)
		case "retry", "nb_get_retry":
			n, err := strconv.Atoi(o.arg(0))
			if err != nil || n < 0 {
				p.errorf(o.line, "%s: %q is not a count", o.key(), o.arg(0))
			}
			c.failures = n + 1 // the first failure and its retries
		case "delay_before_retry":
			p.addf(o.line, "delay_before_retry has no Consul equivalent: a failed check is retried at its interval")
		case "warmup", "bindto", "bind_port", "bind_if", "fwmark":
			p.addf(o.line, "%s has no Consul equivalent: ignored", o.key())
		}
	}
	return c
}

func (c kaCommon) check(name string) Check {
	ch := Check{Name: name, Interval: c.interval, Timeout: c.timeout}
	if c.failures > 1 {
		ch.FailuresBeforeCritical = c.failures
	}
	return ch
}

func (c kaCommon) target() string { return netip.AddrPortFrom(c.ip, c.port).String() }

// kaHTTP maps HTTP_GET and SSL_GET: one Consul HTTP check per url block.
func (p *kaParser) kaHTTP(n *kaNode, ap netip.AddrPort, interval time.Duration, host string) []Check {
	c := p.kaCommon(n, ap, interval)
	scheme := "http"
	if n.key() == "SSL_GET" {
		scheme = "https"
	}
	var out []Check
	for _, u := range n.children {
		switch u.key() {
		case "virtualhost":
			host = u.arg(0)
		}
	}
	for _, u := range n.children {
		if u.key() != "url" {
			continue
		}
		path := "/"
		for _, o := range u.children {
			switch o.key() {
			case "path":
				path = o.arg(0)
			case "status_code":
				if code := o.arg(0); !only2xx(code) {
					p.addf(o.line, "status_code %s: Consul's HTTP check passes on 2xx only", code)
				}
			case "digest":
				p.addf(o.line, "digest: Consul's HTTP check cannot compare the body's MD5; the status is all that is checked")
			case "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset":
				p.addf(o.line, "%s: Consul's HTTP check cannot match the body against a regexp; the status is all that is checked", o.key())
			case "virtualhost":
				p.addf(o.line, "virtualhost in a url block: the checker's virtualhost is used")
			}
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		url := fmt.Sprintf("%s://%s%s", scheme, c.target(), path)
		ch := c.check("GET " + url)
		ch.HTTP, ch.Host, ch.TLSSkipVerify = url, host, scheme == "https"
		out = append(out, ch)
	}
	if len(out) == 0 {
		p.addf(n.line, "%s without a url block checks nothing in keepalived: no check", n.key())
	}
	return out
}

// kaTCP maps TCP_CHECK.
func (p *kaParser) kaTCP(n *kaNode, ap netip.AddrPort, interval time.Duration) Check {
	c := p.kaCommon(n, ap, interval)
	ch := c.check("TCP " + c.target())
	ch.TCP = c.target()
	return ch
}

// only2xx reports whether a status_code ("200", "200-299") accepts
// nothing but 2xx, as Consul's HTTP check does.
func only2xx(code string) bool {
	lo, hi, ok := strings.Cut(code, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	return err1 == nil && err2 == nil && a >= 200 && b <= 299 && a <= b
}
