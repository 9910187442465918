// Package importtest holds what the tests of `lvs-sync import` compare
// with: an IPVS table as a set of (service, scheduler, persistence, reals
// with method and weight), read from ipvsadm commands (what ldirectord
// runs, what `lvs-sync render` and `ipvsadm -S -n` print); a stateful
// stand-in for ipvsadm that ldirectord can drive without IPVS; and real
// servers on loopback that answer its checks and Consul's.
//
// It is test support: it may import the standard library and lvs-sync's
// lvs, and is imported only by tests.
package importtest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Real is a real server of a Table service.
type Real struct {
	Method string // -g, -m or -i
	Weight int
}

// Service is a virtual service of a Table.
type Service struct {
	Scheduler   string
	Persistence int // seconds; 0 is none
	Reals       map[string]Real
}

// Table is an IPVS table, by service ("-t 10.0.0.1:80", "-f 1").
type Table map[string]*Service

// Apply runs one ipvsadm command (its arguments, without "ipvsadm") on t,
// with ipvsadm's meaning: -A/-E/-D a service, -a/-e/-d a real, -C all.
func (t Table) Apply(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command")
	}
	op, rest := args[0], args[1:]
	var svc, real, method, sched string
	weight, persist := -1, -1
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		next := func() (string, error) {
			if i+1 >= len(rest) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return rest[i], nil
		}
		var v string
		var err error
		switch a {
		case "-t", "-u", "-f", "--tcp-service", "--udp-service", "--fwmark-service", "--sctp-service":
			if v, err = next(); err == nil {
				svc, err = serviceKey(a, v)
			}
		case "-r", "--real-server":
			if v, err = next(); err == nil {
				real, err = normAddr(v)
			}
		case "-s", "--scheduler":
			sched, err = next()
		case "-w", "--weight":
			if v, err = next(); err == nil {
				weight, err = strconv.Atoi(v)
			}
		case "-p", "--persistent":
			persist = 300 // ipvsadm's default timeout
			if i+1 < len(rest) && !strings.HasPrefix(rest[i+1], "-") {
				persist, err = strconv.Atoi(rest[i+1])
				i++
			}
		case "-g", "--gatewaying", "-m", "--masquerading", "-i", "--ipip":
			method = map[string]string{"--gatewaying": "-g", "--masquerading": "-m", "--ipip": "-i"}[a]
			if method == "" {
				method = a
			}
		case "-M", "--netmask", "-x", "--u-threshold", "-y", "--l-threshold", "-b", "--sched-flags", "--pe",
			"--tun-type", "--tun-port":
			_, err = next() // not compared
		case "-6", "-o", "--ops", "-n", "--tun-nocsum", "--tun-csum", "--tun-remcsum":
		default:
			err = fmt.Errorf("unknown argument %q", a)
		}
		if err != nil {
			return fmt.Errorf("ipvsadm %s: %w", strings.Join(args, " "), err)
		}
	}
	if op != "-C" && svc == "" {
		return fmt.Errorf("ipvsadm %s: no service", strings.Join(args, " "))
	}
	s := t[svc]
	switch op {
	case "-A", "--add-service":
		if s != nil {
			return fmt.Errorf("ipvsadm -A %s: service exists", svc)
		}
		s = &Service{Scheduler: "wlc", Reals: map[string]Real{}}
		t[svc] = s
		fallthrough
	case "-E", "--edit-service":
		if s == nil {
			return fmt.Errorf("ipvsadm -E %s: no such service", svc)
		}
		// Like ipvsadm, -E sets every option: what it leaves out is the default.
		s.Scheduler = "wlc"
		if sched != "" {
			s.Scheduler = sched
		}
		s.Persistence = max(persist, 0)
	case "-D", "--delete-service":
		if s == nil {
			return fmt.Errorf("ipvsadm -D %s: no such service", svc)
		}
		delete(t, svc)
	case "-a", "--add-server", "-e", "--edit-server":
		if s == nil {
			return fmt.Errorf("ipvsadm %s %s: no such service", op, svc)
		}
		_, exists := s.Reals[real]
		add := op == "-a" || op == "--add-server"
		if add == exists {
			return fmt.Errorf("ipvsadm %s %s -r %s: real %s", op, svc, real, map[bool]string{true: "exists", false: "does not exist"}[exists])
		}
		r := s.Reals[real]
		if add {
			r = Real{Method: "-g", Weight: 1}
		}
		if method != "" {
			r.Method = method
		}
		if weight >= 0 {
			r.Weight = weight
		}
		s.Reals[real] = r
	case "-d", "--delete-server":
		if s == nil {
			return fmt.Errorf("ipvsadm -d %s: no such service", svc)
		}
		if _, ok := s.Reals[real]; !ok {
			return fmt.Errorf("ipvsadm -d %s -r %s: no such real", svc, real)
		}
		delete(s.Reals, real)
	case "-C", "--clear":
		clear(t)
	default:
		return fmt.Errorf("ipvsadm %s: unknown command", op)
	}
	return nil
}

