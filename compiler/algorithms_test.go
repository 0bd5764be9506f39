package compiler_test

import (
	"slices"
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/schema"
)

// TestAlgorithmListsAgree: the JWS algorithms an identity provider may
// allow are written in three leaves that may not import each other: the
// config (schema), the bundle (its reader's check) and the gateway's
// verifier. They must agree, or validate accepts a config whose bundle or
// gateway refuses it (or the reverse); the defaults too.
func TestAlgorithmListsAgree(t *testing.T) {
	if !slices.Equal(schema.Algorithms, bundle.Algorithms) {
		t.Errorf("schema.Algorithms = %v, bundle.Algorithms = %v: want the same list", schema.Algorithms, bundle.Algorithms)
	}
	if d, o := schema.DefaultAlgorithms(), oauth.DefaultAlgorithms(); !slices.Equal(d, o) {
		t.Errorf("schema.DefaultAlgorithms() = %v, oauth.DefaultAlgorithms() = %v: want the same", d, o)
	}
	base := oauth.Provider{Name: "idp", Issuer: "https://idp.example.com", Audience: "https://gw.example.com/mcp"}
	for _, a := range bundle.Algorithms {
		p := base
		p.AllowedAlgorithms = []string{a}
		if _, err := oauth.Normalize(p); err != nil {
			t.Errorf("the bundle allows %s, the verifier refuses it: %v", a, err)
		}
	}
	for _, a := range []string{"none", "HS256", "HS384", "HS512", "RS1"} {
		p := base
		p.AllowedAlgorithms = []string{a}
		if _, err := oauth.Normalize(p); err == nil {
			t.Errorf("the verifier accepts allowed algorithm %s", a)
		}
		if slices.Contains(bundle.Algorithms, a) || slices.Contains(schema.Algorithms, a) {
			t.Errorf("%s is in an allowed list", a)
		}
	}
}
