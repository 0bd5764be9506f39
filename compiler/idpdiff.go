package compiler

import (
	"fmt"
	"strings"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/schema"
)

// IdentityChange is a change to the identity providers between two
// configs. It is an access change: an identity provider decides who a
// caller is, so adding one, or changing its issuer, audience, claims,
// scopes or algorithms, changes who can act as whom.
type IdentityChange struct {
	// Kind is ChangeGained for a provider added (its users can now sign
	// in), ChangeLost for one removed, ChangeChanged for a field changed.
	Kind     string `json:"kind"`
	Provider string `json:"provider"`
	// Field is the key that changed (issuer, audience, user_claim,
	// groups_claim, required_scopes, allowed_algorithms); "" when the
	// provider was added or removed.
	Field string `json:"field,omitempty"`
	// From and To are the values before and after ("none" for an empty
	// one); for an added or removed provider, its summary on its side.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// String formats c as a line of the text report.
func (c IdentityChange) String() string {
	mark := map[string]string{ChangeGained: "+", ChangeLost: "-", ChangeChanged: "~"}[c.Kind]
	switch {
	case c.Field != "":
		return fmt.Sprintf("%s identity provider %s: %s %s -> %s", mark, c.Provider, c.Field, c.From, c.To)
	case c.Kind == ChangeGained:
		return fmt.Sprintf("%s identity provider %s: added (%s)", mark, c.Provider, c.To)
	}
	return fmt.Sprintf("%s identity provider %s: removed (%s)", mark, c.Provider, c.From)
}

// DiffIdentityProviders compares two configs' identity providers as the
// bundle holds them (defaults filled in, lists sorted), so that writing a
// default out or reordering a list is no change. Providers are matched by
// name; the changes are sorted by provider, then in the order of the
// fields.
func DiffIdentityProviders(base, head *schema.Config) []IdentityChange {
	var b, h []schema.IdentityProvider
	if base != nil {
		b = base.IdentityProviders
	}
	if head != nil {
		h = head.IdentityProviders
	}
	return diffProviders(identityProviders(b), identityProviders(h))
}

// diffProviders compares two sorted lists of providers.
func diffProviders(base, head []bundle.IdentityProvider) []IdentityChange {
	out := []IdentityChange{}
	i, j := 0, 0
	for i < len(base) || j < len(head) {
		switch {
		case j == len(head) || i < len(base) && base[i].Name < head[j].Name:
			out = append(out, IdentityChange{Kind: ChangeLost, Provider: base[i].Name, From: ProviderSummary(base[i])})
			i++
		case i == len(base) || head[j].Name < base[i].Name:
			out = append(out, IdentityChange{Kind: ChangeGained, Provider: head[j].Name, To: ProviderSummary(head[j])})
			j++
		default:
			bf, hf := providerFields(base[i]), providerFields(head[j])
			for k := range bf {
				if bf[k].value != hf[k].value {
					out = append(out, IdentityChange{Kind: ChangeChanged, Provider: head[j].Name, Field: bf[k].key, From: bf[k].value, To: hf[k].value})
				}
			}
			i++
			j++
		}
	}
	return out
}

type providerField struct{ key, value string }

// providerFields lists what a provider decides, in the config's order.
func providerFields(p bundle.IdentityProvider) []providerField {
	return []providerField{
		{"issuer", orNone(p.Issuer)},
		{"audience", orNone(p.Audience)},
		{"user_claim", orNone(p.UserClaim)},
		{"groups_claim", orNone(p.GroupsClaim)},
		{"required_scopes", orNone(strings.Join(p.RequiredScopes, " "))},
		{"allowed_algorithms", orNone(strings.Join(p.AllowedAlgorithms, " "))},
	}
}

// ProviderSummary is one line naming everything a provider decides:
// "issuer https://…, audience api://…, user_claim email, ...".
func ProviderSummary(p bundle.IdentityProvider) string {
	var parts []string
	for _, f := range providerFields(p) {
		parts = append(parts, f.key+" "+f.value)
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
