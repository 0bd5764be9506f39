// Package hydratest runs a real OAuth 2.0 / OpenID Connect server, Ory
// Hydra v2.3.0, for tests: `hydra serve all --dev` on free loopback ports
// with an in-memory store, issuing JWT access tokens whose issuer is its
// public URL. It gets tokens the way real clients do: a confidential
// client by the client_credentials grant, and a person by the
// authorization code grant with PKCE through a small login and consent
// app (this package's, standing in for the company's sign-in page), which
// puts the user's email and groups into the access token as top-level
// claims.
//
// Hydra is a separate program, built by .ci/run into the tools cache; a
// test that calls Start skips, saying so, when it is not installed.
package hydratest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the Hydra release the harness is written against.
const Version = "v2.3.0"

// EnvBinary names the environment variable giving the hydra binary's path.
const EnvBinary = "ARMORIQ_TEST_HYDRA"

// The JSON Web Key Sets Hydra signs JWT access tokens and ID tokens with.
const (
	AccessTokenKeySet = "hydra.jwt.access-token"
	IDTokenKeySet     = "hydra.openid.id-token"
)

// Claims Hydra is configured to put at the top level of an access token
// (oauth2.allowed_top_level_claims): the login app sets them from the
// user's directory entry.
const (
	EmailClaim  = "email"
	GroupsClaim = "groups"
)

// Binary returns the path of the hydra binary: $ARMORIQ_TEST_HYDRA, else
// where .ci/run builds it. It skips the test when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	p := os.Getenv(EnvBinary)
	if p == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		p = filepath.Join(cache, "armoriq-tools", "hydra-"+Version, "hydra")
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		t.Skipf("Ory Hydra not installed: run .ci/run or set %s (looked for %s)", EnvBinary, p)
	}
	return p
}

// Options configure a Server. The zero value is usable.
type Options struct {
	// AccessTokenTTL is how long access tokens live (ttl.access_token);
	// default one hour. SetTokenLifespan changes it for the harness's
	// clients while Hydra runs.
	AccessTokenTTL time.Duration
}

// Server is a running Hydra with its login and consent app. Its methods
// are safe for concurrent use.
type Server struct {
	issuer   string // as Hydra's discovery document states it
	public   string // public URL, no trailing slash
	admin    string // admin URL, no trailing slash
	app      *httptest.Server
	callback *httptest.Server
	http     *http.Client

	mu      sync.Mutex
	users   map[string]User // the directory, by email
	machine *client         // confidential, client_credentials
	native  *client         // public, authorization_code with PKCE
	kids    int             // keys created by RotateKeys
}

// User is a person in the login app's directory.
type User struct {
	Subject string   `json:"subject"` // the token's "sub": opaque, as real providers make it
	Email   string   `json:"email"`   // the "email" claim
	Groups  []string `json:"groups"`  // the "groups" claim
}

// client is an OAuth client registered at Hydra, with the scopes and
// audiences it may ask for so far.
type client struct {
	ID, Secret string
	scopes     []string
	audiences  []string
}

