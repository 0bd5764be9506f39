package schema

import (
	"bytes"
	"math/big"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The HCL form of the config. Single blocks map to the YAML maps of the same
// name, repeated labelled blocks to the YAML lists:
//
//	mcp_server "github" { url = "..." }   -> mcp_servers: [{id: github, url: ...}]
//	group "eng" { members = [...] }       -> groups: {eng: [...]}
//	policy { rule "name" { ... } }        -> policy.rules: [{name: ..., ...}]
//	test "name" { ... }                   -> tests: [...]
//	gateway "name" { ... }                -> gateways: [...]
//	identity_provider "okta" { ... }      -> identity_providers: [{name: okta, ...}]
//
// A rule's when may be written as a bare HCL expression (when = args.x > 1)
// or as a string; either way the Config holds its source text.

// listBlocks maps a repeated block type to the list it builds and the key
// its label fills. A label is required for mcp_server, identity_provider
// and group.
var listBlocks = map[string]struct {
	list, label string
	required    bool
}{
	"mcp_server": {"mcp_servers", "id", true},
	"rule":       {"rules", "name", false},
	"test":       {"tests", "name", false},
	"gateway":    {"gateways", "name", false},

	"identity_provider": {"identity_providers", "name", true},
}

// blockPlace says where a repeated block type belongs: "policy" or ""
// (the top level). ok is false for other types.
func blockPlace(typ string) (where string, ok bool) {
	switch typ {
	case "rule":
		return "policy", true
	case "mcp_server", "test", "gateway", "group", "identity_provider":
		return "", true
	}
	return "", false
}

// singleBlocks are the unlabelled blocks that map to YAML maps.
var singleBlocks = map[string]bool{"identity": true, "proxy": true, "policy": true, "intent": true, "auth": true}

type hclConv struct {
	file  string
	src   []byte
	diags Diagnostics
}

func parseHCL(filename string, data []byte) (*node, Diagnostics) {
	f, hd := hclsyntax.ParseConfig(data, filename, hcl.InitialPos)
	c := &hclConv{file: filename, src: data}
	c.addHCL(hd, "")
	if hd.HasErrors() || f == nil {
		return nil, c.diags
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil, c.diags
	}
	root := c.body(body, nil)
	root.pos = Pos{File: filename, Line: 1, Col: 1}
	return root, c.diags
}

func (c *hclConv) pos(p hcl.Pos) Pos { return Pos{File: c.file, Line: p.Line, Col: p.Column} }

func (c *hclConv) addHCL(hd hcl.Diagnostics, path string) {
	for _, d := range hd {
		sev := SeverityError
		if d.Severity == hcl.DiagWarning {
			sev = SeverityWarning
		}
		pos := Pos{File: c.file}
		if d.Subject != nil {
			pos = c.pos(d.Subject.Start)
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + strings.TrimSuffix(d.Detail, ".")
		}
		if strings.Contains(d.Summary, "Variables not allowed") {
			msg += ` (write a $VAR reference as "$NAME" or "$${NAME}" in HCL)`
		}
		c.diags = append(c.diags, Diagnostic{Severity: sev, Pos: pos, Path: path, Summary: msg})
	}
}

// body converts a block body: attributes and blocks in source order.
func (c *hclConv) body(b *hclsyntax.Body, labels []string) *node {
	type item struct {
		start int
		attr  *hclsyntax.Attribute
		block *hclsyntax.Block
	}
	var its []item
	for _, a := range b.Attributes {
		its = append(its, item{start: a.SrcRange.Start.Byte, attr: a})
	}
	for _, bl := range b.Blocks {
		its = append(its, item{start: bl.TypeRange.Start.Byte, block: bl})
	}
	sort.Slice(its, func(i, j int) bool { return its[i].start < its[j].start })

	n := &node{kind: kMap, pos: c.pos(b.SrcRange.Start)}
	lists := map[string]*node{}
	groups := (*node)(nil)
	for _, it := range its {
		if a := it.attr; a != nil {
			path := pathString(append(labels, a.Name))
			if a.Name == "when" {
				n.fields = append(n.fields, field{key: a.Name, keyPos: c.pos(a.NameRange.Start), val: c.when(a.Expr)})
				continue
			}
			n.fields = append(n.fields, field{key: a.Name, keyPos: c.pos(a.NameRange.Start), val: c.expr(a.Expr, path)})
			continue
		}
		bl := it.block
		kpos := c.pos(bl.TypeRange.Start)
		if where, ok := blockPlace(bl.Type); ok && where != pathString(labels) {
			if where == "policy" {
				c.diags.errorf(kpos, pathString(append(labels, bl.Type)), "a %s block belongs inside policy { ... }", bl.Type)
			} else {
				c.diags.errorf(kpos, pathString(append(labels, bl.Type)), "a %s block belongs at the top level", bl.Type)
			}
			continue
		}
		if lb, ok := listBlocks[bl.Type]; ok {
			if len(bl.Labels) > 1 || lb.required && len(bl.Labels) != 1 {
				c.diags.errorf(kpos, pathString(append(labels, lb.list)), "%s %s block takes one label: %s \"%s\" { ... }", article(bl.Type), bl.Type, bl.Type, lb.label)
				continue
			}
			l := lists[lb.list]
			if l == nil {
				l = &node{kind: kList, pos: kpos}
				lists[lb.list] = l
				n.fields = append(n.fields, field{key: lb.list, keyPos: kpos, val: l})
			}
			elem := c.body(bl.Body, append(labels, lb.list, itoa(len(l.items))))
			elem.pos = kpos
			if len(bl.Labels) == 1 {
				lp := c.pos(bl.LabelRanges[0].Start)
				lv := &node{kind: kString, str: bl.Labels[0], pos: lp, textPos: lp}
				elem.fields = append([]field{{key: lb.label, keyPos: lp, val: lv}}, elem.fields...)
			}
			l.items = append(l.items, elem)
			continue
		}
		if bl.Type == "group" {
			if len(bl.Labels) != 1 {
				c.diags.errorf(kpos, "groups", `a group block takes one label: group "name" { members = [...] }`)
				continue
			}
			if groups == nil {
				groups = &node{kind: kMap, pos: kpos}
				n.fields = append(n.fields, field{key: "groups", keyPos: kpos, val: groups})
			}
			name := bl.Labels[0]
			gb := c.body(bl.Body, append(labels, "groups", name))
			members := gb.get("members")
			for _, f := range gb.fields {
				if f.key != "members" {
					c.diags.errorf(f.keyPos, pathString(append(labels, "groups", name, f.key)), "unknown key %q in a group block: only members", f.key)
				}
			}
			if members == nil {
				members = &node{kind: kList, pos: kpos}
			}
			groups.fields = append(groups.fields, field{key: name, keyPos: c.pos(bl.LabelRanges[0].Start), val: members})
			continue
		}
		if len(bl.Labels) > 0 && singleBlocks[bl.Type] {
			c.diags.errorf(kpos, pathString(append(labels, bl.Type)), "a %s block takes no label", bl.Type)
		}
		if prev := n.get(bl.Type); prev != nil {
			c.diags.errorf(kpos, pathString(append(labels, bl.Type)), "duplicate %s block (first at line %d)", bl.Type, prev.pos.Line)
			continue
		}
		v := c.body(bl.Body, append(labels, bl.Type))
		v.pos = kpos
		n.fields = append(n.fields, field{key: bl.Type, keyPos: kpos, val: v})
	}
	// An attribute and blocks for the same key (groups = {...} beside
	// group blocks, policy = {...} beside a policy block) cannot both hold.
	seen := map[string]Pos{}
	out := n.fields[:0]
	for _, f := range n.fields {
		if prev, dup := seen[f.key]; dup {
			c.diags.errorf(f.keyPos, pathString(append(labels, f.key)), "%s is given twice (first at line %d): use either the attribute or the blocks", f.key, prev.Line)
			continue
		}
		seen[f.key] = f.keyPos
		out = append(out, f)
	}
	n.fields = out
	return n
}

// when keeps a condition's source text: a quoted literal's content, or the
// bare expression as written.
func (c *hclConv) when(e hclsyntax.Expression) *node {
	r := e.Range()
	if t, ok := e.(*hclsyntax.TemplateExpr); ok && t.IsStringLiteral() {
		v, _ := t.Value(nil)
		p := c.pos(r.Start)
		n := &node{kind: kString, str: v.AsString(), pos: p, textPos: p}
		n.textPos.Col++
		if bytes.HasPrefix(c.src[r.Start.Byte:], []byte("<<")) {
			// A heredoc: the text starts on the next line, where "<<-"
			// strips the common indentation from every line.
			line := r.Start.Line + 1
			indent := 0
			if bytes.HasPrefix(c.src[r.Start.Byte:], []byte("<<-")) {
				if i := bytes.IndexByte(c.src[r.Start.Byte:], '\n'); i >= 0 {
					rest := c.src[r.Start.Byte+i+1:]
					indent = len(rest) - len(bytes.TrimLeft(rest, " \t"))
				}
			}
			n.textPos = Pos{File: c.file, Line: line, Col: indent + 1}
			n.textIndent = indent + 1
		}
		return n
	}
	p := c.pos(r.Start)
	return &node{kind: kString, str: string(r.SliceBytes(c.src)), pos: p, textPos: p}
}

// expr converts an attribute value, keeping positions of list elements and
// object items.
func (c *hclConv) expr(e hclsyntax.Expression, path string) *node {
	p := c.pos(e.Range().Start)
	switch x := e.(type) {
	case *hclsyntax.TupleConsExpr:
		n := &node{kind: kList, pos: p}
		for i, el := range x.Exprs {
			n.items = append(n.items, c.expr(el, path+"["+itoa(i)+"]"))
		}
		return n
	case *hclsyntax.ObjectConsExpr:
		n := &node{kind: kMap, pos: p}
		for _, it := range x.Items {
			key := ""
			if kw := hcl.ExprAsKeyword(it.KeyExpr); kw != "" {
				key = kw
			} else {
				kv, d := it.KeyExpr.Value(nil)
				c.addHCL(d, path)
				if d.HasErrors() || kv.IsNull() || !kv.Type().Equals(cty.String) {
					if !d.HasErrors() {
						c.diags.errorf(c.pos(it.KeyExpr.Range().Start), path, "object keys must be strings")
					}
					continue
				}
				key = kv.AsString()
			}
			n.fields = append(n.fields, field{key: key, keyPos: c.pos(it.KeyExpr.Range().Start), val: c.expr(it.ValueExpr, path+"."+key)})
		}
		return n
	case *hclsyntax.TemplateWrapExpr:
		return c.expr(x.Wrapped, path)
	}
	v, d := e.Value(nil)
	c.addHCL(d, path)
	if d.HasErrors() {
		return &node{kind: kInvalid, pos: p}
	}
	n := fromCty(v, p)
	if t, ok := e.(*hclsyntax.TemplateExpr); ok && t.IsStringLiteral() {
		n.textPos = Pos{File: p.File, Line: p.Line, Col: p.Col + 1}
	}
	return n
}

func fromCty(v cty.Value, p Pos) *node {
	n := &node{pos: p, textPos: p}
	if v.IsNull() || !v.IsKnown() {
		return n
	}
	t := v.Type()
	switch {
	case t == cty.String:
		n.kind, n.str = kString, v.AsString()
	case t == cty.Bool:
		n.kind, n.b = kBool, v.True()
	case t == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			if i, acc := bf.Int64(); acc == big.Exact {
				n.kind, n.i, n.str = kInt, i, bf.Text('f', -1)
				return n
			}
		}
		f, _ := bf.Float64()
		n.kind, n.f, n.str = kFloat, f, bf.Text('g', -1)
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		n.kind = kList
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			n.items = append(n.items, fromCty(ev, p))
		}
	case t.IsObjectType() || t.IsMapType():
		n.kind = kMap
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			n.fields = append(n.fields, field{key: k.AsString(), keyPos: p, val: fromCty(ev, p)})
		}
	}
	return n
}

// article is "an" before a word starting with a vowel, else "a".
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }
