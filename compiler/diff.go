package compiler

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/schema"
)

// Access is what a subject gets for a tool under one policy: allow, hold
// or deny, or a conditional access such as "hold if when, else allow" when
// a rule with a when condition applies and would change the decision if its
// condition held. Diff does not guess arguments, times or attributes.
type Access string

// Unconditional accesses.
const (
	AccessAllow Access = "allow"
	AccessHold  Access = "hold"
	AccessDeny  Access = "deny"
)

// Conditional reports whether a is conditional.
func (a Access) Conditional() bool {
	return a != AccessAllow && a != AccessHold && a != AccessDeny
}

// conditionalAccess names a conditional access. A hold whose condition
// cannot be evaluated denies (fail closed), so a conditional hold over an
// allow says so: "hold if when (deny if it fails), else allow". A
// conditional deny needs no such note: it denies either way. A conditional
// hold over a hold shows only for that: "hold if when (deny if it fails),
// else hold".
func conditionalAccess(cond, otherwise policy.Effect) Access {
	if cond == policy.Hold && otherwise != policy.Deny {
		return Access(fmt.Sprintf("%s if when (deny if it fails), else %s", cond, otherwise))
	}
	return Access(fmt.Sprintf("%s if when, else %s", cond, otherwise))
}

// Subject is someone a policy decides for, as diff enumerates them.
type Subject struct {
	Kind SubjectKind
	Name string // email, "*@domain", group or agent name; "" for anyone
	// Agent is the agent the subject calls through, for subjects named by
	// a rule or a test together with agents.
	Agent string
}

// SubjectKind says how a Subject is put to the engine.
type SubjectKind string

// Subject kinds.
const (
	SubjectUser   SubjectKind = "user"   // an exact email
	SubjectDomain SubjectKind = "domain" // anyone at a domain not otherwise named: "*@example.com"
	SubjectGroup  SubjectKind = "group"  // a member of the group not otherwise named
	SubjectAgent  SubjectKind = "agent"  // anyone calling through this agent
	SubjectAnyone SubjectKind = "anyone" // anyone else, with no group and no agent
	// SubjectEveryone stands in reports for every subject at once, when
	// they all see the same change.
	SubjectEveryone SubjectKind = "everyone"
)

// String is how reports show the subject.
func (s Subject) String() string {
	if s.Agent != "" && s.Kind != SubjectAgent {
		return s.base() + " via " + s.Agent
	}
	return s.base()
}

func (s Subject) base() string {
	switch s.Kind {
	case SubjectGroup:
		return "group:" + s.Name
	case SubjectAgent:
		return "agent:" + s.Name
	case SubjectAnyone:
		return "*"
	case SubjectEveryone:
		return "everyone"
	}
	return s.Name
}

func (s Subject) request(server, tool string) *policy.Request {
	req := &policy.Request{Server: server, Tool: tool, Agent: s.Agent}
	switch s.Kind {
	case SubjectUser, SubjectDomain:
		req.User = s.Name // "*@d" matches *@d entries and nothing exact
	case SubjectGroup:
		req.Groups = []string{s.Name}
	case SubjectAgent:
		req.Agent = s.Name
	}
	return req
}

// Change kinds.
const (
	ChangeGained  = "gained"  // deny → allow or hold
	ChangeLost    = "lost"    // allow or hold → deny
	ChangeChanged = "changed" // any other change (allow ↔ hold, to or from conditional)
)

// Change is one (subject, tool) pair whose access differs between two policies.
type Change struct {
	Kind     string  `json:"kind"`
	Subject  Subject `json:"-"`
	Tool     string  `json:"tool"` // server/tool
	From     Access  `json:"from"`
	To       Access  `json:"to"`
	FromRule string  `json:"from_rule,omitempty"` // the rules that decide in base (see AccessOf)
	ToRule   string  `json:"to_rule,omitempty"`
}

