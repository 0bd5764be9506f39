package oauth

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var allAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func TestVerifyAcceptsEveryAlgorithm(t *testing.T) {
	var signers []*signer
	for i, alg := range allAlgs {
		signers = append(signers, newSigner("k-"+alg, alg, i%2))
	}
	is := newIssuer(t, "", false, signers...)
	c := newClock()
	p := is.provider("corp")
	p.AllowedAlgorithms = allAlgs
	v := newTestVerifier(t, c, p)
	for _, s := range signers {
		t.Run(s.alg, func(t *testing.T) {
			raw := s.mint(nil, is.claims(c, map[string]any{"email": " Alice@Example.COM ", "groups": []string{"eng", "finance", "eng"}, "scp": []string{"read"}}))
			got, err := v.Verify(context.Background(), raw)
			if err != nil {
				t.Fatalf("Verify(token signed %s) = %v, want accepted", s.alg, err)
			}
			want := &Principal{
				Provider: "corp", Issuer: is.url, Subject: "user-123", User: "alice@example.com", ClientID: "ide",
				Groups: []string{"eng", "finance"}, Scopes: []string{"mcp:tools", "openid", "read"},
				Expiry: time.Unix(c.Now().Unix()+300, 0),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Principal (-want +got):\n%s", diff)
			}
		})
	}
	if n := is.jwksHits.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times for %d tokens, want once", n, len(signers))
	}
}

