package schema

// decode builds the typed Config from a tree the schema has checked. It is
// lenient: a value of the wrong type is skipped (the schema has already
// reported it), so that the semantic checks can still run on the rest.
func decode(root *node) *Config {
	c := &Config{}
	c.Version = str(root.get("version"))
	if n := root.get("identity"); n != nil && n.kind == kMap {
		c.Identity = &Identity{APIKey: str(n.get("api_key")), UserID: str(n.get("user_id")), AgentID: str(n.get("agent_id"))}
	}
	c.Environment = str(root.get("environment"))
	if n := root.get("proxy"); n != nil && n.kind == kMap {
		c.Proxy = &Proxy{URL: str(n.get("url")), Timeout: integer(n.get("timeout")), MaxRetries: integer(n.get("max_retries"))}
	}
	if n := root.get("mcp_servers"); n != nil {
		for _, it := range items(n) {
			c.Servers = append(c.Servers, decodeServer(it))
		}
	}
	if n := root.get("groups"); n != nil && n.kind == kMap {
		for _, f := range n.fields {
			c.Groups = append(c.Groups, Group{Name: f.key, Members: strs(f.val), Pos: f.keyPos})
		}
	}
	if n := root.get("policy"); n != nil && n.kind == kMap {
		c.Policy.Allow = refs(n.get("allow"))
		c.Policy.Deny = refs(n.get("deny"))
		for _, it := range items(n.get("rules")) {
			c.Policy.Rules = append(c.Policy.Rules, decodeRule(it))
		}
	}
	if n := root.get("intent"); n != nil && n.kind == kMap {
		c.Intent = &Intent{TTLSeconds: integer(n.get("ttl_seconds"))}
		if b := n.get("require_csrg"); b != nil && b.kind == kBool {
			c.Intent.RequireCSRG = b.b
		}
	}
	for _, it := range items(root.get("tests")) {
		t := Test{
			Name:   str(it.get("name")),
			User:   str(it.get("user")),
			Groups: strs(it.get("groups")),
			Agent:  str(it.get("agent")),
			Expect: str(it.get("expect")),

			Approvers: strs(it.get("approvers")),
			Pos:       it.pos,
		}
		if tn := it.get("tool"); tn != nil {
			t.Tool = makeRef(tn)
		}
		if a := it.get("args"); a != nil && a.kind == kMap {
			t.Args = toGo(a).(map[string]any)
		}
		c.Tests = append(c.Tests, t)
	}
	for _, it := range items(root.get("gateways")) {
		c.Gateways = append(c.Gateways, Gateway{Name: str(it.get("name")), URL: str(it.get("url")), APIKey: str(it.get("api_key")), Pos: it.pos})
	}
	for _, it := range items(root.get("identity_providers")) {
		c.IdentityProviders = append(c.IdentityProviders, decodeIdentityProvider(it))
	}
	return c
}

func decodeIdentityProvider(n *node) IdentityProvider {
	p := IdentityProvider{
		Name:              str(n.get("name")),
		Issuer:            str(n.get("issuer")),
		Audience:          str(n.get("audience")),
		UserClaim:         str(n.get("user_claim")),
		GroupsClaim:       str(n.get("groups_claim")),
		RequiredScopes:    strs(n.get("required_scopes")),
		AllowedAlgorithms: strs(n.get("allowed_algorithms")),
		Pos:               n.pos,
	}
	if p.UserClaim == "" {
		p.UserClaim = DefaultUserClaim
	}
	if n.get("allowed_algorithms") == nil {
		p.AllowedAlgorithms = DefaultAlgorithms()
	}
	return p
}

