package importer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The real and fallback lines of an ldirectord virtual block.

type ldReal struct {
	Real
	method lvs.Forward
}

// reals parses a real line: ADDRESS[->ADDRESS][:PORT] gate|masq|ipip
// [weight] ["request", "receive"] [l:N] [u:N].
func (p *ldParser) reals(rd ldDirective, v *ldVirtual, s *Service, check ldCheck) []ldReal {
	m := ldRealRe.FindStringSubmatch(rd.value)
	if m == nil {
		p.errorf(rd.line, "real %q is not ADDRESS[:PORT] gate|masq|ipip [WEIGHT]", rd.value)
		return nil
	}
	first, last, port, flags := m[1], m[3], m[5], m[6]
	if port == "" {
		port = strconv.Itoa(int(s.Address.Port()))
	}
	fm := ldMethodRe.FindStringSubmatch(flags)
	if fm == nil {
		p.errorf(rd.line, "real %s: forwarding method must be gate, masq or ipip", first)
		return nil
	}
	method, ok := lvs.ParseForward(fm[1])
	if ok != nil {
		p.errorf(rd.line, "real %s: forwarding method must be gate, masq or ipip, not %q", first, fm[1])
		return nil
	}
	flags = fm[2]
	weight := 1
	if w := ldWeightRe.FindStringSubmatch(flags); w != nil {
		weight, _ = strconv.Atoi(w[1])
		flags = w[2]
	}
	if pr := ldPairRe.FindStringSubmatch(flags); pr != nil {
		check.request, check.receive = pr[1], pr[2]
		if !strings.HasPrefix(check.request, "/") && !ldSchemeRe.MatchString(check.request) {
			check.request = "/" + check.request
		}
		if check.kind == "http" {
			p.receiveNote(check.receive, rd.line)
		}
		flags = pr[3]
	}
	var upper, lower int
	for {
		t := ldThreshRe.FindStringSubmatch(flags)
		if t == nil {
			break
		}
		n, err := strconv.Atoi(t[2])
		switch {
		case err == nil && n > lvs.MaxThreshold, err != nil && errors.Is(err, strconv.ErrRange):
			p.addf(rd.line, "real %s: connection threshold %s:%s is above %d, which the kernel refuses: left out", first, t[1], t[2], lvs.MaxThreshold)
		case err != nil:
			p.addf(rd.line, "real %s: connection threshold %s:%s is out of range: left out", first, t[1], t[2])
		case t[1] == "u":
			upper = n
		default:
			lower = n
		}
		flags = t[3]
	}
	if lower > upper {
		p.addf(rd.line, "real %s: lower connection threshold %d above the upper %d, which the kernel refuses: both left out", first, lower, upper)
		upper, lower = 0, 0
	}
	if strings.TrimSpace(flags) != "" {
		p.errorf(rd.line, "real %s: cannot read %q", first, strings.TrimSpace(flags))
		return nil
	}
	start, ok1 := p.addrPort(first+":"+port, v.ipv6, rd.line, "real")
	if !ok1 {
		return nil
	}
	end := start
	if last != "" {
		e, ok := p.addrPort(last+":"+port, v.ipv6, rd.line, "real")
		if !ok {
			return nil
		}
		if v.ipv6 || e.Addr().Less(start.Addr()) {
			p.errorf(rd.line, "real %s->%s is not an ascending IPv4 range", first, last)
			return nil
		}
		end = e
	}
	var out []ldReal
	for a := start.Addr(); ; a = a.Next() {
		ap := netip.AddrPortFrom(a, start.Port())
		r := ldReal{Real: Real{Pos: Pos{File: p.file, Line: rd.line}, Addr: ap, Weight: weight,
			UpperThreshold: upper, LowerThreshold: lower}, method: method}
		r.Checks = p.checks(check, ap)
		out = append(out, r)
		if a == end.Addr() || len(out) >= 1024 {
			break
		}
	}
	if s.FWMark != 0 && method == lvs.Masq && start.Port() != 0 {
		p.addf(rd.line, "real %s: ldirectord sends every marked port to port %d with NAT; lvs-sync keeps each packet's port, %d is its checks'",
			first, start.Port(), start.Port())
	}
	if method != lvs.Masq && start.Port() != s.Address.Port() && s.FWMark == 0 {
		p.addf(rd.line, "real %s: %s forwarding cannot change the port: traffic goes to port %d, its checks to %d",
			first, method, s.Address.Port(), start.Port())
	}
	return out
}

// fallback sets s.Fallback from the block's fallback, else the global one,
// and returns its forwarding method and line; ok is false without one.
func (p *ldParser) fallback(g ldGlobal, v *ldVirtual, s *Service) (method lvs.Forward, line int, ok bool) {
	key := "fallback"
	if v.ipv6 {
		key = "fallback6"
	}
	d, ok := v.d[key]
	if !ok {
		if d, ok = g.get(key); !ok {
			return 0, 0, false
		}
	}
	fields := strings.Fields(d.value)
	if len(fields) == 0 || len(fields) > 2 {
		p.errorf(d.line, "fallback %q is not ADDRESS[:PORT] [gate|masq|ipip]", d.value)
		return 0, d.line, false
	}
	method = lvs.Route
	if len(fields) == 2 {
		m, err := lvs.ParseForward(fields[1])
		if err != nil {
			p.errorf(d.line, "fallback: forwarding method must be gate, masq or ipip, not %q", fields[1])
			return 0, d.line, false
		}
		method = m
	}
	spec := fields[0]
	if _, _, ok := splitHostPort(spec); !ok || (v.ipv6 && !strings.Contains(spec, "]:")) {
		spec = fmt.Sprintf("%s:%d", spec, s.Address.Port())
	}
	spec = strings.Replace(spec, "localhost:", map[bool]string{false: "127.0.0.1:", true: "[::1]:"}[v.ipv6], 1)
	ap, good := p.addrPort(spec, v.ipv6, d.line, "fallback")
	if !good {
		return 0, d.line, false
	}
	s.Fallback = ap
	return method, d.line, true
}
