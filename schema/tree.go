package schema

import (
	"strconv"
	"strings"
)

// node is the format-neutral data tree both YAML and HCL decode into. It
// keeps the position of every key and value, so that whatever the schema or
// the semantic checks find can be reported at its place in the user's file.
type node struct {
	kind kind
	pos  Pos // the value's first character

	str string  // kString; for numbers, the literal as written
	b   bool    // kBool
	i   int64   // kInt
	f   float64 // kFloat

	fields []field // kMap, in file order
	items  []*node // kList

	// textPos is where a string's content starts (after an opening quote,
	// or on the line after a YAML block indicator): used for `when`.
	textPos Pos
	// textIndent is the column of every line of a YAML literal block
	// scalar's text (0 otherwise), so that positions on its later lines
	// can be mapped back to the file too.
	textIndent int
}

type kind int

const (
	kNull kind = iota
	kString
	kInt
	kFloat
	kBool
	kMap
	kList
	kInvalid // a value that failed to decode (already reported)
)

func (k kind) String() string {
	return [...]string{"null", "string", "int", "float", "bool", "map", "list", "invalid"}[k]
}

type field struct {
	key    string
	keyPos Pos
	val    *node
}

// get returns the value of key in a map node, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != kMap {
		return nil
	}
	for _, f := range n.fields {
		if f.key == key {
			return f.val
		}
	}
	return nil
}

// keyPos returns the position of key in a map node, or the node's own.
func (n *node) keyPos(key string) Pos {
	if n != nil {
		for _, f := range n.fields {
			if f.key == key {
				return f.keyPos
			}
		}
		return n.pos
	}
	return Pos{}
}

// literal formats a scalar node as a CUE/JSON literal for messages.
func (n *node) literal() string {
	switch n.kind {
	case kNull:
		return "null"
	case kString:
		return strconv.Quote(n.str)
	case kInt, kFloat:
		return n.str
	case kBool:
		return strconv.FormatBool(n.b)
	case kMap:
		return "a map"
	default:
		return "a list"
	}
}

// pathString formats a config path: mcp_servers[2].url, groups["a b"][0].
func pathString(labels []string) string {
	var b strings.Builder
	for _, l := range labels {
		if _, err := strconv.Atoi(l); err == nil {
			b.WriteString("[" + l + "]")
			continue
		}
		if isIdent(l) {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(l)
			continue
		}
		b.WriteString("[" + strconv.Quote(l) + "]")
	}
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// lookup follows labels from n as far as the tree goes. It returns the
// deepest node reached, the position to report (a missing map key reports
// at its parent; a present key that is wrong reports at the key when
// keyPos is set), and how many labels were matched.
func (n *node) lookup(labels []string, atKey bool) (*node, Pos, int) {
	cur, pos := n, n.pos
	for i, l := range labels {
		switch cur.kind {
		case kMap:
			found := false
			for _, f := range cur.fields {
				if f.key == l {
					if atKey && i == len(labels)-1 {
						pos = f.keyPos
					} else {
						pos = f.val.pos
					}
					cur, found = f.val, true
					break
				}
			}
			if !found {
				return cur, pos, i
			}
		case kList:
			idx, err := strconv.Atoi(l)
			if err != nil || idx < 0 || idx >= len(cur.items) {
				return cur, pos, i
			}
			cur = cur.items[idx]
			pos = cur.pos
		default:
			return cur, pos, i
		}
	}
	return cur, pos, len(labels)
}