func decodeServer(n *node) Server {
	s := Server{
		ID:          str(n.get("id")),
		URL:         str(n.get("url")),
		Description: str(n.get("description")),
		Transport:   str(n.get("transport")),
		Command:     str(n.get("command")),
		Args:        strs(n.get("args")),
		Path:        str(n.get("path")),
		SHA256:      str(n.get("sha256")),
		ToolPrefix:  str(n.get("tool_prefix")),
		Protocol:    str(n.get("protocol")),
		Pos:         n.pos,
	}
	if s.Transport == "" {
		s.Transport = TransportHTTP
	}
	if s.ToolPrefix == "" {
		s.ToolPrefix = PrefixConditional
	}
	if a := n.get("auth"); a != nil && a.kind == kMap {
		s.Auth = &Auth{Type: str(a.get("type")), Token: str(a.get("token")), APIKey: str(a.get("api_key")), HeaderName: str(a.get("header_name"))}
	}
	if e := n.get("env"); e != nil && e.kind == kMap {
		s.Env = make(map[string]string, len(e.fields))
		for _, f := range e.fields {
			s.Env[f.key] = str(f.val)
		}
	}
	return s
}

func decodeRule(n *node) Rule {
	r := Rule{
		Name:   str(n.get("name")),
		Effect: str(n.get("effect")),
		Tools:  refs(n.get("tools")),
		Users:  strs(n.get("users")),
		Groups: strs(n.get("groups")),
		Agents: strs(n.get("agents")),
		Reason: str(n.get("reason")),
		Pos:    n.pos,

		Approvers: strs(n.get("approvers")),
	}
	if w := n.get("when"); w != nil && w.kind == kString {
		r.When = w.str
		r.WhenPos = w.textPos
		if r.WhenPos.Line == 0 {
			r.WhenPos = w.pos
		}
		r.WhenIndent = w.textIndent
	}
	return r
}

func items(n *node) []*node {
	if n == nil || n.kind != kList {
		return nil
	}
	return n.items
}

func str(n *node) string {
	if n == nil || n.kind != kString {
		return ""
	}
	return n.str
}

func integer(n *node) int {
	if n == nil || n.kind != kInt {
		return 0
	}
	return int(n.i)
}

func strs(n *node) []string {
	var out []string
	for _, it := range items(n) {
		if it.kind == kString {
			out = append(out, it.str)
		}
	}
	return out
}

func refs(n *node) []Ref {
	var out []Ref
	for _, it := range items(n) {
		if it.kind == kString {
			out = append(out, makeRef(it))
		}
	}
	return out
}

func makeRef(n *node) Ref {
	r := Ref{Raw: n.str, Pos: n.pos}
	if n.kind != kString {
		r.Raw = n.literal()
	}
	if s, t, ok := ParseRef(r.Raw); ok {
		r.Server, r.Tool = s, t
	}
	return r
}

// toGo converts a tree to plain Go values (maps, slices, strings, int64,
// float64, bool, nil): for test arguments, and as the data handed to CUE
// (cue.Context.Encode is cheaper than building and compiling an AST).
func toGo(n *node) any {
	switch n.kind {
	case kString:
		return n.str
	case kInt:
		return n.i
	case kFloat:
		return n.f
	case kBool:
		return n.b
	case kMap:
		m := make(map[string]any, len(n.fields))
		for _, f := range n.fields {
			if f.val.kind == kInvalid {
				continue // reported where it failed to decode
			}
			m[f.key] = toGo(f.val)
		}
		return m
	case kList:
		l := make([]any, len(n.items))
		for i, it := range n.items {
			l[i] = toGo(it)
		}
		return l
	}
	return nil
}

// WhenFilePos maps a position HCL reports for the when expression, parsed
// with hclsyntax.ParseExpression(src, r.WhenPos.File,
// hcl.Pos{Line: r.WhenPos.Line, Column: r.WhenPos.Col}), to its place in the
// file: on later lines of an indented multi-line text the column is shifted
// by the indentation HCL did not see.
func (r Rule) WhenFilePos(line, col int) Pos {
	p := Pos{File: r.WhenPos.File, Line: line, Col: col}
	if r.WhenIndent > 0 && line > r.WhenPos.Line {
		p.Col += r.WhenIndent - 1
	}
	return p
}