// Start runs Hydra and its login and consent app until the test ends,
// waiting until Hydra is ready. It skips the test when Hydra is not
// installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{
		users: map[string]User{},
		http:  &http.Client{Timeout: 30 * time.Second},
	}
	s.app = httptest.NewServer(http.HandlerFunc(s.serveApp))
	t.Cleanup(s.app.Close)
	s.callback = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "signed in; you may close this window\n")
	}))
	t.Cleanup(s.callback.Close)

	// Hydra binds its ports itself: pick free ones, and try again with
	// others if one was taken in between.
	for attempt := 1; ; attempt++ {
		err := s.run(t, bin, opts)
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errPortTaken) {
			t.Fatalf("starting Ory Hydra: %v", err)
		}
	}

	s.machine = s.createClient(t, map[string]any{
		"client_name":                "armoriq test machine client",
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	s.native = s.createClient(t, map[string]any{
		"client_name":                "armoriq test native app",
		"grant_types":                []string{"authorization_code"},
		"response_types":             []string{"code"},
		"redirect_uris":              []string{s.callback.URL + "/callback"},
		"token_endpoint_auth_method": "none",
	})
	return s
}

// run starts one Hydra process and waits until it is ready or gone.
func (s *Server) run(t testing.TB, bin string, opts Options) error {
	t.Helper()
	publicPort, err := freePort()
	if err != nil {
		return err
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	ttl := opts.AccessTokenTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	public := "http://127.0.0.1:" + publicPort
	secret := make([]byte, 32)
	rand.Read(secret)
	config := fmt.Sprintf(configTemplate, publicPort, adminPort, public, public,
		s.app.URL+"/login", s.app.URL+"/consent", s.app.URL+"/error",
		hex.EncodeToString(secret), ttl)
	dir := t.TempDir()
	file := filepath.Join(dir, "hydra.yaml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "all", "--dev", "--sqa-opt-out", "--config", file)
	// Hydra reads its settings from the environment too (DSN, URLS_...):
	// give it none of the caller's.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir}
	cmd.Dir = dir
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("running %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() { cancel(); <-exited }

	s.public, s.admin = public, "http://127.0.0.1:"+adminPort
	deadline := time.Now().Add(90 * time.Second)
	for {
		if s.ready() {
			break
		}
		select {
		case <-exited:
			cancel()
			if strings.Contains(out.tail(), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("hydra exited before it was ready (%v); its output:\n%s", cmd.ProcessState, out.tail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("hydra was not ready after 90 s; its output:\n%s", out.tail())
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("Ory Hydra's output:\n%s", out.tail())
		}
	})

	// Hydra makes its signing keys on first use: RSA 4096, which on a
	// loaded machine takes longer than its 10 s write timeout, so the
	// request that made it fails (and the client retries it, using a
	// login or consent verifier twice). Give it RSA 2048 keys now.
	for _, set := range []string{IDTokenKeySet, AccessTokenKeySet} {
		jwk, err := newRSAKey(set + "-" + randomString(6))
		if err != nil {
			return err
		}
		body := map[string]any{"keys": []any{jwk}}
		if err := s.adminJSON(http.MethodPut, "/admin/keys/"+set, body, nil); err != nil {
			return fmt.Errorf("setting Hydra's key set %s: %w", set, err)
		}
	}

	var discovery struct {
		Issuer string `json:"issuer"`
	}
	if err := s.getJSON(s.public+"/.well-known/openid-configuration", &discovery); err != nil {
		return err
	}
	s.issuer = discovery.Issuer
	return nil
}

// errPortTaken is a start that failed because another process took one
// of the free ports first.
var errPortTaken = errors.New("a port Hydra was to listen on was taken")

// configTemplate is Hydra's configuration. The "sqlite" build tag makes
// dsn "memory" an in-memory SQLite database.
const configTemplate = `dsn: memory
serve:
  public:
    host: 127.0.0.1
    port: %s
  admin:
    host: 127.0.0.1
    port: %s
urls:
  self:
    issuer: %s
    public: %s
  login: %s
  consent: %s
  error: %s
secrets:
  system:
    - %s
strategies:
  access_token: jwt
oauth2:
  # email and groups are put at the top level of access tokens, where
  # identity providers put them, and not mirrored under "ext".
  allowed_top_level_claims: [email, groups]
  mirror_top_level_claims: false
  pkce:
    enforced_for_public_clients: true
ttl:
  access_token: %s
log:
  level: warn
  leak_sensitive_values: false
`

func (s *Server) ready() bool {
	for _, u := range []string{s.admin + "/health/ready", s.public + "/health/ready"} {
		resp, err := s.http.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
	}
	return true
}

// Issuer is the issuer of Hydra's tokens ("iss"), the base of its
// discovery document.
func (s *Server) Issuer() string { return s.issuer }

// PublicURL is Hydra's public URL (token, authorization, JWKS endpoints).
func (s *Server) PublicURL() string { return s.public }

// AdminURL is Hydra's admin API.
func (s *Server) AdminURL() string { return s.admin }

// JWKSURL is where Hydra publishes the keys that verify its tokens.
func (s *Server) JWKSURL() string { return s.public + "/.well-known/jwks.json" }

// MachineClientID is the client_id of the confidential client that
// ClientCredentialsToken uses.
func (s *Server) MachineClientID() string { return s.machine.ID }

// MachineClientSecret is that client's secret, for a test that asks for
// a token itself.
func (s *Server) MachineClientSecret() string { return s.machine.Secret }

// NativeClientID is the client_id of the public client (authorization
// code with PKCE) that UserToken uses.
func (s *Server) NativeClientID() string { return s.native.ID }

// RedirectURI is the native client's registered redirect URI, on a
// loopback listener (RFC 8252).
func (s *Server) RedirectURI() string { return s.callback.URL + "/callback" }

// createClient registers an OAuth client through the admin API.
func (s *Server) createClient(t testing.TB, body map[string]any) *client {
	t.Helper()
	body["scope"] = ""
	body["audience"] = []string{}
	var got struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := s.adminJSON(http.MethodPost, "/admin/clients", body, &got); err != nil {
		t.Fatalf("creating an OAuth client at Hydra: %v", err)
	}
	return &client{ID: got.ID, Secret: got.Secret}
}

// AddMachineClient registers another confidential client for the client
// credentials grant, authenticating with authMethod at the token endpoint
// ("client_secret_basic" or "client_secret_post": Hydra holds a client to
// one), allowed the scopes and the audience. It returns its id and secret.
func (s *Server) AddMachineClient(t testing.TB, authMethod string, scopes []string, audience string) (id, secret string) {
	t.Helper()
	c := s.createClient(t, map[string]any{
		"client_name":                "armoriq test machine client (" + authMethod + ")",
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{},
		"token_endpoint_auth_method": authMethod,
	})
	s.allow(t, c, scopes, audience)
	return c.ID, c.Secret
}

// Allow lets both clients ask for the scopes and the audience, for a
// client that runs the grant itself (an MCP SDK's OAuth support).
func (s *Server) Allow(t testing.TB, scopes []string, audience string) {
	t.Helper()
	s.allow(t, s.machine, scopes, audience)
	s.allow(t, s.native, scopes, audience)
}

// allow makes sure c may ask for the scopes and the audience.
func (s *Server) allow(t testing.TB, c *client, scopes []string, audience string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, sc := range scopes {
		if !slices.Contains(c.scopes, sc) {
			c.scopes = append(c.scopes, sc)
			changed = true
		}
	}
	if audience != "" && !slices.Contains(c.audiences, audience) {
		c.audiences = append(c.audiences, audience)
		changed = true
	}
	if !changed {
		return
	}
	patch := []map[string]any{
		{"op": "replace", "path": "/scope", "value": strings.Join(c.scopes, " ")},
		{"op": "replace", "path": "/audience", "value": c.audiences},
	}
	if err := s.adminJSON(http.MethodPatch, "/admin/clients/"+url.PathEscape(c.ID), patch, nil); err != nil {
		t.Fatalf("allowing client %s scopes %q and audience %q: %v", c.ID, scopes, audience, err)
	}
}

// SetTokenLifespan makes the access tokens issued from now on to the
// harness's clients live d (rounded down to whole seconds by Hydra's
// "exp"), to test expiry without waiting an hour.
func (s *Server) SetTokenLifespan(t testing.TB, d time.Duration) {
	t.Helper()
	body := map[string]any{
		"client_credentials_grant_access_token_lifespan": d.String(),
		"authorization_code_grant_access_token_lifespan": d.String(),
	}
	for _, c := range []*client{s.machine, s.native} {
		if err := s.adminJSON(http.MethodPut, "/admin/clients/"+url.PathEscape(c.ID)+"/lifespans", body, nil); err != nil {
			t.Fatalf("setting the token lifespan of client %s: %v", c.ID, err)
		}
	}
}

// ClientCredentialsToken gets an access token for the machine client by
// the client_credentials grant, with the scopes and (unless empty) the
// audience. The client is allowed them first.
func (s *Server) ClientCredentialsToken(t testing.TB, scopes []string, audience string) string {
	t.Helper()
	s.allow(t, s.machine, scopes, audience)
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if audience != "" {
		form.Set("audience", audience)
	}
	req, err := http.NewRequest(http.MethodPost, s.public+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(s.machine.ID), url.QueryEscape(s.machine.Secret))
	tok, err := s.token(req)
	if err != nil {
		t.Fatalf("client credentials grant (scopes %q, audience %q): %v", scopes, audience, err)
	}
	return tok
}

// AddUser puts a person into the login app's directory (or updates
// them) and returns their entry. The subject is derived from the email,
// so it is stable across calls.
func (s *Server) AddUser(email string, groups []string) User {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	u := User{Subject: "user-" + hex.EncodeToString(sum[:8]), Email: email, Groups: slices.Clone(groups)}
	s.mu.Lock()
	s.users[email] = u
	s.mu.Unlock()
	return u
}

// UserToken signs the person in through the whole authorization code
// flow with PKCE, as a native app does: the authorization request with
// login_hint, Hydra's redirect to the login app (which accepts the
// user from its directory) and to the consent app (which grants the
// requested scopes and audience and puts email and groups into the
// access token), the redirect to the app's loopback URI with the code,
// and the code exchanged with the verifier. The user is added to the
// directory with the groups first. It returns the access token.
func (s *Server) UserToken(t testing.TB, email string, groups, scopes []string, audience string) string {
	t.Helper()
	return s.SignIn(t, email, groups, scopes, audience).Access
}

// Tokens are what the token endpoint answers a sign-in with.
type Tokens struct {
	Access string // the JWT access token
	ID     string // the OpenID Connect ID token, when "openid" was asked
}

// SignIn is UserToken returning the ID token too.
func (s *Server) SignIn(t testing.TB, email string, groups, scopes []string, audience string) Tokens {
	t.Helper()
	s.AddUser(email, groups)
	tok, err := s.userToken(t, email, scopes, audience)
	if err != nil {
		t.Fatalf("signing in %s (scopes %q, audience %q): %v", email, scopes, audience, err)
	}
	return tok
}

func (s *Server) userToken(t testing.TB, email string, scopes []string, audience string) (Tokens, error) {
	t.Helper()
	s.allow(t, s.native, scopes, audience)
	verifier := randomString(32)
	challenge := sha256.Sum256([]byte(verifier))
	state := randomString(16)
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {s.native.ID},
		"redirect_uri":          {s.RedirectURI()},
		"scope":                 {strings.Join(scopes, " ")},
		"state":                 {state},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
		"login_hint":            {email},
	}
	if audience != "" {
		q.Set("audience", audience)
	}

	got, err := s.Browse(context.Background(), s.public+"/oauth2/auth?"+q.Encode())
	if err != nil {
		return Tokens{}, err
	}
	if e := got.Get("error"); e != "" {
		return Tokens{}, fmt.Errorf("the authorization server answered %s: %s", e, got.Get("error_description"))
	}
	if got.Get("state") != state {
		return Tokens{}, fmt.Errorf("the redirect carries state %q, not the one sent", got.Get("state"))
	}
	code := got.Get("code")
	if code == "" {
		return Tokens{}, errors.New("the redirect carries no code")
	}

	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {s.RedirectURI()},
		"client_id":     {s.native.ID},
		"code_verifier": {verifier},
	}
	req, err := http.NewRequest(http.MethodPost, s.public+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return Tokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return s.tokens(req)
}

// Browse is the user's browser sent to an authorization URL (as a client
// built it, with login_hint naming the user): it keeps Hydra's cookies
// and follows the redirects through the login and consent app until the
// one to the native client's redirect URI, and returns that redirect's
// query (code, state and iss, or error and error_description).
func (s *Server) Browse(ctx context.Context, authURL string) (url.Values, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := browser.Do(req)
	if err != nil {
		return nil, fmt.Errorf("authorization request: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	landed := resp.Request.URL
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(landed.String(), s.RedirectURI()) {
		return nil, fmt.Errorf("the sign-in ended at %s with status %d, not at the redirect URI: %s", landed.Redacted(), resp.StatusCode, body)
	}
	return landed.Query(), nil
}

// token posts a token request and returns the access token.
func (s *Server) token(req *http.Request) (string, error) {
	tok, err := s.tokens(req)
	return tok.Access, err
}

// tokens posts a token request and returns the tokens.
func (s *Server) tokens(req *http.Request) (Tokens, error) {
	resp, err := s.http.Do(req)
	if err != nil {
		return Tokens{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return Tokens{}, fmt.Errorf("token endpoint answered %s: %s", resp.Status, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return Tokens{}, fmt.Errorf("decoding the token response: %w", err)
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		return Tokens{}, fmt.Errorf("the token response has no bearer access token: %s", body)
	}
	return Tokens{Access: tr.AccessToken, ID: tr.IDToken}, nil
}

// RotateKeys adds a new RSA key to the set Hydra signs access tokens
// with; tokens issued from now on name it in their "kid", and the JWKS
// keeps the old keys (tokens already issued stay valid). It returns the
// new key's id.
func (s *Server) RotateKeys(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.kids++
	kid := fmt.Sprintf("rotated-%d-%s", s.kids, randomString(6))
	s.mu.Unlock()
	jwk, err := newRSAKey(kid)
	if err != nil {
		t.Fatal(err)
	}
	// Hydra signs with the newest key by creation time (kept to the
	// nanosecond); make sure the new one is not in the same instant.
	time.Sleep(10 * time.Millisecond)
	path := "/admin/keys/" + AccessTokenKeySet + "/" + url.PathEscape(kid)
	if err := s.adminJSON(http.MethodPut, path, jwk, nil); err != nil {
		t.Fatalf("adding a new access token key: %v", err)
	}
	return kid
}

// newRSAKey makes an RSA 2048 signing key as a private JWK (RFC 7518
// section 6.3), for Hydra's admin API.
func newRSAKey(kid string) (map[string]any, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	k.Precompute()
	b := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
	return map[string]any{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": b(k.N), "e": b(big.NewInt(int64(k.E))), "d": b(k.D),
		"p": b(k.Primes[0]), "q": b(k.Primes[1]),
		"dp": b(k.Precomputed.Dp), "dq": b(k.Precomputed.Dq), "qi": b(k.Precomputed.Qinv),
	}, nil
}

// serveApp is the login and consent app: Hydra sends the browser here
// with a challenge, the app reads the request through the admin API,
// accepts it and sends the browser back.
func (s *Server) serveApp(w http.ResponseWriter, r *http.Request) {
	var redirect string
	var err error
	switch r.URL.Path {
	case "/login":
		redirect, err = s.login(r.URL.Query().Get("login_challenge"))
	case "/consent":
		redirect, err = s.consent(r.URL.Query().Get("consent_challenge"))
	case "/error":
		q := r.URL.Query()
		http.Error(w, "OAuth error: "+q.Get("error")+": "+q.Get("error_description"), http.StatusBadRequest)
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, redirect, http.StatusFound)
}

// login accepts the user the authorization request names in
// login_hint, when the directory has them, and rejects it otherwise.
func (s *Server) login(challenge string) (string, error) {
	if challenge == "" {
		return "", errors.New("no login_challenge")
	}
	path := "/admin/oauth2/auth/requests/login"
	q := "?login_challenge=" + url.QueryEscape(challenge)
	var req struct {
		OIDC struct {
			LoginHint string `json:"login_hint"`
		} `json:"oidc_context"`
	}
	if err := s.getJSON(s.admin+path+q, &req); err != nil {
		return "", err
	}
	s.mu.Lock()
	u, ok := s.users[req.OIDC.LoginHint]
	s.mu.Unlock()
	var done struct {
		RedirectTo string `json:"redirect_to"`
	}
	if !ok {
		body := map[string]any{"error": "access_denied", "error_description": "no such user"}
		err := s.adminJSON(http.MethodPut, path+"/reject"+q, body, &done)
		return done.RedirectTo, err
	}
	body := map[string]any{"subject": u.Subject, "remember": false, "context": u}
	err := s.adminJSON(http.MethodPut, path+"/accept"+q, body, &done)
	return done.RedirectTo, err
}

// consent grants what the client asked for and puts the signed-in
// user's email and groups into the access token (and the ID token).
func (s *Server) consent(challenge string) (string, error) {
	if challenge == "" {
		return "", errors.New("no consent_challenge")
	}
	path := "/admin/oauth2/auth/requests/consent"
	q := "?consent_challenge=" + url.QueryEscape(challenge)
	var req struct {
		Scopes    []string `json:"requested_scope"`
		Audiences []string `json:"requested_access_token_audience"`
		Context   User     `json:"context"`
	}
	if err := s.getJSON(s.admin+path+q, &req); err != nil {
		return "", err
	}
	claims := map[string]any{EmailClaim: req.Context.Email, GroupsClaim: req.Context.Groups}
	body := map[string]any{
		"grant_scope":                 req.Scopes,
		"grant_access_token_audience": req.Audiences,
		"remember":                    false,
		"session":                     map[string]any{"access_token": claims, "id_token": claims},
	}
	var done struct {
		RedirectTo string `json:"redirect_to"`
	}
	err := s.adminJSON(http.MethodPut, path+"/accept"+q, body, &done)
	return done.RedirectTo, err
}

// adminJSON sends a JSON body to the admin API and decodes the answer
// into out (unless nil).
func (s *Server) adminJSON(method, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, s.admin+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return s.do(req, out)
}

func (s *Server) getJSON(u string, out any) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return s.do(req, out)
}

func (s *Server) do(req *http.Request, out any) error {
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// Decode splits a JWT without verifying it and returns its header and
// claims, for tests that check what Hydra issued.
func Decode(t testing.TB, raw string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3: %.40q", len(parts), raw)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("token part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("token part %d: %v", i, err)
		}
	}
	return header, claims
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// syncBuffer collects a process's output for the test log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail is the last 8 KiB written.
func (b *syncBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 8192 {
		s = "…" + s[len(s)-8192:]
	}
	return s
}
