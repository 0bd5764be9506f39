package bundle

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// checkIdentityProviders refuses providers a gateway must not run: a
// missing value it would otherwise have to default, an algorithm outside
// Algorithms (none, HMAC), an issuer that is not https (http only on a
// loopback host), or a name or issuer given twice. Write and Read
// both call it: a bundle that one accepts, the other does too.
func checkIdentityProviders(ps []IdentityProvider) error {
	names := map[string]bool{}
	issuers := map[string]bool{}
	for i, p := range ps {
		where := fmt.Sprintf("identity_providers[%d]", i)
		switch {
		case p.Name == "":
			return fmt.Errorf("%s: no name", where)
		case p.Issuer == "":
			return fmt.Errorf("%s (%s): no issuer", where, p.Name)
		case p.Audience == "":
			return fmt.Errorf("%s (%s): no audience", where, p.Name)
		case p.UserClaim == "":
			return fmt.Errorf("%s (%s): no user claim", where, p.Name)
		case len(p.AllowedAlgorithms) == 0:
			return fmt.Errorf("%s (%s): no allowed algorithm", where, p.Name)
		case names[p.Name]:
			return fmt.Errorf("%s: provider %q appears twice", where, p.Name)
		case issuers[p.Issuer]:
			return fmt.Errorf("%s (%s): issuer %q appears twice", where, p.Name, p.Issuer)
		}
		if !secureIssuer(p.Issuer) {
			return fmt.Errorf("%s (%s): issuer %q is not an https URL (http only on localhost, 127.0.0.1 or [::1])", where, p.Name, p.Issuer)
		}
		names[p.Name], issuers[p.Issuer] = true, true
		for _, a := range p.AllowedAlgorithms {
			if !slices.Contains(Algorithms, a) {
				return fmt.Errorf("%s (%s): algorithm %q is not allowed (want %s)", where, p.Name, a, strings.Join(Algorithms, ", "))
			}
		}
	}
	return nil
}

// secureIssuer reports whether keys and discovery documents fetched from
// issuer come over TLS, or stay on the machine.
func secureIssuer(issuer string) bool {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		return h == "localhost" || h == "127.0.0.1" || h == "::1"
	}
	return false
}

// sortedProviders returns ps in the canonical order a bundle writes: by
// name, each provider's scopes and algorithms sorted and without
// duplicates (their order means nothing), so that equal policies give
// equal bytes. ps is not modified.
func sortedProviders(ps []IdentityProvider) []IdentityProvider {
	if len(ps) == 0 {
		return nil
	}
	out := make([]IdentityProvider, len(ps))
	for i, p := range ps {
		p.RequiredScopes = sortedSet(p.RequiredScopes)
		p.AllowedAlgorithms = sortedSet(p.AllowedAlgorithms)
		out[i] = p
	}
	slices.SortFunc(out, func(a, b IdentityProvider) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func sortedSet(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return slices.Compact(s)
}
