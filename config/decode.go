package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// The raw structs mirror the HCL schema; gohcl decodes into them and reports
// unknown attributes and blocks and type mismatches with their positions.
type rawFile struct {
	LogLevel        *string        `hcl:"log_level,optional"`
	LogJSON         *bool          `hcl:"log_json,optional"`
	API             []*rawAPI      `hcl:"api,block"`
	Consul          []*rawConsul   `hcl:"consul,block"`
	Nomad           []*rawNomad    `hcl:"nomad,block"`
	Director        []*rawDirector `hcl:"director,block"`
	VirtualServices []*rawVS       `hcl:"virtual_service,block"`
}

// fileSchema is the top level of a config file.
var fileSchema, _ = gohcl.ImpliedBodySchema(&rawFile{})

// decode turns the parsed files into a validated Config. Each block is
// decoded on its own, so that a problem in one hides none in the others.
func decode(bodies []hcl.Body) (*Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	cfg := &Config{
		Director: Director{ReconcileInterval: DefaultReconcileInterval, StateFile: DefaultStateFile},
		API:      API{Address: DefaultAPIAddress, ConsulUnreachableAfter: DefaultConsulUnreachable},
	}
	var consulAt, nomadAt, directorAt, apiAt *hcl.Range
	var vss []declared
	for _, body := range bodies {
		content, d := body.Content(fileSchema)
		diags = append(diags, d...)
		if content == nil {
			continue
		}
		for name, attr := range content.Attributes {
			diags = append(diags, decodeTopAttr(cfg, name, attr)...)
		}
		for _, blk := range content.Blocks {
			switch blk.Type {
			case "consul":
				rc := rawConsul{DefRange: blk.DefRange}
				diags = append(diags, decodeOnce(blk, &consulAt, &rc, &rc.Remain, decodeConsul, &cfg.Consul)...)
			case "nomad":
				rn := rawNomad{DefRange: blk.DefRange}
				diags = append(diags, decodeOnce(blk, &nomadAt, &rn, &rn.Remain, decodeNomad, &cfg.Nomad)...)
			case "director":
				rd := rawDirector{DefRange: blk.DefRange}
				diags = append(diags, decodeOnce(blk, &directorAt, &rd, &rd.Remain, decodeDirector, &cfg.Director)...)
			case "api":
				ra := rawAPI{DefRange: blk.DefRange}
				diags = append(diags, decodeOnce(blk, &apiAt, &ra, &ra.Remain, decodeAPI, &cfg.API)...)
			case "virtual_service":
				rv := rawVS{Name: blk.Labels[0], DefRange: blk.DefRange}
				d, ok := decodeBlock(blk, &rv, &rv.Remain)
				diags = append(diags, d...)
				if !ok {
					// Still known by name, for the duplicate check.
					cfg.VirtualServices = append(cfg.VirtualServices, &VirtualService{Name: rv.Name, DeclRange: rv.DefRange})
					continue
				}
				vs, dd := decodeVS(&rv)
				diags = append(diags, dd...)
				cfg.VirtualServices = append(cfg.VirtualServices, vs)
				vss = append(vss, declared{vs: vs, at: vsAttrs(&rv)})
			}
		}
	}
	diags = append(diags, checkUnique(cfg.VirtualServices)...)
	diags = append(diags, checkMarkVIPs(cfg)...)
	diags = append(diags, checkBGP(cfg, vss)...)
	diags = append(diags, checkConsulForHA(cfg)...)
	return cfg, diags
}

// decodeOnce decodes a block that may appear only once (consul, nomad,
// director, api) into raw, then validates it into *into. A second such block is
// reported, pointing at the first, whose position *seen keeps.
func decodeOnce[R, T any](blk *hcl.Block, seen **hcl.Range, raw *R, remain *hcl.Body,
	validate func(*R) (T, hcl.Diagnostics), into *T) hcl.Diagnostics {
	if *seen != nil {
		return hcl.Diagnostics{duplicateBlock(blk.Type, blk.DefRange, **seen)}
	}
	*seen = blk.DefRange.Ptr()
	diags, ok := decodeBlock(blk, raw, remain)
	if ok {
		v, d := validate(raw)
		*into = v
		diags = append(diags, d...)
	}
	return diags
}

// decodeBlock decodes a block into its raw struct and reports what is in
// *remain, the block's unknown attributes and blocks. ok is false when a
// known value is missing or mistyped: then the raw values are meaningless
// and the block must not be validated further. Unknown attributes alone
// leave ok true, so that the rest of the block is still checked.
func decodeBlock(blk *hcl.Block, raw any, remain *hcl.Body) (diags hcl.Diagnostics, ok bool) {
	diags = gohcl.DecodeBody(blk.Body, nil, raw)
	if diags.HasErrors() || *remain == nil {
		return diags, !diags.HasErrors()
	}
	// JustAttributes calls any block unexpected, even a nested block the
	// schema knows (ha): blocks are checked against the schema instead.
	attrs, d := (*remain).JustAttributes()
	for _, dg := range d {
		if !strings.HasPrefix(dg.Summary, "Unexpected ") || !strings.HasSuffix(dg.Summary, " block") {
			diags = append(diags, dg)
		}
	}
	diags = append(diags, unknownBlocks(blk.Body, raw)...)
	unknown := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		unknown = append(unknown, a)
	}
	slices.SortFunc(unknown, func(a, b *hcl.Attribute) int { return a.NameRange.Start.Byte - b.NameRange.Start.Byte })
	for _, a := range unknown {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unsupported argument",
			Detail:   fmt.Sprintf("An argument named %q is not expected here.", a.Name),
			Subject:  a.NameRange.Ptr(),
		})
	}
	return diags, true
}

