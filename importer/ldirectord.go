package importer

// ldirectord.cf, read the way ldirectord's own read_config reads it: one
// file for the grammar (global and virtual directives and their values),
// a little over 400 lines because it is one grammar; its checks are in
// ldcheck.go.

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvs-sync/lvs-sync/internal/progress"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// ldirectord.cf, as Debian's ldirectord 4.12 reads it (read_config): global
// directives at the start of a line; "virtual=" (or "virtual6=") opens a
// block whose directives follow, indented by at least four spaces or a
// tab; the first line that is not indented (a blank one too) closes it.
// Comment lines are skipped, and in a block "#" starts a comment anywhere.
// Global settings apply to every block whatever their place in the file,
// as ldirectord reads them when it checks.

var (
	ldVirtualRe = regexp.MustCompile(`^virtual(6)?\s*=\s*(.*)`)
	ldIndentRe  = regexp.MustCompile(`^ {4,}(.+)`)
	ldKeyRe     = regexp.MustCompile(`^([a-z0-9]+)\s*=\s*(.*)$`)
	ldQuotedRe  = regexp.MustCompile(`^"(.*)"`)
	ldNumberRe  = regexp.MustCompile(`^(\d+)`)
	ldRealRe    = regexp.MustCompile(`^(\d+\.\d+\.\d+\.\d+|\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+)(->(\d+\.\d+\.\d+\.\d+|\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+))?(:(\d+|[A-Za-z0-9_-]+))?\s+(.*)`)
	ldPairRe    = regexp.MustCompile(`^\s+"(.*)"[, ]\s*"(.*)"(.*)`)
	ldWeightRe  = regexp.MustCompile(`^\s+(\d+)(.*)`)
	ldMethodRe  = regexp.MustCompile(`^(\w+)(.*)`)
	ldThreshRe  = regexp.MustCompile(`^\s+"?([lu]):(\d+)"?(.*)`)
)

// ldDirective is one "key = value" line.
type ldDirective struct {
	value string
	line  int
}

type ldVirtual struct {
	line  int
	ipv6  bool
	spec  string
	d     map[string]ldDirective
	reals []ldDirective
}

// ldGlobal are the global directives that matter to the import.
type ldGlobal struct {
	d map[string]ldDirective
}

func (g ldGlobal) get(key string) (ldDirective, bool) { d, ok := g.d[key]; return d, ok }

// ParseLdirectord imports an ldirectord.cf; file names it in positions.
// The error, if any, is Errors: every problem, each with its line. prog
// (nil: none) is told how many virtual services are imported of how many.
func ParseLdirectord(file string, src []byte, prog *progress.Reporter) (*Result, error) {
	p := &ldParser{notes: notes{file: file}, file: file}
	lines := strings.Split(strings.ReplaceAll(string(src), "\r\n", "\n"), "\n")
	global := ldGlobal{d: map[string]ldDirective{}}
	var virtuals []*ldVirtual
	for i := 0; i < len(lines); {
		raw, n := lines[i], i+1
		i++
		if m := ldVirtualRe.FindStringSubmatch(raw); m != nil {
			v := &ldVirtual{line: n, ipv6: m[1] != "", spec: strings.TrimSpace(m[2]), d: map[string]ldDirective{}}
			for i < len(lines) {
				l := lines[i]
				if strings.HasPrefix(strings.TrimSpace(l), "#") {
					i++
					continue
				}
				if c := strings.IndexByte(l, '#'); c >= 0 {
					l = l[:c]
				}
				l = strings.ReplaceAll(l, "\t", "    ")
				m := ldIndentRe.FindStringSubmatch(l)
				if m == nil {
					break
				}
				i++
				p.virtualDirective(v, strings.TrimSpace(m[1]), i)
			}
			virtuals = append(virtuals, v)
			continue
		}
		t := strings.TrimSpace(raw)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		p.globalDirective(global, strings.TrimRight(raw, " \t"), n)
	}
	res := &Result{Source: file, Tool: "ldirectord"}
	if d, ok := global.get("cleanstop"); ok && d.value == "yes" {
		res.CleanupOnExit = true
	}
	prog.SetTotal(len(virtuals))
	for i, v := range virtuals {
		prog.Update(i)
		if s := p.service(global, v); s != nil {
			res.Services = append(res.Services, s)
		}
	}
	prog.Done(len(virtuals))
	return p.result(res)
}

type ldParser struct {
	notes
	file string
	errs Errors
}

