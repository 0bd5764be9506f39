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
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/identity/oauth/hydratest"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// The end-to-end tests of this file put a real OAuth 2.0 / OpenID Connect
// server, Ory Hydra (hydratest; they skip without it), in front of a real
// gateway, and real MCP clients in front of both: the official Go SDK and
// TypeScript SDK run the authorization themselves (a 401 from /mcp, the
// protected-resource metadata, Hydra's discovery document, the grant),
// as an IDE or an agent would.
//
// Hydra does not take RFC 8707's resource parameter: the audience of its
// tokens is what the client asks for in its own "audience" parameter (like
// Auth0). The clients here add it to the authorization URL and to the
// client credentials request, the one thing set up for this provider.

// oauthE2E is a gateway whose bundle trusts a Hydra.
type oauthE2E struct {
	t        *testing.T
	g        *testGateway
	h        *hydratest.Server
	resource string // the gateway's resource URI: the tokens' audience
}

// Skew and MinRefresh of the gateway's verifier here: the expiry test waits
// out the skew, the rotation test the refresh limit.
const (
	e2eSkew       = time.Second
	e2eMinRefresh = time.Second
)

func newOAuthE2E(t *testing.T) *oauthE2E {
	t.Helper()
	h := hydratest.Start(t, hydratest.Options{})
	g := newTestGateway(t, nil, func(c *Config) {
		c.OAuth.Skew = e2eSkew
		c.OAuth.MinRefresh = e2eMinRefresh
	})
	e := &oauthE2E{t: t, g: g, h: h, resource: g.http.URL + "/mcp"}
	g.pushBundle("rev1", 1, e.policy())
	h.Allow(t, []string{"mcp"}, e.resource)
	return e
}

// policy trusts Hydra for users and groups: everyone may echo and add,
// contractors may not add, only finance may pay. dana is in finance by
// the config, not by her token.
func (e *oauthE2E) policy() bundle.Policy {
	return bundle.Policy{
		IdentityProviders: []bundle.IdentityProvider{{
			Name: "corp", Issuer: e.h.Issuer(), Audience: e.resource,
			UserClaim: hydratest.EmailClaim, GroupsClaim: hydratest.GroupsClaim,
			RequiredScopes: []string{"mcp"}, AllowedAlgorithms: []string{"RS256"},
		}},
		Groups: []bundle.Group{
			{Name: "finance", Members: []string{"dana@example.com"}},
			{Name: "contractors", Members: []string{"nobody@example.org"}},
		},
		Rules: []bundle.Rule{
			{ID: "everyone-echoes", Effect: bundle.Allow, Tools: []string{"tools/echo", "tools/add"}},
			{ID: "finance-pays", Effect: bundle.Allow, Tools: []string{"tools/pay"}, Groups: []string{"finance"}},
			{ID: "no-sums-for-contractors", Effect: bundle.Deny, Tools: []string{"tools/add"}, Groups: []string{"contractors"}, Reason: "contractors may not add"},
		},
	}
}

// browse is the user's browser for an SDK's authorization URL: it names
// the user (login_hint, as a user types it) and the audience (for Hydra),
// and follows the sign-in to the redirect.
func (e *oauthE2E) browse(ctx context.Context, authURL, email string) (url.Values, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(authURL, e.h.PublicURL()+"/") {
		return nil, fmt.Errorf("the SDK sent the browser to %s, not to Hydra", u.Redacted())
	}
	q := u.Query()
	q.Set("login_hint", email)
	q.Set("audience", q.Get("resource"))
	u.RawQuery = q.Encode()
	got, err := e.h.Browse(ctx, u.String())
	if err != nil {
		return nil, err
	}
	if got.Get("error") != "" {
		return nil, fmt.Errorf("authorization refused: %s: %s", got.Get("error"), got.Get("error_description"))
	}
	return got, nil
}

