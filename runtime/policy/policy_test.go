package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// r builds a rule for tests: effect, tools, then options.
func r(id, effect string, tools ...string) bundle.Rule {
	return bundle.Rule{ID: id, Effect: effect, Tools: tools, Pos: bundle.Pos{File: "armoriq.yaml", Line: 10, Col: 5}}
}

func users(rl bundle.Rule, u ...string) bundle.Rule  { rl.Users = u; return rl }
func groups(rl bundle.Rule, g ...string) bundle.Rule { rl.Groups = g; return rl }
func agents(rl bundle.Rule, a ...string) bundle.Rule { rl.Agents = a; return rl }
func when(rl bundle.Rule, w string) bundle.Rule {
	rl.When = w
	rl.WhenPos = bundle.Pos{File: "armoriq.yaml", Line: 12, Col: 11}
	return rl
}

func mustCompile(t testing.TB, p *bundle.Policy) *Engine {
	t.Helper()
	e, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func TestDecide(t *testing.T) {
	policy := &bundle.Policy{
		Groups: []bundle.Group{
			{Name: "eng", Members: []string{"Alice@Example.com", "*@eng.example.com"}},
			{Name: "everyone", Members: []string{"*"}},
		},
		Rules: []bundle.Rule{
			r("allow-gh", "allow", "github/*"),
			r("deny-delete", "deny", "github/delete_repo"),
			users(r("hold-merge", "hold", "github/merge_pr"), "*@example.com"),
			users(r("allow-merge-bob", "allow", "github/merge_pr"), "bob@example.com"),
			r("deny-merge-all", "deny", "github/merge_*"),
			users(r("deny-merge-mallory", "deny", "github/merge_pr"), "mallory@example.com"),
			groups(r("eng-jira", "allow", "jira/*"), "eng"),
			groups(r("sre-pager", "allow", "pager/page"), "sre"),
			agents(r("ci-deploy", "allow", "deploy/run"), "ci-bot"),
			r("read-anywhere", "allow", "gh*/read_*"),
			r("q", "allow", "db/q?"),
			r("dotted", "allow", "files/read.file"),
			r("star-server", "allow", "*/ping"),
			users(r("all-for-root", "allow", "*"), "root@example.com"),
			when(r("small-payments", "allow", "pay/send"), `args.amount < 100`),
			when(r("no-prod", "deny", "deploy/run"), `args.env == "prod"`),
			when(r("hold-weekend", "hold", "cal/book"), `contains(["saturday", "sunday"], time.weekday)`),
			r("cal", "allow", "cal/book"),
			when(r("str-cond", "allow", "str/x"), `"yes"`),
			when(r("group-cond", "allow", "grp/x"), `contains(user.groups, "eng") && user.domain == "example.com"`),
			when(r("missing-arg", "allow", "ma/x"), `args.nope == 1`),
			when(r("try-arg", "allow", "ta/x"), `try(args.branch, "main") != "main"`),
			when(r("deny-missing", "deny", "dm/x"), `args.nope == 1`),
			r("dm-allow", "allow", "dm/x"),
			when(r("deny-nonbool", "deny", "dn/x"), `args.env`),
			r("dn-allow", "allow", "dn/x"),
			users(r("everyone-grp", "allow", "open/x"), "nobody@example.com"),
			groups(r("everyone-grp2", "allow", "open/y"), "everyone"),
			when(r("funcs", "allow", "fn/x"), `startswith(args.path, "/tmp/") && !endswith(args.path, ".key") && glob("*.txt", args.path) && regexmatch("^/tmp/[a-z]+", args.path) && lower(args.who) == "x" && length(args.list) == 2`),
		},
	}
	e := mustCompile(t, policy)
	sat := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	mon := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		req    Request
		effect Effect
		rule   string
		reason string // substring
	}{
		{"allow by glob", Request{User: "x@y.z", Server: "github", Tool: "list_issues"}, Allow, "allow-gh", ""},
		{"deny over allow", Request{User: "x@y.z", Server: "github", Tool: "delete_repo"}, Deny, "deny-delete", "denied by rule deny-delete (armoriq.yaml:10:5)"},
		{"deny glob over hold", Request{User: "eve@example.com", Server: "github", Tool: "merge_pr"}, Deny, "deny-merge-all", ""},
		{"no match", Request{User: "x@y.z", Server: "slack", Tool: "post"}, Deny, "", "no rule allows slack/post for x@y.z"},
		{"no match anonymous", Request{Server: "slack", Tool: "post"}, Deny, "", "for an anonymous user"},
		{"server case matters", Request{User: "x@y.z", Server: "GitHub", Tool: "list"}, Deny, "", ""},
		{"group by exact member, case-insensitive", Request{User: "alice@EXAMPLE.com", Server: "jira", Tool: "create"}, Allow, "eng-jira", ""},
		{"group by domain member", Request{User: "carol@eng.example.com", Server: "jira", Tool: "create"}, Allow, "eng-jira", ""},
		{"group domain is exact, not suffix", Request{User: "carol@x.eng.example.com", Server: "jira", Tool: "create"}, Deny, "", ""},
		{"not in group", Request{User: "dave@example.com", Server: "jira", Tool: "create"}, Deny, "", ""},
		{"asserted group", Request{User: "dave@example.com", Groups: []string{"eng"}, Server: "jira", Tool: "create"}, Allow, "eng-jira", ""},
		{"asserted undefined group", Request{User: "dave@example.com", Groups: []string{"sre"}, Server: "pager", Tool: "page"}, Allow, "sre-pager", ""},
		{"undefined group, not asserted", Request{User: "dave@example.com", Server: "pager", Tool: "page"}, Deny, "", ""},
		{"agent listed", Request{User: "x@y.z", Agent: "ci-bot", Server: "deploy", Tool: "run", Args: map[string]any{"env": "dev"}}, Allow, "ci-deploy", ""},
		{"agent not listed", Request{User: "x@y.z", Agent: "other", Server: "deploy", Tool: "run", Args: map[string]any{"env": "dev"}}, Deny, "", ""},
		{"agent missing", Request{User: "x@y.z", Server: "deploy", Tool: "run", Args: map[string]any{"env": "dev"}}, Deny, "", ""},
		{"deny cond missing arg fails closed", Request{User: "x@y.z", Agent: "ci-bot", Server: "deploy", Tool: "run"}, Deny, "no-prod", "when condition failed: armoriq.yaml:12:15: Unsupported attribute"},
		{"glob in server and tool", Request{User: "x@y.z", Server: "gh-enterprise", Tool: "read_file"}, Allow, "read-anywhere", ""},
		{"glob needs prefix", Request{User: "x@y.z", Server: "gh-enterprise", Tool: "write_file"}, Deny, "", ""},
		{"question mark one char", Request{User: "x@y.z", Server: "db", Tool: "q1"}, Allow, "q", ""},
		{"question mark not zero", Request{User: "x@y.z", Server: "db", Tool: "q"}, Deny, "", ""},
		{"question mark not two", Request{User: "x@y.z", Server: "db", Tool: "q12"}, Deny, "", ""},
		{"question mark multibyte", Request{User: "x@y.z", Server: "db", Tool: "qé"}, Allow, "q", ""},
		{"dot is literal", Request{User: "x@y.z", Server: "files", Tool: "read.file"}, Allow, "dotted", ""},
		{"dot is not a wildcard", Request{User: "x@y.z", Server: "files", Tool: "readXfile"}, Deny, "", ""},
		{"slash splits server from tool", Request{User: "x@y.z", Server: "files/read", Tool: "file"}, Deny, "", ""},
		{"star server", Request{User: "x@y.z", Server: "anything", Tool: "ping"}, Allow, "star-server", ""},
		{"lone star", Request{User: "ROOT@example.com", Server: "zzz", Tool: "yyy"}, Allow, "all-for-root", ""},
		{"lone star does not beat deny", Request{User: "root@example.com", Server: "github", Tool: "delete_repo"}, Deny, "deny-delete", ""},
		{"hold over allow", Request{User: "eve@example.com", Server: "cal", Tool: "book", Time: sat}, Hold, "hold-weekend", ""},
		{"hold condition false", Request{User: "eve@example.com", Server: "cal", Tool: "book", Time: mon}, Allow, "cal", ""},
		{"cond true", Request{User: "x@y.z", Server: "pay", Tool: "send", Args: map[string]any{"amount": 10.0}}, Allow, "small-payments", ""},
		{"cond false", Request{User: "x@y.z", Server: "pay", Tool: "send", Args: map[string]any{"amount": 1000}}, Deny, "", ""},
		{"cond wrong type is a failure", Request{User: "x@y.z", Server: "pay", Tool: "send", Args: map[string]any{"amount": "lots"}}, Deny, "", "rule small-payments (armoriq.yaml:10:5): when condition failed: armoriq.yaml:12:11: Invalid operand"},
		{"cond missing arg, allow does not match", Request{User: "x@y.z", Server: "ma", Tool: "x"}, Deny, "", "when condition failed: armoriq.yaml:12:15: Unsupported attribute"},
		{"try default", Request{User: "x@y.z", Server: "ta", Tool: "x"}, Deny, "", ""},
		{"try value", Request{User: "x@y.z", Server: "ta", Tool: "x", Args: map[string]any{"branch": "dev"}}, Allow, "try-arg", ""},
		{"non-bool allow is a failure", Request{User: "x@y.z", Server: "str", Tool: "x"}, Deny, "", "condition is a string, not a bool"},
		{"deny cond error fails closed", Request{User: "x@y.z", Server: "dm", Tool: "x"}, Deny, "deny-missing", "denied (fail closed)"},
		{"deny cond non-bool fails closed", Request{User: "x@y.z", Server: "dn", Tool: "x", Args: map[string]any{"env": "prod"}}, Deny, "deny-nonbool", "condition is a string, not a bool"},
		{"deny cond false", Request{User: "x@y.z", Agent: "ci-bot", Server: "deploy", Tool: "run", Args: map[string]any{"env": "dev"}}, Allow, "ci-deploy", ""},
		{"deny cond true", Request{User: "x@y.z", Agent: "ci-bot", Server: "deploy", Tool: "run", Args: map[string]any{"env": "prod"}}, Deny, "no-prod", ""},
		{"user object", Request{User: "Alice@example.com", Server: "grp", Tool: "x"}, Allow, "group-cond", ""},
		{"user object, other domain", Request{User: "carol@eng.example.com", Server: "grp", Tool: "x"}, Deny, "", ""},
		{"group with * member", Request{Server: "open", Tool: "y"}, Allow, "everyone-grp2", ""},
		{"functions", Request{User: "x@y.z", Server: "fn", Tool: "x", Args: map[string]any{"path": "/tmp/a.txt", "who": "X", "list": []any{1, "b"}}}, Allow, "funcs", ""},
		{"functions false", Request{User: "x@y.z", Server: "fn", Tool: "x", Args: map[string]any{"path": "/tmp/a.key", "who": "X", "list": []any{1, "b"}}}, Deny, "", ""},
		{"hold for domain over allow for user", Request{User: "bob@example.com", Server: "github", Tool: "merge_pr"}, Deny, "deny-merge-all", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(&tt.req)
			if d.Effect != tt.effect || d.RuleID != tt.rule || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Decide(%+v) = %s by %q (%s), want %s by %q (reason containing %q)", tt.req, d.Effect, d.RuleID, d.Reason, tt.effect, tt.rule, tt.reason)
			}
			if d.RuleID != "" && d.Pos.Line == 0 {
				t.Errorf("Decide(%+v): decision by %s has no position", tt.req, d.RuleID)
			}
		})
	}
}

