package oauth_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/runtime/identity/oauth/hydratest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The tests of this file verify tokens that a real OAuth 2.0 / OpenID
// Connect server issues: Ory Hydra, through hydratest (skipped without it).

const (
	gatewayAudience = "https://gateway.example.test/mcp"
	otherAudience   = "https://other.example.test/mcp"
)

func hydraProvider(h *hydratest.Server) oauth.Provider {
	return oauth.Provider{
		Name: "corp", Issuer: h.Issuer(), Audience: gatewayAudience,
		UserClaim: hydratest.EmailClaim, GroupsClaim: hydratest.GroupsClaim,
		RequiredScopes: []string{"mcp"},
	}
}

func hydraVerifier(t *testing.T, opts oauth.Options, ps ...oauth.Provider) *oauth.Verifier {
	t.Helper()
	v, err := oauth.NewVerifier(ps, opts)
	if err != nil {
		t.Fatalf("NewVerifier(%+v): %v", ps, err)
	}
	return v
}

// refused checks that v refuses raw with an *oauth.Error of the code, whose
// description holds want.
func refused(t *testing.T, v *oauth.Verifier, raw, what, code, want string) {
	t.Helper()
	p, err := v.Verify(context.Background(), raw)
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Errorf("%s: Verify = %+v, %v; want an *oauth.Error %s", what, p, err, code)
		return
	}
	if oe.Code != code || !strings.Contains(oe.Description, want) {
		t.Errorf("%s: refused with %s %q; want %s containing %q", what, oe.Code, oe.Description, code, want)
	}
}

// TestHydraTokens verifies what Hydra issues: a person's token by the
// authorization code flow with PKCE names the user and groups; a machine's
// token by client credentials names its client and no user; a token for
// another audience, without the required scope, an ID token in place of an
// access token, or from another Hydra are refused.
func TestHydraTokens(t *testing.T) {
	t.Parallel()
	h := hydratest.Start(t, hydratest.Options{})
	v := hydraVerifier(t, oauth.Options{}, hydraProvider(h))
	ctx := context.Background()

	user := h.SignIn(t, "  Alice@Example.COM", []string{"finance", "eng", "finance"}, []string{"openid", "mcp"}, gatewayAudience)
	_, claims := hydratest.Decode(t, user.Access)
	got, err := v.Verify(ctx, user.Access)
	if err != nil {
		t.Fatalf("a user's token from Hydra: %v", err)
	}
	want := &oauth.Principal{
		Provider: "corp", Issuer: h.Issuer(), Subject: claims["sub"].(string),
		User: "alice@example.com", ClientID: h.NativeClientID(),
		Groups: []string{"eng", "finance"}, Scopes: []string{"mcp", "openid"},
		Expiry: time.Unix(int64(claims["exp"].(float64)), 0),
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApproxTime(0)); diff != "" {
		t.Errorf("the user's principal (-want +got):\n%s", diff)
	}

	machine := h.ClientCredentialsToken(t, []string{"mcp"}, gatewayAudience)
	got, err = v.Verify(ctx, machine)
	if err != nil {
		t.Fatalf("a client credentials token from Hydra: %v", err)
	}
	if got.User != "" || got.ClientID != h.MachineClientID() || got.Subject != h.MachineClientID() || len(got.Groups) != 0 {
		t.Errorf("the machine's principal = %+v; want no user and no groups, client and subject %s", got, h.MachineClientID())
	}

	refused(t, v, h.ClientCredentialsToken(t, []string{"mcp"}, otherAudience),
		"a token for another audience", oauth.CodeInvalidToken, "audience")
	refused(t, v, h.UserToken(t, "bob@example.com", nil, []string{"mcp"}, otherAudience),
		"a user's token for another audience", oauth.CodeInvalidToken, "audience")
	refused(t, v, h.ClientCredentialsToken(t, []string{"mcp"}, ""),
		"a token naming no audience", oauth.CodeInvalidToken, "audience")
	refused(t, v, h.ClientCredentialsToken(t, []string{"read"}, gatewayAudience),
		"a token without the required scope", oauth.CodeInsufficientScope, "mcp")
	refused(t, v, user.ID, "the ID token presented as an access token", oauth.CodeInvalidToken, "audience")

	other := hydratest.Start(t, hydratest.Options{})
	refused(t, v, other.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, gatewayAudience),
		"a token of another issuer", oauth.CodeInvalidToken, "not a configured identity provider")
}