// Parse reads lines of ipvsadm commands, as `ipvsadm -S -n` prints them
// (or a recording of ipvsadm calls): "-A ..." and "-a ...", one a line.
func Parse(text string) (Table, error) {
	t := Table{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "ipvsadm" {
			f = f[1:]
		}
		if len(f) == 0 {
			continue
		}
		if err := t.Apply(f); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t Table) keys() []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// String is t in the form of `ipvsadm -S -n`, sorted: equal tables have
// equal strings.
func (t Table) String() string {
	var b strings.Builder
	for _, k := range t.keys() {
		s := t[k]
		fmt.Fprintf(&b, "-A %s -s %s", k, s.Scheduler)
		if s.Persistence > 0 {
			fmt.Fprintf(&b, " -p %d", s.Persistence)
		}
		b.WriteByte('\n')
		for _, r := range slices.Sorted(maps.Keys(s.Reals)) {
			fmt.Fprintf(&b, "-a %s -r %s %s -w %d\n", k, r, s.Reals[r].Method, s.Reals[r].Weight)
		}
	}
	return b.String()
}

// List is t as `ipvsadm -L -n` prints it (with --thresholds, its
// threshold columns), the form ldirectord parses.
func (t Table) List(thresholds bool) string {
	var b strings.Builder
	b.WriteString("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n")
	if thresholds {
		b.WriteString("  -> RemoteAddress:Port            Uthreshold Lthreshold ActiveConn InActConn\n")
	} else {
		b.WriteString("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	for _, k := range t.keys() {
		s := t[k]
		proto, addr, _ := strings.Cut(k, " ")
		name := map[string]string{"-t": "TCP", "-u": "UDP", "-f": "FWM", "--sctp-service": "SCTP"}[proto]
		fmt.Fprintf(&b, "%s  %s %s", name, addr, s.Scheduler)
		if s.Persistence > 0 {
			fmt.Fprintf(&b, " persistent %d", s.Persistence)
		}
		b.WriteByte('\n')
		for _, r := range slices.Sorted(maps.Keys(s.Reals)) {
			if thresholds {
				fmt.Fprintf(&b, "  -> %-28s %-10d %-10d %-10d %d\n", r, 0, 0, 0, 0)
				continue
			}
			fwd := map[string]string{"-g": "Route", "-m": "Masq", "-i": "Tunnel"}[s.Reals[r].Method]
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %d\n", r, fwd, s.Reals[r].Weight, 0, 0)
		}
	}
	return b.String()
}

func serviceKey(flag, v string) (string, error) {
	if short, ok := map[string]string{"--tcp-service": "-t", "--udp-service": "-u", "--fwmark-service": "-f"}[flag]; ok {
		flag = short
	}
	if flag == "-f" {
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return "", fmt.Errorf("firewall mark %q", v)
		}
		return "-f " + v, nil
	}
	a, err := normAddr(v)
	return flag + " " + a, err
}

// normAddr writes an IP:PORT the way ipvsadm -S -n does.
func normAddr(v string) (string, error) {
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", v, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}