// goUser connects the Go SDK as a person: the SDK meets the gateway's 401,
// finds Hydra through the protected-resource metadata and runs the
// authorization code flow with PKCE as the native client; the user signs
// in with the groups Hydra's directory gives them. authURL receives the
// authorization URL the SDK built.
func (e *oauthE2E) goUser(email string, groups []string, authURL *string) (*mcp.ClientSession, error) {
	e.t.Helper()
	e.h.AddUser(email, groups)
	handler, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		PreregisteredClient: &oauthex.ClientCredentials{ClientID: e.h.NativeClientID(), Issuer: e.h.Issuer()},
		RedirectURL:         e.h.RedirectURI(),
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			if authURL != nil {
				*authURL = args.URL
			}
			got, err := e.browse(ctx, args.URL, email)
			if err != nil {
				return nil, err
			}
			return &auth.AuthorizationResult{Code: got.Get("code"), State: got.Get("state"), Iss: got.Get("iss")}, nil
		},
	})
	if err != nil {
		e.t.Fatalf("NewAuthorizationCodeHandler: %v", err)
	}
	return e.connect(&mcp.StreamableClientTransport{Endpoint: e.resource, OAuthHandler: handler, DisableStandaloneSSE: true})
}

// goMachine connects the Go SDK as a machine client: the SDK meets the
// 401 and runs the client credentials grant. The Go SDK authenticates
// with client_secret_post, which Hydra holds a client to.
func (e *oauthE2E) goMachine() (*mcp.ClientSession, string, error) {
	e.t.Helper()
	id, secret := e.h.AddMachineClient(e.t, "client_secret_post", []string{"mcp"}, e.resource)
	handler, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
		Credentials: &oauthex.ClientCredentials{
			ClientID:         id,
			ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: secret},
			Issuer:           e.h.Issuer(),
		},
		HTTPClient: &http.Client{Transport: audienceRT{tokenURL: e.h.PublicURL() + "/oauth2/token", audience: e.resource}},
	})
	if err != nil {
		e.t.Fatalf("NewClientCredentialsHandler: %v", err)
	}
	cs, err := e.connect(&mcp.StreamableClientTransport{Endpoint: e.resource, OAuthHandler: handler, DisableStandaloneSSE: true})
	return cs, id, err
}

// goBearer connects the Go SDK with a token the test got itself.
func (e *oauthE2E) goBearer(token string) (*mcp.ClientSession, error) {
	e.t.Helper()
	hc := &http.Client{Transport: headerRT{map[string]string{"Authorization": "Bearer " + token}, http.DefaultTransport}}
	return e.connect(&mcp.StreamableClientTransport{Endpoint: e.resource, HTTPClient: hc, DisableStandaloneSSE: true})
}

func (e *oauthE2E) connect(tr *mcp.StreamableClientTransport) (*mcp.ClientSession, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "oauth-e2e", Version: "1"}, nil).Connect(ctx, tr, nil)
	if err == nil {
		e.t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

// audienceRT adds Hydra's audience parameter to client credentials
// requests at its token endpoint.
type audienceRT struct{ tokenURL, audience string }

func (a audienceRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.URL.String() == a.tokenURL && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		form.Set("audience", a.audience)
		enc := form.Encode()
		r = r.Clone(r.Context())
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader(enc)), int64(len(enc))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// call calls a tool and returns its text, or the error (a policy block is
// a JSON-RPC error naming the reason).
func call(cs *mcp.ClientSession, tool string, args map[string]any) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	if res.IsError {
		return "", errors.New("tool error: " + text.String())
	}
	return text.String(), nil
}

