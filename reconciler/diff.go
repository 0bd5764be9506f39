package reconciler

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/compiler/bundle"
)

// Change is one difference between two bundles' policy or catalogue.
type Change struct {
	Kind    string `json:"kind"`   // added | removed | changed
	Object  string `json:"object"` // rule | server | group | identity provider | setting
	ID      string `json:"id"`
	Summary string `json:"summary"` // what it is (or was → is)
}

// String formats c as "+ rule policy.allow[0]: allow github/*".
func (c Change) String() string {
	sign := map[string]string{"added": "+", "removed": "-", "changed": "~"}[c.Kind]
	return fmt.Sprintf("%s %s %s: %s", sign, c.Object, c.ID, c.Summary)
}

// DiffBundles lists what differs between the policy and catalogue of old
// (nil: nothing active) and new, ignoring the manifest and source
// positions: the same config committed twice gives no change. Rules are
// paired by content first, so inserting an allow entry shows as one added
// rule even though the positional ids of the next ones shift.
func DiffBundles(old, new *bundle.Bundle) []Change {
	if old == nil {
		old = &bundle.Bundle{}
	}
	var out []Change
	out = append(out, diffRules(old.Policy.Rules, new.Policy.Rules)...)
	out = append(out, diffKeyed("server", servers(old.Servers), servers(new.Servers))...)
	out = append(out, diffKeyed("group", groups(old.Policy.Groups), groups(new.Policy.Groups))...)
	out = append(out, diffKeyed("identity provider", providers(old.Policy.IdentityProviders), providers(new.Policy.IdentityProviders))...)
	if a, b := old.Policy.DefaultTTLSeconds, new.Policy.DefaultTTLSeconds; a != b {
		out = append(out, Change{Kind: "changed", Object: "setting", ID: "intent.ttl_seconds", Summary: fmt.Sprintf("%d → %d", a, b)})
	}
	if a, b := old.Policy.RequireCSRG, new.Policy.RequireCSRG; a != b {
		out = append(out, Change{Kind: "changed", Object: "setting", ID: "intent.require_csrg", Summary: fmt.Sprintf("%t → %t", a, b)})
	}
	return out
}

func ruleText(r bundle.Rule) string {
	var b strings.Builder
	b.WriteString(r.Effect + " " + strings.Join(r.Tools, ", "))
	if len(r.Users) > 0 {
		b.WriteString(" for users " + strings.Join(r.Users, ", "))
	}
	if len(r.Groups) > 0 {
		b.WriteString(" for groups " + strings.Join(r.Groups, ", "))
	}
	if len(r.Agents) > 0 {
		b.WriteString(" for agents " + strings.Join(r.Agents, ", "))
	}
	if r.When != "" {
		b.WriteString(" when " + r.When)
	}
	if r.Reason != "" {
		b.WriteString(" (" + r.Reason + ")")
	}
	return b.String()
}

func diffRules(old, new []bundle.Rule) []Change {
	var out []Change
	// Pair identical rules (by content) first; they are not changes.
	used := make([]bool, len(old))
	var restNew []bundle.Rule
	for _, n := range new {
		matched := false
		for i, o := range old {
			if !used[i] && ruleText(o) == ruleText(n) {
				used[i], matched = true, true
				break
			}
		}
		if !matched {
			restNew = append(restNew, n)
		}
	}
	restOld := map[string]bundle.Rule{}
	var oldOrder []string
	for i, o := range old {
		if !used[i] {
			restOld[o.ID] = o
			oldOrder = append(oldOrder, o.ID)
		}
	}
	for _, n := range restNew {
		if o, ok := restOld[n.ID]; ok {
			out = append(out, Change{Kind: "changed", Object: "rule", ID: n.ID, Summary: ruleText(o) + " → " + ruleText(n)})
			delete(restOld, n.ID)
			continue
		}
		out = append(out, Change{Kind: "added", Object: "rule", ID: n.ID, Summary: ruleText(n)})
	}
	for _, id := range oldOrder {
		if o, ok := restOld[id]; ok {
			out = append(out, Change{Kind: "removed", Object: "rule", ID: id, Summary: ruleText(o)})
		}
	}
	return out
}

type keyed struct {
	id, text string
}

func servers(ss []bundle.Server) []keyed {
	out := make([]keyed, 0, len(ss))
	for _, s := range ss {
		data, _ := json.Marshal(s)
		out = append(out, keyed{s.ID, summarizeServer(s) + "\x00" + string(data)})
	}
	return out
}

func summarizeServer(s bundle.Server) string {
	switch s.Transport {
	case "stdio":
		return "stdio " + strings.Join(append([]string{s.Command}, s.Args...), " ")
	case "plugin":
		return "plugin " + s.Path
	}
	return s.Transport + " " + s.URL
}

func providers(ps []bundle.IdentityProvider) []keyed {
	out := make([]keyed, 0, len(ps))
	for _, p := range ps {
		out = append(out, keyed{p.Name, compiler.ProviderSummary(p)})
	}
	return out
}

func groups(gs []bundle.Group) []keyed {
	out := make([]keyed, 0, len(gs))
	for _, g := range gs {
		out = append(out, keyed{g.Name, strings.Join(g.Members, ", ")})
	}
	return out
}

func diffKeyed(object string, old, new []keyed) []Change {
	var out []Change
	visible := func(s string) string { v, _, _ := strings.Cut(s, "\x00"); return v }
	for _, n := range new {
		i := slices.IndexFunc(old, func(o keyed) bool { return o.id == n.id })
		switch {
		case i < 0:
			out = append(out, Change{Kind: "added", Object: object, ID: n.id, Summary: visible(n.text)})
		case old[i].text != n.text:
			sum := visible(old[i].text) + " → " + visible(n.text)
			if visible(old[i].text) == visible(n.text) {
				sum = visible(n.text) + " (settings changed)"
			}
			out = append(out, Change{Kind: "changed", Object: object, ID: n.id, Summary: sum})
		}
	}
	for _, o := range old {
		if !slices.ContainsFunc(new, func(n keyed) bool { return n.id == o.id }) {
			out = append(out, Change{Kind: "removed", Object: object, ID: o.id, Summary: visible(o.text)})
		}
	}
	return out
}
