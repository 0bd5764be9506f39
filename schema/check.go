package schema

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// WhenRoots are the variables a rule's `when` condition may reference.
var WhenRoots = []string{"args", "user", "tool", "server", "time"}

// check makes the checks the schema cannot: references between sections,
// uniqueness, expressions, URLs and secrets. It works on the tree for
// positions and on the decoded Config for meaning.
func check(root *node, c *Config) Diagnostics {
	var ds Diagnostics
	ids := checkServers(root, &ds)
	checkGroups(root, c, &ds)
	groups := map[string]bool{}
	for _, g := range c.Groups {
		groups[g.Name] = true
	}
	if pol := root.get("policy"); pol != nil && pol.kind == kMap {
		for _, list := range []string{"allow", "deny"} {
			for i, it := range items(pol.get(list)) {
				checkRef(it, fmt.Sprintf("policy.%s[%d]", list, i), ids, true, &ds)
			}
		}
		for i, r := range items(pol.get("rules")) {
			p := fmt.Sprintf("policy.rules[%d]", i)
			for j, it := range items(r.get("tools")) {
				checkRef(it, fmt.Sprintf("%s.tools[%d]", p, j), ids, true, &ds)
			}
			checkGroupRefs(r, p, groups, &ds)
			checkApprovers(r, p, groups, &ds)
			for j, u := range items(r.get("users")) {
				if u.kind == kString && !validMember(u.str) {
					ds.errorf(u.pos, fmt.Sprintf("%s.users[%d]", p, j), "invalid user %q: want an email address or *@domain", u.str)
				}
			}
			if w := r.get("when"); w != nil && w.kind == kString {
				pos := w.textPos
				if pos.Line == 0 {
					pos = w.pos
				}
				checkWhen(w.str, pos, w.textIndent, p+".when", &ds)
			}
		}
	}
	for i, t := range items(root.get("tests")) {
		p := fmt.Sprintf("tests[%d]", i)
		if tn := t.get("tool"); tn != nil && tn.kind == kString {
			checkTestRef(tn, p+".tool", ids, &ds)
		}
		checkGroupRefs(t, p, groups, &ds)
	}
	if px := root.get("proxy"); px != nil {
		checkURL(px.get("url"), "proxy.url", &ds)
	}
	for i, g := range items(root.get("gateways")) {
		p := fmt.Sprintf("gateways[%d]", i)
		checkURL(g.get("url"), p+".url", &ds)
		checkSecret(g.get("api_key"), p+".api_key", &ds)
	}
	if id := root.get("identity"); id != nil {
		checkSecret(id.get("api_key"), "identity.api_key", &ds)
	}
	checkIdentityProviders(root, &ds)
	walkStrings(root, nil, func(n *node, labels []string) {
		if len(labels) > 0 && labels[0] == "identity_providers" {
			return // written out, never $VAR references (checkIdentityProviders)
		}
		if len(labels) > 0 {
			switch labels[len(labels)-1] {
			case "when", "description", "reason":
				return
			}
		}
		if len(labels) > 2 && labels[0] == "tests" && labels[2] == "args" {
			return
		}
		if err := checkVarRefs(n.str); err != "" {
			ds.errorf(n.pos, pathString(labels), "%s", err)
		}
	})
	return ds
}

// serverIDs are the declared server ids, with memoized pattern matches:
// 10,000 rules often repeat the same few patterns.
type serverIDs struct {
	list    []string
	has     map[string]bool
	matches map[string]bool
}

func (s serverIDs) match(pattern string) bool {
	if m, ok := s.matches[pattern]; ok {
		return m
	}
	m := false
	for _, id := range s.list {
		if ok, _ := path.Match(pattern, id); ok {
			m = true
			break
		}
	}
	s.matches[pattern] = m
	return m
}

// checkServers reports duplicate ids, bad URLs and literal secrets, and
// returns the declared ids.
func checkServers(root *node, ds *Diagnostics) serverIDs {
	ids := serverIDs{has: map[string]bool{}, matches: map[string]bool{}}
	seen := map[string]Pos{}
	for i, s := range items(root.get("mcp_servers")) {
		p := fmt.Sprintf("mcp_servers[%d]", i)
		idn := s.get("id")
		if idn != nil && idn.kind == kString {
			if prev, dup := seen[idn.str]; dup {
				ds.errorf(idn.pos, p+".id", "duplicate server id %q (first declared at line %d)", idn.str, prev.Line)
			} else {
				seen[idn.str] = idn.pos
				ids.list = append(ids.list, idn.str)
				ids.has[idn.str] = true
			}
		}
		t := str(s.get("transport"))
		if t == "" || t == TransportHTTP {
			checkURL(s.get("url"), p+".url", ds)
		}
		if pn := s.get("protocol"); pn != nil && t == TransportPlugin {
			ds.errorf(pn.pos, p+".protocol", "a protocol pin applies to transport http or stdio: a custom adapter (transport plugin) chooses its own protocol version")
		}
		if a := s.get("auth"); a != nil && a.kind == kMap {
			checkSecret(a.get("token"), p+".auth.token", ds)
			checkSecret(a.get("api_key"), p+".auth.api_key", ds)
		}
	}
	return ids
}