// result finishes a parse: the errors in line order, or the services
// with unique names and the notes.
func (p *ldParser) result(res *Result) (*Result, error) {
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Pos.Line, b.Pos.Line) })
		return nil, p.errs
	}
	uniqueNames(res.Services)
	res.Notes = p.sorted()
	return res, nil
}

func (p *ldParser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{Pos: Pos{File: p.file, Line: line}, Message: fmt.Sprintf(format, args...)})
}

// ldGlobalKeys are the global directives ldirectord knows, and what the
// import says of each one lvs-sync has no equivalent for ("" = nothing to
// say: its meaning is carried, or it does not matter to the table).
var ldGlobalKeys = map[string]string{
	"checktimeout": "", "negotiatetimeout": "", "checkinterval": "", "failurecount": "",
	"fallback": "", "fallback6": "", "quiescent": "", "cleanstop": "",
	"fork": "", "supervised": "",
	"checkcount":       "checkcount (deprecated in ldirectord) has no Consul equivalent; use failurecount",
	"autoreload":       "autoreload: run lvs-sync with -autoreload, or send it SIGHUP",
	"callback":         "callback has no equivalent: lvs-sync reloads on SIGHUP or with -autoreload",
	"logfile":          "logfile: lvs-sync logs to stderr (the journal under systemd)",
	"execute":          "execute starts another ldirectord config: import that file too",
	"emailalert":       "emailalert has no equivalent: alert on Consul's health checks or lvs-sync's metrics",
	"emailalertfreq":   "emailalertfreq has no equivalent",
	"emailalertstatus": "emailalertstatus has no equivalent",
	"emailalertfrom":   "emailalertfrom has no equivalent",
	"smtp":             "smtp has no equivalent",
	"fallbackcommand":  "fallbackcommand has no equivalent: lvs-sync only switches to the fallback server",
	"maintenancedir":   "maintenancedir has no equivalent: use `consul maint` on the instance or its node",
	"readdquiescent":   "readdquiescent has no equivalent: lvs-sync keeps the kernel equal to the catalog",
}

func (p *ldParser) globalDirective(g ldGlobal, l string, line int) {
	m := ldKeyRe.FindStringSubmatch(l)
	if m == nil {
		if l == "supervised" {
			return
		}
		p.errorf(line, "unknown directive %q", l)
		return
	}
	key, val := m[1], strings.TrimSpace(m[2])
	note, ok := ldGlobalKeys[key]
	switch {
	case !ok && (key == "timeout" || key == "connecttimeout"):
		p.errorf(line, "%s is no longer accepted by ldirectord: use checktimeout and negotiatetimeout", key)
		return
	case !ok:
		p.errorf(line, "unknown directive %q", key)
		return
	case note != "":
		p.addf(line, "%s", note)
	}
	if p.checkValue(key, val, line) {
		g.d[key] = ldDirective{value: val, line: line}
	}
}

// checkValue validates the values ldirectord validates, for a directive
// allowed globally or in a block.
func (p *ldParser) checkValue(key, val string, line int) bool {
	switch key {
	case "checktimeout", "negotiatetimeout", "checkinterval", "failurecount", "checkcount", "persistent":
		if n, err := strconv.Atoi(val); err != nil || (n <= 0 && key != "persistent") {
			p.errorf(line, "%s: %q is not a positive number of seconds", key, val)
			return false
		}
	case "quiescent", "cleanstop", "autoreload", "fork", "readdquiescent", "ops":
		if val != "yes" && val != "no" {
			p.errorf(line, "%s must be yes or no, not %q", key, val)
			return false
		}
	}
	return true
}

// ldVirtualKeys are the directives of a virtual block, and the note for
// those without an equivalent.
var ldVirtualKeys = map[string]string{
	"real": "", "real6": "", "request": "", "receive": "", "checktype": "", "checktimeout": "",
	"negotiatetimeout": "", "failurecount": "", "checkinterval": "", "checkport": "",
	"scheduler": "", "persistent": "", "netmask": "", "protocol": "", "ops": "", "service": "",
	"httpmethod": "", "virtualhost": "", "fallback": "", "fallback6": "", "quiescent": "",
	"servicename": "", "comment": "", "login": "", "passwd": "", "database": "", "secret": "",
	"checkcommand":     "",
	"checkcount":       "checkcount (deprecated in ldirectord) has no Consul equivalent; use failurecount",
	"load":             "load has no equivalent",
	"schedflags":       "schedflags (ipvsadm -b) is not in this lvs-sync's config: the scheduler's flags are dropped",
	"fallbackcommand":  "fallbackcommand has no equivalent: lvs-sync only switches to the fallback server",
	"emailalert":       "emailalert has no equivalent: alert on Consul's health checks or lvs-sync's metrics",
	"emailalertfreq":   "emailalertfreq has no equivalent",
	"emailalertstatus": "emailalertstatus has no equivalent",
	"monitorfile":      "monitorfile has no equivalent: Consul keeps each check's output (lvs-sync explain shows it)",
	"cleanstop":        "cleanstop in a virtual section has no equivalent: lvs-sync's cleanup_on_exit is for the whole director",
	"smtp":             "smtp has no equivalent",
}

