package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// amountInputs are the values of args.amount that the fail-closed table
// tests decide, by name; "missing" leaves the argument out. Each is
// compared with `args.amount > 1000`.
var amountInputs = []struct {
	name string
	val  any
	// converts is whether HCL reads the value as a number; then more is
	// the comparison's result. Otherwise the condition cannot be evaluated
	// and err is a substring of the error.
	converts bool
	more     bool
	err      string
}{
	{name: "missing", val: nil, err: `Unsupported attribute`},
	{name: "null", val: nil, err: `argument must not be null`},
	{name: `"5,000"`, val: "5,000", err: `a number is required`},
	{name: `" 5000 "`, val: " 5000 ", err: `a number is required`},
	{name: `"5000 "`, val: "5000 ", err: `a number is required`},
	{name: "object", val: map[string]any{"value": 5000.0}, err: `Invalid operand`},
	{name: "list", val: []any{5000.0}, err: `Invalid operand`},
	{name: "bool", val: true, err: `Invalid operand`},
	{name: `"Inf"`, val: "Inf", err: `infinite number`},
	{name: `"-Inf"`, val: "-Inf", err: `infinite number`},
	{name: `""`, val: "", err: `a number is required`},
	{name: `"Infinity"`, val: "Infinity", err: `infinite number`},
	{name: `"-1e309"`, val: "-1e309", err: `infinite number`},
	{name: "-1e309 (a JSON number beyond float64)", val: json.Number("-1e309"), err: `beyond the range of a 64-bit float`},
	{name: "1e309 (a JSON number beyond float64)", val: json.Number("1e309"), err: `beyond the range of a 64-bit float`},
	{name: "1e308 (json.Number)", val: json.Number("1e308"), converts: true, more: true},
	{name: `"5000"`, val: "5000", converts: true, more: true},
	{name: `"1e4"`, val: "1e4", converts: true, more: true},
	{name: `"500"`, val: "500", converts: true, more: false},
	{name: "5000.0", val: 5000.0, converts: true, more: true},
	{name: "5000 (int)", val: 5000, converts: true, more: true},
	{name: "500.0", val: 500.0, converts: true, more: false},
}

func amountArgs(name string, val any) map[string]any {
	if name == "missing" {
		return map[string]any{"to": "acct-1"}
	}
	return map[string]any{"to": "acct-1", "amount": val}
}

// TestConditionsFailClosed decides every input against a hold, a deny and
// an allow rule conditioned on `args.amount > 1000`: a deny or hold whose
// condition cannot be evaluated denies, naming the rule, its position and
// the error; an allow whose condition cannot be evaluated does not match.
func TestConditionsFailClosed(t *testing.T) {
	policies := map[string]*bundle.Policy{
		"hold": {Rules: []bundle.Rule{
			when(r("big-payments", "hold", "pay/send"), `args.amount > 1000`),
			r("pay", "allow", "pay/send"),
		}},
		"deny": {Rules: []bundle.Rule{
			r("pay", "allow", "pay/send"),
			when(r("big-payments", "deny", "pay/send"), `args.amount > 1000`),
		}},
		"allow": {Rules: []bundle.Rule{
			when(r("big-payments", "allow", "pay/send"), `args.amount > 1000`),
		}},
	}
	for _, effect := range []string{"hold", "deny", "allow"} {
		e := mustCompile(t, policies[effect])
		for _, in := range amountInputs {
			t.Run(effect+"/"+in.name, func(t *testing.T) {
				req := &Request{User: "ann@example.com", Server: "pay", Tool: "send", Args: amountArgs(in.name, in.val)}
				d := e.Decide(req)
				var want Effect
				var wantRule string
				switch {
				case !in.converts && effect != "allow":
					want, wantRule = Deny, "big-payments"
				case !in.converts: // the allow does not match
					want, wantRule = Deny, ""
				case in.more:
					want, wantRule = Effect(effect), "big-payments"
				case effect == "allow":
					want, wantRule = Deny, ""
				default:
					want, wantRule = Allow, "pay"
				}
				if d.Effect != want || d.RuleID != wantRule {
					t.Fatalf("amount %s: got %s by %q (%s), want %s by %q", in.name, d.Effect, d.RuleID, d.Reason, want, wantRule)
				}
				if in.converts {
					if d.WhenError != "" {
						t.Errorf("amount %s: got WhenError %q, want none", in.name, d.WhenError)
					}
					return
				}
				if effect == "allow" {
					// Why no rule matched names the failed condition.
					if !strings.Contains(d.Reason, "rule big-payments (armoriq.yaml:10:5): when condition failed: ") || !strings.Contains(d.Reason, in.err) {
						t.Errorf("amount %s: got reason %q, want one naming the rule and %q", in.name, d.Reason, in.err)
					}
					return
				}
				if !strings.Contains(d.WhenError, in.err) {
					t.Errorf("amount %s: got WhenError %q, want one containing %q", in.name, d.WhenError, in.err)
				}
				for _, part := range []string{"rule big-payments (armoriq.yaml:10:5)", "when condition failed: ", in.err, "denied (fail closed)"} {
					if !strings.Contains(d.Reason, part) {
						t.Errorf("amount %s: got reason %q, want it to contain %q", in.name, d.Reason, part)
					}
				}
				if d.Pos.Line != 10 {
					t.Errorf("amount %s: got position %+v, want the rule's (line 10)", in.name, d.Pos)
				}
			})
		}
	}
}

