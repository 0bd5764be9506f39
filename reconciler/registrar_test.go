package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// activeStore plays the gateway's part: it keeps what registration activates.
type activeStore struct{ b *bundle.Bundle }

func (s *activeStore) get(context.Context) (*bundle.Bundle, error) { return s.b, nil }

func newRegistrar(t *testing.T) (*Registrar, *activeStore, func([]byte) *bundle.Bundle) {
	key, kid, keys := testKey(t)
	st := &activeStore{}
	clock := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	r := &Registrar{Key: key, KeyID: kid, CompilerVersion: "test", Active: st.get,
		Now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	verify := func(data []byte) *bundle.Bundle {
		t.Helper()
		b, err := bundle.Verify(data, keys)
		if err != nil {
			t.Fatalf("registered bundle does not verify: %v", err)
		}
		return b
	}
	return r, st, verify
}

func TestRegisterSameContentUnchanged(t *testing.T) {
	r, st, verify := newRegistrar(t)
	res, err := r.Register(context.Background(), []byte(policy("github/*")))
	if err != nil || !res.Valid || !res.Changed || res.Bundle == nil {
		t.Fatalf("first registration: %+v, %v; want valid, changed, with a bundle", res, err)
	}
	st.b = verify(res.Bundle)
	if !strings.HasPrefix(res.Revision, "sha256:") || len(res.Changes) != 3 {
		t.Errorf("first registration: revision %q, changes %v; want a content revision and 3 additions (1 rule, 2 servers)", res.Revision, res.Changes)
	}
	// The same file again, also wrapped as the SDK's JSON form.
	wrapped, _ := json.Marshal(map[string]string{"config": policy("github/*")})
	for _, body := range [][]byte{[]byte(policy("github/*")), wrapped} {
		res, err = r.Register(context.Background(), body)
		if err != nil || !res.Valid || res.Changed || len(res.Changes) != 0 || res.Revision != st.b.Manifest.Revision {
			t.Errorf("same content (%.20q…): %+v, %v; want valid and unchanged at the same revision", body, res, err)
		}
	}
}

func TestRegisterChangedListsChanges(t *testing.T) {
	r, st, verify := newRegistrar(t)
	res, _ := r.Register(context.Background(), []byte(policy("github/*")))
	st.b = verify(res.Bundle)
	res, err := r.Register(context.Background(), []byte(policy("github/*", "slack/post")))
	if err != nil || !res.Changed || res.PreviousRevision != st.b.Manifest.Revision {
		t.Fatalf("changed registration: %+v, %v", res, err)
	}
	var got []string
	for _, c := range res.Changes {
		got = append(got, c.String())
	}
	if want := "+ rule policy.allow[1]: allow slack/post"; strings.Join(got, "\n") != want {
		t.Errorf("changes %q, want %q", got, want)
	}
	if b := verify(res.Bundle); b.Manifest.Sequence <= st.b.Manifest.Sequence {
		t.Errorf("sequence %d not after the active %d: the gateway would refuse it as stale", b.Manifest.Sequence, st.b.Manifest.Sequence)
	}
}

func TestRegisterInvalidCarriesDiagnostics(t *testing.T) {
	r, _, _ := newRegistrar(t)
	for _, body := range []string{badPolicy, "", "{", "\x00\xff", `{"config": 3}`, "version: v9\n", strings.Repeat("[", 10000)} {
		res, err := r.Register(context.Background(), []byte(body))
		if err != nil || res.Valid || res.Bundle != nil || len(res.Diagnostics) == 0 {
			t.Errorf("body %.20q: %+v, %v; want invalid with diagnostics, no error", body, res, err)
		}
	}
	res, _ := r.Register(context.Background(), []byte(badPolicy))
	if d := res.Diagnostics[0]; d.Line != 5 || d.Col != 5 || !strings.Contains(d.Summary, "bogus") {
		t.Errorf("diagnostic %+v, want the unknown key at 5:5", d)
	}
}

func FuzzRegister(f *testing.F) {
	f.Add([]byte(policy("github/*")))
	f.Add([]byte(badPolicy))
	f.Add([]byte(`{"config": "version: v1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, _, _ := newRegistrar(t)
		res, err := r.Register(context.Background(), body)
		if err != nil {
			t.Fatalf("Register(%q) error %v: bad input must be diagnostics", body, err)
		}
		if res.Valid != (len(res.Bundle) > 0) {
			t.Fatalf("Register(%q): valid %v changed %v with a bundle of %d bytes", body, res.Valid, res.Changed, len(res.Bundle))
		}
		if !res.Valid && len(res.Diagnostics) == 0 {
			t.Fatalf("Register(%q): invalid without diagnostics", body)
		}
	})
}

func TestDiffBundles(t *testing.T) {
	rule := func(id, eff string, tools ...string) bundle.Rule {
		return bundle.Rule{ID: id, Effect: eff, Tools: tools}
	}
	old := &bundle.Bundle{
		Policy:  bundle.Policy{Rules: []bundle.Rule{rule("policy.allow[0]", "allow", "a/*"), rule("policy.allow[1]", "allow", "b/x"), rule("r", "deny", "c/*")}},
		Servers: []bundle.Server{{ID: "a", Transport: "http", URL: "https://a"}, {ID: "gone", Transport: "http", URL: "https://g"}},
	}
	new := &bundle.Bundle{
		Policy: bundle.Policy{Rules: []bundle.Rule{rule("policy.allow[0]", "allow", "z/*"), rule("policy.allow[1]", "allow", "a/*"), rule("policy.allow[2]", "allow", "b/x"), rule("r", "hold", "c/*")},
			DefaultTTLSeconds: 60},
		Servers: []bundle.Server{{ID: "a", Transport: "http", URL: "https://a2"}, {ID: "z", Transport: "stdio", Command: "z-mcp"}},
	}
	var got bytes.Buffer
	for _, c := range DiffBundles(old, new) {
		got.WriteString(c.String() + "\n")
	}
	want := `+ rule policy.allow[0]: allow z/*
~ rule r: deny c/* → hold c/*
~ server a: http https://a → http https://a2
+ server z: stdio z-mcp
- server gone: http https://g
~ setting intent.ttl_seconds: 0 → 60
`
	if got.String() != want {
		t.Errorf("DiffBundles:\n%s\nwant:\n%s", got.String(), want)
	}
	if d := DiffBundles(old, old); len(d) != 0 {
		t.Errorf("DiffBundles(old, old) = %v, want none", d)
	}

	// A bundle that changes only an identity provider is a change: the
	// gateway must take it (who can sign in as whom changes).
	idp := bundle.IdentityProvider{Name: "okta", Issuer: "https://a.example.com", Audience: "api://x", UserClaim: "email", AllowedAlgorithms: []string{"RS256"}}
	withIdP := *old
	withIdP.Policy.IdentityProviders = []bundle.IdentityProvider{idp}
	moved := withIdP
	idp.Issuer = "https://b.example.com"
	moved.Policy.IdentityProviders = []bundle.IdentityProvider{idp}
	got.Reset()
	for _, c := range append(DiffBundles(old, &withIdP), append(DiffBundles(&withIdP, &moved), DiffBundles(&moved, old)...)...) {
		got.WriteString(c.String() + "\n")
	}
	want = `+ identity provider okta: issuer https://a.example.com, audience api://x, user_claim email, groups_claim none, required_scopes none, allowed_algorithms RS256
~ identity provider okta: issuer https://a.example.com, audience api://x, user_claim email, groups_claim none, required_scopes none, allowed_algorithms RS256 → issuer https://b.example.com, audience api://x, user_claim email, groups_claim none, required_scopes none, allowed_algorithms RS256
- identity provider okta: issuer https://b.example.com, audience api://x, user_claim email, groups_claim none, required_scopes none, allowed_algorithms RS256
`
	if got.String() != want {
		t.Errorf("DiffBundles of identity providers:\n%s\nwant:\n%s", got.String(), want)
	}
}
