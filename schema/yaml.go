package schema

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxYAMLNodes bounds alias expansion, so a small file cannot expand into
// an enormous tree ("billion laughs").
const maxYAMLNodes = 1 << 20

var yamlErrLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// parseYAML decodes a YAML document into a node tree.
func parseYAML(filename string, data []byte) (*node, Diagnostics) {
	var diags Diagnostics
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&doc)
	if err == io.EOF {
		err = nil
	}
	if err == nil {
		var next yaml.Node
		if dec.Decode(&next) == nil {
			diags.errorf(Pos{File: filename, Line: max(next.Line, 1), Col: 1}, "", "a config file holds one YAML document: remove the second (after ---)")
		}
	}
	if err != nil {
		pos := Pos{File: filename}
		msg := err.Error()
		if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
			if m[1] != "" {
				pos.Line, _ = strconv.Atoi(m[1])
			}
			msg = m[2]
		}
		diags.errorf(pos, "", "invalid YAML: %s", msg)
		return nil, diags
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		diags.errorf(Pos{File: filename, Line: 1, Col: 1}, "", "the file is empty")
		return nil, diags
	}
	c := &yamlConv{file: filename, lines: lineStarts(data), data: data}
	n := c.conv(doc.Content[0], 0)
	diags = append(diags, c.diags...)
	if n == nil {
		return nil, diags
	}
	if n.kind != kMap {
		diags.errorf(n.pos, "", "the file must be a map of keys (version, identity, mcp_servers, ...), found %s", n.kind)
		return nil, diags
	}
	return n, diags
}

type yamlConv struct {
	file  string
	data  []byte
	lines []int
	count int
	diags Diagnostics
}

func (c *yamlConv) pos(y *yaml.Node) Pos { return Pos{File: c.file, Line: y.Line, Col: y.Column} }

func (c *yamlConv) conv(y *yaml.Node, depth int) *node {
	c.count++
	if c.count > maxYAMLNodes || depth > 100 {
		if c.count == maxYAMLNodes+1 || depth == 101 {
			c.diags.errorf(c.pos(y), "", "the document is too large or too deeply nested (aliases expand to more than %d values)", maxYAMLNodes)
		}
		return nil
	}
	n := &node{pos: c.pos(y)}
	switch y.Kind {
	case yaml.AliasNode:
		if y.Alias == nil {
			return nil
		}
		a := c.conv(y.Alias, depth+1)
		if a == nil {
			return nil
		}
		cp := *a
		cp.pos = n.pos
		return &cp
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return nil
		}
		return c.conv(y.Content[0], depth+1)
	case yaml.MappingNode:
		n.kind = kMap
		// YAML merge keys (<<) as YAML 1.1 defines them, as every YAML
		// library and CUE read them: a key written in the map overrides a
		// merged one wherever the << stands, and of several merged maps the
		// first to give a key wins. Only a key written twice is a duplicate.
		explicit := map[string]Pos{}
		for i := 0; i+1 < len(y.Content); i += 2 {
			if k := y.Content[i]; k.Kind == yaml.ScalarNode && !isMergeKey(k) {
				if _, ok := explicit[k.Value]; !ok {
					explicit[k.Value] = c.pos(k)
				}
			}
		}
		seen := map[string]Pos{}
		merged := map[string]bool{}
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if isMergeKey(k) {
				c.merge(n, k, v, explicit, merged, depth)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				c.diags.errorf(c.pos(k), "", "map keys must be strings")
				continue
			}
			if prev, dup := seen[k.Value]; dup {
				c.diags.errorf(c.pos(k), "", "duplicate key %q (first at line %d)", k.Value, prev.Line)
				continue
			}
			seen[k.Value] = c.pos(k)
			val := c.conv(v, depth+1)
			if val == nil {
				val = &node{pos: c.pos(v)}
			}
			n.fields = append(n.fields, field{key: k.Value, keyPos: c.pos(k), val: val})
		}
	case yaml.SequenceNode:
		n.kind = kList
		for _, item := range y.Content {
			v := c.conv(item, depth+1)
			if v == nil {
				v = &node{pos: c.pos(item)}
			}
			n.items = append(n.items, v)
		}
	case yaml.ScalarNode:
		c.scalar(n, y)
	}
	return n
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// merge applies a YAML merge key k (<<: *anchor, or a list of them) to n:
// the merged maps' keys that the map does not set itself (explicit) and no
// earlier merge gave (merged) are added. A merged key and its value are
// placed at the merge (as an alias's value is placed at the alias), so a
// problem of this map is reported where the map is written; what lies
// deeper (a nested map's keys, a string's text) keeps its place in the
// anchored map, also in the user's file.
func (c *yamlConv) merge(n *node, k, v *yaml.Node, explicit map[string]Pos, merged map[string]bool, depth int) {
	var srcs []*yaml.Node
	if v.Kind == yaml.SequenceNode {
		srcs = v.Content
	} else {
		srcs = []*yaml.Node{v}
	}
	for _, s := range srcs {
		m := c.conv(s, depth+1)
		if m == nil || m.kind != kMap {
			c.diags.errorf(c.pos(s), "", "a merge key (<<) needs a map or a list of maps, found %s", kindOf(m))
			continue
		}
		for _, f := range m.fields {
			if _, ok := explicit[f.key]; ok || merged[f.key] {
				continue
			}
			merged[f.key] = true
			val := *f.val
			val.pos = c.pos(s)
			n.fields = append(n.fields, field{key: f.key, keyPos: c.pos(k), val: &val})
		}
	}
}

func kindOf(n *node) kind {
	if n == nil {
		return kInvalid
	}
	return n.kind
}

func (c *yamlConv) scalar(n *node, y *yaml.Node) {
	n.textPos = n.pos
	switch y.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		n.textPos.Col++
	case yaml.LiteralStyle, yaml.FoldedStyle:
		n.textPos = c.blockStart(y)
		n.textIndent = n.textPos.Col
	}
	tag := y.ShortTag()
	switch tag {
	case "!!null":
		n.kind = kNull
	case "!!bool":
		var b bool
		if err := y.Decode(&b); err == nil {
			n.kind, n.b = kBool, b
			return
		}
		n.kind, n.str = kString, y.Value
	case "!!int":
		var i int64
		if err := y.Decode(&i); err == nil {
			n.kind, n.i, n.str = kInt, i, strconv.FormatInt(i, 10)
			return
		}
		n.kind, n.str = kString, y.Value
	case "!!float":
		var f float64
		if err := y.Decode(&f); err == nil {
			n.kind, n.f, n.str = kFloat, f, strconv.FormatFloat(f, 'g', -1, 64)
			return
		}
		n.kind, n.str = kString, y.Value
	default:
		n.kind, n.str = kString, y.Value
	}
}

// blockStart finds where a literal or folded block scalar's text starts:
// the first non-blank line after the indicator, at its indentation.
func (c *yamlConv) blockStart(y *yaml.Node) Pos {
	for line := y.Line + 1; line <= len(c.lines); line++ {
		start := c.lines[line-1]
		end := len(c.data)
		if line < len(c.lines) {
			end = c.lines[line]
		}
		text := string(c.data[start:end])
		trimmed := strings.TrimLeft(text, " ")
		if strings.TrimSpace(trimmed) == "" {
			continue
		}
		return Pos{File: c.file, Line: line, Col: len(text) - len(trimmed) + 1}
	}
	return c.pos(y)
}

// lineStarts returns the byte offset of each line's start.
func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, b := range data {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}
