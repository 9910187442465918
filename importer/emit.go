package importer

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The two files an import writes: lvs-sync.hcl, a virtual_service block
// for every imported virtual service, and consul-services.hcl, a Consul
// service definition for every static real server, in the format that
// `consul services register FILE` reads.

// LVSSyncHCL is the lvs-sync config of r. Its header lists the notes, so
// that the file says what was not carried over.
func LVSSyncHCL(r *Result) []byte {
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	header := fmt.Sprintf("# Imported from %s config %s by `lvs-sync import %s`.\n"+
		"# Its real servers are Consul services: `consul services register consul-services.hcl`.\n", r.Tool, r.Source, r.Tool)
	header += notesComment(r.Notes)
	body.AppendUnstructuredTokens(comment(header))
	if r.CleanupOnExit {
		body.AppendNewline()
		d := body.AppendNewBlock("director", nil).Body()
		d.SetAttributeValue("cleanup_on_exit", cty.True)
	}
	for _, s := range r.Services {
		body.AppendNewline()
		c := fmt.Sprintf("# from %s", s.Pos)
		if s.Comment != "" {
			c += ": " + s.Comment
		}
		body.AppendUnstructuredTokens(comment(c + "\n"))
		b := body.AppendNewBlock("virtual_service", []string{s.Name}).Body()
		if s.FWMark != 0 {
			b.SetAttributeValue("fwmark", cty.NumberIntVal(int64(s.FWMark)))
			if s.Address.Addr().Is6() {
				b.SetAttributeValue("family", cty.StringVal("ipv6"))
			}
		} else {
			b.SetAttributeValue("address", cty.StringVal(s.Address.String()))
			b.SetAttributeValue("protocol", cty.StringVal(s.Protocol.String()))
		}
		b.SetAttributeValue("scheduler", cty.StringVal(s.Scheduler))
		b.SetAttributeValue("forwarding", cty.StringVal(s.Forward.String()))
		if s.Consul != "" {
			b.SetAttributeValue("service", cty.StringVal(s.Consul))
		}
		if s.Persistence > 0 {
			b.SetAttributeValue("persistence", cty.StringVal(duration(s.Persistence)))
		}
		if s.PersistenceNetmask > 0 {
			b.SetAttributeValue("persistence_netmask", cty.StringVal(lvs.FormatPersistenceNetmask(s.Address.Addr(), s.PersistenceNetmask)))
		}
		if s.OnePacket {
			b.SetAttributeValue("ops", cty.True)
		}
		if s.Quiescent {
			b.SetAttributeValue("quiescent", cty.True)
		}
		switch {
		case s.Fallback.IsValid() && s.FWMark != 0:
			b.SetAttributeValue("fallback", cty.StringVal(s.Fallback.Addr().String())) // the packet's port
		case s.Fallback.IsValid():
			b.SetAttributeValue("fallback", cty.StringVal(s.Fallback.String()))
		}
	}
	return hclwrite.Format(f.Bytes())
}

// ConsulServicesHCL is the Consul service definitions of r's real
// servers: one instance per real, its address and port, its weight as
// both passing and warning weight, and its checks.
func ConsulServicesHCL(r *Result) []byte {
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	body.AppendUnstructuredTokens(comment(fmt.Sprintf("# The real servers of %s, imported by `lvs-sync import %s`:\n"+
		"#   consul services register consul-services.hcl\n", r.Source, r.Tool)))
	for _, s := range r.Services {
		for _, real := range s.Reals {
			body.AppendNewline()
			b := body.AppendNewBlock("services", nil).Body()
			b.SetAttributeValue("id", cty.StringVal(instanceID(s.ConsulService(), real.Addr)))
			b.SetAttributeValue("name", cty.StringVal(s.ConsulService()))
			b.SetAttributeValue("address", cty.StringVal(real.Addr.Addr().String()))
			b.SetAttributeValue("port", cty.NumberIntVal(int64(real.Addr.Port())))
			meta := map[string]cty.Value{"imported_from": cty.StringVal(real.Pos.String())}
			if real.UpperThreshold > 0 {
				meta[lvs.MetaUpperThreshold] = cty.StringVal(fmt.Sprint(real.UpperThreshold))
			}
			if real.LowerThreshold > 0 {
				meta[lvs.MetaLowerThreshold] = cty.StringVal(fmt.Sprint(real.LowerThreshold))
			}
			b.SetAttributeValue("meta", cty.ObjectVal(meta))
			b.SetAttributeValue("weights", cty.ObjectVal(map[string]cty.Value{
				"passing": cty.NumberIntVal(int64(real.Weight)),
				"warning": cty.NumberIntVal(int64(real.Weight)),
			}))
			for _, c := range real.Checks {
				b.AppendNewline()
				cb := b.AppendNewBlock("checks", nil).Body()
				writeCheck(cb, c)
			}
		}
	}
	return hclwrite.Format(f.Bytes())
}

func writeCheck(b *hclwrite.Body, c Check) {
	b.SetAttributeValue("name", cty.StringVal(c.Name))
	switch {
	case c.HTTP != "":
		b.SetAttributeValue("http", cty.StringVal(c.HTTP))
		if c.Method != "" {
			b.SetAttributeValue("method", cty.StringVal(c.Method))
		}
		if c.Host != "" {
			b.SetAttributeValue("header", cty.ObjectVal(map[string]cty.Value{
				"Host": cty.TupleVal([]cty.Value{cty.StringVal(c.Host)}),
			}))
		}
		if c.TLSServerName != "" {
			b.SetAttributeValue("tls_server_name", cty.StringVal(c.TLSServerName))
		}
		if c.TLSSkipVerify {
			b.SetAttributeValue("tls_skip_verify", cty.True)
		}
	case c.TCP != "":
		b.SetAttributeValue("tcp", cty.StringVal(c.TCP))
	case c.UDP != "":
		b.SetAttributeValue("udp", cty.StringVal(c.UDP))
	}
	b.SetAttributeValue("interval", cty.StringVal(duration(c.Interval)))
	if c.Timeout > 0 {
		b.SetAttributeValue("timeout", cty.StringVal(duration(c.Timeout)))
	}
	if c.FailuresBeforeCritical > 1 {
		b.SetAttributeValue("failures_before_critical", cty.NumberIntVal(int64(c.FailuresBeforeCritical)))
	}
}

// duration writes whole seconds as "60s", the way both tools count.
func duration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return d.String()
}

// notesComment lists the notes as comment lines.
func notesComment(ns []Note) string {
	if len(ns) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("#\n# Not carried over, or changed on the way:\n")
	for _, n := range ns {
		fmt.Fprintf(&b, "#   %s: %s\n", n.Pos, strings.ReplaceAll(n.Message, "\n", " "))
	}
	return b.String()
}

func comment(text string) hclwrite.Tokens {
	return hclwrite.Tokens{{Type: hclsyntax.TokenComment, Bytes: []byte(text)}}
}
