package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// Effect is the outcome of a decision.
type Effect string

// Effects, from weakest to strongest: deny wins over hold, hold over allow.
const (
	Allow Effect = bundle.Allow
	Hold  Effect = bundle.Hold
	Deny  Effect = bundle.Deny
)

// Request is one tool call to decide.
type Request struct {
	// User is the end user's email, matched case-insensitively and
	// without surrounding white space (see NormalizeEmail).
	User   string
	Groups []string // groups asserted for the user besides the config's groups
	Agent  string   // agent id
	Server string   // MCP server id
	Tool   string   // tool name, without the server prefix
	Args   map[string]any
	// AnyUser says the end user is not known yet (a token issued without
	// user_email, whose calls will name their users): a rule with a user
	// or group condition is taken to match when it allows and not to match
	// when it denies or holds, so the decision is Deny only when no user
	// could be allowed. Calls are decided again for their real user.
	AnyUser bool
	// Time is when the call happens, for conditions over time; the zero
	// Time means now.
	Time time.Time
}

// Decision is the engine's answer for one request.
type Decision struct {
	Effect Effect
	// RuleID names the rule that decided; empty when no rule matched
	// (the default deny).
	RuleID string
	Pos    bundle.Pos // the deciding rule's position
	Reason string     // human-readable; safe to show to the caller
	// WhenError is set when the deciding rule is a deny or hold rule whose
	// when condition could not be evaluated: the evaluation error, with
	// its position. The decision is then deny (fail closed), and Reason
	// names the rule, its position and this error.
	WhenError string
	// Approvers are who may approve a held call (a hold rule's approvers,
	// groups expanded to their members: emails, "*@domain", "*"); empty
	// means any admin.
	Approvers []string
}

// Engine decides requests against one compiled policy. It is immutable
// after Compile and safe for concurrent use.
type Engine struct {
	rules   []*rule
	groups  map[string]*group
	servers map[string]*serverIndex // by literal server id
	// residual holds entries whose server pattern is a glob.
	residual globIndex
	funcs    funcTable
}

// rank orders effects for "strongest wins": a matching deny beats a hold,
// a hold beats an allow, and anything beats no match.
type rank int8

const (
	rankNone rank = iota
	rankAllow
	rankHold
	rankDeny
)

func rankOf(effect string) (rank, bool) {
	switch effect {
	case bundle.Allow:
		return rankAllow, true
	case bundle.Hold:
		return rankHold, true
	case bundle.Deny:
		return rankDeny, true
	}
	return rankNone, false
}

var effectOfRank = [...]Effect{rankNone: Deny, rankAllow: Allow, rankHold: Hold, rankDeny: Deny}

// rule is a compiled bundle.Rule.
type rule struct {
	index  int // position in the policy's rule list
	id     string
	rank   rank
	pos    bundle.Pos
	label  string // "rule <id> (<pos>)"
	reason string // the reason a decision by this rule carries

	anyone  bool                // no user or group condition
	users   map[string]struct{} // lower-case exact emails
	domains []string            // lower-case, from "*@domain"
	groups  []groupRef
	agents  []string
	when    *condition // nil: unconditional
	// approvers of a hold rule, groups expanded (see Decision.Approvers).
	approvers []string
}

type groupRef struct {
	name string
	def  *group // nil if the policy does not define it (asserted only)
}

// group is a compiled bundle.Group.
type group struct {
	name    string
	users   map[string]struct{}
	domains []string
	anyone  bool
}

// entry is one (rule, tool pattern) pair in an index.
type entry struct {
	r       *rule
	server  string // pattern; used in glob indexes only
	tool    string // pattern; used in glob indexes only
	literal bool   // tool is a literal, compare with ==
}

type serverIndex struct {
	exact map[string][]entry // by literal tool name
	globs globIndex          // tool patterns with wildcards
}

// globIndex buckets glob entries by the first byte of the pattern they are
// keyed on, so a lookup scans only the patterns that can match. Every
// bucket is sorted strongest effect first, then by rule order.
type globIndex struct {
	byFirst map[byte][]entry
	wild    []entry // patterns starting with a wildcard
}