func checkGroups(root *node, c *Config, ds *Diagnostics) {
	g := root.get("groups")
	if g == nil || g.kind != kMap {
		return
	}
	for _, f := range g.fields {
		if !isIdent(f.key) {
			ds.errorf(f.keyPos, pathString([]string{"groups", f.key}), "invalid group name %q: use letters, digits, '-' and '_'", f.key)
		}
		for j, m := range items(f.val) {
			if m.kind == kString && !validMember(m.str) {
				ds.errorf(m.pos, fmt.Sprintf("%s[%d]", pathString([]string{"groups", f.key}), j), "invalid member %q: want an email address or *@domain", m.str)
			}
		}
	}
}

// validMember reports whether s is an email or "*@domain". Surrounding
// white space is allowed: the compiler trims it (and lower-cases), as the
// gateway trims the user of each call.
func validMember(s string) bool {
	s = strings.TrimSpace(s)
	at := strings.LastIndexByte(s, '@')
	if at < 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\n") {
		return false
	}
	local := s[:at]
	return local != "" && (local == "*" || !strings.Contains(local, "*"))
}

func checkGroupRefs(n *node, p string, groups map[string]bool, ds *Diagnostics) {
	for j, g := range items(n.get("groups")) {
		if g.kind == kString && !groups[g.str] {
			ds.errorf(g.pos, fmt.Sprintf("%s.groups[%d]", p, j), "unknown group %q (declare it under groups)", g.str)
		}
	}
}

// checkRef checks a tool reference and that its server is declared.
func checkRef(n *node, p string, ids serverIDs, globs bool, ds *Diagnostics) {
	if n.kind != kString {
		return
	}
	srv, tool, ok := ParseRef(n.str)
	if !ok {
		ds.errorf(n.pos, p, "invalid tool reference %q: want server/tool or server.tool", n.str)
		return
	}
	if !globs && (isGlob(srv) || isGlob(tool)) {
		ds.errorf(n.pos, p, "a test names one tool: %q is a pattern", n.str)
		return
	}
	switch {
	case isGlob(srv):
		if _, err := path.Match(srv, ""); err != nil {
			ds.errorf(n.pos, p, "invalid pattern %q", srv)
			return
		}
		if !ids.match(srv) {
			ds.errorf(n.pos, p, "server pattern %q matches no declared server", srv)
			return
		}
	case !ids.has[srv]:
		ds.errorf(n.pos, p, "unknown server %q in %q%s", srv, n.str, declaredHint(srv, ids.list))
		return
	}
	if isGlob(tool) {
		if _, err := path.Match(tool, ""); err != nil {
			ds.errorf(n.pos, p, "invalid pattern %q", tool)
		}
	}
}

// checkTestRef checks a test case's tool. Unlike a rule's, it may name a
// server the config does not declare: the case then asserts that the
// gateway denies it (it denies every call to an undeclared server), and
// only a warning says so, in case it is a typo.
func checkTestRef(n *node, p string, ids serverIDs, ds *Diagnostics) {
	srv, tool, ok := ParseRef(n.str)
	if ok && !isGlob(srv) && !isGlob(tool) && !ids.has[srv] {
		ds.warnf(n.pos, p, "%s", UndeclaredServerWarning(srv, n.str, ids.list))
		return
	}
	checkRef(n, p, ids, false, ds)
}

// UndeclaredServerWarning is the warning for a test case naming a server
// the config does not declare, with a "did you mean" hint.
func UndeclaredServerWarning(srv, ref string, declared []string) string {
	return fmt.Sprintf("server %q in %q is not declared under mcp_servers%s: the gateway denies every call to it, so this case can only expect deny", srv, ref, declaredHint(srv, declared))
}

