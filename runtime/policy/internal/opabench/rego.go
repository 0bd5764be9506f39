// Package opabench compares the decision engine with OPA on the same
// policies and the same calls. It is a module of its own so that OPA stays
// out of the main module's dependencies; run it with
//
//	cd runtime/policy/internal/opabench && go test -bench . -benchtime 2000x
package opabench

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/policy/internal/benchgen"
)

// Rego writes p as a Rego module with the engine's semantics: deny over
// hold over allow, deny by default, globs with glob.match, users by exact
// email or domain, groups by membership or assertion. Subjects are one rule
// body each so that OPA's rule index sees plain equalities. It translates
// only the when condition benchgen uses.
func Rego(p *bundle.Policy) (string, error) {
	var b strings.Builder
	b.WriteString(`package armoriq

default decision := "deny"

default deny := false

default hold := false

default allow := false

decision := "deny" if {
	deny
} else := "hold" if {
	hold
} else := "allow" if {
	allow
}

in_group(g) if {
	g in input.groups
}

in_group(g) if {
	input.user in data.armoriq.groups[g].users
}

in_group(g) if {
	input.domain in data.armoriq.groups[g].domains
}

`)
	b.WriteString("groups := {\n")
	for _, g := range p.Groups {
		var users, domains []string
		for _, m := range g.Members {
			if d, ok := strings.CutPrefix(m, "*@"); ok {
				domains = append(domains, strconv.Quote(d))
			} else {
				users = append(users, strconv.Quote(strings.ToLower(m)))
			}
		}
		fmt.Fprintf(&b, "\t%q: {\"users\": {%s}, \"domains\": {%s}},\n", g.Name, strings.Join(users, ", "), strings.Join(domains, ", "))
	}
	b.WriteString("}\n\n")
	for _, r := range p.Rules {
		var cond string
		switch r.When {
		case "":
		case benchgen.Cond:
			cond = "\tinput.args.amount < 1000\n"
		case benchgen.CondHCL:
			cond = "\tcount(input.args) < 5\n\tinput.args.amount < 1000\n"
		default:
			return "", fmt.Errorf("rule %s: cannot translate when %q", r.ID, r.When)
		}
		var subjects []string
		for _, u := range r.Users {
			if d, ok := strings.CutPrefix(u, "*@"); ok {
				subjects = append(subjects, fmt.Sprintf("\tinput.domain == %q\n", d))
			} else {
				subjects = append(subjects, fmt.Sprintf("\tinput.user == %q\n", strings.ToLower(u)))
			}
		}
		for _, g := range r.Groups {
			subjects = append(subjects, fmt.Sprintf("\tin_group(%q)\n", g))
		}
		if len(subjects) == 0 {
			subjects = []string{""}
		}
		for _, t := range r.Tools {
			server, tool, ok := strings.Cut(t, "/")
			if !ok {
				return "", fmt.Errorf("rule %s: tool %q", r.ID, t)
			}
			for _, subj := range subjects {
				fmt.Fprintf(&b, "%s if {\n%s%s%s}\n\n", r.Effect, match("server", server), match("tool", tool), subj+cond)
			}
		}
	}
	return b.String(), nil
}

func match(field, pattern string) string {
	switch {
	case pattern == "*":
		return ""
	case strings.ContainsAny(pattern, "*?"):
		return fmt.Sprintf("\tglob.match(%q, [], input.%s)\n", pattern, field)
	}
	return fmt.Sprintf("\tinput.%s == %q\n", field, pattern)
}

// Input is the OPA input document for a call: the same fields the engine
// gets, with the user's email lower-cased and its domain split out as the
// engine does before matching.
func Input(r benchgen.Req) map[string]any {
	user := strings.ToLower(r.User)
	domain := ""
	if i := strings.LastIndexByte(user, '@'); i >= 0 {
		domain = user[i+1:]
	}
	return map[string]any{
		"user":   user,
		"domain": domain,
		"groups": []any{},
		"server": r.Server,
		"tool":   r.Tool,
		"args":   r.Args,
	}
}
