package gateway

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
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// testIssuer is an OpenID provider for the tests: a real HTTP server with a
// discovery document and a JWKS, and an RSA key that signs access tokens.
type testIssuer struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string
}

const testAudience = "https://gateway.example.com/mcp"

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &testIssuer{t: t, key: key, kid: "k1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		pub := iss.key.PublicKey
		writeJSON(w, 200, map[string]any{"keys": []map[string]any{{
			"kty": "RSA", "kid": iss.kid, "use": "sig", "alg": "RS256",
			"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// token signs claims (over defaults: iss, aud, sub, exp, scope) with RS256.
func (iss *testIssuer) token(claims map[string]any) string {
	iss.t.Helper()
	c := map[string]any{
		"iss": iss.srv.URL, "aud": testAudience, "sub": "00u-alice", "client_id": "ide-client",
		"exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix(), "scope": "openid mcp",
		"email": "Alice@Example.com",
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return iss.sign(map[string]any{"alg": "RS256", "kid": iss.kid, "typ": "at+jwt"}, c)
}

func (iss *testIssuer) sign(header, claims map[string]any) string {
	iss.t.Helper()
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(p)
	var sig []byte
	switch header["alg"] {
	case "RS256":
		sum := sha256.Sum256([]byte(input))
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, iss.key, crypto.SHA256, sum[:]); err != nil {
			iss.t.Fatal(err)
		}
	case "HS256":
		// The attack: the public key's bytes as an HMAC secret.
		der, _ := x509.MarshalPKIXPublicKey(&iss.key.PublicKey)
		m := hmac.New(sha256.New, der)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	}
	return input + "." + b64(sig)
}

// oauthPolicy is testPolicy with iss as an identity provider and a rule on
// a group only the provider's tokens name.
func oauthPolicy(iss *testIssuer) bundle.Policy {
	p := testPolicy()
	p.IdentityProviders = []bundle.IdentityProvider{{
		Name: "corp", Issuer: iss.srv.URL, Audience: testAudience, UserClaim: "email", GroupsClaim: "groups",
		RequiredScopes: []string{"mcp"}, AllowedAlgorithms: []string{"ES256", "RS256"},
	}}
	p.Groups = append(p.Groups, bundle.Group{Name: "contractors", Members: []string{"nobody@example.org"}})
	p.Rules = append([]bundle.Rule{{ID: "no-sums-for-contractors", Effect: bundle.Deny, Tools: []string{"tools/add"}, Groups: []string{"contractors"}, Reason: "contractors may not add"}}, p.Rules...)
	return p
}

// mcpCall posts one tools/call to /mcp with the headers hdr and returns the
// status, the WWW-Authenticate header and the body.
func (g *testGateway) mcpCall(hdr map[string]string, tool string, args map[string]any) (int, string, string) {
	g.t.Helper()
	body := map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": args}}
	h := map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: "2025-06-18"}
	for k, v := range hdr {
		h[k] = v
	}
	resp, data := g.send("POST", "/mcp", "", body, h)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(data)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// TestOAuthAccessTokens: /mcp takes access tokens of the bundle's identity
// providers; the end user and groups are the token's, nothing the client
// adds beside it; bad tokens get the RFC 6750 challenge.
func TestOAuthAccessTokens(t *testing.T) {
	iss := newTestIssuer(t)
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, oauthPolicy(iss))
	alice := iss.token(nil)

	// An allowed call, decided and recorded for the token's user.
	cs := g.mcpClient(alice, nil)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "tools_echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError {
		t.Fatalf("tools_echo with alice's access token: %v %+v", err, res)
	}
	recs, err := g.store.ListAudit(context.Background(), store.AuditFilter{Tool: "echo", Phase: store.PhaseRequest})
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit: %v %d", err, len(recs))
	}
	r := recs[len(recs)-1]
	if r.User != "alice@example.com" || r.UserSource != "access token" || r.AuthIssuer != iss.srv.URL || r.AuthSubject != "00u-alice" ||
		r.APIKeyID != "oauth:corp:00u-alice" || r.Service != "ide-client" || r.Agent != "ide-client" {
		t.Errorf("audit record = user %q source %q issuer %q subject %q key %q service %q agent %q; want alice@example.com from the access token of corp",
			r.User, r.UserSource, r.AuthIssuer, r.AuthSubject, r.APIKeyID, r.Service, r.Agent)
	}

	// Groups from the token join the config's: a contractor is denied.
	contractor := iss.token(map[string]any{"sub": "00u-carl", "email": "carl@example.com", "groups": []string{"contractors"}})
	if st, _, body := g.mcpCall(bearer(contractor), "tools_add", map[string]any{"a": 1, "b": 2}); st != 200 || !strings.Contains(body, "contractors may not add") {
		t.Errorf("tools_add as a contractor by the token's groups: %d %s; want the contractors' deny", st, body)
	}
	if st, _, body := g.mcpCall(bearer(alice), "tools_add", map[string]any{"a": 1, "b": 2}); st != 200 || strings.Contains(body, "isError\":true") || strings.Contains(body, "error") {
		t.Errorf("tools_add as alice (no groups): %d %s; want allowed", st, body)
	}
	// The hold on eve follows the token's user, not a header.
	eve := iss.token(map[string]any{"sub": "00u-eve", "email": "eve@example.com"})
	if st, _, body := g.mcpCall(bearer(eve), "tools_echo", map[string]any{"text": "x"}); st != 200 || !strings.Contains(body, "approval") {
		t.Errorf("tools_echo as eve: %d %s; want held", st, body)
	}

	for _, tt := range []struct {
		name       string
		hdr        map[string]string
		status     int
		challenge  string // in WWW-Authenticate
		bodySubstr string
	}{
		{"X-Armoriq-User naming another user beside a user's token", map[string]string{"Authorization": "Bearer " + alice, headerUser: "bob@example.com"}, 403, "", "the end user is the token's"},
		{"X-Armoriq-User naming the token's own user", map[string]string{"Authorization": "Bearer " + alice, headerUser: "alice@example.com"}, 200, "", ""},
		{"X-Armoriq-User with a machine token", map[string]string{"Authorization": "Bearer " + iss.token(map[string]any{"email": nil, "sub": "svc"}), headerUser: "bob@example.com"}, 403, "", "not accepted with an access token"},
		{"a token for another audience", bearer(iss.token(map[string]any{"aud": "https://other.example.com/mcp"})), 401, `error="invalid_token"`, ""},
		{"an expired token", bearer(iss.token(map[string]any{"exp": time.Now().Add(-10 * time.Minute).Unix()})), 401, `error="invalid_token"`, ""},
		{"a token without the required scope", bearer(iss.token(map[string]any{"scope": "openid"})), 403, `error="insufficient_scope", error_description=`, ""},
		{"a token of an unknown issuer", bearer(iss.token(map[string]any{"iss": "https://evil.example.com"})), 401, `error="invalid_token"`, ""},
		{"alg none", bearer(strings.TrimSuffix(iss.sign(map[string]any{"alg": "none", "kid": "k1"}, map[string]any{"iss": iss.srv.URL, "aud": testAudience, "sub": "x", "exp": time.Now().Add(time.Hour).Unix(), "scope": "mcp"}), "") + ""), 401, `error="invalid_token"`, ""},
		{"HS256 signed with the public key", bearer(iss.sign(map[string]any{"alg": "HS256", "kid": "k1"}, map[string]any{"iss": iss.srv.URL, "aud": testAudience, "sub": "x", "exp": time.Now().Add(time.Hour).Unix(), "scope": "mcp", "email": "mallory@example.com"})), 401, `error="invalid_token"`, ""},
		{"a forged signature", bearer(alice[:len(alice)-4] + "AAAA"), 401, `error="invalid_token"`, ""},
		{"a look-alike email in the token", bearer(iss.token(map[string]any{"email": "alice@exаmple.com"})), 401, `error="invalid_token"`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, wa, body := g.mcpCall(tt.hdr, "tools_echo", map[string]any{"text": "x"})
			if st != tt.status {
				t.Fatalf("status %d, want %d; body %s", st, tt.status, body)
			}
			if tt.challenge != "" && (!strings.Contains(wa, tt.challenge) || !strings.Contains(wa, `resource_metadata="`+g.http.URL+`/.well-known/oauth-protected-resource"`)) {
				t.Errorf("WWW-Authenticate = %q, want %s and the resource metadata", wa, tt.challenge)
			}
			if tt.status == 403 && strings.Contains(tt.challenge, "insufficient_scope") && !strings.Contains(wa, `scope="mcp"`) {
				t.Errorf("WWW-Authenticate = %q, want scope=\"mcp\"", wa)
			}
			if !strings.Contains(body, tt.bodySubstr) {
				t.Errorf("body %s, want %q", body, tt.bodySubstr)
			}
		})
	}

	// The protected-resource metadata points at the provider.
	var md struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		Scopes               []string `json:"scopes_supported"`
	}
	g.do("GET", "/.well-known/oauth-protected-resource", "", nil, 200, &md)
	if len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != iss.srv.URL || len(md.Scopes) != 1 || md.Scopes[0] != "mcp" || md.Resource != g.http.URL+"/mcp" {
		t.Errorf("protected-resource metadata = %+v", md)
	}

	// API keys keep working beside access tokens.
	if st, _, body := g.mcpCall(bearer(g.agentKey), "tools_echo", map[string]any{"text": "x"}); st != 200 || strings.Contains(body, `"error"`) {
		t.Errorf("tools_echo with an API key: %d %s", st, body)
	}

	// A checked token is remembered, but only until it expires: alice's
	// token (already used above) is refused once the clock passes its exp.
	short := iss.token(map[string]any{"exp": time.Now().Add(90 * time.Second).Unix()})
	if st, _, body := g.mcpCall(bearer(short), "tools_echo", map[string]any{"text": "x"}); st != 200 || strings.Contains(body, `"error"`) {
		t.Fatalf("a token valid for 90s: %d %s", st, body)
	}
	g.clock.advance(3 * time.Minute)
	if st, wa, _ := g.mcpCall(bearer(short), "tools_echo", map[string]any{"text": "x"}); st != 401 || !strings.Contains(wa, "invalid_token") {
		t.Errorf("the same token once expired (it was checked before): %d %q; want 401", st, wa)
	}
	g.clock.advance(-3 * time.Minute)

	// A bundle without the provider: its tokens are refused at once.
	g.pushBundle("rev2", 2, testPolicy())
	if st, wa, _ := g.mcpCall(bearer(alice), "tools_echo", map[string]any{"text": "x"}); st != 401 || !strings.Contains(wa, "invalid_token") {
		t.Errorf("alice's token after the provider was removed: %d %q; want 401 invalid_token", st, wa)
	}
	g.do("GET", "/.well-known/oauth-protected-resource", "", nil, 200, &md)
	if len(md.AuthorizationServers) != 0 {
		t.Errorf("metadata after the provider was removed lists %v", md.AuthorizationServers)
	}
}

