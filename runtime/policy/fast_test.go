package policy

import (
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// checkFast evaluates expr with the fast path and with HCL and fails if
// the fast path answered differently.
func checkFast(t *testing.T, expr string, req *Request) (fastTaken bool) {
	t.Helper()
	e, err := Compile(&bundle.Policy{Rules: []bundle.Rule{{ID: "r", Effect: "allow", Tools: []string{"s/t"}, When: expr}}})
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
	}
	args := []map[string]any{
		{"amount": 10.0, "env": "prod", "ok": true, "big": 9007199254740992.0},
		{"amount": 10, "env": "dev", "ok": false},
		{"amount": 0.1, "env": "é", "ok": true},
		{"amount": "10", "env": 1, "ok": "true"},
		{},
	}
	taken := 0
	for _, x := range exprs {
		for _, a := range args {
			if checkFast(t, x, &Request{User: "A@b.c", Server: "s", Tool: "t", Args: a}) {
				taken++
			}
		}
	}
	if taken < len(exprs) {
		t.Errorf("fast path taken %d times, want at least %d", taken, len(exprs))
	}
}