// TestFailedHoldWhateverTheOrder checks that a hold rule whose condition
// fails denies even when another hold already matched, whichever comes
// first and whichever index holds them, and that a deny earlier in policy
// order names the decision.
func TestFailedHoldWhateverTheOrder(t *testing.T) {
	ok := when(r("hold-ok", "hold", "pay/send"), `args.to == "acct-1"`)
	bad := when(r("hold-bad", "hold", "pay/*"), `args.amount > 1000`)
	plainHold := r("hold-plain", "hold", "*/send")
	allow := r("pay", "allow", "pay/send")
	deny := when(r("deny-x", "deny", "*"), `args.to == "acct-1"`)
	tests := []struct {
		name  string
		rules []bundle.Rule
		want  Effect
		rule  string
	}{
		{"matching hold first", []bundle.Rule{ok, bad, allow}, Deny, "hold-bad"},
		{"failing hold first", []bundle.Rule{bad, ok, allow}, Deny, "hold-bad"},
		{"unconditional hold first", []bundle.Rule{plainHold, bad, allow}, Deny, "hold-bad"},
		{"unconditional hold last", []bundle.Rule{allow, bad, plainHold}, Deny, "hold-bad"},
		{"deny first names it", []bundle.Rule{deny, bad, allow}, Deny, "deny-x"},
		{"failing hold before deny names it", []bundle.Rule{bad, deny, allow}, Deny, "hold-bad"},
		{"without the failing hold", []bundle.Rule{plainHold, ok, allow}, Hold, "hold-plain"},
	}
	req := &Request{User: "ann@example.com", Server: "pay", Tool: "send", Args: map[string]any{"to": "acct-1", "amount": "5,000"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustCompile(t, &bundle.Policy{Rules: tt.rules})
			if d := e.Decide(req); d.Effect != tt.want || d.RuleID != tt.rule {
				t.Errorf("got %s by %q (%s), want %s by %q", d.Effect, d.RuleID, d.Reason, tt.want, tt.rule)
			}
		})
	}
}