// TestHydraExpiredToken: a token is accepted until its exp and refused
// after it (no clock skew allowed here, so the test waits seconds, not a
// minute).
func TestHydraExpiredToken(t *testing.T) {
	t.Parallel()
	h := hydratest.Start(t, hydratest.Options{})
	v := hydraVerifier(t, oauth.Options{Skew: -1}, hydraProvider(h))
	h.SetTokenLifespan(t, 4*time.Second)
	for _, tc := range []struct{ what, raw string }{
		{"a machine's", h.ClientCredentialsToken(t, []string{"mcp"}, gatewayAudience)},
		{"a user's", h.UserToken(t, "alice@example.com", nil, []string{"mcp"}, gatewayAudience)},
	} {
		_, claims := hydratest.Decode(t, tc.raw)
		iat := time.Unix(int64(claims["iat"].(float64)), 0)
		exp := time.Unix(int64(claims["exp"].(float64)), 0)
		// Accepted at the time it was issued (a clock fixed there: on a
		// loaded machine the real one may be past exp already).
		then := hydraVerifier(t, oauth.Options{Skew: -1, Now: func() time.Time { return iat }}, hydraProvider(h))
		if _, err := then.Verify(context.Background(), tc.raw); err != nil {
			t.Errorf("%s token at its iat %v (exp %v): %v", tc.what, iat, exp, err)
		}
		time.Sleep(time.Until(exp.Add(1100 * time.Millisecond)))
		refused(t, v, tc.raw, tc.what+" token after its exp", oauth.CodeInvalidToken, "expired")
	}
}

// TestHydraKeyRotation: a key rotated at Hydra is taken up by the running
// verifier on the first token that names it (an unknown kid fetches the
// JWKS again); tokens signed by the old key stay valid while Hydra
// publishes it.
func TestHydraKeyRotation(t *testing.T) {
	t.Parallel()
	h := hydratest.Start(t, hydratest.Options{})
	minRefresh := 500 * time.Millisecond
	v := hydraVerifier(t, oauth.Options{MinRefresh: minRefresh}, hydraProvider(h))
	ctx := context.Background()
	before := h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, gatewayAudience)
	if _, err := v.Verify(ctx, before); err != nil {
		t.Fatalf("the token before the rotation: %v", err)
	}
	for i := range 2 {
		kid := h.RotateKeys(t)
		time.Sleep(minRefresh) // an unknown kid refetches at most once per MinRefresh
		after := h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, gatewayAudience)
		if hdr, _ := hydratest.Decode(t, after); hdr["kid"] != kid {
			t.Fatalf("rotation %d: Hydra signed with kid %v, not the new %s", i+1, hdr["kid"], kid)
		}
		if p, err := v.Verify(ctx, after); err != nil || p.User != "alice@example.com" {
			t.Errorf("rotation %d: the token signed with the new key: %+v, %v", i+1, p, err)
		}
		if _, err := v.Verify(ctx, before); err != nil {
			t.Errorf("rotation %d: the token signed before the rotations: %v", i+1, err)
		}
	}
}

