package hostnet

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// DirectorNeeds is what a director's virtual services ask of the kernel's
// settings: what lvs-sync's config uses, in hostnet's words.
type DirectorNeeds struct {
	// Services: there is a virtual service, so reals get deleted.
	Services bool
	// Persistence: some virtual service has persistence templates.
	Persistence bool
	// Masq4 and Masq6: some IPv4 (IPv6) virtual service uses masq.
	Masq4, Masq6 bool
	// Direct: some virtual service uses gate or ipip, whose drains the
	// director sees only one way.
	Direct bool
	// AllActive: every director of the tier serves (director.bgp), so a
	// router may move a flow to this director in its middle. Set it before
	// Serve.
	AllActive bool
	// SloppyTCP and SloppySCTP: an all-active director serves TCP (SCTP),
	// a firewall-mark service counting as both.
	SloppyTCP, SloppySCTP bool
}

// Serve adds to n what one virtual service asks of the kernel: one at addr
// (a firewall-mark service's is its family's unspecified address) for
// proto (0 for a firewall-mark service, which may carry any), forwarding
// with fwd, with persistence or not.
func (n *DirectorNeeds) Serve(addr netip.Addr, proto lvs.Protocol, fwd lvs.Forward, persistent bool) {
	n.Services = true
	n.Persistence = n.Persistence || persistent
	if n.AllActive {
		n.SloppyTCP = n.SloppyTCP || proto == lvs.TCP || proto == 0
		n.SloppySCTP = n.SloppySCTP || proto == lvs.SCTP || proto == 0
	}
	switch fwd {
	case lvs.Masq:
		n.Masq4 = n.Masq4 || addr.Is4()
		n.Masq6 = n.Masq6 || addr.Is6()
	case lvs.Route, lvs.Tunnel:
		n.Direct = true
	}
}

// Setting is a kernel parameter a director needs, and why.
type Setting struct {
	// Key is the sysctl's path under /proc/sys:
	// "net/ipv4/vs/expire_nodest_conn".
	Key string
	// Value is what `sysctl -w` (and tune_sysctls) sets.
	Value string
	// Why says what goes wrong without it.
	Why string
	// bits, when not zero, are the bits of an integer value that must be
	// set (conn_reuse_mode); otherwise the value must be non-zero.
	bits int
}

// Name is the key as sysctl(8) spells it: "net.ipv4.vs.expire_nodest_conn".
func (s Setting) Name() string { return strings.ReplaceAll(s.Key, "/", ".") }

// Command is the line that sets it: "sysctl -w net.ipv4.ip_forward=1".
func (s Setting) Command() string { return "sysctl -w " + s.Name() + "=" + s.Value }

// Satisfied reports whether a current value does what the setting is for.
func (s Setting) Satisfied(current string) bool {
	v, err := strconv.Atoi(strings.TrimSpace(current))
	if err != nil {
		return false
	}
	if s.bits != 0 {
		return v&s.bits == s.bits
	}
	return v != 0
}

// DirectorSettings are the kernel settings that make weight 0, deletes and
// forwarding safe for what the director serves. It is pure.
func DirectorSettings(n DirectorNeeds) []Setting {
	var out []Setting
	if n.Services {
		out = append(out, Setting{Key: "net/ipv4/vs/expire_nodest_conn", Value: "1",
			Why: "the packets of a connection to a deleted real (UDP reals are deleted at once; a drain can time out) are dropped until the connection entry times out, instead of the client being rescheduled"})
	}
	if n.Persistence {
		out = append(out, Setting{Key: "net/ipv4/vs/expire_quiescent_template", Value: "1",
			Why: "a client that holds a persistence template keeps reaching its real at weight 0 (quiescent, quiesced, draining) until the template times out"})
	}
	if n.Direct {
		// Bit 2 (FIN_WAIT) on a non-zero mode; 3 keeps the default bit 1.
		out = append(out, Setting{Key: "net/ipv4/vs/conn_reuse_mode", Value: "3", bits: 2,
			Why: "with gate and ipip the director never sees a real's FIN: a new connection that reuses the client port of one in FIN_WAIT goes to the same real, at weight 0 or not"})
	}
	// IPVS schedules a TCP connection only on its SYN (tcp_conn_schedule),
	// an SCTP one only on its INIT: a packet of a flow that the router moved
	// here from another director would go to the local stack, which resets
	// it. Sloppy, the first packet seen makes the entry (commit c6c96c18).
	// The keys are per network namespace, under ipv4 for both families.
	const sloppy = "every director is active: a flow the router moves here from another director (one failed, left or was added) arrives in its middle and is reset, where sloppy it continues to the same real"
	if n.SloppyTCP {
		out = append(out, Setting{Key: "net/ipv4/vs/sloppy_tcp", Value: "1", Why: sloppy})
	}
	if n.SloppySCTP {
		out = append(out, Setting{Key: "net/ipv4/vs/sloppy_sctp", Value: "1", Why: sloppy})
	}
	const forward = "masq real servers' replies are routed through the director, which must forward them"
	if n.Masq4 {
		out = append(out, Setting{Key: "net/ipv4/ip_forward", Value: "1", Why: forward})
	}
	if n.Masq6 {
		out = append(out, Setting{Key: "net/ipv6/conf/all/forwarding", Value: "1", Why: forward})
	}
	return out
}

// Finding is what CheckSettings found of one setting.
type Finding struct {
	Setting
	// Current is the value read ("" if it could not be).
	Current string
	// Set tells that it was not satisfied and was written.
	Set bool
	// Err is why it could not be read or written.
	Err error
}

// OK reports whether the setting is as needed now.
func (f Finding) OK() bool { return f.Err == nil && (f.Set || f.Satisfied(f.Current)) }

// CheckSettings reads each setting and, with tune, writes those that are
// not satisfied.
func CheckSettings(sys Sysctl, want []Setting, tune bool) []Finding {
	out := make([]Finding, 0, len(want))
	for _, s := range want {
		f := Finding{Setting: s}
		f.Current, f.Err = sys.Get(s.Key)
		if f.Err == nil && !s.Satisfied(f.Current) && tune {
			f.Err = sys.Set(s.Key, s.Value)
			f.Set = f.Err == nil
		}
		out = append(out, f)
	}
	return out
}

// CheckDirector checks the kernel settings n needs (with tune, sets those
// that are not as needed) and logs each one that is not as needed, with
// the line that sets it.
func CheckDirector(sys Sysctl, n DirectorNeeds, tune bool, log hclog.Logger) []Finding {
	findings := CheckSettings(sys, DirectorSettings(n), tune)
	for _, f := range findings {
		switch {
		case f.Err != nil && tune && f.Current != "":
			log.Error("cannot set a kernel setting the config needs", "setting", f.Name(), "value", f.Current, "want", f.Value, "why", f.Why, "error", f.Err)
		case f.Err != nil:
			log.Warn("cannot read a kernel setting the config needs", "setting", f.Name(), "want", f.Value, "why", f.Why, "error", f.Err)
		case f.Set:
			log.Info("set a kernel setting the config needs", "setting", f.Name(), "was", f.Current, "value", f.Value)
		case !f.OK():
			log.Warn("kernel setting unsafe for this config; set it, or director { tune_sysctls = true }", "setting", f.Name(),
				"value", f.Current, "want", f.Value, "why", f.Why, "fix", f.Command())
		}
	}
	return findings
}