// Compile compiles p into an Engine. Tool patterns, subjects and when
// conditions are checked and compiled once here; every problem found is
// reported, as an ErrorList naming each rule and its position.
func Compile(p *bundle.Policy) (*Engine, error) {
	e := &Engine{
		groups:  make(map[string]*group, len(p.Groups)),
		servers: make(map[string]*serverIndex),
		funcs:   conditionFuncs(),
	}
	for _, g := range p.Groups {
		cg := &group{name: g.Name, users: map[string]struct{}{}}
		for _, m := range g.Members {
			addSubject(m, cg.users, &cg.domains, &cg.anyone)
		}
		e.groups[g.Name] = cg
	}
	var errs ErrorList
	for i := range p.Rules {
		br := &p.Rules[i]
		r, err := e.compileRule(i, br)
		if err != nil {
			errs = append(errs, err...)
			continue
		}
		e.rules = append(e.rules, r)
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].less(errs[j]) })
		return nil, errs
	}
	for _, si := range e.servers {
		for k, l := range si.exact {
			si.exact[k] = sortEntries(l)
		}
		si.globs.sort()
	}
	e.residual.sort()
	return e, nil
}

func (e *Engine) compileRule(i int, br *bundle.Rule) (*rule, ErrorList) {
	var errs ErrorList
	fail := func(pos bundle.Pos, format string, args ...any) {
		errs = append(errs, &CompileError{RuleID: br.ID, Pos: pos, Msg: fmt.Sprintf(format, args...)})
	}
	rk, ok := rankOf(br.Effect)
	if !ok {
		fail(br.Pos, "unknown effect %q (want allow, deny or hold)", br.Effect)
	}
	r := &rule{
		index: i,
		id:    br.ID,
		rank:  rk,
		pos:   br.Pos,
		users: map[string]struct{}{},
		label: "rule " + br.ID + " (" + FormatPos(br.Pos) + ")",
	}
	r.reason = br.Reason
	if r.reason == "" {
		verb := map[rank]string{rankAllow: "allowed", rankHold: "held for approval", rankDeny: "denied"}[rk]
		r.reason = verb + " by " + r.label
	}
	r.anyone = len(br.Users) == 0 && len(br.Groups) == 0
	for _, u := range br.Users {
		if strings.TrimSpace(u) == "" {
			fail(br.Pos, "empty user entry")
			continue
		}
		addSubject(u, r.users, &r.domains, &r.anyone)
	}
	for _, g := range br.Groups {
		r.groups = append(r.groups, groupRef{name: g, def: e.groups[g]})
	}
	r.agents = br.Agents
	if len(br.Approvers) > 0 {
		if rk != rankHold {
			fail(br.Pos, "approvers apply to hold rules only, not %s", br.Effect)
		}
		r.approvers = e.expandApprovers(br, fail)
	}
	if br.When != "" {
		c, err := e.compileCondition(br)
		if err != nil {
			fail(br.Pos, "when: %v", err)
		}
		r.when = c
	}
	if len(br.Tools) == 0 {
		fail(br.Pos, "rule names no tools")
	}
	var entries []entry
	for _, t := range br.Tools {
		server, tool, err := splitPattern(t)
		if err != nil {
			fail(br.Pos, "%v", err)
			continue
		}
		entries = append(entries, entry{r: r, server: server, tool: tool, literal: !isGlob(tool)})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for _, en := range entries {
		e.index(en)
	}
	return r, nil
}

func whenPos(br *bundle.Rule) bundle.Pos {
	if br.WhenPos.Line > 0 {
		return br.WhenPos
	}
	return br.Pos
}

func (e *Engine) index(en entry) {
	if isGlob(en.server) {
		e.residual.add(en.server, en)
		return
	}
	si := e.servers[en.server]
	if si == nil {
		si = &serverIndex{exact: map[string][]entry{}}
		e.servers[en.server] = si
	}
	if en.literal {
		l := si.exact[en.tool]
		for _, x := range l {
			if x.r == en.r {
				return // the same rule names the same tool twice
			}
		}
		si.exact[en.tool] = append(l, en)
		return
	}
	si.globs.add(en.tool, en)
}

func (g *globIndex) add(key string, en entry) {
	if key == "" || key[0] == '*' || key[0] == '?' {
		g.wild = append(g.wild, en)
		return
	}
	if g.byFirst == nil {
		g.byFirst = map[byte][]entry{}
	}
	g.byFirst[key[0]] = append(g.byFirst[key[0]], en)
}

func (g *globIndex) sort() {
	for k, l := range g.byFirst {
		g.byFirst[k] = sortEntries(l)
	}
	g.wild = sortEntries(g.wild)
}

// sortEntries orders entries strongest effect first, then in rule order:
// the order Decide needs to stop at the first match.
func sortEntries(l []entry) []entry {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].r, l[j].r
		if a.rank != b.rank {
			return a.rank > b.rank
		}
		return a.index < b.index
	})
	return l
}

