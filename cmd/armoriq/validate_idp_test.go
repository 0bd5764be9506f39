package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// testIssuer is a real OpenID Connect discovery endpoint and JWKS on a
// loopback address (http is allowed there), serving one Ed25519 key.
type testIssuer struct {
	srv       *httptest.Server
	docIssuer string // the issuer the discovery document names; the URL if ""
	keys      []map[string]any
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	is := &testIssuer{keys: []map[string]any{{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "alg": "EdDSA",
		"x": base64.RawURLEncoding.EncodeToString(pub)}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := is.docIssuer
		if iss == "" {
			iss = is.srv.URL
		}
		json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": is.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": is.keys})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// validateOnline runs armoriq validate --online on a config holding one
// identity provider of issuer.
func validateOnline(t *testing.T, issuer, extra string) (code int, stdout, stderr string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "armoriq.yaml")
	cfg := "version: v1\nidentity_providers:\n  - name: corp\n    issuer: " + issuer + "\n    audience: https://gateway.example.com/mcp\n" + extra
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	e := &env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = run(context.Background(), []string{"validate", "--online", "--timeout", "5s", path}, e)
	return code, out.String(), errb.String()
}

// TestValidateOnlineIdentityProvider checks an issuer's discovery document
// and keys with --online: a consistent issuer is valid; a document naming
// another issuer, or keys none of the allowed algorithms can use, are
// errors at the provider naming it and the URL.
func TestValidateOnlineIdentityProvider(t *testing.T) {
	is := newTestIssuer(t)
	code, stdout, stderr := validateOnline(t, is.srv.URL, "")
	if code != exitOK || stdout != "" || !strings.HasSuffix(strings.TrimSpace(stderr), ": valid") {
		t.Errorf("validate --online, a consistent issuer: exit %d, stdout %q, stderr %q; want 0 and valid", code, stdout, stderr)
	}

	code, stdout, _ = validateOnline(t, is.srv.URL, "    allowed_algorithms: [RS256]\n")
	if code != exitFailure || !strings.Contains(stdout, `armoriq.yaml:3:5: identity_providers[0]: identity provider "corp": `+is.srv.URL+`/keys holds no usable signing key for the allowed algorithms RS256`) {
		t.Errorf("validate --online, keys for no allowed algorithm: exit %d, stdout:\n%s", code, stdout)
	}

	is.docIssuer = is.srv.URL + "/other"
	code, stdout, _ = validateOnline(t, is.srv.URL, "")
	if code != exitFailure || !strings.Contains(stdout, `identity provider "corp": `+is.srv.URL+`/.well-known/openid-configuration: the document's issuer`) {
		t.Errorf("validate --online, a document naming another issuer: exit %d, stdout:\n%s", code, stdout)
	}
}

// TestValidateOnlineSkipsRefusedIssuer: a provider the file already has
// errors for is not fetched (validate never contacts a URL it refused).
func TestValidateOnlineSkipsRefusedIssuer(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	code, stdout, _ := validateOnline(t, srv.URL, "    allowed_algorithms: [HS256]\n")
	if code != exitFailure || hits.Load() != 0 || strings.Count(stdout, "\n") != 1 {
		t.Errorf("validate --online, a provider with alg HS256: exit %d, %d requests, stdout:\n%s\nwant exit 1, no request, one error", code, hits.Load(), stdout)
	}
}
