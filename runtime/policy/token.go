package policy

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TokenPolicy is the policy an intent token is requested with
// (`getIntentToken(plan, {allow, deny, allowed_tools})`): globs over
// "mcp/action" that narrow what that one token may do, under the bundle's
// policy. It never widens it: a call must pass both.
//
// A call passes when, in this order, no Deny pattern matches it, an Allow
// pattern matches it, and, when AllowedTools is set, one of its entries
// matches it. The zero value allows nothing; use ParseTokenPolicy.
type TokenPolicy struct {
	// Allow and Deny are patterns in the form "server/tool" ('*' and '?'
	// globs in each part) or "*" for everything, as ParseTokenPolicy
	// normalised them ("server.tool" is written "server/tool").
	Allow []string
	Deny  []string
	// AllowedTools, when not nil, is a further list every call must match:
	// tool names ("get_*", matching the action on any server) or
	// "server/tool" patterns.
	AllowedTools []string

	allow, deny, allowed []tokenGlob
}

// tokenGlob is one compiled pattern.
type tokenGlob struct {
	raw    string // as normalised
	all    bool   // "*": everything
	server string // "" for a bare tool name
	tool   string
	// dotted: a bare name holding a dot, which may also mean server.tool.
	dotServer, dotTool string
}

// Limits of a token policy, so that a token stays small and checking it
// cheap.
const (
	maxTokenPatterns   = 256
	maxTokenPatternLen = 256
)

