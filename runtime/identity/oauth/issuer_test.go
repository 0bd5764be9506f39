package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// This file holds the test fixtures: real keys, a real HTTP issuer serving
// discovery and a JWKS, and a token minter that can write any header.

// signer is a real private key under a kid and an algorithm.
type signer struct {
	kid, alg string
	key      crypto.Signer
}

var (
	rsaKeys = sync.OnceValue(func() [4]*rsa.PrivateKey {
		var ks [4]*rsa.PrivateKey
		for i := range ks {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			ks[i] = k
		}
		return ks
	})
	weakRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
		// GenerateKey refuses keys under 1024 bits; 1024 is weak enough.
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func ecKey(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func edKey() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// newSigner returns a signer with a fresh key for alg (RSA keys come from a
// pool of four; i picks one).
func newSigner(kid, alg string, i int) *signer {
	var k crypto.Signer
	switch alg[:2] {
	case "RS", "PS":
		k = rsaKeys()[i]
	case "ES":
		k = ecKey(map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg])
	case "Ed":
		k = edKey()
	}
	return &signer{kid: kid, alg: alg, key: k}
}

func b64e(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func fixed(n *big.Int, size int) []byte {
	b := make([]byte, size)
	return n.FillBytes(b)
}

// jwk is the public JWK of s, as an issuer publishes it.
func (s *signer) jwk() map[string]any {
	m := map[string]any{"kid": s.kid, "use": "sig", "alg": s.alg}
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		m["kty"] = "RSA"
		m["n"] = b64e(k.N.Bytes())
		m["e"] = b64e(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		m["kty"] = "EC"
		m["crv"] = k.Curve.Params().Name
		m["x"] = b64e(fixed(k.X, size))
		m["y"] = b64e(fixed(k.Y, size))
	case ed25519.PrivateKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64e(k.Public().(ed25519.PublicKey))
	}
	return m
}

// sign signs input with s under alg (which may differ from s.alg, to forge).
func (s *signer) sign(alg string, input []byte) []byte {
	hashes := map[string]crypto.Hash{"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512}
	h := hashes[alg[len(alg)-3:]]
	digest := func() []byte { w := h.New(); w.Write(input); return w.Sum(nil) }
	var sig []byte
	var err error
	switch alg[:2] {
	case "RS":
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key.(*rsa.PrivateKey), h, digest())
	case "PS":
		sig, err = rsa.SignPSS(rand.Reader, s.key.(*rsa.PrivateKey), h, digest(), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k := s.key.(*ecdsa.PrivateKey)
		r, ss, e := ecdsa.Sign(rand.Reader, k, digest())
		size := (k.Curve.Params().BitSize + 7) / 8
		sig, err = append(fixed(r, size), fixed(ss, size)...), e
	case "Ed":
		sig = ed25519.Sign(s.key.(ed25519.PrivateKey), input)
	default:
		panic("cannot sign " + alg)
	}
	if err != nil {
		panic(err)
	}
	return sig
}

// segment encodes v as a JWT segment.
func segment(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b64e(b)
}

// mint returns a token signed by s, with header members hdr over the
// default {alg, kid, typ: at+jwt} (a nil value removes one).
func (s *signer) mint(hdr, claims map[string]any) string {
	h := map[string]any{"alg": s.alg, "kid": s.kid, "typ": "at+jwt"}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	input := segment(h) + "." + segment(claims)
	alg, _ := h["alg"].(string)
	if alg == "" || alg[:2] != s.alg[:2] {
		alg = s.alg
	}
	return input + "." + b64e(s.sign(alg, []byte(input)))
}

// hs256 returns a token signed with HMAC-SHA256 under secret.
func hs256(hdr, claims map[string]any, secret []byte) string {
	input := segment(hdr) + "." + segment(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64e(m.Sum(nil))
}

// issuer is a real HTTP identity provider serving discovery and a JWKS.
type issuer struct {
	srv *httptest.Server
	url string // its issuer identifier

	mu           sync.Mutex
	keys         []*signer
	jwksStatus   int    // 0: 200
	jwksBody     []byte // nil: the keys
	cacheControl string
	docIssuer    *string       // nil: url
	jwksGate     chan struct{} // when set, JWKS requests wait on it

	discoveryHits, jwksHits atomic.Int32
}

// newIssuer starts an issuer publishing keys; path is the issuer's path
// ("" or "/tenant1"), rfc8414 serves only the RFC 8414 document.
func newIssuer(t testing.TB, path string, rfc8414 bool, keys ...*signer) *issuer {
	is := &issuer{keys: keys}
	mux := http.NewServeMux()
	doc := func(w http.ResponseWriter, r *http.Request) {
		is.discoveryHits.Add(1)
		is.mu.Lock()
		iss := is.url
		if is.docIssuer != nil {
			iss = *is.docIssuer
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "jwks_uri": is.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	}
	if rfc8414 {
		mux.HandleFunc("/.well-known/oauth-authorization-server"+path, doc)
	} else {
		mux.HandleFunc(path+"/.well-known/openid-configuration", doc)
	}
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		is.mu.Lock()
		gate := is.jwksGate
		is.mu.Unlock()
		if gate != nil {
			<-gate
		}
		is.mu.Lock()
		defer is.mu.Unlock()
		if is.cacheControl != "" {
			w.Header().Set("Cache-Control", is.cacheControl)
		}
		if is.jwksStatus != 0 {
			w.WriteHeader(is.jwksStatus)
			return
		}
		if is.jwksBody != nil {
			w.Write(is.jwksBody)
			return
		}
		var set []map[string]any
		for _, k := range is.keys {
			set = append(set, k.jwk())
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": set})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	is.url = is.srv.URL + path
	return is
}

func (is *issuer) set(f func(is *issuer)) {
	is.mu.Lock()
	defer is.mu.Unlock()
	f(is)
}

// clock is a settable Options.Now.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

const audience = "https://gw.example.com/mcp"

// claims returns valid claims of is for user at c's time, with overrides
// (a nil value removes one).
func (is *issuer) claims(c *clock, over map[string]any) map[string]any {
	now := c.Now().Unix()
	m := map[string]any{
		"iss": is.url, "sub": "user-123", "aud": audience,
		"exp": now + 300, "iat": now - 10, "nbf": now - 10,
		"email": "alice@example.com", "client_id": "ide",
		"groups": []string{"finance", "eng"}, "scope": "mcp:tools openid",
	}
	for k, v := range over {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// provider is a Provider for is with groups and a required scope.
func (is *issuer) provider(name string) Provider {
	return Provider{Name: name, Issuer: is.url, Audience: audience, GroupsClaim: "groups", RequiredScopes: []string{"mcp:tools"}}
}

func newTestVerifier(t testing.TB, c *clock, ps ...Provider) *Verifier {
	t.Helper()
	v, err := NewVerifier(ps, Options{Now: c.Now})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// waitFor polls cond for up to 5 s: for a background refresh to end.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func must(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}
