package importer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/progress"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// keepalived.conf, as keepalived 2.2 reads it: one statement a line, words
// separated by blanks, "{" opening a block (at the end of the line or on
// the next one) and "}" closing it, comments from "#" or "!" to the end
// of the line. Only virtual_server and virtual_server_group matter here;
// global_defs is ignored, and VRRP (the VIP failover lvs-sync leaves to
// others) is a note.

// kaNode is a statement and, if it opens one, its block.
type kaNode struct {
	words    []string
	line     int
	children []*kaNode
	block    bool
}

func (n *kaNode) key() string { return n.words[0] }

// arg is the i-th word after the keyword, or "".
func (n *kaNode) arg(i int) string {
	if i+1 < len(n.words) {
		return n.words[i+1]
	}
	return ""
}

// kaTokens splits a line into words, "{" and "}"; quoted strings are one
// word, without their quotes.
func kaTokens(line string) []string {
	var out []string
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == '#' || c == '!':
			return out
		case c == ' ' || c == '\t':
			i++
		case c == '{' || c == '}':
			out = append(out, string(c))
			i++
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				out = append(out, line[i+1:])
				return out
			}
			out = append(out, line[i+1:i+1+j])
			i += j + 2
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t{}#!", rune(line[j])) {
				j++
			}
			out = append(out, line[i:j])
			i = j
		}
	}
	return out
}

// kaParseTree builds the statement tree of src.
func kaParseTree(file string, src []byte) ([]*kaNode, Errors) {
	var errs Errors
	root := &kaNode{block: true}
	stack := []*kaNode{root}
	var last *kaNode
	for i, raw := range strings.Split(strings.ReplaceAll(string(src), "\r\n", "\n"), "\n") {
		line := i + 1
		var cur *kaNode
		for _, t := range kaTokens(raw) {
			top := stack[len(stack)-1]
			switch t {
			case "{":
				target := cur
				if target == nil {
					target = last // "{" alone on the line after its statement
				}
				if target == nil || target.block {
					errs = append(errs, &Error{Pos: Pos{file, line}, Message: "\"{\" without a statement to open"})
					continue
				}
				target.block = true
				stack = append(stack, target)
				cur, last = nil, nil
			case "}":
				if len(stack) == 1 {
					errs = append(errs, &Error{Pos: Pos{file, line}, Message: "\"}\" without a block to close"})
					continue
				}
				stack = stack[:len(stack)-1]
				cur, last = nil, nil
			default:
				if cur == nil {
					cur = &kaNode{line: line}
					top.children = append(top.children, cur)
				}
				cur.words = append(cur.words, t)
			}
		}
		if cur != nil {
			last = cur
		}
	}
	if len(stack) > 1 {
		open := stack[len(stack)-1]
		errs = append(errs, &Error{Pos: Pos{file, open.line}, Message: fmt.Sprintf("the block of %q is never closed", open.key())})
	}
	return root.children, errs
}

// ParseKeepalived imports the virtual_server blocks of a keepalived.conf;
// file names it in positions. The error, if any, is Errors. prog (nil:
// none) is told how many top-level blocks are imported of how many.
func ParseKeepalived(file string, src []byte, prog *progress.Reporter) (*Result, error) {
	tree, errs := kaParseTree(file, src)
	p := &kaParser{ldParser: ldParser{notes: notes{file: file}, file: file, errs: errs}, groups: map[string]*kaNode{}}
	for _, n := range tree {
		if n.key() == "virtual_server_group" && n.block {
			p.groups[n.arg(0)] = n
		}
	}
	vrrp := false
	res := &Result{Source: file, Tool: "keepalived"}
	prog.SetTotal(len(tree))
	for i, n := range tree {
		prog.Update(i)
		switch n.key() {
		case "include":
			p.addf(n.line, "include %s is not followed: import that file too", n.arg(0))
		case "virtual_server":
			res.Services = append(res.Services, p.virtualServer(n)...)
		case "vrrp_instance", "vrrp_sync_group", "vrrp_script":
			if !vrrp {
				p.addf(n.line, "%s: lvs-sync does not fail VIPs over; keep keepalived (or another VRRP daemon) for that, without its virtual_server blocks", n.key())
				vrrp = true
			}
		}
	}
	prog.Done(len(tree))
	return p.result(res)
}

type kaParser struct {
	ldParser
	groups map[string]*kaNode
}