// AccessDiff is the change in effective access between two configs: who
// may call which tool, and who can sign in as whom.
type AccessDiff struct {
	Subjects []Subject
	Tools    []string // server/tool, sorted
	Changes  []Change // gained, then lost, then changed; by subject and tool
	// Identity lists the changes to identity providers, by provider.
	Identity []IdentityChange
}

// Changed reports whether access changed: a tool's decision for a
// subject, or an identity provider.
func (d *AccessDiff) Changed() bool { return len(d.Changes) > 0 || len(d.Identity) > 0 }

// count is the number of changes of both kinds.
func (d *AccessDiff) count() int { return len(d.Changes) + len(d.Identity) }

// Universe lists the subjects and tools a diff decides for: every user,
// domain, group and agent named in either config (in rules, group members
// and tests) plus anyone else, and every literal server/tool named in
// either config plus the extra tools ({server: [tools]}, as
// 'validate --online --save-tools' writes them). Patterns with globs add no
// tool of their own: give the servers' tool lists to cover them.
func Universe(base, head *schema.Config, extraTools map[string][]string) (subjects []Subject, tools []string) {
	seen := map[Subject]bool{}
	addUser := func(u, agent string) {
		u = strings.ToLower(strings.TrimSpace(u))
		s := Subject{Kind: SubjectUser, Name: u, Agent: agent}
		switch {
		case u == "" || u == "*":
			if agent != "" {
				seen[Subject{Kind: SubjectAgent, Name: agent, Agent: agent}] = true
			}
			return
		case strings.HasPrefix(u, "*@"):
			s.Kind = SubjectDomain
		}
		seen[s] = true
		if agent != "" {
			s.Agent = ""
			seen[s] = true
		}
	}
	addGroup := func(g, agent string) {
		seen[Subject{Kind: SubjectGroup, Name: g}] = true
		if agent != "" {
			seen[Subject{Kind: SubjectGroup, Name: g, Agent: agent}] = true
		}
	}
	toolSet := map[string]bool{}
	addRef := func(r schema.Ref) {
		if r.Server != "" && r.Tool != "" && !strings.ContainsAny(r.Server+r.Tool, "*?") {
			toolSet[r.String()] = true
		}
	}
	for _, c := range []*schema.Config{base, head} {
		if c == nil {
			continue
		}
		for _, g := range c.Groups {
			addGroup(g.Name, "")
			for _, m := range g.Members {
				addUser(m, "")
			}
		}
		for _, r := range c.Policy.Allow {
			addRef(r)
		}
		for _, r := range c.Policy.Deny {
			addRef(r)
		}
		for _, r := range c.Policy.Rules {
			// A rule naming agents is checked for its subjects through
			// each of them; without agents, for its subjects alone.
			agents := r.Agents
			if len(agents) == 0 {
				agents = []string{""}
			}
			for _, a := range agents {
				for _, u := range r.Users {
					addUser(u, a)
				}
				for _, g := range r.Groups {
					addGroup(g, a)
				}
				if len(r.Users) == 0 && len(r.Groups) == 0 {
					addUser("", a)
				}
			}
			for _, t := range r.Tools {
				addRef(t)
			}
		}
		declared := map[string]bool{}
		for _, s := range c.Servers {
			declared[s.ID] = true
		}
		for _, t := range c.Tests {
			addUser(t.User, t.Agent)
			for _, g := range t.Groups {
				addGroup(g, t.Agent)
			}
			// A test may name an undeclared server (to assert the
			// gateway denies it); its tool is not one of the config's.
			if declared[t.Tool.Server] {
				addRef(t.Tool)
			}
		}
	}
	for server, names := range extraTools {
		for _, t := range names {
			toolSet[server+"/"+t] = true
		}
	}
	for s := range seen {
		subjects = append(subjects, s)
	}
	sort.Slice(subjects, func(i, j int) bool { return subjectLess(subjects[i], subjects[j]) })
	subjects = append(subjects, Subject{Kind: SubjectAnyone})
	for t := range toolSet {
		tools = append(tools, t)
	}
	sort.Strings(tools)
	return subjects, tools
}

