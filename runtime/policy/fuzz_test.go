package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// FuzzWhen compiles an arbitrary when expression and evaluates it against
// arbitrary JSON arguments: neither may panic, and a decision is always one
// of the three effects.
func FuzzWhen(f *testing.F) {
	f.Add(`args.amount < 100`, `{"amount": 5}`)
	f.Add(`contains(user.groups, "eng") && time.hour >= 9`, `{}`)
	f.Add(`regexmatch("[", args.x)`, `{"x": "y"}`)
	f.Add(`try(args.a.b[0], null) == null`, `{"a": {"b": [1]}}`)
	f.Add(`substr(args.s, -5, 100) == "x"`, `{"s": "hello"}`)
	f.Add(`[for k, v in args : v if k != ""]`, `{"a": 1e400}`)
	f.Add(`args.a == 0.1 || args.b != "x" && !(args.c < 3)`, `{"a": 0.1, "b": "é", "c": 2}`)
	f.Add(`args.amount > 1000`, `{"amount": "-Inf"}`)
	f.Add(`try(args.amount, 0) > 1000`, `{"amount": " 5000 "}`)
	f.Fuzz(func(t *testing.T, expr, argsJSON string) {
		// A decision must stay cheap whatever the condition: a slow one is
		// a failure (format with a huge width was one, and was removed).
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("when %q with args %s took %v", expr, argsJSON, d)
			}
		}()
		var args map[string]any
		if json.Unmarshal([]byte(argsJSON), &args) != nil {
			args = nil
		}
		checkFast(t, expr, &Request{User: "u@example.com", Server: "s", Tool: "t", Args: args})
		for _, effect := range []string{bundle.Allow, bundle.Hold, bundle.Deny} {
			e, err := Compile(&bundle.Policy{Rules: []bundle.Rule{
				{ID: "r", Effect: effect, Tools: []string{"s/t"}, When: expr},
				{ID: "base", Effect: bundle.Allow, Tools: []string{"s/t"}},
			}})
			if err != nil {
				continue
			}
			d := e.Decide(&Request{User: "u@example.com", Server: "s", Tool: "t", Args: args})
			// Fail closed: with "base" allowing, only r decides
			// otherwise, and a hold or deny r whose condition
			// failed denies, saying why.
			switch {
			case d.Effect == Allow && d.RuleID == "base":
			case d.Effect == Allow && effect == bundle.Allow && d.RuleID == "r" && d.WhenError == "":
			case d.Effect == Hold && effect == bundle.Hold && d.RuleID == "r" && d.WhenError == "":
			case d.Effect == Deny && effect == bundle.Deny && d.RuleID == "r":
			case d.Effect == Deny && effect == bundle.Hold && d.RuleID == "r" && d.WhenError != "":
			default:
				t.Fatalf("when %q as %s with args %s: %+v", expr, effect, argsJSON, d)
			}
		}
	})
}

// FuzzDecide builds a one-rule policy from arbitrary patterns and subjects
// and decides an arbitrary request: no panic, a valid effect, and a rule id
// only when the rule matched.
func FuzzDecide(f *testing.F) {
	f.Add("gh*/read_*", "*@example.com", "eng", "ghe", "read_file", "A@Example.com", "eng")
	f.Add("*", "*", "", "", "", "", "")
	f.Add("s/??", "a@b", "g", "s", "é", "a@b", "")
	f.Add("*/*a*", "", "", "x", "aaa", "", "")
	f.Fuzz(func(t *testing.T, pattern, user, group, server, tool, reqUser, reqGroup string) {
		p := &bundle.Policy{
			Groups: []bundle.Group{{Name: group, Members: []string{user}}},
			Rules:  []bundle.Rule{{ID: "r", Effect: bundle.Allow, Tools: []string{pattern}, Users: []string{user}, Groups: []string{group}}},
		}
		e, err := Compile(p)
		if err != nil {
			return
		}
		req := &Request{User: reqUser, Groups: []string{reqGroup}, Server: server, Tool: tool}
		d := e.Decide(req)
		switch {
		case d.Effect == Allow && d.RuleID == "r":
		case d.Effect == Deny && d.RuleID == "":
		default:
			t.Fatalf("Decide(%+v) under %q = %+v", req, pattern, d)
		}
		if e.Visible(req) != (d.Effect == Allow) {
			t.Fatalf("Visible(%+v) disagrees with Decide %s", req, d.Effect)
		}
	})
}