// TestHydraGoSDK: the Go SDK signs a person and a machine in at Hydra by
// itself and calls tools through /mcp; the policy decides on the token's
// user and groups (joined with the config's), the audit names the
// provider's subject; tokens for another audience, expired, forged or of
// another issuer are refused with 401; a key rotated at Hydra is taken up
// by the running gateway.
func TestHydraGoSDK(t *testing.T) {
	e := newOAuthE2E(t)
	g, h := e.g, e.h

	var authURL string
	alice, err := e.goUser("Alice@Example.com", []string{"finance"}, &authURL)
	if err != nil {
		t.Fatalf("alice signing in through the Go SDK: %v", err)
	}
	if q := mustQuery(t, authURL); q.Get("code_challenge_method") != "S256" || q.Get("resource") != e.resource || q.Get("scope") != "mcp" {
		t.Errorf("the Go SDK's authorization URL %s: want PKCE S256, resource %s and scope mcp (from the protected-resource metadata)", authURL, e.resource)
	}
	bob, err := e.goUser("bob@example.com", []string{"eng"}, nil)
	if err != nil {
		t.Fatalf("bob signing in: %v", err)
	}
	carl, err := e.goUser("carl@example.com", []string{"contractors"}, nil)
	if err != nil {
		t.Fatalf("carl signing in: %v", err)
	}
	dana, err := e.goUser("dana@example.com", nil, nil)
	if err != nil {
		t.Fatalf("dana signing in: %v", err)
	}
	machine, machineID, err := e.goMachine()
	if err != nil {
		t.Fatalf("the machine client through client credentials: %v", err)
	}

	for _, tc := range []struct {
		who     string
		cs      *mcp.ClientSession
		tool    string
		args    map[string]any
		want    string // the tool's text, or
		blocked string // the reason of the policy's block
	}{
		{"alice", alice, "tools_echo", map[string]any{"text": "hi"}, "echo: hi", ""},
		{"alice (finance by her token)", alice, "tools_pay", map[string]any{"amount": 5}, "paid 5", ""},
		{"bob (eng)", bob, "tools_pay", map[string]any{"amount": 5}, "", "blocked by policy"},
		{"bob", bob, "tools_add", map[string]any{"a": 1, "b": 2}, "3", ""},
		{"carl (contractors by his token)", carl, "tools_add", map[string]any{"a": 1, "b": 2}, "", "contractors may not add"},
		{"dana (finance by the config)", dana, "tools_pay", map[string]any{"amount": 7}, "paid 7", ""},
		{"the machine", machine, "tools_echo", map[string]any{"text": "m"}, "echo: m", ""},
		{"the machine (no user, no group)", machine, "tools_pay", map[string]any{"amount": 1}, "", "blocked by policy"},
	} {
		got, err := call(tc.cs, tc.tool, tc.args)
		switch {
		case tc.blocked != "" && (err == nil || !strings.Contains(err.Error(), tc.blocked)):
			t.Errorf("%s calling %s: %q, %v; want blocked: %s", tc.who, tc.tool, got, err, tc.blocked)
		case tc.blocked == "" && (err != nil || got != tc.want):
			t.Errorf("%s calling %s: %q, %v; want %q", tc.who, tc.tool, got, err, tc.want)
		}
	}

	// The audit names the provider's subject and the user from the token.
	recs, err := g.store.ListAudit(context.Background(), store.AuditFilter{Tool: "pay"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]store.AuditRecord{} // the call's first record (a blocked call has only a decision)
	for _, r := range recs {
		if r.Phase == store.PhaseRequest || r.Phase == store.PhaseDecision {
			seen[r.User+"|"+r.Service] = r
		}
	}
	if r, ok := seen["alice@example.com|"+h.NativeClientID()]; !ok || r.UserSource != sourceAccessToken || r.AuthIssuer != h.Issuer() || !strings.HasPrefix(r.AuthSubject, "user-") {
		t.Errorf("alice's pay record: %+v (found %v); want her user from the access token of %s with her subject", r, ok, h.Issuer())
	}
	// A machine's token names no user: the record's user is the client.
	if r, ok := seen[machineID+"|"+machineID]; !ok || r.AuthSubject != machineID || r.AuthIssuer != h.Issuer() || r.Decision != store.Blocked || r.UserSource != sourceAccessTokenClient {
		t.Errorf("the machine's pay record: %+v (found %v); want the client as service, user and subject, its user from %q, blocked", r, ok, sourceAccessTokenClient)
	}

	// Refused tokens: 401 before any session.
	realTok := h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, e.resource)
	forged := forgeTokens(t, h, realTok)
	other := hydratest.Start(t, hydratest.Options{})
	other.Allow(t, []string{"mcp"}, e.resource)
	for _, tc := range []struct{ what, token string }{
		{"a token for another audience", h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, "https://other.example.test/mcp")},
		{"a token without the mcp scope", h.ClientCredentialsToken(t, []string{"read"}, e.resource)},
		{"a token of another Hydra", other.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, e.resource)},
		{"alg none", forged.none},
		{"HS256 keyed with Hydra's public key", forged.hs256},
		{"signed by another key under Hydra's kid", forged.otherKey},
	} {
		if _, err := e.goBearer(tc.token); err == nil || !strings.Contains(err.Error(), "Unauthorized") && !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("%s: connecting gave %v; want 401 Unauthorized (403 for the scope)", tc.what, err)
		}
	}
	if _, err := e.goBearer(realTok); err != nil {
		t.Errorf("the real token the forgeries were made from: %v", err)
	}

	// Rotation at Hydra: a new sign-in gets a token under the new key, and
	// the running gateway takes it; sessions under the old key go on.
	kid := h.RotateKeys(t)
	time.Sleep(e2eMinRefresh)
	alice2, err := e.goUser("alice@example.com", []string{"finance"}, nil)
	if err != nil {
		t.Fatalf("alice signing in after the key rotation (kid %s): %v", kid, err)
	}
	if got, err := call(alice2, "tools_pay", map[string]any{"amount": 9}); err != nil || got != "paid 9" {
		t.Errorf("alice after the rotation: %q, %v", got, err)
	}
	if got, err := call(alice, "tools_echo", map[string]any{"text": "old"}); err != nil || got != "echo: old" {
		t.Errorf("alice's session from before the rotation: %q, %v", got, err)
	}
	if hdr, _ := hydratest.Decode(t, h.UserToken(t, "alice@example.com", nil, []string{"mcp"}, e.resource)); hdr["kid"] != kid {
		t.Errorf("Hydra signs with kid %v after the rotation, want %s", hdr["kid"], kid)
	}

	// Expiry: a short-lived token works, then is refused once its exp
	// (plus the gateway's skew) has passed, even in a session it opened.
	h.SetTokenLifespan(t, 3*time.Second)
	short := h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, e.resource)
	h.SetTokenLifespan(t, time.Hour)
	_, claims := hydratest.Decode(t, short)
	exp := time.Unix(int64(claims["exp"].(float64)), 0)
	sess, err := e.goBearer(short)
	if err != nil && time.Now().Before(exp) {
		t.Fatalf("a 3 s token before its exp: %v", err)
	}
	time.Sleep(time.Until(exp.Add(e2eSkew + 1100*time.Millisecond)))
	if sess != nil {
		if _, err := call(sess, "tools_echo", map[string]any{"text": "late"}); err == nil {
			t.Errorf("a call in a session whose token expired succeeded")
		}
	}
	if _, err := e.goBearer(short); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("an expired token: connecting gave %v; want 401", err)
	}
}

