package hydratest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

const audience = "https://gateway.example.test/mcp"

// TestTokens checks what the harness's Hydra issues: signed JWT access
// tokens from its issuer, for the asked audience and scopes, with the
// user's email and groups at the top level for a person and none for a
// machine, a new kid after a key rotation, the lifespan set; and what it
// refuses: a user not in the directory, an audience the client may not
// ask for.
func TestTokens(t *testing.T) {
	h := Start(t, Options{})
	if !strings.HasPrefix(h.Issuer(), h.PublicURL()) {
		t.Fatalf("issuer %q is not Hydra's public URL %q", h.Issuer(), h.PublicURL())
	}

	machine := h.ClientCredentialsToken(t, []string{"mcp:tools"}, audience)
	hdr, c := Decode(t, machine)
	checkSignature(t, h, machine)
	t.Logf("machine token header %v claims %v", hdr, c)
	checkCommon(t, h, c, []string{"mcp:tools"}, time.Hour)
	if c["client_id"] != h.MachineClientID() || c["sub"] != h.MachineClientID() {
		t.Errorf("machine token: client_id %v, sub %v; want both %q", c["client_id"], c["sub"], h.MachineClientID())
	}
	if _, ok := c[EmailClaim]; ok {
		t.Errorf("machine token has an email claim: %v", c[EmailClaim])
	}

	user := h.UserToken(t, "Alice@Example.com", []string{"finance", "eng"}, []string{"openid", "mcp:tools"}, audience)
	hdr, c = Decode(t, user)
	checkSignature(t, h, user)
	t.Logf("user token header %v claims %v", hdr, c)
	checkCommon(t, h, c, []string{"openid", "mcp:tools"}, time.Hour)
	if c[EmailClaim] != "Alice@Example.com" {
		t.Errorf("user token: email %v, want Alice@Example.com", c[EmailClaim])
	}
	if got := strs(c[GroupsClaim]); !slices.Equal(got, []string{"finance", "eng"}) {
		t.Errorf("user token: groups %v, want [finance eng]", c[GroupsClaim])
	}
	if c["client_id"] != h.NativeClientID() {
		t.Errorf("user token: client_id %v, want %q", c["client_id"], h.NativeClientID())
	}
	if sub, _ := c["sub"].(string); !strings.HasPrefix(sub, "user-") {
		t.Errorf("user token: sub %v, want the directory's opaque subject", c["sub"])
	}
	if _, ok := c["ext"]; ok {
		t.Errorf("user token mirrors claims under ext: %v", c["ext"])
	}

	oldKid, _ := hdr["kid"].(string)
	newKid := h.RotateKeys(t)
	rotated := h.ClientCredentialsToken(t, []string{"mcp:tools"}, audience)
	hdr, _ = Decode(t, rotated)
	if hdr["kid"] != newKid || newKid == oldKid {
		t.Errorf("after the rotation a token names kid %v; want the new %q (the old was %q)", hdr["kid"], newKid, oldKid)
	}
	checkSignature(t, h, rotated)
	checkSignature(t, h, user) // the old key is still published

	h.SetTokenLifespan(t, 2*time.Second)
	short := h.ClientCredentialsToken(t, nil, audience)
	_, c = Decode(t, short)
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat > 3 || exp-iat < 1 {
		t.Errorf("after SetTokenLifespan(2s): exp-iat = %v, want 2", exp-iat)
	}

	if _, err := h.userToken(t, "mallory@example.com", []string{"openid"}, audience); err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Errorf("signing in a user not in the directory: got %v, want access_denied", err)
	}

	form := "grant_type=client_credentials&audience=https%3A%2F%2Fother.example.test"
	req, _ := http.NewRequest(http.MethodPost, h.PublicURL()+"/oauth2/token", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(h.MachineClientID(), h.MachineClientSecret())
	if _, err := h.token(req); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Errorf("a token for an audience the client may not ask for: got %v, want an audience error", err)
	}
}

func checkCommon(t *testing.T, h *Server, c map[string]any, scopes []string, ttl time.Duration) {
	t.Helper()
	if c["iss"] != h.Issuer() {
		t.Errorf("iss %v, want %q", c["iss"], h.Issuer())
	}
	if aud, _ := c["aud"].([]any); !slices.Contains(aud, any(audience)) {
		t.Errorf("aud %v, want it to hold %q", c["aud"], audience)
	}
	exp, _ := c["exp"].(float64)
	iat, _ := c["iat"].(float64)
	// Hydra sets exp from the request's start and iat when it signs (a
	// slow key generation, for the first token, comes between), each
	// truncated to the second.
	if life := time.Duration(exp-iat) * time.Second; life > ttl+time.Second || life < ttl-30*time.Second {
		t.Errorf("exp-iat = %v, want %v (less at most the time to sign)", life, ttl)
	}
	if now := float64(time.Now().Unix()); iat > now+5 || iat < now-300 {
		t.Errorf("iat %v is far from now %v", iat, now)
	}
	if got := strs(c["scp"]); !slices.Equal(got, scopes) {
		t.Errorf("scp %v, want %v", got, scopes)
	}
}

// checkSignature verifies an RS256 token against Hydra's published JWKS,
// with the standard library only.
func checkSignature(t *testing.T, h *Server, raw string) {
	t.Helper()
	hdr, _ := Decode(t, raw)
	if hdr["alg"] != "RS256" {
		t.Fatalf("token alg %v, want RS256", hdr["alg"])
	}
	var set struct {
		Keys []struct{ Kid, Kty, N, E string }
	}
	if err := h.getJSON(h.JWKSURL(), &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid != hdr["kid"] {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || k.Kty != "RSA" {
			t.Fatalf("JWKS key %s: kty %s, n %v, e %v", k.Kid, k.Kty, err1, err2)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		i := strings.LastIndexByte(raw, '.')
		sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(raw[:i]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("token signed by kid %s does not verify against the JWKS: %v", k.Kid, err)
		}
		return
	}
	t.Fatalf("the JWKS at %s has no key %v", h.JWKSURL(), hdr["kid"])
}

// strs is a JSON array of strings as decoded into an any.
func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}
