package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func providersBundle() *Bundle {
	b := sampleBundle()
	b.Policy.IdentityProviders = []IdentityProvider{
		{Name: "okta", Issuer: "https://example.okta.com/oauth2/default", Audience: "https://gw.example.com/mcp", UserClaim: "email",
			GroupsClaim: "groups", RequiredScopes: []string{"mcp:tools", "mcp:call"}, AllowedAlgorithms: []string{"RS256", "ES256"}},
		{Name: "dev", Issuer: "http://localhost:4444", Audience: "api://armoriq", UserClaim: "sub", AllowedAlgorithms: []string{"EdDSA"}},
	}
	return b
}

// TestIdentityProvidersRoundTrip: providers are written sorted by name,
// their lists sorted, whatever order they were given in, and read back
// as written.
func TestIdentityProvidersRoundTrip(t *testing.T) {
	key := testKey("a")
	data := writeBundle(t, providersBundle(), key)

	reordered := providersBundle()
	ps := reordered.Policy.IdentityProviders
	ps[0], ps[1] = ps[1], ps[0]
	ps[1].RequiredScopes = []string{"mcp:call", "mcp:tools"}
	ps[1].AllowedAlgorithms = []string{"ES256", "RS256", "ES256"}
	if other := writeBundle(t, reordered, key); !bytes.Equal(data, other) {
		t.Errorf("the same providers in another order gave different bundle bytes")
	}

	b, err := Verify(data, pinned(key))
	if err != nil {
		t.Fatal(err)
	}
	want := []IdentityProvider{
		{Name: "dev", Issuer: "http://localhost:4444", Audience: "api://armoriq", UserClaim: "sub", AllowedAlgorithms: []string{"EdDSA"}},
		{Name: "okta", Issuer: "https://example.okta.com/oauth2/default", Audience: "https://gw.example.com/mcp", UserClaim: "email",
			GroupsClaim: "groups", RequiredScopes: []string{"mcp:call", "mcp:tools"}, AllowedAlgorithms: []string{"ES256", "RS256"}},
	}
	if d := cmp.Diff(want, b.Policy.IdentityProviders); d != "" {
		t.Errorf("providers read back (-want +got):\n%s", d)
	}
	files, err := readArchive(data)
	if err != nil {
		t.Fatal(err)
	}
	var policy map[string]any
	if err := json.Unmarshal(find(files, PolicyFile).data, &policy); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(policy["identity_providers"].([]any)[1])
	const wantJSON = `{"allowed_algorithms":["ES256","RS256"],"audience":"https://gw.example.com/mcp","groups_claim":"groups","issuer":"https://example.okta.com/oauth2/default","name":"okta","required_scopes":["mcp:call","mcp:tools"],"user_claim":"email"}`
	if string(got) != wantJSON {
		t.Errorf("policy.json provider:\n got %s\nwant %s", got, wantJSON)
	}
}

// TestBundleWithoutProviders: a bundle written before identity providers
// existed (testdata/sample.tar.gz, whose bytes TestGolden pins) still
// verifies, and a bundle without providers has no identity_providers key,
// so gateways that predate the field read it too.
func TestBundleWithoutProviders(t *testing.T) {
	old, err := os.ReadFile("testdata/sample.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Verify(old, pinned(testKey("a")))
	if err != nil {
		t.Fatalf("Verify(a bundle written before identity providers): %v", err)
	}
	if b.Policy.IdentityProviders != nil {
		t.Errorf("old bundle: got providers %v, want none", b.Policy.IdentityProviders)
	}
	files, err := readArchive(old)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(find(files, PolicyFile).data, []byte("identity_providers")) {
		t.Errorf("a bundle without providers writes an identity_providers key")
	}
}

// TestIdentityProvidersRefused: Write refuses a provider a gateway must not
// run (it would have to default a value, or would accept forgeable
// tokens), and Read refuses the same written by another writer.
func TestIdentityProvidersRefused(t *testing.T) {
	good := IdentityProvider{Name: "okta", Issuer: "https://idp.example.com", Audience: "api://a", UserClaim: "email", AllowedAlgorithms: []string{"RS256"}}
	for _, tc := range []struct {
		name   string
		change func(ps []IdentityProvider) []IdentityProvider
		want   string
	}{
		{"no name", func(ps []IdentityProvider) []IdentityProvider { ps[0].Name = ""; return ps }, "no name"},
		{"no issuer", func(ps []IdentityProvider) []IdentityProvider { ps[0].Issuer = ""; return ps }, "no issuer"},
		{"no audience", func(ps []IdentityProvider) []IdentityProvider { ps[0].Audience = ""; return ps }, "no audience"},
		{"no user claim", func(ps []IdentityProvider) []IdentityProvider { ps[0].UserClaim = ""; return ps }, "no user claim"},
		{"no algorithm", func(ps []IdentityProvider) []IdentityProvider { ps[0].AllowedAlgorithms = nil; return ps }, "no allowed algorithm"},
		{"alg none", func(ps []IdentityProvider) []IdentityProvider { ps[0].AllowedAlgorithms = []string{"none"}; return ps }, `algorithm "none"`},
		{"alg HS256", func(ps []IdentityProvider) []IdentityProvider {
			ps[0].AllowedAlgorithms = []string{"RS256", "HS256"}
			return ps
		}, `algorithm "HS256"`},
		{"http issuer", func(ps []IdentityProvider) []IdentityProvider { ps[0].Issuer = "http://idp.example.com"; return ps }, "not an https URL"},
		{"issuer with a query", func(ps []IdentityProvider) []IdentityProvider {
			ps[0].Issuer = "https://idp.example.com/?a=b"
			return ps
		}, "not an https URL"},
		{"name twice", func(ps []IdentityProvider) []IdentityProvider {
			o := ps[0]
			o.Issuer = "https://other.example.com"
			return append(ps, o)
		}, "appears twice"},
		{"issuer twice", func(ps []IdentityProvider) []IdentityProvider {
			o := ps[0]
			o.Name = "other"
			return append(ps, o)
		}, "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := sampleBundle()
			b.Policy.IdentityProviders = tc.change([]IdentityProvider{good})
			var buf bytes.Buffer
			if err := Write(&buf, b, testKey("a"), ""); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Write(provider with %s) error = %v, want one saying %q", tc.name, err, tc.want)
			}
			// The same policy.json, written by hand into an archive.
			files := sampleFiles(t)
			p := b.Policy
			pj, err := marshalFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data := archive(t, replace(files, PolicyFile, pj))
			_, _, err = Read(bytes.NewReader(data))
			if !errors.Is(err, &VerifyError{Reason: Malformed}) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Read(provider with %s) error = %v, want malformed saying %q", tc.name, err, tc.want)
			}
		})
	}
}