func (p *ldParser) virtualDirective(v *ldVirtual, l string, line int) {
	m := ldKeyRe.FindStringSubmatch(l)
	if m == nil {
		p.errorf(line, "unknown directive %q in the virtual service of line %d", l, v.line)
		return
	}
	key, val := m[1], strings.TrimSpace(m[2])
	note, ok := ldVirtualKeys[key]
	switch {
	case key == "connecttimeout":
		p.errorf(line, "connecttimeout is no longer accepted by ldirectord: use negotiatetimeout")
		return
	case !ok:
		p.errorf(line, "unknown directive %q in the virtual service of line %d", key, v.line)
		return
	case note != "":
		p.addf(line, "%s", note)
	}
	switch key {
	case "real", "real6":
		if (key == "real6") != v.ipv6 {
			p.errorf(line, "%s cannot be used in a virtual%s section", key, map[bool]string{true: "6"}[v.ipv6])
			return
		}
		v.reals = append(v.reals, ldDirective{value: val, line: line})
		return
	case "request", "receive", "login", "passwd", "database", "secret":
		q := ldQuotedRe.FindStringSubmatch(val)
		if q == nil || q[1] == "" {
			p.errorf(line, "%s must be a non-empty string in straight double quotes, not %s", key, val)
			return
		}
		val = q[1]
	case "virtualhost", "checkcommand":
		val = strings.Trim(val, `"`)
	}
	if !p.checkValue(key, val, line) {
		return
	}
	v.d[key] = ldDirective{value: val, line: line}
}

// setting is a value from the block, else from the global section.
func (v *ldVirtual) setting(g ldGlobal, key string) (ldDirective, bool) {
	if d, ok := v.d[key]; ok {
		return d, true
	}
	return g.get(key)
}

// ldPortToService is ldirectord's default service for a virtual port.
var ldPortToService = map[uint16]string{
	21: "ftp", 25: "smtp", 53: "dns", 80: "http", 110: "pop", 119: "nntp", 143: "imap",
	389: "ldap", 443: "https", 587: "submission", 636: "ldaps", 993: "imaps", 995: "pops",
	1521: "oracle", 1812: "radius", 3128: "http_proxy", 3306: "mysql", 5432: "pgsql", 5060: "sip",
}