// ParseTokenPolicy parses the policy of a token request: nil (JSON null)
// or an object with the optional keys "allow" (default ["*"]), "deny"
// (default []) and "allowed_tools" (default: no further restriction),
// each a list of strings. Unknown keys, values that are not lists of
// strings, and patterns that are not "*", "server/tool" or "server.tool"
// (globs '*' and '?' allowed; no spaces, control characters, '[' or '\';
// allowed_tools may also hold bare tool names) are errors naming the field
// and the entry. An empty list is kept as written: allow: [] allows
// nothing.
func ParseTokenPolicy(v any) (*TokenPolicy, error) {
	p := &TokenPolicy{Allow: []string{"*"}, Deny: []string{}, allow: []tokenGlob{{raw: "*", all: true}}}
	if v == nil {
		return p, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("policy must be an object {\"allow\": [...], \"deny\": [...], \"allowed_tools\": [...]}, got %s", jsonKind(v))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		if val == nil {
			continue // null: the default
		}
		var err error
		switch k {
		case "allow":
			p.Allow, p.allow, err = tokenPatterns("policy.allow", val, false)
		case "deny":
			p.Deny, p.deny, err = tokenPatterns("policy.deny", val, false)
		case "allowed_tools":
			p.AllowedTools, p.allowed, err = tokenPatterns("policy.allowed_tools", val, true)
		default:
			return nil, fmt.Errorf("policy: unknown key %q (want allow, deny or allowed_tools)", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// tokenPatterns checks, normalises and compiles one list of patterns.
func tokenPatterns(field string, v any, bare bool) ([]string, []tokenGlob, error) {
	var items []any
	switch l := v.(type) {
	case []any:
		items = l
	case []string:
		for _, s := range l {
			items = append(items, s)
		}
	default:
		return nil, nil, fmt.Errorf("%s must be a list of strings, got %s", field, jsonKind(v))
	}
	if len(items) > maxTokenPatterns {
		return nil, nil, fmt.Errorf("%s has %d entries, more than %d", field, len(items), maxTokenPatterns)
	}
	out := make([]string, 0, len(items))
	globs := make([]tokenGlob, 0, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, nil, fmt.Errorf("%s[%d] must be a string, got %s", field, i, jsonKind(it))
		}
		g, err := parseTokenGlob(s, bare)
		if err != nil {
			return nil, nil, fmt.Errorf("%s[%d]: %v", field, i, err)
		}
		out = append(out, g.raw)
		globs = append(globs, g)
	}
	return out, globs, nil
}

// parseTokenGlob parses one pattern: "*", "server/tool", "server.tool"
// (split at the first '/' or '.', server ids have neither), or with bare, a
// tool name alone.
func parseTokenGlob(s string, bare bool) (tokenGlob, error) {
	switch {
	case s == "":
		return tokenGlob{}, fmt.Errorf("empty pattern")
	case len(s) > maxTokenPatternLen:
		return tokenGlob{}, fmt.Errorf("pattern of %d bytes, more than %d", len(s), maxTokenPatternLen)
	case !utf8.ValidString(s):
		return tokenGlob{}, fmt.Errorf("pattern %q is not valid UTF-8", s)
	case s == "*":
		return tokenGlob{raw: "*", all: true}, nil
	}
	for _, r := range s {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return tokenGlob{}, fmt.Errorf("pattern %q holds white space or a control character", s)
		case r == '[' || r == ']' || r == '\\' || r == '{' || r == '}':
			return tokenGlob{}, fmt.Errorf("pattern %q: only '*' and '?' are wildcards (no character classes, braces or escapes)", s)
		}
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return splitTokenGlob(s, i)
	}
	if bare {
		g := tokenGlob{raw: s, tool: s}
		if i := strings.IndexByte(s, '.'); i > 0 && i < len(s)-1 {
			g.dotServer, g.dotTool = s[:i], s[i+1:]
		}
		return g, nil
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return splitTokenGlob(s, i)
	}
	return tokenGlob{}, fmt.Errorf("pattern %q is not \"*\", server/tool or server.tool", s)
}

func splitTokenGlob(s string, i int) (tokenGlob, error) {
	server, tool := s[:i], s[i+1:]
	if server == "" || tool == "" {
		return tokenGlob{}, fmt.Errorf("pattern %q is not server/tool: a part is empty", s)
	}
	if strings.ContainsAny(server, "./") {
		return tokenGlob{}, fmt.Errorf("pattern %q: a server id holds no '.' or '/'", s)
	}
	if strings.Contains(tool, "/") {
		return tokenGlob{}, fmt.Errorf("pattern %q: a tool name holds no '/'", s)
	}
	raw := s
	if s[i] != '/' {
		raw = server + "/" + tool
	}
	return tokenGlob{raw: raw, server: server, tool: tool}, nil
}

func (g *tokenGlob) match(server, tool string) bool {
	switch {
	case g.all:
		return true
	case g.server != "":
		return globMatch(g.server, server) && globMatch(g.tool, tool)
	}
	// A bare name: the tool on any server, or server.tool.
	return globMatch(g.tool, tool) || g.dotServer != "" && globMatch(g.dotServer, server) && globMatch(g.dotTool, tool)
}

// Allows reports whether the token's policy lets it call tool on server:
// deny first, then allow, then allowed_tools. When it does not, reason
// says which pattern decided, in words fit for the caller.
func (p *TokenPolicy) Allows(server, tool string) (ok bool, reason string) {
	call := func() string { return server + "/" + tool }
	for _, g := range p.deny {
		if g.match(server, tool) {
			return false, fmt.Sprintf("%s is denied by the token's policy (deny %q)", call(), g.raw)
		}
	}
	allowed := false
	for _, g := range p.allow {
		if g.match(server, tool) {
			allowed = true
			break
		}
	}
	if !allowed {
		return false, fmt.Sprintf("%s is not allowed by the token's policy (allow %s)", call(), patternList(p.Allow))
	}
	if p.AllowedTools != nil {
		for _, g := range p.allowed {
			if g.match(server, tool) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s is not in the token's allowed_tools %s", call(), patternList(p.AllowedTools))
	}
	return true, ""
}

// Signed is the policy as written into a signed token: {"allow", "deny"}
// and, when set, "allowed_tools", each a list of normalised patterns.
// ParseTokenPolicy reads it back to the same policy.
func (p *TokenPolicy) Signed() map[string]any {
	m := map[string]any{"allow": anyList(p.Allow), "deny": anyList(p.Deny)}
	if p.AllowedTools != nil {
		m["allowed_tools"] = anyList(p.AllowedTools)
	}
	return m
}

func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// patternList shows a list of patterns, shortened past a few.
func patternList(l []string) string {
	const show = 5
	if len(l) == 0 {
		return "[] (nothing)"
	}
	q := make([]string, 0, show)
	for i, s := range l {
		if i == show {
			q = append(q, fmt.Sprintf("and %d more", len(l)-show))
			break
		}
		q = append(q, fmt.Sprintf("%q", s))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// jsonKind names the JSON type of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case map[string]any:
		return "an object"
	case []any, []string:
		return "a list"
	}
	return "a number"
}