// unknownBlocks reports the blocks of body that raw's schema does not have.
func unknownBlocks(body hcl.Body, raw any) hcl.Diagnostics {
	sb, ok := body.(*hclsyntax.Body)
	if !ok || len(sb.Blocks) == 0 {
		// Most blocks have none: the schema, by reflection, is a fifth of
		// loading 10,000 virtual services.
		return nil
	}
	schema, _ := gohcl.ImpliedBodySchema(raw)
	var diags hcl.Diagnostics
	for _, b := range sb.Blocks {
		if !slices.ContainsFunc(schema.Blocks, func(h hcl.BlockHeaderSchema) bool { return h.Type == b.Type }) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("Unexpected %q block", b.Type),
				Detail: "Blocks are not allowed here.", Subject: b.TypeRange.Ptr()})
		}
	}
	return diags
}

// decodeTopAttr decodes a top-level attribute: log_level or log_json.
func decodeTopAttr(cfg *Config, name string, attr *hcl.Attribute) hcl.Diagnostics {
	switch name {
	case "log_level":
		var v string
		if d := gohcl.DecodeExpression(attr.Expr, nil, &v); d.HasErrors() {
			return d
		}
		level, err := parseLogLevel(v)
		if err != nil {
			return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid log level",
				Detail:  fmt.Sprintf("log_level: %s", err),
				Subject: attr.Expr.Range().Ptr()}}
		}
		cfg.LogLevel = level
	case "log_json":
		if d := gohcl.DecodeExpression(attr.Expr, nil, &cfg.LogJSON); d.HasErrors() {
			return d
		}
	}
	return nil
}

func duplicateBlock(kind string, at, first hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s block", kind),
		Detail:   fmt.Sprintf("Only one %s block is allowed; the first is at %s.", kind, first),
		Subject:  at.Ptr(),
	}
}

// attrs finds where each attribute of a block is, so that a message about a
// value can point at it. Only the native syntax is parsed, so the body is
// always an *hclsyntax.Body.
type attrs struct {
	block string
	body  *hclsyntax.Body
	def   hcl.Range
}

func newAttrs(block string, body hcl.Body, def hcl.Range) attrs {
	sb, _ := body.(*hclsyntax.Body)
	return attrs{block: block, body: sb, def: def}
}

// errorf returns an error diagnostic about attribute name of the block.
func (a attrs) errorf(name, summary, format string, args ...any) *hcl.Diagnostic {
	return a.diag(hcl.DiagError, name, summary, format, args...)
}

// setString is a string attribute as decoded: nil when it is left out.
type setString struct {
	name  string
	value *string
}

// nonEmpty reports each attribute set to "": leaving one out is how a
// default is asked for, and an empty address or file name is a mistake.
func (a attrs) nonEmpty(fields ...setString) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, f := range fields {
		if f.value != nil && *f.value == "" {
			diags = append(diags, a.errorf(f.name, "Empty value", "must not be empty; leave it out for the default"))
		}
	}
	return diags
}

// connBudget is a max_connections attribute: at least 1 when set, 0 (the
// default) when left out.
func (a attrs) connBudget(n *int) (int, hcl.Diagnostics) {
	if n == nil {
		return 0, nil
	}
	if *n < 1 {
		return *n, hcl.Diagnostics{a.errorf("max_connections", "Invalid connection budget", "%d: at least 1 connection is needed", *n)}
	}
	return *n, nil
}

// warnf returns a warning about attribute name of the block: the config is
// valid, but does something the user likely does not want.
func (a attrs) warnf(name, summary, format string, args ...any) *hcl.Diagnostic {
	return a.diag(hcl.DiagWarning, name, summary, format, args...)
}

func (a attrs) diag(sev hcl.DiagnosticSeverity, name, summary, format string, args ...any) *hcl.Diagnostic {
	subject := a.def
	if a.body != nil {
		if attr, ok := a.body.Attributes[name]; ok {
			subject = attr.Expr.Range()
		}
	}
	return &hcl.Diagnostic{
		Severity: sev,
		Summary:  summary,
		Detail:   fmt.Sprintf("%s: %s: %s", a.block, name, fmt.Sprintf(format, args...)),
		Subject:  subject.Ptr(),
	}
}

// checkUnique reports virtual services that share a label or a kernel key.
func checkUnique(vss []*VirtualService) hcl.Diagnostics {
	var diags hcl.Diagnostics
	byName := map[string]*VirtualService{}
	byKey := map[lvs.ServiceKey]*VirtualService{}
	for _, vs := range vss {
		if first, ok := byName[vs.Name]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate virtual service",
				Detail:   fmt.Sprintf("virtual_service %q is already declared at %s.", vs.Name, first.DeclRange),
				Subject:  vs.DeclRange.Ptr(),
			})
			continue
		}
		byName[vs.Name] = vs
		if !vs.Address.IsValid() || (vs.Protocol == 0 && vs.FWMark == 0) {
			continue // already reported
		}
		if first, ok := byKey[vs.Key()]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate virtual address",
				Detail: fmt.Sprintf("virtual_service %q: %s is already served by virtual_service %q at %s.",
					vs.Name, vs.Key(), first.Name, first.DeclRange),
				Subject: vs.DeclRange.Ptr(),
			})
			continue
		}
		byKey[vs.Key()] = vs
	}
	return diags
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
