package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustVerify(t *testing.T, v *Verifier, raw, what string) *Principal {
	t.Helper()
	p, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Verify(%s) = %v, want accepted", what, err)
	}
	return p
}

func mustRefuse(t *testing.T, v *Verifier, raw, what, want string) *Error {
	t.Helper()
	_, err := v.Verify(context.Background(), raw)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Verify(%s) = %v, want an *Error containing %q", what, err, want)
	}
	return e
}

func hits(is *issuer) string {
	return fmt.Sprintf("discovery %d, JWKS %d", is.discoveryHits.Load(), is.jwksHits.Load())
}

func TestKeysAreNotFetchedPerRequest(t *testing.T) {
	s := newSigner("k", "RS256", 0)
	is := newIssuer(t, "", false, s)
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	if got := hits(is); got != "discovery 0, JWKS 0" {
		t.Fatalf("NewVerifier fetched: %s, want no network I/O", got)
	}
	raw := s.mint(nil, is.claims(c, nil))
	for i := 0; i < 50; i++ {
		mustVerify(t, v, raw, "a valid token")
		c.Advance(time.Second)
	}
	// Forged tokens under the known kid fetch nothing either.
	forged := newSigner("k", "RS256", 1).mint(nil, is.claims(c, nil))
	for i := 0; i < 50; i++ {
		mustRefuse(t, v, forged, "a forged token under a known kid", "signature")
	}
	if got := hits(is); got != "discovery 1, JWKS 1" {
		t.Errorf("after 100 tokens: %s, want one of each", got)
	}
}

func TestConcurrentFirstUseSharesOneFetch(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	is := newIssuer(t, "", false, s)
	gate := make(chan struct{})
	is.set(func(is *issuer) { is.jwksGate = gate })
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	raw := s.mint(nil, is.claims(c, nil))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), raw)
			errs <- err
		}()
	}
	waitFor(t, "the JWKS request", func() bool { return is.jwksHits.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // let the other callers pile up
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a concurrent first Verify failed: %v", err)
		}
	}
	if got := hits(is); got != "discovery 1, JWKS 1" {
		t.Errorf("%d concurrent first calls: %s, want one fetch shared", n, got)
	}
}

func TestUnknownKidRefetchesOnceThenAcceptsRotatedKey(t *testing.T) {
	old := newSigner("2030-01", "RS256", 0)
	rotated := newSigner("2030-02", "RS256", 1)
	is := newIssuer(t, "", false, old)
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	mustVerify(t, v, old.mint(nil, is.claims(c, nil)), "a token under the first key")

	// The provider rotates; a token under the new kid arrives within
	// MinRefresh of the first fetch: refused, nothing fetched.
	is.set(func(is *issuer) { is.keys = []*signer{rotated} })
	c.Advance(10 * time.Second)
	mustRefuse(t, v, rotated.mint(nil, is.claims(c, nil)), "a token under the new kid, 10 s after the first fetch", "not among the issuer's keys")
	if got := is.jwksHits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (MinRefresh not yet passed)", got)
	}
	// After MinRefresh: one refetch, and the new key is accepted.
	c.Advance(21 * time.Second)
	mustVerify(t, v, rotated.mint(nil, is.claims(c, nil)), "a token under the rotated key, 31 s after the first fetch")
	mustVerify(t, v, rotated.mint(nil, is.claims(c, nil)), "a second token under the rotated key")
	if got := hits(is); got != "discovery 1, JWKS 2" {
		t.Errorf("after the rotation: %s, want discovery 1, JWKS 2 (one refetch, jwks_uri kept)", got)
	}
	// The retired key is gone from the set.
	mustRefuse(t, v, old.mint(nil, is.claims(c, nil)), "a token under the retired key", "not among")
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	is := newIssuer(t, "", false, s)
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a valid token")
	c.Advance(time.Minute)

	// A flood of tokens under random kids, concurrently: one refetch.
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := s.mint(map[string]any{"kid": fmt.Sprintf("forged-%d", i)}, is.claims(c, nil))
			if _, err := v.Verify(context.Background(), raw); err == nil {
				t.Errorf("a token under the unknown kid forged-%d was accepted", i)
			}
		}()
	}
	wg.Wait()
	if got := is.jwksHits.Load(); got != 2 {
		t.Errorf("200 unknown kids: JWKS fetched %d times in all, want 2 (the first fetch and one refetch)", got)
	}
	c.Advance(29 * time.Second)
	mustRefuse(t, v, s.mint(map[string]any{"kid": "again"}, is.claims(c, nil)), "an unknown kid 29 s after the refetch", "not among")
	if got := is.jwksHits.Load(); got != 2 {
		t.Errorf("unknown kid 29 s later: JWKS fetched %d times, want still 2", got)
	}
	c.Advance(time.Second)
	mustRefuse(t, v, s.mint(map[string]any{"kid": "again"}, is.claims(c, nil)), "an unknown kid 30 s after the refetch", "not among")
	if got := is.jwksHits.Load(); got != 3 {
		t.Errorf("unknown kid 30 s later: JWKS fetched %d times, want 3", got)
	}
	// The known key still works throughout.
	mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a valid token after the flood")
}