// TestOAuthIntentTokens: an intent token asked for with a user's access
// token is bound to that user; a call through /invoke naming another user
// is refused.
func TestOAuthIntentTokens(t *testing.T) {
	iss := newTestIssuer(t)
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, oauthPolicy(iss))
	alice := iss.token(nil)
	step := map[string]any{"action": "echo", "mcp": "tools", "params": map[string]any{"text": "hi"}}
	ask := func(hdr map[string]string, user, email string) (int, map[string]any) {
		resp, data := g.send("POST", "/iap/sdk/token", "", map[string]any{
			"user_id": user, "user_email": email, "agent_id": "ide-client", "context_id": "default",
			"plan": map[string]any{"goal": "test", "steps": []any{step}}, "expires_in": 60.0,
		}, hdr)
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		return resp.StatusCode, out
	}
	if st, out := ask(bearer(alice), "", "bob@example.com"); st != 403 {
		t.Errorf("a token for bob asked with alice's access token: %d %v, want 403", st, out)
	}
	st, tok := ask(bearer(alice), "", "")
	if st != 200 {
		t.Fatalf("a token asked with alice's access token: %d %v", st, tok)
	}
	if id, _ := tok["composite_identity"].(string); !strings.HasSuffix(id, "|alice@example.com") {
		t.Errorf("composite identity %q, want alice's", id)
	}
	tok["plan_echo"] = map[string]any{"goal": "test", "steps": []any{step}}
	resp, out := g.sdkInvokeWith(bearer(alice), tok, "tools", "echo", map[string]any{"text": "hi", "user_email": "bob@example.com"}, nil)
	if resp.StatusCode == 200 {
		t.Errorf("/invoke naming bob with alice's token: 200 %v, want refused", out)
	}
	resp, out = g.sdkInvokeWith(bearer(alice), tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 200 {
		t.Errorf("/invoke as alice: %d %v", resp.StatusCode, out)
	}
	// The intent token is the access token's principal's: an API key
	// cannot use it.
	resp, _ = g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 401 {
		t.Errorf("/invoke of alice's intent token with an API key: %d, want 401", resp.StatusCode)
	}
}