// TestInfiniteArgument checks that an "Inf" argument fails only the
// conditions that read it, on the fast path and in HCL alike.
func TestInfiniteArgument(t *testing.T) {
	e := mustCompile(t, &bundle.Policy{Rules: []bundle.Rule{
		when(r("hold-big", "hold", "pay/send"), `args.amount > 1000`),
		when(r("hold-big-hcl", "hold", "pay/send"), `length(keys(args)) > 0 && args.amount > 1000`),
		r("pay", "allow", "pay/send"),
	}})
	tests := []struct {
		name string
		args map[string]any
		want Effect
		rule string
	}{
		{"unread inf", map[string]any{"amount": 5.0, "memo": "inf"}, Allow, "pay"},
		{"read -Inf", map[string]any{"amount": "-Inf", "memo": "x"}, Deny, "hold-big"},
		{"read +inf", map[string]any{"amount": "+inf"}, Deny, "hold-big"},
		{"INF is not a number", map[string]any{"amount": "INF"}, Deny, "hold-big"},
		{"Infinity is not a number", map[string]any{"amount": "Infinity"}, Deny, "hold-big"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(&Request{Server: "pay", Tool: "send", Args: tt.args})
			if d.Effect != tt.want || d.RuleID != tt.rule {
				t.Errorf("args %v: got %s by %q (%s), want %s by %q", tt.args, d.Effect, d.RuleID, d.Reason, tt.want, tt.rule)
			}
		})
	}
}

// TestEmailsNormalised checks that users, group members and the request's
// user are compared trimmed and case-insensitively.
func TestEmailsNormalised(t *testing.T) {
	e := mustCompile(t, &bundle.Policy{
		Groups: []bundle.Group{{Name: "contractors", Members: []string{" *@Contractor.EXAMPLE ", "Eve@Example.com\t"}}},
		Rules: []bundle.Rule{
			r("all", "allow", "*"),
			users(r("no-mallory", "deny", "*"), "mallory@example.com"),
			users(r("no-trent", "deny", "*"), "  TRENT@Example.com "),
			groups(r("no-contractors", "deny", "*"), "contractors"),
			when(r("cond-email", "deny", "s/cond"), `user.email == "oscar@example.com" || user.domain == "oscar.example"`),
		},
	})
	tests := []struct {
		name, user, tool string
		want             Effect
		rule             string
	}{
		{"exact", "mallory@example.com", "s/t", Deny, "no-mallory"},
		{"trailing space", "mallory@example.com ", "s/t", Deny, "no-mallory"},
		{"upper case", "MALLORY@example.com", "s/t", Deny, "no-mallory"},
		{"tabs, newline and mixed case", "\tMallory@Example.COM\n", "s/t", Deny, "no-mallory"},
		{"rule written with spaces and capitals", "trent@example.com", "s/t", Deny, "no-trent"},
		{"group member with spaces", " eve@example.com", "s/t", Deny, "no-contractors"},
		{"group domain pattern", "Bob@CONTRACTOR.example ", "s/t", Deny, "no-contractors"},
		{"condition sees the normal form", " Oscar@Example.com", "s/cond", Deny, "cond-email"},
		{"condition domain", "x@OSCAR.example ", "s/cond", Deny, "cond-email"},
		{"someone else", "alice@example.com ", "s/t", Allow, "all"},
		{"inner space is not trimmed", "mallory @example.com", "s/t", Allow, "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, tool, _ := strings.Cut(tt.tool, "/")
			if d := e.Decide(&Request{User: tt.user, Server: server, Tool: tool}); d.Effect != tt.want || d.RuleID != tt.rule {
				t.Errorf("user %q: got %s by %q (%s), want %s by %q", tt.user, d.Effect, d.RuleID, d.Reason, tt.want, tt.rule)
			}
		})
	}
}

func TestNormalizeEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a@b.c", "a@b.c"},
		{" A@B.C ", "a@b.c"},
		{"\tMallory@Example.com\r\n", "mallory@example.com"},
		{"*@Example.COM", "*@example.com"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeEmail(tt.in); got != tt.want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { NormalizeEmail("already@normal.example") }); n != 0 {
		t.Errorf("NormalizeEmail of a normal email: %v allocations, want 0", n)
	}
}