// forgedTokens are tokens made from a real one without Hydra's private
// key, claiming to be the CEO.
type forgedTokens struct{ none, hs256, otherKey string }

func forgeTokens(t *testing.T, h *hydratest.Server, real string) forgedTokens {
	t.Helper()
	hdr, claims := hydratest.Decode(t, real)
	claims["email"], claims["groups"] = "ceo@example.com", []string{"finance"}
	kid, _ := hdr["kid"].(string)

	resp, err := http.Get(h.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []struct{ Kid, N, E string } }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var pub *rsa.PublicKey
	for _, k := range set.Keys {
		if k.Kid == kid {
			n, _ := base64.RawURLEncoding.DecodeString(k.N)
			e, _ := base64.RawURLEncoding.DecodeString(k.E)
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		}
	}
	if pub == nil {
		t.Fatalf("Hydra's JWKS has no key %s", kid)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	seg := func(v any) string { b, _ := json.Marshal(v); return b64(b) }
	input := func(alg string) string {
		return seg(map[string]any{"alg": alg, "kid": kid, "typ": "JWT"}) + "." + seg(claims)
	}
	mac := hmac.New(sha256.New, pemKey)
	mac.Write([]byte(input("HS256")))
	sum := sha256.Sum256([]byte(input("RS256")))
	sig, err := rsa.SignPKCS1v15(rand.Reader, other, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return forgedTokens{
		none:     input("none") + ".",
		hs256:    input("HS256") + "." + b64(mac.Sum(nil)),
		otherKey: input("RS256") + "." + b64(sig),
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	return u.Query()
}

// tsScenario is one thing testdata/mcp-sdk-e2e/oauth.js does.
type tsScenario struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"` // user, machine or bearer
	Email string   `json:"email,omitempty"`
	Token string   `json:"token,omitempty"`
	Calls []tsCall `json:"calls,omitempty"`
}

type tsCall struct {
	Tool string         `json:"tool"`
	Args map[string]any `json:"args"`
}

// runTS runs oauth.js with the official MCP TypeScript SDK and returns its
// RESULT lines by scenario. It skips without Node or the installed SDK.
func (e *oauthE2E) runTS(scenarios ...tsScenario) map[string]map[string]any {
	t := e.t
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the MCP TypeScript SDK test needs Node.js (.ci/run installs it)")
	}
	dir, _ := filepath.Abs("testdata/mcp-sdk-e2e")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Skip("@modelcontextprotocol/sdk is not installed: run `npm install` in runtime/gateway/testdata/mcp-sdk-e2e (.ci/run does)")
	}
	js, _ := json.Marshal(scenarios)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "oauth.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GATEWAY_URL="+e.g.http.URL, "ISSUER="+e.h.Issuer(), "SCENARIOS="+string(js),
		"NATIVE_CLIENT_ID="+e.h.NativeClientID(), "REDIRECT_URI="+e.h.RedirectURI(),
		"MACHINE_CLIENT_ID="+e.h.MachineClientID(), "MACHINE_CLIENT_SECRET="+e.h.MachineClientSecret())
	return nodeResults(t, cmd, "oauth.js")
}