var kindOrder = map[SubjectKind]int{SubjectEveryone: 0, SubjectUser: 1, SubjectDomain: 2, SubjectGroup: 3, SubjectAgent: 4, SubjectAnyone: 5}

func subjectLess(a, b Subject) bool {
	if a.Kind != b.Kind {
		return kindOrder[a.Kind] < kindOrder[b.Kind]
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Agent < b.Agent
}

// AccessOf decides a subject's access to server/tool without evaluating
// when conditions (see policy.Engine.Static): allow, hold or deny, or a
// conditional access. rule names the rules that decide it: "" for the
// default deny, "R" for a rule, "C if when, else R" (or "else no rule")
// for a conditional access.
func AccessOf(e *policy.Engine, s Subject, server, tool string) (a Access, rule string) {
	d, cond := e.Static(s.request(server, tool))
	if cond.Effect != "" {
		other := d.RuleID
		if other == "" {
			other = "no rule"
		}
		return conditionalAccess(cond.Effect, d.Effect), cond.RuleID + " if when, else " + other
	}
	return Access(d.Effect), d.RuleID
}

// approversOf names who may approve a subject's held call of server/tool
// ("any admin" when the holding rule names nobody); "" when nothing holds it.
func approversOf(e *policy.Engine, s Subject, server, tool string) string {
	d, cond := e.Static(s.request(server, tool))
	if cond.Effect != policy.Hold {
		cond = d
	}
	if cond.Effect != policy.Hold {
		return ""
	}
	if len(cond.Approvers) == 0 {
		return "any admin"
	}
	return strings.Join(cond.Approvers, ", ")
}

// Diff decides every (subject, tool) pair of the universe under both
// engines and returns the pairs whose access differs.
func Diff(base, head *policy.Engine, subjects []Subject, tools []string) *AccessDiff {
	d := &AccessDiff{Subjects: subjects, Tools: tools, Changes: []Change{}}
	for _, t := range tools {
		server, tool, _ := strings.Cut(t, "/")
		var changes []Change
		for _, s := range subjects {
			from, fromRule := AccessOf(base, s, server, tool)
			to, toRule := AccessOf(head, s, server, tool)
			fa, ta := approversOf(base, s, server, tool), approversOf(head, s, server, tool)
			if from == to && fa == ta {
				continue
			}
			if fa != ta && fa != "" && ta != "" {
				fromRule, toRule = fromRule+" (approvers: "+fa+")", toRule+" (approvers: "+ta+")"
			}
			changes = append(changes, Change{Kind: changeKind(from, to), Subject: s, Tool: t, From: from, To: to, FromRule: fromRule, ToRule: toRule})
		}
		d.Changes = append(d.Changes, collapse(changes, len(subjects))...)
	}
	order := map[string]int{ChangeGained: 0, ChangeLost: 1, ChangeChanged: 2}
	sort.SliceStable(d.Changes, func(i, j int) bool {
		a, b := d.Changes[i], d.Changes[j]
		if a.Kind != b.Kind {
			return order[a.Kind] < order[b.Kind]
		}
		if a.Subject != b.Subject {
			return subjectLess(a.Subject, b.Subject)
		}
		return a.Tool < b.Tool
	})
	return d
}

// collapse turns the changes of one tool into one row for everyone when
// every subject sees the same change.
func collapse(changes []Change, subjects int) []Change {
	if subjects < 2 || len(changes) != subjects {
		return changes
	}
	first := changes[0]
	for _, c := range changes[1:] {
		if c.From != first.From || c.To != first.To || c.FromRule != first.FromRule || c.ToRule != first.ToRule {
			return changes
		}
	}
	first.Subject = Subject{Kind: SubjectEveryone}
	return []Change{first}
}

func changeKind(from, to Access) string {
	granted := func(a Access) bool { return a == AccessAllow || a == AccessHold }
	switch {
	case from == AccessDeny && granted(to):
		return ChangeGained
	case granted(from) && to == AccessDeny:
		return ChangeLost
	}
	return ChangeChanged
}

// DiffConfigs compiles both configs and diffs their effective access,
// identity providers included.
func DiffConfigs(base, head *schema.Config, extraTools map[string][]string) (*AccessDiff, error) {
	be, err := Engine(base)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	he, err := Engine(head)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	subjects, tools := Universe(base, head, extraTools)
	d := Diff(be, he, subjects, tools)
	d.Identity = DiffIdentityProviders(base, head)
	return d, nil
}

// MaxMarkdown bounds the Markdown report, under GitHub's 65,536-character
// limit for a comment: rows past it are dropped and counted in a note.
const MaxMarkdown = 60000

// Write writes d in format text, markdown or json. base and head name the
// two sides (revisions or paths) in the report.
func (d *AccessDiff) Write(w io.Writer, format, base, head string) error {
	switch format {
	case "json":
		return d.writeJSON(w, base, head)
	case "markdown":
		_, err := io.WriteString(w, d.markdown(base, head, MaxMarkdown))
		return err
	case "text":
		return d.writeText(w, base, head)
	}
	return fmt.Errorf("unknown format %q (want text, markdown or json)", format)
}

// Markdown renders d for a pull request comment or a job summary in at
// most limit bytes; rows that do not fit are counted in a closing note.
func (d *AccessDiff) Markdown(base, head string, limit int) string {
	return d.markdown(base, head, limit)
}

func (d *AccessDiff) writeText(w io.Writer, base, head string) error {
	if !d.Changed() {
		_, err := fmt.Fprintln(w, "no change in effective access")
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s in effective access from %s to %s (%s, %s)\n",
		plural(d.count(), "change"), base, head, plural(len(d.Subjects), "subject"), plural(len(d.Tools), "tool"))
	for _, c := range d.Identity {
		b.WriteString(c.String() + "\n")
	}
	marks := map[string]string{ChangeGained: "+", ChangeLost: "-", ChangeChanged: "~"}
	for _, c := range d.Changes {
		fmt.Fprintf(&b, "%s %s %s: %s -> %s (%s -> %s)\n", marks[c.Kind], c.Subject, c.Tool, c.From, c.To, ruleOrNone(c.FromRule), ruleOrNone(c.ToRule))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ruleOrNone(id string) string {
	if id == "" {
		return "no rule"
	}
	return id
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func (d *AccessDiff) writeJSON(w io.Writer, base, head string) error {
	type jchange struct {
		Kind     string `json:"kind"`
		Subject  string `json:"subject"`
		Tool     string `json:"tool"`
		From     Access `json:"from"`
		To       Access `json:"to"`
		FromRule string `json:"from_rule,omitempty"`
		ToRule   string `json:"to_rule,omitempty"`
	}
	out := struct {
		Base     string    `json:"base"`
		Head     string    `json:"head"`
		Changed  bool      `json:"changed"`
		Subjects []string  `json:"subjects"`
		Tools    []string  `json:"tools"`
		Changes  []jchange `json:"changes"`
		// IdentityProviders are the changes to identity providers.
		IdentityProviders []IdentityChange `json:"identity_providers"`
	}{Base: base, Head: head, Changed: d.Changed(), Subjects: []string{}, Tools: d.Tools, Changes: []jchange{}, IdentityProviders: d.Identity}
	if out.IdentityProviders == nil {
		out.IdentityProviders = []IdentityChange{}
	}
	if out.Tools == nil {
		out.Tools = []string{}
	}
	for _, s := range d.Subjects {
		out.Subjects = append(out.Subjects, s.String())
	}
	for _, c := range d.Changes {
		out.Changes = append(out.Changes, jchange{c.Kind, c.Subject.String(), c.Tool, c.From, c.To, c.FromRule, c.ToRule})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

var sectionTitles = []struct{ kind, title string }{
	{ChangeGained, "Gained access"},
	{ChangeLost, "Lost access"},
	{ChangeChanged, "Changed decisions"},
}

// markdown renders d for a pull request comment, at most limit characters.
func (d *AccessDiff) markdown(base, head string, limit int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### armoriq: effective access %s → %s\n\n", mdCode(base), mdCode(head))
	if !d.Changed() {
		fmt.Fprintf(&b, "No change in effective access (%s, %s checked).\n", plural(len(d.Subjects), "subject"), plural(len(d.Tools), "tool"))
		return b.String()
	}
	fmt.Fprintf(&b, "**%s** in effective access (%s, %s checked).\n", plural(d.count(), "change"), plural(len(d.Subjects), "subject"), plural(len(d.Tools), "tool"))
	const noteRoom = 300 // kept free for the truncation note
	dropped := 0
	if len(d.Identity) > 0 {
		// First, and never dropped: a few rows that change who anyone is.
		fmt.Fprintf(&b, "\n#### Identity providers (%d)\n\nWho can sign in as whom: a token of these issuers names the end user.\n\n| Provider | Change | Before | After |\n| --- | --- | --- | --- |\n", len(d.Identity))
		for _, c := range d.Identity {
			change := map[string]string{ChangeGained: "added", ChangeLost: "removed"}[c.Kind]
			if c.Field != "" {
				change = mdCode(c.Field)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", mdCode(c.Provider), change, mdCell(c.From), mdCell(c.To))
		}
	}
	for _, sec := range sectionTitles {
		var rows []Change
		for _, c := range d.Changes {
			if c.Kind == sec.kind {
				rows = append(rows, c)
			}
		}
		if len(rows) == 0 {
			continue
		}
		header := fmt.Sprintf("\n#### %s (%d)\n\n| Subject | Tool | Before | After | Decided by |\n| --- | --- | --- | --- | --- |\n", sec.title, len(rows))
		if dropped > 0 || b.Len()+len(header) > limit-noteRoom {
			dropped += len(rows)
			continue
		}
		b.WriteString(header)
		for i, c := range rows {
			row := fmt.Sprintf("| %s | %s | %s | %s | %s → %s |\n", mdCode(c.Subject.String()), mdCode(c.Tool), c.From, c.To, mdRule(c.FromRule), mdRule(c.ToRule))
			if b.Len()+len(row) > limit-noteRoom {
				dropped += len(rows) - i
				break
			}
			b.WriteString(row)
		}
	}
	if dropped > 0 {
		fmt.Fprintf(&b, "\n_%s not shown: this comment is limited to %d characters. Run `armoriq diff %s %s` for the full list._\n",
			plural(dropped, "more row"), limit, base, head)
	}
	for _, c := range d.Changes {
		if c.From.Conditional() || c.To.Conditional() {
			b.WriteString("\n<sub>\"X if when, else Y\": a rule with a `when` condition applies; its outcome depends on the call's arguments, time or user. A deny or hold whose condition cannot be evaluated (a missing or mistyped argument) denies.</sub>\n")
			break
		}
	}
	return b.String()
}

func mdRule(id string) string {
	if id == "" {
		return "no rule"
	}
	return mdCode(id)
}

// mdCell is mdCode, or a dash for an empty cell.
func mdCell(s string) string {
	if s == "" {
		return "–"
	}
	return mdCode(s)
}

// mdCode formats s as inline code that is safe inside a table cell.
func mdCode(s string) string {
	s = strings.NewReplacer("|", "\\|", "\n", " ", "`", "'").Replace(s)
	return "`" + s + "`"
}
