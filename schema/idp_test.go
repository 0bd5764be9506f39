package schema

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestProviderPatternsMatchCUE keeps the Go copies of the issuer and
// audience patterns equal to armoriq.cue's: the Go checks skip a value
// the pattern refused (the schema reported it), so they must agree.
func TestProviderPatternsMatchCUE(t *testing.T) {
	for _, tc := range []struct{ key, re string }{
		{"issuer", issuerPattern.String()},
		{"audience", audiencePattern.String()},
	} {
		want := "\t" + tc.key + `!: =~#"` + tc.re + `"#` + "\n"
		if !bytes.Contains(cueSource, []byte(want)) {
			t.Errorf("armoriq.cue has no line %q: the Go pattern of %s differs from the schema's", want, tc.key)
		}
	}
}

func TestIssuerProblem(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // a substring of the problem; "" for a valid issuer
	}{
		{"https://example.okta.com/oauth2/default", ""},
		{"https://login.microsoftonline.com/0b6f6a1e-0000-0000-0000-000000000000/v2.0", ""},
		{"https://kc.example.com:8443/realms/acme", ""},
		{"https://accounts.example.com/", ""},
		{"http://localhost:4444", ""},
		{"http://127.0.0.1:4444/", ""},
		{"http://[::1]:4444/issuer", ""},
		{"http://LOCALHOST", "http is allowed only on localhost"},
		{"", "must not be empty"},
		{"http://idp.example.com", "http is allowed only on localhost"},
		{"http://127.0.0.2", "http is allowed only on localhost"},
		{"http://localhost.example.com", "http is allowed only on localhost"},
		{"ftp://idp.example.com", "want an absolute https:// URL"},
		{"idp.example.com", "want an absolute https:// URL"},
		{"/realms/acme", "want an absolute https:// URL"},
		{"https:///path", "missing host"},
		{"https:idp.example.com", "missing host"},
		{"https://user@idp.example.com", "no user info"},
		{"https://idp.example.com/?a=1", "no query"},
		{"https://idp.example.com/?", "no query"},
		{"https://idp.example.com/#x", "no fragment"},
		{"https://idp.example.com/#", "no fragment"},
		{"https://idp.example.com:0/", "invalid port"},
		{"https://idp.example.com:70000/", "invalid port"},
		{"https://$HOST/", "write the issuer out"},
		{"${ISSUER}", "write the issuer out"},
		{"https://idp.example.com/a b", "no white space"},
		{"https://idp.example.com/%zz", "invalid URL escape"},
	} {
		got := IssuerProblem(tc.in)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("IssuerProblem(%q): got %q, want %q", tc.in, got, tc.want)
		}
		// What Go accepts, the schema's pattern accepts.
		if got == "" && !issuerPattern.MatchString(tc.in) {
			t.Errorf("IssuerProblem(%q) accepts it but the schema's pattern does not", tc.in)
		}
	}
}

func TestAudienceProblem(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://gateway.example.com/mcp", ""},
		{"api://armoriq", ""},
		{"urn:armoriq:gateway", ""},
		{"armoriq", ""},
		{"0b6f6a1e-0000-0000-0000-000000000000", ""},
		{"", "must not be empty"},
		{"api://armor iq", "no white space"},
		{"$AUD", "write the audience out"},
		{"https://gw.example.com/%zz", "invalid URL escape"},
	} {
		if got := AudienceProblem(tc.in); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("AudienceProblem(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestIdentityProviderDefaults: user_claim and allowed_algorithms get
// their defaults when left out, and are kept as written otherwise, in YAML
// and HCL alike.
func TestIdentityProviderDefaults(t *testing.T) {
	yaml := `version: v1
identity_providers:
  - name: okta
    issuer: https://example.okta.com/oauth2/default
    audience: api://armoriq
  - name: kc
    issuer: http://localhost:8080/realms/acme
    audience: https://gateway.example.com/mcp
    user_claim: preferred_username
    groups_claim: groups
    required_scopes: [mcp, openid]
    allowed_algorithms: [ES384]
`
	hcl := `version = "v1"
identity_provider "okta" {
  issuer   = "https://example.okta.com/oauth2/default"
  audience = "api://armoriq"
}
identity_provider "kc" {
  issuer             = "http://localhost:8080/realms/acme"
  audience           = "https://gateway.example.com/mcp"
  user_claim         = "preferred_username"
  groups_claim       = "groups"
  required_scopes    = ["mcp", "openid"]
  allowed_algorithms = ["ES384"]
}
`
	want := []IdentityProvider{
		{Name: "okta", Issuer: "https://example.okta.com/oauth2/default", Audience: "api://armoriq",
			UserClaim: "email", AllowedAlgorithms: []string{"RS256", "ES256", "PS256", "EdDSA"}},
		{Name: "kc", Issuer: "http://localhost:8080/realms/acme", Audience: "https://gateway.example.com/mcp",
			UserClaim: "preferred_username", GroupsClaim: "groups", RequiredScopes: []string{"mcp", "openid"}, AllowedAlgorithms: []string{"ES384"}},
	}
	for _, f := range []struct{ name, src string }{{"a.yaml", yaml}, {"a.hcl", hcl}} {
		c, ds := Parse(f.name, []byte(f.src))
		if len(ds) > 0 || c == nil {
			t.Fatalf("Parse(%s): %v", f.name, ds)
		}
		got := c.IdentityProviders
		for i := range got {
			if got[i].Pos.Line == 0 {
				t.Errorf("%s: identity_providers[%d] has no position", f.name, i)
			}
			got[i].Pos = Pos{}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: identity providers (-want +got):\n%s", f.name, d)
		}
	}
	// DefaultAlgorithms returns a fresh slice: a caller cannot change the
	// default of the next config.
	c, _ := Parse("a.yaml", []byte(yaml))
	c.IdentityProviders[0].AllowedAlgorithms[0] = "XX"
	if DefaultAlgorithms()[0] != "RS256" {
		t.Error("changing a decoded provider's algorithms changed the default")
	}
	for _, a := range DefaultAlgorithms() {
		found := false
		for _, b := range Algorithms {
			found = found || a == b
		}
		if !found {
			t.Errorf("default algorithm %s is not among the allowed ones", a)
		}
	}
}