// virtualServer imports "virtual_server IP PORT", "virtual_server group
// NAME" (one virtual service per address of the group, sharing one Consul
// service) and "virtual_server fwmark N".
func (p *kaParser) virtualServer(n *kaNode) []*Service {
	var addrs []netip.AddrPort
	consul := ""
	switch n.arg(0) {
	case "fwmark":
		return p.kaMark(n)
	case "group":
		g, ok := p.groups[n.arg(1)]
		if !ok {
			p.errorf(n.line, "virtual_server group %s: no virtual_server_group of that name", n.arg(1))
			return nil
		}
		consul = sanitize(n.arg(1))
		for _, e := range g.children {
			if e.key() == "fwmark" {
				p.addf(e.line, "fwmark %s in virtual_server_group %s: a group's marks are not imported, its addresses are: write a virtual_server fwmark %s block for it",
					e.arg(0), n.arg(1), e.arg(0))
				continue
			}
			if ap, ok := p.kaAddr(e.key(), e.arg(0), e.line, "virtual_server_group entry"); ok {
				addrs = append(addrs, ap)
			}
		}
	default:
		if ap, ok := p.kaAddr(n.arg(0), n.arg(1), n.line, "virtual_server"); ok {
			addrs = append(addrs, ap)
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	tmpl := p.kaService(n, addrs[0])
	var out []*Service
	for i, a := range addrs {
		s := *tmpl
		s.Address = a
		s.Name = serviceName("", s.Protocol.String(), a)
		if consul != "" {
			s.Name = serviceName(fmt.Sprintf("%s-%s-%d", consul, a.Addr(), a.Port()), "", a)
			s.Consul = consul
			if i > 0 {
				s.Reals = nil // registered once, with the first
			}
		}
		out = append(out, &s)
	}
	return out
}

// kaAddr parses an "IP PORT" pair; an address range ("10.0.0.1-10") is a
// note and false.
func (p *kaParser) kaAddr(ip, port string, line int, what string) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		if strings.Contains(ip, "-") {
			p.addf(line, "%s %s: address ranges are not expanded on import: skipped", what, ip)
		} else {
			p.errorf(line, "%s: %q is not an IP address", what, ip)
		}
		return netip.AddrPort{}, false
	}
	if port == "" {
		port = "0"
	}
	n, ok := resolvePort(port)
	if !ok {
		p.errorf(line, "%s %s: %q is not a port", what, ip, port)
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), n), true
}

// kaVSNotes are the virtual_server keywords lvs-sync has no equivalent for.
var kaVSNotes = map[string]string{
	"persistence_engine":   "persistence_engine (ipvsadm --pe) is not in this lvs-sync's config",
	"quorum":               "quorum has no equivalent: lvs-sync serves with any number of healthy reals, then the fallback",
	"quorum_up":            "quorum_up has no equivalent",
	"quorum_down":          "quorum_down has no equivalent",
	"hysteresis":           "hysteresis has no equivalent",
	"alpha":                "alpha has no equivalent: Consul's checks start critical until they pass",
	"omega":                "omega has no equivalent",
	"ha_suspend":           "ha_suspend has no equivalent",
	"sorry_server_inhibit": "sorry_server_inhibit has no equivalent: the fallback is added when no real has a weight above 0",
	"smtp_alert":           "smtp_alert has no equivalent",
	"notify_up":            "notify_up has no equivalent",
	"notify_down":          "notify_down has no equivalent",
	"lvs_sched_flags":      "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"lb_sched_flags":       "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"mh-port":              "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"mh-fallback":          "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"flag-1":               "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"flag-2":               "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"flag-3":               "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"sh-port":              "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
	"sh-fallback":          "the scheduler's flags (ipvsadm -b) are not in this lvs-sync's config",
}