// TestVerifyRefuses lists what an attacker (or a broken provider) might
// send, and what must come of it.
func TestVerifyRefuses(t *testing.T) {
	good := newSigner("good", "RS256", 0)
	ec := newSigner("ec", "ES256", 0)
	ec384 := newSigner("ec384", "ES384", 0)
	attacker := newSigner("good", "RS256", 1) // the same kid, another key
	other := newSigner("other", "RS256", 2)
	is := newIssuer(t, "", false, good, ec, ec384)
	is2 := newIssuer(t, "/b", false, other)
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"), is2.provider("b"))
	now := c.Now().Unix()
	skew := int64(60)
	cl := func(over map[string]any) map[string]any { return is.claims(c, over) }
	tok := func(over map[string]any) string { return good.mint(nil, cl(over)) }
	pubDER, _ := x509.MarshalPKIXPublicKey(good.key.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwkJSON, _ := json.Marshal(good.jwk())
	valid := tok(nil)
	parts := strings.Split(valid, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[5] == 'A' {
			b[5] = 'B'
		} else {
			b[5] = 'A'
		}
		return string(b)
	}
	noneHdr := map[string]any{"alg": "none", "kid": "good"}

	tests := []struct {
		name  string
		raw   string
		code  string
		desc  string // a substring of the Description
		scope string
	}{
		{"forged signature (a byte flipped)", parts[0] + "." + parts[1] + "." + flip(parts[2]), CodeInvalidToken, "signature does not verify", ""},
		{"payload altered after signing (another email)", parts[0] + "." + segment(cl(map[string]any{"email": "boss@example.com"})) + "." + parts[2], CodeInvalidToken, "signature does not verify", ""},
		{"signed by another key under the issuer's kid", attacker.mint(nil, cl(nil)), CodeInvalidToken, "signature does not verify", ""},
		{"signature stripped", parts[0] + "." + parts[1] + ".", CodeInvalidToken, "signature is missing", ""},
		{"alg none, no signature", segment(noneHdr) + "." + parts[1] + ".", CodeInvalidToken, `"none" is refused`, ""},
		{"alg none with the original signature", segment(noneHdr) + "." + parts[1] + "." + parts[2], CodeInvalidToken, `"none" is refused`, ""},
		{"alg NoNe", segment(map[string]any{"alg": "NoNe"}) + "." + parts[1] + ".", CodeInvalidToken, "is refused", ""},
		{"HS256 keyed with the issuer's public key (PEM)", hs256(map[string]any{"alg": "HS256", "kid": "good"}, cl(nil), pubPEM), CodeInvalidToken, "HMAC", ""},
		{"HS256 keyed with the issuer's public key (DER)", hs256(map[string]any{"alg": "HS256", "kid": "good"}, cl(nil), pubDER), CodeInvalidToken, "HMAC", ""},
		{"HS256 keyed with the issuer's JWK", hs256(map[string]any{"alg": "HS256", "kid": "good"}, cl(nil), jwkJSON), CodeInvalidToken, "HMAC", ""},
		{"HS512", hs256(map[string]any{"alg": "HS512"}, cl(nil), pubPEM), CodeInvalidToken, "HMAC", ""},
		{"RS384 not in the provider's allow list", good.mint(map[string]any{"alg": "RS384"}, cl(nil)), CodeInvalidToken, "not allowed", ""},
		{"unsupported alg", segment(map[string]any{"alg": "RSA-OAEP"}) + "." + parts[1] + "." + parts[2], CodeInvalidToken, "not supported", ""},
		{"alg not a string", segment(map[string]any{"alg": 256}) + "." + parts[1] + "." + parts[2], CodeInvalidToken, "no alg", ""},
		{"ALG in capitals is not alg", segment(map[string]any{"ALG": "RS256", "kid": "good"}) + "." + parts[1] + "." + parts[2], CodeInvalidToken, "no alg", ""},
		{"RS256 header with the kid of an EC key", good.mint(map[string]any{"kid": "ec"}, cl(nil)), CodeInvalidToken, "not for algorithm", ""},
		{"ES256 with the kid of a P-384 key", ec384.mint(map[string]any{"alg": "ES256"}, cl(nil)), CodeInvalidToken, "not for algorithm", ""},
		{"ES256 signature in DER form", func() string {
			t := ec.mint(nil, cl(nil))
			p := strings.Split(t, ".")
			return p[0] + "." + p[1] + "." + b64e(append([]byte{0x30, 0x44}, make([]byte, 64)...))
		}(), CodeInvalidToken, "signature does not verify", ""},
		{"own key in a jwk header, signed with it", attacker.mint(map[string]any{"jwk": attacker.jwk(), "kid": nil}, cl(nil)), CodeInvalidToken, "signature does not verify", ""},
		{"own key set in a jku header", attacker.mint(map[string]any{"jku": is2.srv.URL + "/keys", "kid": "other"}, cl(nil)), CodeInvalidToken, "not among the issuer's keys", ""},
		{"crit header", good.mint(map[string]any{"crit": []string{"exp"}, "exp": 1}, cl(nil)), CodeInvalidToken, `"crit"`, ""},
		{"cty header (nested JWT)", good.mint(map[string]any{"cty": "JWT"}, cl(nil)), CodeInvalidToken, `"cty"`, ""},
		{"b64 header", good.mint(map[string]any{"b64": false}, cl(nil)), CodeInvalidToken, `"b64"`, ""},
		{"typ of a DPoP proof", good.mint(map[string]any{"typ": "dpop+jwt"}, cl(nil)), CodeInvalidToken, "typ", ""},
		{"typ of a logout token", good.mint(map[string]any{"typ": "logout+jwt"}, cl(nil)), CodeInvalidToken, "typ", ""},
		{"typ not a string", good.mint(map[string]any{"typ": 1}, cl(nil)), CodeInvalidToken, "typ", ""},
		{"kid not a string", good.mint(map[string]any{"kid": 7}, cl(nil)), CodeInvalidToken, "kid", ""},
		{"aud of another resource", tok(map[string]any{"aud": "https://other.example.com/mcp"}), CodeInvalidToken, "audience", ""},
		{"aud array without this gateway", tok(map[string]any{"aud": []string{"a", "b"}}), CodeInvalidToken, "audience", ""},
		{"aud a prefix of this gateway's", tok(map[string]any{"aud": "https://gw.example.com"}), CodeInvalidToken, "audience", ""},
		{"aud missing", tok(map[string]any{"aud": nil}), CodeInvalidToken, "audience", ""},
		{"aud array with a number", tok(map[string]any{"aud": []any{audience, 1}}), CodeInvalidToken, "aud", ""},
		{"iss of no configured provider", tok(map[string]any{"iss": "https://evil.example.com"}), CodeInvalidToken, "not a configured identity provider", ""},
		{"iss with a trailing slash", tok(map[string]any{"iss": is.url + "/"}), CodeInvalidToken, "not a configured identity provider", ""},
		{"iss missing", tok(map[string]any{"iss": nil}), CodeInvalidToken, "no iss", ""},
		{"iss of provider b, signed by provider a's key", good.mint(nil, is2.claims(c, nil)), CodeInvalidToken, "not among the issuer's keys", ""},
		{"iss of provider b, kid of b, signed by a's key", good.mint(map[string]any{"kid": "other"}, is2.claims(c, nil)), CodeInvalidToken, "signature does not verify", ""},
		{"expired", tok(map[string]any{"exp": now - 3600}), CodeInvalidToken, "expired", ""},
		{"expired exactly skew ago", tok(map[string]any{"exp": now - skew}), CodeInvalidToken, "expired", ""},
		{"nbf in the future", tok(map[string]any{"nbf": now + 3600}), CodeInvalidToken, "not valid before", ""},
		{"nbf one second beyond the skew", tok(map[string]any{"nbf": now + skew + 1}), CodeInvalidToken, "not valid before", ""},
		{"iat in the future", tok(map[string]any{"iat": now + 3600}), CodeInvalidToken, "issued in the future", ""},
		{"exp missing", tok(map[string]any{"exp": nil}), CodeInvalidToken, "no exp", ""},
		{"exp a string", tok(map[string]any{"exp": "2099-01-01"}), CodeInvalidToken, "NumericDate", ""},
		{"exp negative", tok(map[string]any{"exp": -1}), CodeInvalidToken, "NumericDate", ""},
		{"exp beyond year 9999", tok(map[string]any{"exp": 1e300}), CodeInvalidToken, "NumericDate", ""},
		{"sub missing", tok(map[string]any{"sub": nil}), CodeInvalidToken, "no sub", ""},
		{"sub with a newline", tok(map[string]any{"sub": "a\nb"}), CodeInvalidToken, "sub", ""},
		{"email with two @", tok(map[string]any{"email": "alice@corp@example.com"}), CodeInvalidToken, "more than one @", ""},
		{"email mixing Latin and Cyrillic", tok(map[string]any{"email": "аlice@example.com"}), CodeInvalidToken, "two scripts", ""},
		{"email with a bidi override", tok(map[string]any{"email": "alice\u202e@example.com"}), CodeInvalidToken, "formatting character", ""},
		{"email that is an API key", tok(map[string]any{"email": "ak_live_0123456789"}), CodeInvalidToken, "credential", ""},
		{"email a number", tok(map[string]any{"email": 42}), CodeInvalidToken, `"email" claim is not a string`, ""},
		{"groups with a number", tok(map[string]any{"groups": []any{"eng", 3}}), CodeInvalidToken, "groups", ""},
		{"groups an object", tok(map[string]any{"groups": map[string]any{"eng": true}}), CodeInvalidToken, "groups", ""},
		{"group with a control character", tok(map[string]any{"groups": []string{"eng\x00admin"}}), CodeInvalidToken, "group", ""},
		{"groups overage (distributed claim)", tok(map[string]any{"groups": nil, "_claim_names": map[string]any{"groups": "src1"}, "_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.example.com"}}}), CodeInvalidToken, "distributed", ""},
		{"scope not a string", tok(map[string]any{"scope": 1}), CodeInvalidToken, "scope", ""},
		{"required scope missing", tok(map[string]any{"scope": "openid profile"}), CodeInsufficientScope, "lacks the scope mcp:tools", "mcp:tools"},
		{"no scope at all", tok(map[string]any{"scope": nil}), CodeInsufficientScope, "mcp:tools", "mcp:tools"},
		{"required scope only as a prefix", tok(map[string]any{"scope": "mcp:tools:read"}), CodeInsufficientScope, "mcp:tools", "mcp:tools"},
		{"empty", "", CodeInvalidToken, "empty", ""},
		{"an API key", "ak_live_0123456789abcdef", CodeInvalidToken, "not a JWT", ""},
		{"two segments", parts[0] + "." + parts[1], CodeInvalidToken, "not a JWT", ""},
		{"four segments", valid + ".x", CodeInvalidToken, "not a JWT", ""},
		{"five segments (JWE)", "a.b.c.d.e", CodeInvalidToken, "encrypted", ""},
		{"padding in the header", parts[0] + "=." + parts[1] + "." + parts[2], CodeInvalidToken, "not a JWT", ""},
		{"a newline in the payload", parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2], CodeInvalidToken, "not a JWT", ""},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid) + "+/", CodeInvalidToken, "not a JWT", ""},
		{"header null", b64e([]byte("null")) + "." + parts[1] + "." + parts[2], CodeInvalidToken, "not a JSON object", ""},
		{"header an array", b64e([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2], CodeInvalidToken, "not a JSON object", ""},
		{"header with trailing garbage", b64e([]byte(`{"alg":"RS256"}x`)) + "." + parts[1] + "." + parts[2], CodeInvalidToken, "not a JSON object", ""},
		{"payload null", parts[0] + "." + b64e([]byte("null")) + "." + parts[2], CodeInvalidToken, "payload is not a JSON object", ""},
		{"larger than 16 KiB", good.mint(nil, cl(map[string]any{"pad": strings.Repeat("x", MaxTokenSize)})), CodeInvalidToken, "longer than", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tt.raw)
			if err == nil {
				t.Fatalf("Verify(%s) accepted it as %+v, want %s", tt.name, got, tt.code)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Verify(%s) error %T %v, want *Error", tt.name, err, err)
			}
			if e.Code != tt.code || !strings.Contains(e.Description, tt.desc) || e.Scope != tt.scope {
				t.Errorf("Verify(%s) = {Code %q, Description %q, Scope %q}, want {%q, …%q…, %q}", tt.name, e.Code, e.Description, e.Scope, tt.code, tt.desc, tt.scope)
			}
			if strings.Contains(e.Description, parts[2]) || strings.Contains(e.Error(), tt.raw) && tt.raw != "" {
				t.Errorf("the error of %s repeats the token: %v", tt.name, e)
			}
		})
	}
	if n := is2.jwksHits.Load(); n > 1 {
		t.Errorf("provider b's JWKS was fetched %d times (a jku header must not be followed, b's keys are fetched for b's tokens only)", n)
	}
}