func TestRefreshFailureKeepsOldKeys(t *testing.T) {
	huge := []byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxResponseSize) + `"}`)
	tests := []struct {
		name   string
		break_ func(is *issuer)
	}{
		{"JWKS answers 500", func(is *issuer) { is.jwksStatus = http.StatusInternalServerError }},
		{"JWKS larger than 1 MiB", func(is *issuer) { is.jwksBody = huge }},
		{"JWKS not JSON", func(is *issuer) { is.jwksBody = []byte("<html>") }},
		{"JWKS with no usable key", func(is *issuer) { is.jwksBody = []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`) }},
		{"JWKS empty", func(is *issuer) { is.jwksBody = []byte(`{"keys":[]}`) }},
		{"JWKS gone and discovery names another issuer", func(is *issuer) {
			other := "https://evil.example.com"
			is.docIssuer, is.jwksStatus = &other, http.StatusNotFound
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSigner("k", "ES256", 0)
			is := newIssuer(t, "", false, s)
			c := newClock()
			v := newTestVerifier(t, c, is.provider("corp"))
			mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token before the failure")
			is.set(tt.break_)
			// Past the key TTL (1 h without Cache-Control): the call
			// that finds the keys stale refreshes in the background.
			c.Advance(time.Hour + time.Second)
			mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token when the keys are stale")
			waitFor(t, "the background refresh", func() bool {
				ks := v.cfg.Load().byIssuer[is.url].keys
				ks.mu.Lock()
				defer ks.mu.Unlock()
				return ks.inflight == nil && ks.lastErr != nil
			})
			mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token after the refresh failed")
			// Once MinRefresh has passed, the next call tries again (the
			// keys are still stale), in the background, and fails again.
			c.Advance(30 * time.Second)
			n := is.jwksHits.Load() + is.discoveryHits.Load()
			mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token 30 s after the refresh failed")
			waitFor(t, "the second background refresh", func() bool {
				ks := v.cfg.Load().byIssuer[is.url].keys
				ks.mu.Lock()
				defer ks.mu.Unlock()
				return ks.inflight == nil && is.jwksHits.Load()+is.discoveryHits.Load() > n
			})
			mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token after the second refresh failed")
			before := is.jwksHits.Load() + is.discoveryHits.Load()
			for i := 0; i < 20; i++ {
				mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token after the refresh failed")
			}
			if after := is.jwksHits.Load() + is.discoveryHits.Load(); after != before {
				t.Errorf("20 calls after a failed refresh made %d more requests, want none before MinRefresh", after-before)
			}
		})
	}
}

func TestFirstFetchFailureIsUnavailableAndRateLimited(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	is := newIssuer(t, "", false, s)
	is.set(func(is *issuer) { is.jwksStatus = http.StatusBadGateway })
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	raw := s.mint(nil, is.claims(c, nil))
	for i := 0; i < 10; i++ {
		e := mustRefuse(t, v, raw, "a token while the JWKS answers 502", "could not be fetched")
		if !errors.Is(e, ErrUnavailable) || e.Code != CodeInvalidToken {
			t.Fatalf("error %v: want invalid_token wrapping ErrUnavailable", e)
		}
		if strings.Contains(e.Description, "502") {
			t.Errorf("Description %q tells the caller about the provider's answer; that belongs in Err", e.Description)
		}
	}
	if got := is.jwksHits.Load(); got != 1 {
		t.Errorf("10 calls while the provider fails: JWKS fetched %d times, want 1", got)
	}
	is.set(func(is *issuer) { is.jwksStatus = 0 })
	c.Advance(30 * time.Second)
	mustVerify(t, v, raw, "a token once the provider is back and MinRefresh has passed")
}

func TestCallerContextEndsWaitNotFetch(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	is := newIssuer(t, "", false, s)
	gate := make(chan struct{})
	is.set(func(is *issuer) { is.jwksGate = gate })
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	raw := s.mint(nil, is.claims(c, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, raw)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify with a caller deadline shorter than the fetch = %v, want ErrUnavailable and the deadline", err)
	}
	close(gate)
	waitFor(t, "the fetch to finish", func() bool {
		ks := v.cfg.Load().byIssuer[is.url].keys
		ks.mu.Lock()
		defer ks.mu.Unlock()
		return ks.loaded
	})
	mustVerify(t, v, raw, "a token once the shared fetch finished")
}

func TestKeyTTL(t *testing.T) {
	tests := []struct {
		cacheControl string
		want         time.Duration
	}{
		{"", time.Hour},
		{"max-age=600", 10 * time.Minute},
		{"public, max-age=7200", 2 * time.Hour},
		{"max-age=1", 5 * time.Minute},
		{"max-age=0", 5 * time.Minute},
		{"max-age=99999999999999999999", 24 * time.Hour},
		{"max-age=604800", 24 * time.Hour},
		{"max-age=-5", time.Hour},
		{"max-age=abc", time.Hour},
		{"no-store", 5 * time.Minute},
		{"No-Cache, max-age=7200", 5 * time.Minute},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.cacheControl != "" {
			h.Set("Cache-Control", tt.cacheControl)
		}
		if got := keyTTL(h); got != tt.want {
			t.Errorf("keyTTL(Cache-Control: %q) = %v, want %v", tt.cacheControl, got, tt.want)
		}
	}
}

func TestCacheControlDrivesRefresh(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	is := newIssuer(t, "", false, s)
	is.set(func(is *issuer) { is.cacheControl = "max-age=600" })
	c := newClock()
	v := newTestVerifier(t, c, is.provider("corp"))
	mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a valid token")
	c.Advance(9 * time.Minute)
	mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token 9 min later")
	if got := is.jwksHits.Load(); got != 1 {
		t.Fatalf("within max-age: JWKS fetched %d times, want 1", got)
	}
	c.Advance(2 * time.Minute)
	mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token 11 min later")
	waitFor(t, "a background refresh after max-age", func() bool { return is.jwksHits.Load() == 2 })
}

func TestDiscovery(t *testing.T) {
	t.Run("RFC 8414 with path insertion", func(t *testing.T) {
		s := newSigner("k", "EdDSA", 0)
		is := newIssuer(t, "/tenant1", true, s)
		c := newClock()
		v := newTestVerifier(t, c, is.provider("corp"))
		mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token of an issuer with only RFC 8414 metadata")
		if got := hits(is); got != "discovery 1, JWKS 1" {
			t.Errorf("%s, want the RFC 8414 document found once", got)
		}
	})
	t.Run("OIDC with a path", func(t *testing.T) {
		s := newSigner("k", "EdDSA", 0)
		is := newIssuer(t, "/realms/corp", false, s)
		c := newClock()
		v := newTestVerifier(t, c, is.provider("corp"))
		mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token of a Keycloak-like issuer with a path")
	})
	t.Run("issuer differs by a trailing slash", func(t *testing.T) {
		s := newSigner("k", "EdDSA", 0)
		is := newIssuer(t, "", false, s)
		slash := is.url + "/"
		is.set(func(is *issuer) { is.docIssuer = &slash })
		c := newClock()
		v := newTestVerifier(t, c, is.provider("corp"))
		e := mustRefuse(t, v, s.mint(nil, is.claims(c, nil)), "a token whose issuer's document names issuer/", "could not be fetched")
		if !errors.Is(e, ErrUnavailable) || !strings.Contains(e.Err.Error(), "must be identical") {
			t.Errorf("error %v: want ErrUnavailable and the issuer mismatch in Err", e)
		}
		if is.jwksHits.Load() != 0 {
			t.Errorf("the JWKS of a mismatched document was fetched")
		}
	})
	t.Run("jwks_uri over http on the network", func(t *testing.T) {
		mux := http.NewServeMux()
		srv := httptest.NewServer(mux)
		defer srv.Close()
		mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":"http://keys.example.com/jwks"}`, srv.URL)
		})
		_, err := discover(context.Background(), http.DefaultClient, srv.URL)
		if err == nil || !strings.Contains(err.Error(), "only https") {
			t.Errorf("discover(jwks_uri http://keys.example.com) = %v, want refused", err)
		}
	})
	t.Run("redirect to http on the network", func(t *testing.T) {
		srv := httptest.NewServer(http.RedirectHandler("http://idp.example.com/.well-known/openid-configuration", http.StatusFound))
		defer srv.Close()
		_, err := discover(context.Background(), safeClient(http.DefaultClient), srv.URL)
		if err == nil || !strings.Contains(err.Error(), "redirect refused") {
			t.Errorf("discover(redirected to http://idp.example.com) = %v, want the redirect refused", err)
		}
	})
	t.Run("https issuer", func(t *testing.T) {
		s := newSigner("k", "ES256", 0)
		var srv *httptest.Server
		mux := http.NewServeMux()
		mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, srv.URL, srv.URL+"/keys")
		})
		mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"keys":[%s]}`, must(jsonMarshal(s.jwk())))
		})
		srv = httptest.NewTLSServer(mux)
		defer srv.Close()
		c := newClock()
		v, err := NewVerifier([]Provider{{Name: "tls", Issuer: srv.URL, Audience: audience}}, Options{Now: c.Now, HTTPClient: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		is := &issuer{url: srv.URL}
		mustVerify(t, v, s.mint(nil, is.claims(c, nil)), "a token of an https issuer")
	})
}

func TestDiscoveryURLs(t *testing.T) {
	tests := []struct{ issuer, oidc, rfc string }{
		{"https://idp.example.com", "https://idp.example.com/.well-known/openid-configuration", "https://idp.example.com/.well-known/oauth-authorization-server"},
		{"https://idp.example.com/", "https://idp.example.com/.well-known/openid-configuration", "https://idp.example.com/.well-known/oauth-authorization-server"},
		{"https://idp.example.com/tenant1", "https://idp.example.com/tenant1/.well-known/openid-configuration", "https://idp.example.com/.well-known/oauth-authorization-server/tenant1"},
		{"https://idp.example.com:8443/a/b", "https://idp.example.com:8443/a/b/.well-known/openid-configuration", "https://idp.example.com:8443/.well-known/oauth-authorization-server/a/b"},
	}
	for _, tt := range tests {
		got, err := DiscoveryURLs(tt.issuer)
		if err != nil || len(got) != 2 || got[0] != tt.oidc || got[1] != tt.rfc {
			t.Errorf("DiscoveryURLs(%q) = %q, %v, want [%q %q]", tt.issuer, got, err, tt.oidc, tt.rfc)
		}
	}
}

func TestUpdateKeepsCachesOfUnchangedIssuers(t *testing.T) {
	s := newSigner("k", "ES256", 0)
	a := newIssuer(t, "/a", false, s)
	b := newIssuer(t, "/b", false, s)
	c := newClock()
	v := newTestVerifier(t, c, a.provider("a"), b.provider("b"))
	mustVerify(t, v, s.mint(nil, a.claims(c, nil)), "a token of a")
	mustVerify(t, v, s.mint(nil, b.claims(c, nil)), "a token of b")

	// a's audience changes, b is removed.
	pa := a.provider("a")
	pa.Audience = "https://gw2.example.com/mcp"
	if err := v.Update([]Provider{pa}); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, v, s.mint(nil, a.claims(c, nil)), "a token of a for the old audience", "audience")
	mustVerify(t, v, s.mint(nil, a.claims(c, map[string]any{"aud": pa.Audience})), "a token of a for the new audience")
	mustRefuse(t, v, s.mint(nil, b.claims(c, nil)), "a token of the removed provider b", "not a configured identity provider")
	if got := hits(a); got != "discovery 1, JWKS 1" {
		t.Errorf("after Update: issuer a %s, want its keys kept", got)
	}
	// A bad update changes nothing.
	if err := v.Update([]Provider{{Name: "x", Issuer: "http://idp.example.com", Audience: audience}}); err == nil {
		t.Fatal("Update(an http issuer) succeeded")
	}
	if ps := v.Providers(); len(ps) != 1 || ps[0].Audience != pa.Audience {
		t.Errorf("after a refused Update, Providers() = %+v, want a alone, unchanged", ps)
	}
}