// splitPattern splits a "server/tool" pattern. A lone "*" means every tool
// of every server.
func splitPattern(p string) (server, tool string, err error) {
	if p == "*" {
		return "*", "*", nil
	}
	server, tool, ok := strings.Cut(p, "/")
	if !ok || server == "" || tool == "" {
		return "", "", fmt.Errorf("tool pattern %q is not server/tool", p)
	}
	return server, tool, nil
}

// NormalizeEmail is the form emails are compared in: surrounding white
// space removed and lower case, so "Mallory@Example.com " is
// mallory@example.com. The compiler writes users and group members in this
// form, and Decide puts Request.User in it. It does not allocate when s is
// already normalised.
func NormalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// addSubject adds a user entry: "*" (anyone), "*@domain" or an exact email.
func addSubject(s string, users map[string]struct{}, domains *[]string, anyone *bool) {
	s = NormalizeEmail(s)
	switch {
	case s == "*":
		*anyone = true
	case strings.HasPrefix(s, "*@"):
		*domains = append(*domains, s[2:])
	default:
		users[s] = struct{}{}
	}
}

// FormatPos formats a position as file:line:col, leaving out what is unknown.
func FormatPos(p bundle.Pos) string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	if b.Len() == 0 {
		return "unknown position"
	}
	return b.String()
}

// CompileError is a rule that cannot be compiled.
type CompileError struct {
	RuleID string
	Pos    bundle.Pos
	Msg    string
}

func (e *CompileError) Error() string {
	return "rule " + e.RuleID + " (" + FormatPos(e.Pos) + "): " + e.Msg
}

func (e *CompileError) less(o *CompileError) bool {
	if e.Pos.File != o.Pos.File {
		return e.Pos.File < o.Pos.File
	}
	if e.Pos.Line != o.Pos.Line {
		return e.Pos.Line < o.Pos.Line
	}
	return e.Pos.Col < o.Pos.Col
}

// ErrorList is every problem Compile found, sorted by position.
type ErrorList []*CompileError

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// expandApprovers turns a hold rule's approvers into identities: emails and
// "*@domain" as written (lower case), group names into their members.
func (e *Engine) expandApprovers(br *bundle.Rule, fail func(bundle.Pos, string, ...any)) []string {
	var out []string
	add := func(s string) {
		for _, x := range out {
			if x == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, a := range br.Approvers {
		a = strings.ToLower(strings.TrimSpace(a))
		switch {
		case a == "":
			fail(br.Pos, "empty approver entry")
		case a == "*" || strings.Contains(a, "@"):
			add(a)
		default:
			g := e.groups[a]
			if g == nil {
				fail(br.Pos, "approver %q is neither an email nor a group of the policy", a)
				continue
			}
			if g.anyone {
				add("*")
			}
			users := make([]string, 0, len(g.users))
			for u := range g.users {
				users = append(users, u)
			}
			sort.Strings(users)
			for _, u := range users {
				add(u)
			}
			for _, d := range g.domains {
				add("*@" + d)
			}
		}
	}
	return out
}
