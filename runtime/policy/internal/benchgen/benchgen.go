// Package benchgen generates the synthetic policies and requests that the
// engine's benchmarks and the OPA comparison (internal/opabench) share, so
// both decide exactly the same calls.
package benchgen

import (
	"fmt"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// Conditions the benchmarks put on every allow rule: Cond takes the
// engine's native fast path, CondHCL needs HCL evaluation (functions the
// fast path does not know).
const (
	Cond    = `args.amount < 1000`
	CondHCL = `length(keys(args)) < 5 && args.amount < 1000`
)

// Req is one generated call.
type Req struct {
	User, Server, Tool string
	Args               map[string]any
	Want               string // the expected effect
}

const (
	nUsers  = 50
	nGroups = 10
)

func servers(n int) int { return max(1, n/100) }

// kind of rule i in a policy of n rules.
func kind(n, i int) string {
	switch {
	case n >= 10 && i == n-1:
		return "residual" // */ping for anyone
	case i%10 == 9:
		return "deny"
	case i%20 == 3:
		return "glob"
	}
	return "allow"
}

// Policy returns n rules over n/100 servers: exact allows for a user or a
// domain, exact denies, tool-glob allows for a group, and one server-glob
// allow. With a non-empty when, every allow rule carries that condition.
func Policy(n int, when string) *bundle.Policy {
	p := &bundle.Policy{}
	for g := 0; g < nGroups; g++ {
		var members []string
		for u := g; u < nUsers; u += nGroups {
			members = append(members, fmt.Sprintf("user%d@example.com", u))
		}
		members = append(members, fmt.Sprintf("*@team%d.example.com", g))
		p.Groups = append(p.Groups, bundle.Group{Name: fmt.Sprintf("team%d", g), Members: members})
	}
	s := servers(n)
	for i := 0; i < n; i++ {
		r := bundle.Rule{ID: fmt.Sprintf("policy.rules[%d]", i), Pos: bundle.Pos{File: "armoriq.yaml", Line: 10 + 5*i, Col: 5}}
		switch kind(n, i) {
		case "residual":
			r.Effect, r.Tools = bundle.Allow, []string{"*/ping"}
		case "deny":
			r.Effect = bundle.Deny
			r.Tools = []string{fmt.Sprintf("srv%d/tool%d", i%s, i)}
			r.Users = []string{fmt.Sprintf("user%d@example.com", i%nUsers)}
		case "glob":
			r.Effect = bundle.Allow
			r.Tools = []string{fmt.Sprintf("srv%d/t%d_*", i%s, i)}
			r.Groups = []string{fmt.Sprintf("team%d", i%nGroups)}
		default:
			r.Effect = bundle.Allow
			r.Tools = []string{fmt.Sprintf("srv%d/tool%d", i%s, i)}
			r.Users = []string{fmt.Sprintf("user%d@example.com", i%nUsers), fmt.Sprintf("*@corp%d.example.com", i%7)}
		}
		if when != "" && r.Effect == bundle.Allow {
			r.When = when
			r.WhenPos = bundle.Pos{File: "armoriq.yaml", Line: 12 + 5*i, Col: 11}
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

// Request returns the i-th call against Policy(n, ...): it targets rule
// i mod n through that rule's kind of index and is decided by it.
func Request(n, i int) Req {
	j := i % n
	if j < 0 {
		j = -j
	}
	s := servers(n)
	args := map[string]any{"amount": float64(10 + j%100), "note": "generated"}
	switch kind(n, j) {
	case "residual":
		return Req{User: "anyone@elsewhere.org", Server: fmt.Sprintf("srv%d", j%s), Tool: "ping", Args: args, Want: bundle.Allow}
	case "deny":
		return Req{User: fmt.Sprintf("user%d@example.com", j%nUsers), Server: fmt.Sprintf("srv%d", j%s), Tool: fmt.Sprintf("tool%d", j), Args: args, Want: bundle.Deny}
	case "glob":
		return Req{User: fmt.Sprintf("someone@team%d.example.com", j%nGroups), Server: fmt.Sprintf("srv%d", j%s), Tool: fmt.Sprintf("t%d_read", j), Args: args, Want: bundle.Allow}
	}
	user := fmt.Sprintf("user%d@example.com", j%nUsers)
	if j%2 == 1 {
		user = fmt.Sprintf("dev@corp%d.example.com", j%7)
	}
	return Req{User: user, Server: fmt.Sprintf("srv%d", j%s), Tool: fmt.Sprintf("tool%d", j), Args: args, Want: bundle.Allow}
}