// TestHydraForgedTokens: tokens made from a real Hydra token by someone
// without Hydra's private key are refused: alg "none", HS256 keyed with
// Hydra's public key (in each form an attacker might try), a signature of
// another key under Hydra's kid, a changed payload under the real
// signature, and a token that brings its own key in its header.
func TestHydraForgedTokens(t *testing.T) {
	t.Parallel()
	h := hydratest.Start(t, hydratest.Options{})
	// Not even a provider's config may allow HMAC.
	p := hydraProvider(h)
	p.AllowedAlgorithms = []string{"RS256", "HS256"}
	if _, err := oauth.NewVerifier([]oauth.Provider{p}, oauth.Options{}); err == nil {
		t.Errorf("NewVerifier took a provider allowing HS256")
	}
	v := hydraVerifier(t, oauth.Options{}, hydraProvider(h))
	real := h.UserToken(t, "alice@example.com", []string{"eng"}, []string{"mcp"}, gatewayAudience)
	if _, err := v.Verify(context.Background(), real); err != nil {
		t.Fatalf("the real token: %v", err)
	}
	hdr, claims := hydratest.Decode(t, real)
	kid, _ := hdr["kid"].(string)
	claims["email"], claims["groups"] = "ceo@example.com", []string{"admins"}

	pub := hydraPublicKey(t, h, kid)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	jwk, _ := json.Marshal(map[string]any{"kty": "RSA", "kid": kid, "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())})
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherJWK := map[string]any{"kty": "RSA", "n": b64(otherKey.N.Bytes()), "e": b64(big.NewInt(int64(otherKey.E)).Bytes())}
	parts := strings.Split(real, ".")

	for _, tc := range []struct {
		what, raw, want string
	}{
		{"alg none, no signature", forge(map[string]any{"alg": "none", "typ": "JWT"}, claims, nil), "algorithm"},
		{"alg none with kid", forge(map[string]any{"alg": "none", "kid": kid}, claims, nil), "algorithm"},
		{"alg None", forge(map[string]any{"alg": "None", "kid": kid}, claims, nil), "algorithm"},
		{"HS256 keyed with the PEM public key", forge(map[string]any{"alg": "HS256", "kid": kid}, claims, hmacKey(pemKey)), "algorithm"},
		{"HS256 keyed with the DER public key", forge(map[string]any{"alg": "HS256", "kid": kid}, claims, hmacKey(der)), "algorithm"},
		{"HS256 keyed with the PKCS#1 public key", forge(map[string]any{"alg": "HS256", "kid": kid}, claims, hmacKey(pkcs1)), "algorithm"},
		{"HS256 keyed with the JWK", forge(map[string]any{"alg": "HS256", "kid": kid}, claims, hmacKey(jwk)), "algorithm"},
		{"RS256 signed by another key under Hydra's kid", forge(map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"}, claims, rsaKey(otherKey)), "signature"},
		{"RS256 signed by another key under an unknown kid", forge(map[string]any{"alg": "RS256", "kid": "attacker", "typ": "JWT"}, claims, rsaKey(otherKey)), "key id"},
		{"the payload changed under the real signature", parts[0] + "." + b64(mustJSON(claims)) + "." + parts[2], "signature"},
		{"the header changed under the real signature", b64(mustJSON(map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"})) + "." + parts[1] + "." + parts[2], "signature"},
		{"a key of its own in jwk", forge(map[string]any{"alg": "RS256", "jwk": otherJWK, "typ": "JWT"}, claims, rsaKey(otherKey)), ""},
		{"a key of its own in jwk, under Hydra's kid", forge(map[string]any{"alg": "RS256", "kid": kid, "jwk": otherJWK}, claims, rsaKey(otherKey)), "signature"},
		{"a key of its own by jku, under Hydra's kid", forge(map[string]any{"alg": "RS256", "kid": kid, "jku": "http://127.0.0.1:1/jwks"}, claims, rsaKey(otherKey)), "signature"},
		{"the signature stripped", parts[0] + "." + parts[1] + ".", ""},
	} {
		refused(t, v, tc.raw, tc.what, oauth.CodeInvalidToken, tc.want)
	}
}

// hydraPublicKey fetches Hydra's RSA public key kid from its JWKS.
func hydraPublicKey(t *testing.T, h *hydratest.Server, kid string) *rsa.PublicKey {
	t.Helper()
	resp, err := http.Get(h.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kid, N, E string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid == kid {
			n, _ := base64.RawURLEncoding.DecodeString(k.N)
			e, _ := base64.RawURLEncoding.DecodeString(k.E)
			return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		}
	}
	t.Fatalf("Hydra's JWKS has no key %s", kid)
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// forge builds header.payload and appends sign's signature of them (an
// empty one when sign is nil).
func forge(header, payload map[string]any, sign func(input string) []byte) string {
	input := b64(mustJSON(header)) + "." + b64(mustJSON(payload))
	if sign == nil {
		return input + "."
	}
	return input + "." + b64(sign(input))
}

func hmacKey(secret []byte) func(string) []byte {
	return func(input string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return m.Sum(nil)
	}
}

func rsaKey(k *rsa.PrivateKey) func(string) []byte {
	return func(input string) []byte {
		sum := sha256.Sum256([]byte(input))
		sig, _ := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		return sig
	}
}