// TestVerifyClaimsAccepted covers the shapes of valid claims.
func TestVerifyClaimsAccepted(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	is := newIssuer(t, "", false, s)
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	now := c.Now().Unix()
	tests := []struct {
		name string
		hdr  map[string]any
		over map[string]any
		want func(p *Principal)
	}{
		{"groups as one string", nil, map[string]any{"groups": "finance"}, func(p *Principal) { p.Groups = []string{"finance"} }},
		{"groups as an array, duplicates and empty names", nil, map[string]any{"groups": []string{"b", "a", "", "b"}}, func(p *Principal) { p.Groups = []string{"a", "b"} }},
		{"groups absent", nil, map[string]any{"groups": nil}, func(p *Principal) { p.Groups = nil }},
		{"scp as an array (Okta)", nil, map[string]any{"scope": nil, "scp": []string{"mcp:tools", "x"}}, func(p *Principal) { p.Scopes = []string{"mcp:tools", "x"} }},
		{"scp as a string (Entra ID)", nil, map[string]any{"scope": nil, "scp": "x mcp:tools"}, func(p *Principal) { p.Scopes = []string{"mcp:tools", "x"} }},
		{"scope and scp together", nil, map[string]any{"scope": "mcp:tools", "scp": []string{"x"}}, func(p *Principal) { p.Scopes = []string{"mcp:tools", "x"} }},
		{"client credentials: no email, azp", nil, map[string]any{"email": nil, "client_id": nil, "azp": "svc", "sub": "svc"}, func(p *Principal) { p.User, p.ClientID, p.Subject = "", "svc", "svc" }},
		{"cid (Okta)", nil, map[string]any{"client_id": nil, "cid": "okta-app"}, func(p *Principal) { p.ClientID = "okta-app" }},
		{"aud an array holding this gateway", nil, map[string]any{"aud": []string{"x", audience}}, nil},
		{"expired, but within the skew", nil, map[string]any{"exp": now - 59}, func(p *Principal) { p.Expiry = time.Unix(now-59, 0) }},
		{"nbf exactly at the skew", nil, map[string]any{"nbf": now + 60}, nil},
		{"exp with a fraction", nil, map[string]any{"exp": float64(now) + 100.5}, func(p *Principal) { p.Expiry = time.Unix(now+100, 5e8) }},
		{"no nbf nor iat", nil, map[string]any{"nbf": nil, "iat": nil}, nil},
		{"typ JWT", map[string]any{"typ": "JWT"}, nil, nil},
		{"typ application/at+jwt", map[string]any{"typ": "application/at+jwt"}, nil, nil},
		{"no typ", map[string]any{"typ": nil}, nil, nil},
		{"unread headers (x5t, jku) are ignored", map[string]any{"x5t": "abc", "jku": "https://evil.example.com/keys"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), s.mint(tt.hdr, is.claims(c, tt.over)))
			if err != nil {
				t.Fatalf("Verify(%s) = %v, want accepted", tt.name, err)
			}
			want := &Principal{Provider: "corp", Issuer: is.url, Subject: "user-123", User: "alice@example.com", ClientID: "ide",
				Groups: []string{"eng", "finance"}, Scopes: []string{"mcp:tools", "openid"}, Expiry: time.Unix(now+300, 0)}
			if tt.want != nil {
				tt.want(want)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Verify(%s) Principal (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestUserClaimOtherThanEmail(t *testing.T) {
	s := newSigner("k", "EdDSA", 0)
	is := newIssuer(t, "", false, s)
	c := newClock()
	p := is.provider("corp")
	p.UserClaim = "preferred_username"
	p.RequiredScopes = nil
	v := newTestVerifier(t, c, p)
	got, err := v.Verify(context.Background(), s.mint(nil, is.claims(c, map[string]any{"preferred_username": "Bob@Example.com"})))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "bob@example.com" {
		t.Errorf("User = %q, want bob@example.com (preferred_username, normalised)", got.User)
	}
}

func TestNewVerifierRefusesBadProviders(t *testing.T) {
	ok := Provider{Name: "a", Issuer: "https://idp.example.com", Audience: audience}
	with := func(f func(p *Provider)) []Provider { p := ok; f(&p); return []Provider{p} }
	tests := []struct {
		name      string
		providers []Provider
		want      string
	}{
		{"no name", with(func(p *Provider) { p.Name = "" }), "name is required"},
		{"no issuer", with(func(p *Provider) { p.Issuer = "" }), "issuer: is required"},
		{"http issuer on the network", with(func(p *Provider) { p.Issuer = "http://idp.example.com" }), "only https"},
		{"ftp issuer", with(func(p *Provider) { p.Issuer = "ftp://idp.example.com" }), "not https"},
		{"relative issuer", with(func(p *Provider) { p.Issuer = "idp.example.com" }), "not an absolute URL"},
		{"issuer with a query", with(func(p *Provider) { p.Issuer = "https://idp.example.com?x=1" }), "query"},
		{"issuer with a fragment", with(func(p *Provider) { p.Issuer = "https://idp.example.com#x" }), "fragment"},
		{"issuer with user info", with(func(p *Provider) { p.Issuer = "https://u:p@idp.example.com" }), "user info"},
		{"no audience", with(func(p *Provider) { p.Audience = "" }), "audience is required"},
		{"alg none", with(func(p *Provider) { p.AllowedAlgorithms = []string{"RS256", "none"} }), `"none" is refused`},
		{"alg HS256", with(func(p *Provider) { p.AllowedAlgorithms = []string{"HS256"} }), "HMAC"},
		{"alg unknown", with(func(p *Provider) { p.AllowedAlgorithms = []string{"RS1"} }), "not supported"},
		{"scope with a space", with(func(p *Provider) { p.RequiredScopes = []string{"a b"} }), "not a scope"},
		{"user claim with a space", with(func(p *Provider) { p.UserClaim = "e mail" }), "not a claim name"},
		{"two providers, one issuer", []Provider{ok, {Name: "b", Issuer: ok.Issuer, Audience: audience}}, "configured twice"},
		{"two providers, one name", []Provider{ok, {Name: "a", Issuer: "https://other.example.com", Audience: audience}}, "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(tt.providers, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewVerifier(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestProvidersDefaults(t *testing.T) {
	in := []Provider{
		{Name: "a", Issuer: "https://idp.example.com/tenant", Audience: audience},
		{Name: "local", Issuer: "http://127.0.0.1:9000", Audience: audience, UserClaim: "upn", AllowedAlgorithms: []string{"ES384"}},
		{Name: "local6", Issuer: "http://[::1]:9000", Audience: audience},
		{Name: "localhost", Issuer: "http://localhost:9000", Audience: audience},
	}
	v, err := NewVerifier(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Provider{
		{Name: "a", Issuer: "https://idp.example.com/tenant", Audience: audience, UserClaim: "email", AllowedAlgorithms: DefaultAlgorithms()},
		{Name: "local", Issuer: "http://127.0.0.1:9000", Audience: audience, UserClaim: "upn", AllowedAlgorithms: []string{"ES384"}},
		{Name: "local6", Issuer: "http://[::1]:9000", Audience: audience, UserClaim: "email", AllowedAlgorithms: DefaultAlgorithms()},
		{Name: "localhost", Issuer: "http://localhost:9000", Audience: audience, UserClaim: "email", AllowedAlgorithms: DefaultAlgorithms()},
	}
	got := v.Providers()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Providers() (-want +got):\n%s", diff)
	}
	got[0].AllowedAlgorithms[0] = "none"
	if v.Providers()[0].AllowedAlgorithms[0] != "RS256" {
		t.Error("Providers() returned the verifier's own slices: a caller changed its allow list")
	}
}

func TestLooksLikeJWT(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	tests := []struct {
		in   string
		want bool
	}{
		{s.mint(nil, map[string]any{"iss": "x"}), true},
		{segment(map[string]any{"alg": "none"}) + "." + segment(map[string]any{}) + ".", true},
		{"ak_live_abcdef0123456789", false},
		{"", false},
		{"a.b.c", false},
		{segment(map[string]any{"typ": "JWT"}) + ".e30.sig", false},
		{segment(map[string]any{"alg": 1}) + ".e30.sig", false},
		{b64e([]byte("[1]")) + ".e30.sig", false},
		{segment(map[string]any{"alg": "RS256"}) + "..sig", false},
		{segment(map[string]any{"alg": "RS256"}) + ".e30", false},
		{segment(map[string]any{"alg": "RS256"}) + ".e30.s.x", false},
		{"Bearer " + segment(map[string]any{"alg": "RS256"}) + ".e30.sig", false},
		{segment(map[string]any{"alg": "RS256", "pad": strings.Repeat("x", MaxTokenSize)}) + ".e30.sig", false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.in); got != tt.want {
			in := tt.in
			if len(in) > 80 {
				in = in[:80] + "…"
			}
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", in, got, tt.want)
		}
	}
}

func TestJWKSKeysRefused(t *testing.T) {
	weak := &signer{kid: "weak", alg: "RS256", key: weakRSAKey()}
	leaky := newSigner("leaky", "RS256", 3)
	mislabelled := newSigner("rs512", "RS256", 2)
	is := newIssuer(t, "", false)
	good := newSigner("good", "ES256", 0)
	keys := []map[string]any{weak.jwk(), good.jwk()}
	lk := leaky.jwk()
	lk["d"] = b64e(leaky.key.(*rsa.PrivateKey).D.Bytes())
	keys = append(keys, lk)
	mk := mislabelled.jwk()
	mk["alg"] = "RS512"
	keys = append(keys, mk)
	enc := newSigner("enc", "RS256", 1)
	ek := enc.jwk()
	ek["use"] = "enc"
	keys = append(keys, ek, map[string]any{"kty": "oct", "kid": "hmac", "k": b64e([]byte("secret"))})
	body, _ := json.Marshal(map[string]any{"keys": keys})
	is.set(func(is *issuer) { is.jwksBody = body })
	c := newClock()
	p := is.provider("corp")
	p.AllowedAlgorithms = allAlgs
	v := newTestVerifier(t, c, p)
	for _, tt := range []struct {
		name, raw, want string
	}{
		{"a 1024-bit RSA key", weak.mint(nil, is.claims(c, nil)), "not among"},
		{"a key published with its private part", leaky.mint(nil, is.claims(c, nil)), "not among"},
		{"an RS256 token under a key marked RS512", mislabelled.mint(nil, is.claims(c, nil)), "not for algorithm RS256"},
		{"a key for encryption", enc.mint(nil, is.claims(c, nil)), "not among"},
		{"an HMAC key in the set", hs256(map[string]any{"alg": "HS256", "kid": "hmac"}, is.claims(c, nil), []byte("secret")), "HMAC"},
	} {
		_, err := v.Verify(context.Background(), tt.raw)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Verify(signed with %s) = %v, want refused (%s)", tt.name, err, tt.want)
		}
	}
	if _, err := v.Verify(context.Background(), good.mint(nil, is.claims(c, nil))); err != nil {
		t.Errorf("Verify(signed with the one good key beside bad ones) = %v, want accepted", err)
	}
}
