package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// checkFast evaluates expr with the fast path and with HCL and fails if
// the fast path answered differently.
func checkFast(t *testing.T, expr string, req *Request) (fastTaken bool) {
	t.Helper()
	e, err := Compile(&bundle.Policy{
		Groups: []bundle.Group{{Name: "eng", Members: []string{"*@b.c"}}, {Name: "ops", Members: []string{"z@b.c"}}},
		Rules:  []bundle.Rule{{ID: "r", Effect: "allow", Tools: []string{"s/t"}, When: expr}},
	})
	if err != nil {
		return false
	}
	rl := e.rules[0]
	if rl.when == nil || rl.when.fast == nil {
		return false
	}
	s := search{e: e, req: req}
	s.run() // sets user and domain
	fv, ok := s.evalFast(rl.when.fast)
	if !ok || fv.kind != fastBool {
		return false
	}
	s.scope = nil
	slow, err := s.evalHCL(rl)
	if err != nil || slow != fv.b {
		t.Errorf("when %q with %+v: fast path %v, HCL %v (%v)", expr, req, fv.b, slow, err)
	}
	return true
}

func TestFastAgreesWithHCL(t *testing.T) {
	exprs := []string{
		`args.amount < 1000`, `args.amount >= 10.5`, `args.amount == 10`, `args.amount != 10`,
		`args.env == "prod"`, `args.env != "prod" && args.ok`, `!args.ok || tool == "t"`,
		`(user.email == "a@b.c") && user.domain == "b.c"`, `server == "s" && user.agent == ""`,
		`args.amount > 1e300`, `args.amount <= 0.1`, `args.big == 9007199254740993`,
		`try(args.amount, 0) < 100`, `try(args.missing, "x") == "x"`, `try(args.env, 1) == 1`,
		`startswith(args.env, "pr") || endswith(tool, "t")`, `startswith(args.amount, "1")`,
		`contains(["prod", "staging"], args.env)`, `contains(["prod"], args.amount)`,
		`contains(user.groups, "eng") && !contains(user.groups, "ops")`, `contains(user.groups, args.env)`,
		`time.hour >= 9 && time.hour < 18 && time.minute >= 0`, `contains(["saturday", "sunday"], time.weekday)`,
		`time.unix > 1700000000`, `time.weekday == "monday"`,
	}
	args := []map[string]any{
		{"amount": 10.0, "env": "prod", "ok": true, "big": 9007199254740992.0},
		{"amount": 10, "env": "dev", "ok": false},
		{"amount": 0.1, "env": "é", "ok": true},
		{"amount": "10", "env": 1, "ok": "true"},
		{},
	}
	for _, x := range exprs {
		e := mustCompile(t, &bundle.Policy{Rules: []bundle.Rule{{ID: "r", Effect: "allow", Tools: []string{"s/t"}, When: x}}})
		inexact := strings.Contains(x, "1e300") || strings.Contains(x, "0.1") || strings.Contains(x, "9007199254740993")
		if (e.rules[0].when.fast == nil) != inexact {
			t.Errorf("when %q: fast path compiled %v, want %v (literals not exact in float64 go to HCL)", x, e.rules[0].when.fast != nil, !inexact)
		}
	}
	taken := 0
	for _, x := range exprs {
		for _, a := range args {
			for _, groups := range [][]string{nil, {"prod"}} {
				at := time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)
				if groups != nil {
					at = time.Date(2026, 11, 23, 20, 0, 0, 0, time.FixedZone("x", 3600))
				}
				if checkFast(t, x, &Request{User: "A@b.c", Groups: groups, Server: "s", Tool: "t", Args: a, Time: at}) {
					taken++
				}
			}
		}
	}
	if taken < len(exprs) {
		t.Errorf("fast path taken %d times, want at least %d", taken, len(exprs))
	}
}