func (p *ldParser) service(g ldGlobal, v *ldVirtual) *Service {
	proto := "tcp"
	var addr netip.AddrPort
	var ok bool
	mark, isMark := p.mark(v)
	switch {
	case isMark && mark == 0:
		return nil
	case isMark:
		proto, addr = "fwm", netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
		if v.ipv6 {
			addr = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
	case !isMark:
		if addr, ok = p.addrPort(v.spec, v.ipv6, v.line, "virtual"); !ok {
			return nil
		}
	}
	if addr.Port() == 53 {
		proto = "udp"
	}
	if d, ok := v.d["protocol"]; ok {
		switch {
		case isMark && d.value != "fwm":
			p.errorf(d.line, "virtual = %s is a firewall mark, whose protocol is fwm, not %q", v.spec, d.value)
			return nil
		case d.value == "tcp", d.value == "udp", d.value == "fwm" && isMark:
			proto = d.value
		case d.value == "fwm":
			p.errorf(d.line, "protocol fwm needs a firewall mark as virtual, not %s", v.spec)
			return nil
		default:
			p.errorf(d.line, "protocol must be tcp or udp, not %q", d.value)
			return nil
		}
	}
	s := &Service{
		Pos:       Pos{File: p.file, Line: v.line},
		Address:   addr,
		FWMark:    mark,
		Scheduler: "wrr",
		Comment:   v.d["comment"].value,
	}
	s.Protocol, _ = lvs.ParseProtocol(proto)
	s.Name = serviceName(v.d["servicename"].value, proto, addr)
	if isMark {
		s.Name = markName(v.d["servicename"].value, mark)
	}
	if d, ok := v.d["scheduler"]; ok {
		s.Scheduler = d.value
	}
	if d, ok := v.d["persistent"]; ok {
		n, _ := strconv.Atoi(d.value)
		s.Persistence = time.Duration(n) * time.Second
	}
	if d, ok := v.d["netmask"]; ok {
		s.PersistenceNetmask = p.persistenceNetmask(d.value, d.line, "netmask", s)
	}
	if d, ok := v.d["ops"]; ok && d.value == "yes" {
		s.OnePacket = p.onePacket(d.line, "ops = yes", s)
	}
	if d, ok := v.setting(g, "quiescent"); ok {
		s.Quiescent = d.value == "yes"
	}
	if d, ok := v.d["checkinterval"]; ok {
		if f, _ := g.get("fork"); f.value != "yes" {
			p.addf(d.line, "checkinterval in a virtual section counts in ldirectord only with fork = yes; its Consul checks use it")
		}
	}
	check := p.checkTemplate(g, v, s)
	fbMethod, fbLine, hasFB := p.fallback(g, v, s)
	var methods []lvs.Forward
	for _, rd := range v.reals {
		for _, r := range p.reals(rd, v, s, check) {
			if len(methods) > 0 && r.method != methods[0] {
				p.addf(rd.line, "real %s forwards by %s, but lvs-sync has one forwarding method per virtual service: it gets %s, the first real's",
					r.Addr, r.method, methods[0])
			}
			methods = append(methods, r.method)
			if check.off {
				continue
			}
			if hasFB && r.Addr == s.Fallback {
				// ldirectord takes it for the fallback: it deletes it
				// from the table whenever another real is up.
				p.addf(rd.line, "real %s is also the fallback: ldirectord serves it only when every other real is down, so it is the fallback here and not a real", r.Addr)
				continue
			}
			if r.Weight == 0 {
				p.addf(rd.line, "real %s has weight 0, which Consul weights cannot express (they start at 1): it is left out", r.Addr)
				continue
			}
			real := r.Real
			s.Reals = append(s.Reals, &real)
		}
	}
	switch {
	case len(methods) > 0:
		s.Forward = methods[0]
	case hasFB:
		s.Forward = fbMethod
	default:
		s.Forward = lvs.Route
		p.addf(v.line, "virtual %s has no real server to take a forwarding method from: gate assumed", v.spec)
	}
	if hasFB && fbMethod != s.Forward {
		p.addf(fbLine, "fallback forwards by %s, but lvs-sync forwards to the fallback like to the reals: by %s", fbMethod, s.Forward)
	}
	if s.Fallback.IsValid() && isMark {
		// A mark's reals, the fallback too, keep each packet's port.
		s.Fallback = netip.AddrPortFrom(s.Fallback.Addr(), 0)
	} else if s.Fallback.IsValid() && !s.Forward.TranslatesPort() && s.Fallback.Port() != addr.Port() {
		p.addf(fbLine, "fallback %s: %s forwarding cannot change the port to %d: the fallback is left out", s.Fallback, s.Forward, s.Fallback.Port())
		s.Fallback = netip.AddrPort{}
	}
	return s
}

// addrPort parses IP:PORT or [IPv6]:PORT, with a service name for the
// port; a host name is a note, and false.
func (p *ldParser) addrPort(spec string, ipv6 bool, line int, what string) (netip.AddrPort, bool) {
	host, port, ok := splitHostPort(spec)
	if !ok {
		p.errorf(line, "%s %q is not ADDRESS:PORT", what, spec)
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		p.addf(line, "%s %s: host names are not resolved on import; write the address: skipped", what, host)
		return netip.AddrPort{}, false
	}
	if a.Is6() != ipv6 {
		p.errorf(line, "%s %s: use %s for IPv%s addresses", what, spec, map[bool]string{true: "virtual6/real6", false: "virtual/real"}[a.Is6()], map[bool]string{true: "6", false: "4"}[a.Is6()])
		return netip.AddrPort{}, false
	}
	n, ok := resolvePort(port)
	if !ok {
		p.errorf(line, "%s %s: unknown port %q", what, spec, port)
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, n), true
}

func splitHostPort(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	host, port = s[:i], s[i+1:]
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "", "", false
	}
	return host, port, true
}

func resolvePort(s string) (uint16, bool) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint16(n), true
	}
	n, ok := wellKnownPorts[s]
	return n, ok
}