// TestHydraTypeScriptSDK: the official MCP TypeScript SDK client signs a
// person in (authorization code with PKCE, found through the gateway's
// protected-resource metadata) and a machine (client credentials) at
// Hydra, and calls tools through /mcp: allowed and blocked by the token's
// groups; tokens for another audience, without the scope, forged or
// expired are refused; after a key rotation at Hydra a new sign-in works
// against the same gateway.
func TestHydraTypeScriptSDK(t *testing.T) {
	e := newOAuthE2E(t)
	h := e.h
	h.Allow(t, []string{"mcp"}, e.resource)
	echo := tsCall{"tools_echo", map[string]any{"text": "ts"}}
	pay := tsCall{"tools_pay", map[string]any{"amount": 3}}
	add := tsCall{"tools_add", map[string]any{"a": 2, "b": 3}}
	h.AddUser("alice@example.com", []string{"finance"})
	h.AddUser("bob@example.com", []string{"eng"})
	h.AddUser("carl@example.com", []string{"contractors"})
	realTok := h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, e.resource)
	forged := forgeTokens(t, h, realTok)

	res := e.runTS(
		tsScenario{Name: "alice", Kind: "user", Email: "alice@example.com", Calls: []tsCall{echo, pay}},
		tsScenario{Name: "bob", Kind: "user", Email: "bob@example.com", Calls: []tsCall{pay, add}},
		tsScenario{Name: "carl", Kind: "user", Email: "carl@example.com", Calls: []tsCall{add}},
		tsScenario{Name: "machine", Kind: "machine", Calls: []tsCall{echo, pay}},
		tsScenario{Name: "other-audience", Kind: "bearer", Token: h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, "https://other.example.test/mcp")},
		tsScenario{Name: "no-scope", Kind: "bearer", Token: h.ClientCredentialsToken(t, []string{"read"}, e.resource)},
		tsScenario{Name: "alg-none", Kind: "bearer", Token: forged.none},
		tsScenario{Name: "hs256-public-key", Kind: "bearer", Token: forged.hs256},
		tsScenario{Name: "other-key", Kind: "bearer", Token: forged.otherKey},
		tsScenario{Name: "real-bearer", Kind: "bearer", Token: realTok, Calls: []tsCall{pay}},
	)
	if r := res["alice"]; r["ok"] != true || r["authorizationEndpoint"] != h.PublicURL()+"/oauth2/auth" || r["resource"] != e.resource || r["scope"] != "mcp" || r["codeChallengeMethod"] != "S256" {
		t.Errorf("alice's sign-in through the TypeScript SDK: %v; want Hydra's authorization endpoint found by discovery, resource %s, scope mcp, PKCE S256", r, e.resource)
	}
	okText := func(scenario, want string) {
		t.Helper()
		if r := res[scenario]; r["ok"] != true || r["text"] != want {
			t.Errorf("%s: %v; want %q", scenario, r, want)
		}
	}
	blocked := func(scenario, reason string) {
		t.Helper()
		if r := res[scenario]; r["ok"] != false || r["code"] != float64(codeBlocked) || !strings.Contains(fmt.Sprint(r["message"]), reason) {
			t.Errorf("%s: %v; want blocked by policy (%d): %s", scenario, r, codeBlocked, reason)
		}
	}
	refused := func(scenario string, status int, why string) {
		t.Helper()
		if r := res[scenario]; r["ok"] != false || r["code"] != float64(status) || !strings.Contains(fmt.Sprint(r["message"]), why) {
			t.Errorf("%s: %v; want the connection refused with HTTP %d: %s", scenario, r, status, why)
		}
	}
	okText("alice/tools_echo", "echo: ts")
	okText("alice/tools_pay", "paid 3")
	blocked("bob/tools_pay", "blocked by policy")
	okText("bob/tools_add", "5")
	blocked("carl/tools_add", "contractors may not add")
	okText("machine/tools_echo", "echo: ts")
	blocked("machine/tools_pay", "blocked by policy")
	okText("real-bearer/tools_pay", "paid 3")
	refused("other-audience", 401, "audience")
	refused("no-scope", 403, "lacks the scope mcp")
	refused("alg-none", 401, "algorithm")
	refused("hs256-public-key", 401, "algorithm")
	refused("other-key", 401, "signature")

	// A key rotated at Hydra: a new sign-in gets a token under it, and
	// the gateway (not restarted) takes it.
	kid := h.RotateKeys(t)
	time.Sleep(e2eMinRefresh)
	h.SetTokenLifespan(t, 3*time.Second)
	short := h.UserToken(t, "alice@example.com", []string{"finance"}, []string{"mcp"}, e.resource)
	h.SetTokenLifespan(t, time.Hour)
	res = e.runTS(tsScenario{Name: "alice-after-rotation", Kind: "user", Email: "alice@example.com", Calls: []tsCall{pay}})
	if r := res["alice-after-rotation"]; r["ok"] != true || r["kid"] != kid {
		t.Errorf("alice signing in after the rotation: %v; want a token under the new kid %s", r, kid)
	}
	okText("alice-after-rotation/tools_pay", "paid 3")

	// An expired token (past exp and the gateway's skew) is refused.
	_, claims := hydratest.Decode(t, short)
	time.Sleep(time.Until(time.Unix(int64(claims["exp"].(float64)), 0).Add(e2eSkew + 1100*time.Millisecond)))
	res = e.runTS(tsScenario{Name: "expired", Kind: "bearer", Token: short, Calls: []tsCall{echo}})
	refused("expired", 401, "expired")
}