// TestPrecedence checks the strongest effect wins whatever the rule order and
// whichever index (exact, tool glob, server glob) holds the rules, and that
// the first rule in policy order names the decision among equals.
func TestPrecedence(t *testing.T) {
	kinds := []string{"s/t", "s/*", "*/t", "*"}
	effects := []string{"allow", "hold", "deny"}
	for _, k1 := range kinds {
		for _, k2 := range kinds {
			for _, e1 := range effects {
				for _, e2 := range effects {
					p := &bundle.Policy{Rules: []bundle.Rule{r("one", e1, k1), r("two", e2, k2)}}
					e := mustCompile(t, p)
					d := e.Decide(&Request{Server: "s", Tool: "t"})
					want, wantRule := e1, "one"
					if rank1, _ := rankOf(e1); func() bool { r2, _ := rankOf(e2); return r2 > rank1 }() {
						want, wantRule = e2, "two"
					}
					if string(d.Effect) != want || d.RuleID != wantRule {
						t.Errorf("rules %s %s, %s %s: got %s by %s, want %s by %s", e1, k1, e2, k2, d.Effect, d.RuleID, want, wantRule)
					}
				}
			}
		}
	}
}

func TestStaticAndVisible(t *testing.T) {
	p := &bundle.Policy{Rules: []bundle.Rule{
		when(r("cond-allow", "allow", "a/x"), `args.ok`),
		r("allow", "allow", "b/x"),
		when(r("cond-deny", "deny", "b/x"), `args.no`),
		when(r("cond-hold", "hold", "c/x"), `args.no`),
		r("allow-c", "allow", "c/x"),
		when(r("cond-deny-only", "deny", "d/x"), `args.no`),
		r("deny-e", "deny", "e/x"),
		when(r("cond-allow-e", "allow", "e/x"), `true`),
		r("hold-g", "hold", "g/x"),
		when(r("cond-hold-g", "hold", "g/x"), `args.no`),
	}}
	e := mustCompile(t, p)
	tests := []struct {
		tool        string
		effect      Effect
		conditional Effect
		condRule    string
		visible     bool
	}{
		{"a/x", Deny, Allow, "cond-allow", true},
		{"b/x", Allow, Deny, "cond-deny", true},
		{"c/x", Allow, Hold, "cond-hold", true},
		{"d/x", Deny, "", "", false},
		{"e/x", Deny, "", "", false},
		{"f/x", Deny, "", "", false},
		// A conditional hold over a hold matters only if it fails: it
		// then denies.
		{"g/x", Hold, Hold, "cond-hold-g", true},
	}
	for _, tt := range tests {
		server, tool, _ := strings.Cut(tt.tool, "/")
		req := &Request{User: "u@x.y", Server: server, Tool: tool}
		d, c := e.Static(req)
		if d.Effect != tt.effect || c.Effect != tt.conditional || c.RuleID != tt.condRule {
			t.Errorf("Static(%s) = %s, conditional %q by %q; want %s, %q by %q", tt.tool, d.Effect, c.Effect, c.RuleID, tt.effect, tt.conditional, tt.condRule)
		}
		if v := e.Visible(req); v != tt.visible {
			t.Errorf("Visible(%s) = %v, want %v", tt.tool, v, tt.visible)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		rule bundle.Rule
		want string
	}{
		{when(r("bad-syntax", "allow", "a/b"), `args.x ==`), "rule bad-syntax (armoriq.yaml:10:5): when: armoriq.yaml:12:"},
		{when(r("bad-var", "allow", "a/b"), `request.x == 1`), `armoriq.yaml:12:11: unknown variable "request"`},
		{when(r("bad-attr", "allow", "a/b"), `args.x == 1 && user.mail == "x"`), `user has no attribute "mail"`},
		{when(r("bad-time", "allow", "a/b"), `time.year > 2000`), `time has no attribute "year"`},
		{when(r("bad-func", "allow", "a/b"), `file("/etc/passwd") == ""`), `unknown function "file"`},
		{when(r("no-format", "allow", "a/b"), `format("%0900000000s", "x") != ""`), `unknown function "format"`},
		{r("bad-effect", "permit", "a/b"), `unknown effect "permit"`},
		{r("bad-tool", "allow", "nope"), `tool pattern "nope" is not server/tool`},
		{r("dotted", "allow", "github.get_file"), `tool pattern "github.get_file" is not server/tool`},
		{r("empty-tool", "allow", "github/"), `tool pattern "github/" is not server/tool`},
		{r("no-tools", "allow"), `rule names no tools`},
	}
	for _, tt := range tests {
		_, err := Compile(&bundle.Policy{Rules: []bundle.Rule{r("fine", "allow", "x/y"), tt.rule}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%s: when %q) error = %v, want one containing %q", tt.rule.ID, tt.rule.When, err, tt.want)
		}
	}
	// Every error is reported, not only the first.
	_, err := Compile(&bundle.Policy{Rules: []bundle.Rule{r("a", "nope", "x/y"), r("b", "allow", "z")}})
	if l, ok := err.(ErrorList); !ok || len(l) != 2 {
		t.Errorf("Compile with two bad rules: error %v, want an ErrorList of 2", err)
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "a", false},
		{"a*", "a", true},
		{"a*", "ba", false},
		{"*a", "bba", true},
		{"*a*b", "xaxxb", true},
		{"*a*b", "xaxxbx", false},
		{"read_*", "read_", true},
		{"read_*", "read", false},
		{"?", "é", true},
		{"??", "é", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"**", "x", true},
		{"*?*", "", false},
		{"*.*", "a.b", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestConcurrentDecide(t *testing.T) {
	e := mustCompile(t, benchPolicy(100, true))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				req := benchRequest(100, i+g)
				if d := e.Decide(req); d.Effect == "" {
					t.Errorf("empty decision")
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestDecideAllocs(t *testing.T) {
	e := mustCompile(t, benchPolicy(1000, false))
	req := benchRequest(1000, 7)
	if d := e.Decide(req); d.Effect != Allow {
		t.Fatalf("Decide(%+v) = %+v, want allow", req, d)
	}
	if n := testing.AllocsPerRun(100, func() { e.Decide(req) }); n != 0 {
		t.Errorf("Decide without conditions: %v allocations, want 0", n)
	}
	e = mustCompile(t, benchPolicy(1000, true))
	if d := e.Decide(req); d.Effect != Allow {
		t.Fatalf("Decide(%+v) = %+v, want allow", req, d)
	}
	if n := testing.AllocsPerRun(100, func() { e.Decide(req) }); n != 0 {
		t.Errorf("Decide with a native condition: %v allocations, want 0", n)
	}
	hidden := &Request{User: "nobody@else.org", Server: "srv0", Tool: "nope"}
	if e.Visible(hidden) {
		t.Fatalf("Visible(%+v) = true, want false", hidden)
	}
	if n := testing.AllocsPerRun(100, func() { e.Visible(hidden) }); n != 0 {
		t.Errorf("Visible of a hidden tool: %v allocations, want 0", n)
	}
}

func ExampleEngine_Decide() {
	e, err := Compile(&bundle.Policy{
		Groups: []bundle.Group{{Name: "eng", Members: []string{"*@example.com"}}},
		Rules: []bundle.Rule{
			{ID: "eng-github", Effect: "allow", Tools: []string{"github/*"}, Groups: []string{"eng"}},
			{ID: "no-force-push", Effect: "deny", Tools: []string{"github/push"}, When: `try(args.force, false)`},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, args := range []map[string]any{{"force": false}, {"force": true}} {
		d := e.Decide(&Request{User: "ann@example.com", Server: "github", Tool: "push", Args: args})
		fmt.Println(d.Effect, d.RuleID)
	}
	// Output:
	// allow eng-github
	// deny no-force-push
}

// TestAnyUser: with the end user unknown, user-scoped allows match and
// user-scoped denies and holds do not; unscoped rules apply as ever.
func TestAnyUser(t *testing.T) {
	e, err := Compile(&bundle.Policy{Rules: []bundle.Rule{
		{ID: "alice", Effect: bundle.Allow, Tools: []string{"s/read"}, Users: []string{"alice@x.com"}},
		{ID: "no-bob", Effect: bundle.Deny, Tools: []string{"s/*"}, Users: []string{"bob@x.com"}},
		{ID: "hold-eve", Effect: bundle.Hold, Tools: []string{"s/read"}, Users: []string{"eve@x.com"}},
		{ID: "no-drop", Effect: bundle.Deny, Tools: []string{"s/drop"}},
		{ID: "drop-for-all", Effect: bundle.Allow, Tools: []string{"s/drop"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tool, want string
	}{
		{"read", "alice"},   // some user may read
		{"drop", "no-drop"}, // nobody may drop
		{"write", ""},       // no rule allows anybody: default deny
	} {
		d := e.Decide(&Request{User: "svc", AnyUser: true, Server: "s", Tool: tc.tool})
		if d.RuleID != tc.want {
			t.Errorf("AnyUser %s: decided by %q (%v), want %q", tc.tool, d.RuleID, d.Effect, tc.want)
		}
	}
}