func declaredHint(srv string, ids []string) string {
	best, bestD := "", min(3, len(srv)/2+1)
	for _, id := range ids {
		if d := editDistance(srv, id); d < bestD {
			best, bestD = id, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(ids) == 0 {
		return " (no server is declared under mcp_servers)"
	}
	return ""
}

func isGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

var refServer = regexp.MustCompile(`^[A-Za-z0-9_*?-]+$`)

// ParseRef splits a tool reference written "server/tool" or "server.tool"
// (globs * and ? allowed in both parts). Server ids contain no dot or
// slash, so the first separator splits; the tool part may contain dots.
func ParseRef(s string) (server, tool string, ok bool) {
	i := strings.IndexAny(s, "/.")
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	server, tool = s[:i], s[i+1:]
	if !refServer.MatchString(server) || strings.ContainsAny(tool, " \t\r\n/") {
		return "", "", false
	}
	return server, tool, true
}

// checkWhen parses a condition as an HCL expression and checks the
// variables it reads. Positions of HCL's diagnostics are in the user's file.
func checkWhen(src string, start Pos, indent int, p string, ds *Diagnostics) {
	hclPos := func(file string, hp hcl.Pos) Pos {
		pos := Pos{File: file, Line: hp.Line, Col: hp.Column}
		if indent > 0 && hp.Line > start.Line {
			pos.Col += indent - 1
		}
		return pos
	}
	expr, diags := hclsyntax.ParseExpression([]byte(src), start.File, hcl.Pos{Line: start.Line, Column: start.Col})
	for _, d := range diags {
		pos := start
		if d.Subject != nil {
			pos = hclPos(start.File, d.Subject.Start)
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		ds.errorf(pos, p, "invalid condition: %s", strings.TrimSuffix(msg, "."))
	}
	if diags.HasErrors() || expr == nil {
		return
	}
	for _, tr := range expr.Variables() {
		if !containsStr(WhenRoots, tr.RootName()) {
			ds.errorf(hclPos(start.File, tr.SourceRange().Start), p, "unknown variable %q in condition: use %s", tr.RootName(), strings.Join(WhenRoots, ", "))
		}
	}
}

func hclPos(file string, p hcl.Pos) Pos { return Pos{File: file, Line: p.Line, Col: p.Column} }

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// checkVarRefs reports a malformed ${...} reference; "" if s is fine.
// $NAME and ${NAME} are references, $$ is a literal dollar, and a $ not
// followed by a name or { is taken literally.
func checkVarRefs(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			continue
		}
		switch s[i+1] {
		case '$':
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return fmt.Sprintf("unterminated reference %q: want ${NAME}", s[i:])
			}
			name := s[i+2 : i+2+end]
			if !varName.MatchString(name) || varName.FindString(name) != name {
				return fmt.Sprintf("invalid reference %q: a variable name has letters, digits and '_' and does not start with a digit", s[i:i+3+end])
			}
			i += 2 + end
		}
	}
	return ""
}

// expandPlaceholders replaces references with a harmless word so that a URL
// like https://${HOST}/mcp can still be checked for its shape.
func expandPlaceholders(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			if s[i+1] == '{' {
				if end := strings.IndexByte(s[i:], '}'); end > 0 {
					b.WriteString("var")
					i += end
					continue
				}
			} else if m := varName.FindString(s[i+1:]); m != "" {
				b.WriteString("var")
				i += len(m)
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func checkURL(n *node, p string, ds *Diagnostics) {
	if n == nil || n.kind != kString || strings.HasPrefix(n.str, "$") && !strings.HasPrefix(n.str, "$$") {
		return // $URL or ${BASE}/mcp: the shape is known only where it is resolved
	}
	if err := validURL(expandPlaceholders(n.str)); err != "" {
		ds.errorf(n.pos, p, "invalid URL %s: %s", strconv.Quote(n.str), err)
	}
}

func validURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return strings.TrimPrefix(err.Error(), "parse "+strconv.Quote(s)+": ")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "want an http:// or https:// URL"
	}
	if u.Host == "" || u.Hostname() == "" {
		return "missing host"
	}
	return ""
}

func checkSecret(n *node, p string, ds *Diagnostics) {
	if n == nil || n.kind != kString || n.str == "" || strings.Contains(n.str, "$") {
		return
	}
	ds.warnf(n.pos, p, "literal secret: it would be committed to git; use a reference like $%s", secretVarHint(p))
}

func secretVarHint(p string) string {
	switch {
	case strings.HasPrefix(p, "identity"):
		return "ARMORIQ_API_KEY"
	case strings.HasPrefix(p, "gateways"):
		return "GATEWAY_API_KEY"
	}
	return "SERVER_TOKEN"
}

func walkStrings(n *node, labels []string, fn func(*node, []string)) {
	switch n.kind {
	case kString:
		fn(n, labels)
	case kMap:
		for _, f := range n.fields {
			walkStrings(f.val, append(labels, f.key), fn)
		}
	case kList:
		for i, it := range n.items {
			walkStrings(it, append(labels, strconv.Itoa(i)), fn)
		}
	}
}

// checkApprovers checks a rule's approvers: only on a hold rule, each an
// email, *@domain or a declared group.
func checkApprovers(r *node, p string, groups map[string]bool, ds *Diagnostics) {
	ap := r.get("approvers")
	if ap == nil {
		return
	}
	if e := r.get("effect"); e != nil && e.kind == kString && e.str != "hold" {
		ds.errorf(ap.pos, p+".approvers", "approvers apply to hold rules only; this rule's effect is %s", e.str)
	}
	for j, a := range items(ap) {
		if a.kind != kString {
			continue
		}
		switch {
		case strings.Contains(a.str, "@"):
			if !validMember(a.str) {
				ds.errorf(a.pos, fmt.Sprintf("%s.approvers[%d]", p, j), "invalid approver %q: want an email address, *@domain or a group", a.str)
			}
		case !groups[a.str]:
			ds.errorf(a.pos, fmt.Sprintf("%s.approvers[%d]", p, j), "unknown group %q among approvers (declare it under groups, or write an email address)", a.str)
		}
	}
}