// TestAssertUsers: X-Armoriq-User is taken only from keys created with
// assert_users, and the record says where the user came from.
func TestAssertUsers(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, testPolicy())
	plain := g.createKey("plain-agent", "agent")
	st, _, body := g.mcpCall(map[string]string{"Authorization": "Bearer " + plain, headerUser: "bob@example.com"}, "tools_echo", map[string]any{"text": "x"})
	if st != 403 || !strings.Contains(body, "--assert-users") {
		t.Errorf("X-Armoriq-User from a key without assert_users: %d %s; want 403 naming --assert-users", st, body)
	}
	if st, _, body := g.mcpCall(bearer(plain), "tools_echo", map[string]any{"text": "x"}); st != 200 || strings.Contains(body, `"error"`) {
		t.Errorf("the same key without the header: %d %s", st, body)
	}
	if st, _, body := g.mcpCall(map[string]string{"Authorization": "Bearer " + g.agentKey, headerUser: "bob@example.com"}, "tools_echo", map[string]any{"text": "x"}); st != 200 || strings.Contains(body, `"error"`) {
		t.Errorf("X-Armoriq-User from a key with assert_users: %d %s", st, body)
	}
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{User: "bob@example.com", Phase: store.PhaseRequest})
	if len(recs) != 1 || recs[0].UserSource != headerUser {
		t.Errorf("records for bob: %+v; want one, its user from %s", recs, headerUser)
	}
	g.do("POST", "/v1/keys", g.adminKey, map[string]any{"name": "v", "role": "viewer", "assert_users": true}, 400, nil)
}