// kaService reads a virtual_server block's settings and its real servers.
func (p *kaParser) kaService(n *kaNode, addr netip.AddrPort) *Service {
	// Without protocol, keepalived 2.2 programs UDP ("no protocol set -
	// defaulting to UDP"), as the kernel does with protocol 0.
	s := &Service{Pos: Pos{File: p.file, Line: n.line}, Address: addr, Protocol: lvs.UDP, Scheduler: "wlc", Forward: lvs.Masq}
	interval := 60 * time.Second
	host := ""
	hasProto := false
	var granularity, ops *kaNode
	for _, c := range n.children {
		switch c.key() {
		case "delay_loop":
			interval = p.kaSeconds(c, 60)
		case "virtualhost":
			host = c.arg(0)
		case "protocol":
			hasProto = true
		}
	}
	if !hasProto && n.arg(0) != "fwmark" {
		p.addf(n.line, "virtual_server %s has no protocol: keepalived makes it UDP, and so does the import; say protocol TCP if TCP was meant", addr)
	}
	for _, c := range n.children {
		switch k := c.key(); k {
		case "lb_algo", "lvs_sched":
			s.Scheduler = c.arg(0)
		case "lb_kind", "lvs_method":
			m, ok := map[string]lvs.Forward{"NAT": lvs.Masq, "DR": lvs.Route, "TUN": lvs.Tunnel}[strings.ToUpper(c.arg(0))]
			if !ok {
				p.errorf(c.line, "%s must be NAT, DR or TUN, not %q", k, c.arg(0))
			}
			s.Forward = m
		case "protocol":
			proto, err := lvs.ParseProtocol(strings.ToLower(c.arg(0)))
			if err != nil {
				p.errorf(c.line, "protocol must be TCP, UDP or SCTP, not %q", c.arg(0))
			}
			s.Protocol = proto
		case "persistence_timeout":
			s.Persistence = 360 * time.Second // keepalived's default when the value is left out
			if c.arg(0) != "" {
				s.Persistence = p.kaSeconds(c, 360)
			}
		case "persistence_granularity":
			granularity = c // read once the protocol and persistence are
		case "ops":
			ops = c
		case "sorry_server":
			ap, ok := p.kaAddr(c.arg(0), c.arg(1), c.line, "sorry_server")
			if ok {
				s.Fallback = ap
			}
		case "real_server":
			if r := p.kaReal(c, s, interval, host); r != nil {
				s.Reals = append(s.Reals, r)
			}
		case "delay_loop", "virtualhost", "retry", "delay_before_retry", "connect_timeout", "warmup":
		default:
			if note, ok := kaVSNotes[k]; ok {
				p.addf(c.line, "%s", note)
			} else {
				p.addf(c.line, "%s is not known to the importer: ignored", k)
			}
		}
	}
	if granularity != nil {
		s.PersistenceNetmask = p.persistenceNetmask(granularity.arg(0), granularity.line, "persistence_granularity", s)
	}
	if ops != nil {
		s.OnePacket = p.onePacket(ops.line, "ops", s)
	}
	if s.Fallback.IsValid() && !s.Forward.TranslatesPort() && s.Fallback.Port() != addr.Port() && n.arg(0) != "fwmark" {
		p.addf(s.Pos.Line, "sorry_server %s: %s forwarding cannot change the port to %d: the fallback is left out", s.Fallback, s.Forward, s.Fallback.Port())
		s.Fallback = netip.AddrPort{}
	}
	return s
}

func (p *kaParser) kaSeconds(c *kaNode, def int) time.Duration {
	f, err := strconv.ParseFloat(c.arg(0), 64)
	if err != nil || f < 0 {
		p.errorf(c.line, "%s: %q is not a number of seconds", c.key(), c.arg(0))
		return time.Duration(def) * time.Second
	}
	return time.Duration(f * float64(time.Second))
}

// kaReal reads "real_server IP PORT { weight N; HTTP_GET {...} ... }".
func (p *kaParser) kaReal(n *kaNode, s *Service, interval time.Duration, host string) *Real {
	ap, ok := p.kaAddr(n.arg(0), n.arg(1), n.line, "real_server")
	if !ok {
		return nil
	}
	if ap.Port() == 0 {
		ap = netip.AddrPortFrom(ap.Addr(), s.Address.Port())
	}
	r := &Real{Pos: Pos{File: p.file, Line: n.line}, Addr: ap, Weight: 1}
	for _, c := range n.children {
		switch k := c.key(); k {
		case "weight":
			w, err := strconv.Atoi(c.arg(0))
			if err != nil || w < 0 {
				p.errorf(c.line, "weight: %q is not a weight", c.arg(0))
			}
			r.Weight = w
		case "inhibit_on_failure":
			if !s.Quiescent {
				p.addf(c.line, "inhibit_on_failure is per real server in keepalived and per virtual service in lvs-sync: quiescent = true for all of %s", s.Address)
			}
			s.Quiescent = true
		case "HTTP_GET", "SSL_GET":
			r.Checks = append(r.Checks, p.kaHTTP(c, ap, interval, host)...)
		case "TCP_CHECK":
			r.Checks = append(r.Checks, p.kaTCP(c, ap, interval))
		case "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "BFD_CHECK", "FILE_CHECK":
			p.addf(c.line, "%s has no Consul equivalent imported: the real is registered without it", k)
		case "uthreshold", "lthreshold":
			n, err := strconv.Atoi(c.arg(0))
			switch {
			case err == nil && n > lvs.MaxThreshold, errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(c.arg(0), "-"):
				p.addf(c.line, "%s %s: above %d, which the kernel refuses: left out", k, c.arg(0), lvs.MaxThreshold)
			case err != nil || n < 0:
				p.addf(c.line, "%s: %q is not a connection count: left out", k, c.arg(0))
			case k == "uthreshold":
				r.UpperThreshold = n
			default:
				r.LowerThreshold = n
			}
		default:
			if note, ok := kaVSNotes[k]; ok {
				p.addf(c.line, "%s", note)
			} else {
				p.addf(c.line, "%s is not known to the importer: ignored", k)
			}
		}
	}
	if r.LowerThreshold > r.UpperThreshold {
		p.addf(n.line, "real_server %s: lthreshold %d above uthreshold %d, which the kernel refuses: both left out", ap, r.LowerThreshold, r.UpperThreshold)
		r.UpperThreshold, r.LowerThreshold = 0, 0
	}
	if r.Weight == 0 {
		p.addf(n.line, "real_server %s has weight 0, which Consul weights cannot express (they start at 1): it is left out", ap)
		return nil
	}
	return r
}
