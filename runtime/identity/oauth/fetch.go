package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// keySet holds one issuer's keys: fetched lazily, cached, refreshed in the
// background once stale, refetched on an unknown kid at most once per
// MinRefresh, one fetch at a time.
type keySet struct {
	issuer string
	v      *Verifier

	mu          sync.Mutex
	keys        []*publicKey
	loaded      bool      // keys came from at least one successful fetch
	jwksURI     string    // from discovery; "" until discovered or after a failed JWKS fetch
	expires     time.Time // when the keys are stale
	lastAttempt time.Time // the start of the last fetch, for the MinRefresh limit
	lastErr     error     // the last fetch's failure, if it failed
	inflight    *fetchCall
}

// fetchCall is one fetch in progress; done is closed when it ends.
type fetchCall struct {
	done chan struct{}
}

// find returns the key for kid (or, when kid is empty, the one key that
// fits alg), fetching the issuer's keys as the rules allow.
func (ks *keySet) find(ctx context.Context, kid, alg string, now time.Time) (*publicKey, *Error) {
	ks.mu.Lock()
	if ks.loaded && !now.Before(ks.expires) && ks.inflight == nil && ks.mayFetch(now) {
		ks.start(now) // stale: refresh in the background, use what we hold
	}
	if ks.loaded {
		if k, e := ks.pick(kid, alg); k != nil || e != nil {
			ks.mu.Unlock()
			return k, e
		}
	}
	// No keys yet, or an unknown kid: wait for a fetch, starting one if
	// the limit allows.
	call := ks.inflight
	if call == nil {
		if !ks.mayFetch(now) {
			e := ks.missing(kid)
			ks.mu.Unlock()
			return nil, e
		}
		call = ks.start(now)
	}
	ks.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, &Error{Code: CodeInvalidToken, Description: "the identity provider's keys could not be fetched in time", Err: errors.Join(ErrUnavailable, ctx.Err())}
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.loaded {
		if k, e := ks.pick(kid, alg); k != nil || e != nil {
			return k, e
		}
	}
	return nil, ks.missing(kid)
}

// mayFetch reports whether a fetch may start at now. ks.mu is held.
func (ks *keySet) mayFetch(now time.Time) bool {
	return ks.lastAttempt.IsZero() || now.Sub(ks.lastAttempt) >= ks.v.minRefresh || now.Before(ks.lastAttempt)
}

// missing is the error when no key was found for kid. ks.mu is held.
func (ks *keySet) missing(kid string) *Error {
	if !ks.loaded {
		return &Error{Code: CodeInvalidToken, Description: "the identity provider's keys could not be fetched", Err: errors.Join(ErrUnavailable, ks.lastErr)}
	}
	if kid == "" {
		return invalid("the token names no kid and the issuer publishes no single key for its algorithm")
	}
	return invalid("the token's key id %s is not among the issuer's keys", quoteShort(kid))
}

// pick finds the key for kid and alg among the keys held. It returns
// (nil, nil) when kid is unknown, so that the keys may be refetched. ks.mu
// is held.
func (ks *keySet) pick(kid, alg string) (*publicKey, *Error) {
	if kid == "" {
		var found *publicKey
		for _, k := range ks.keys {
			if k.fits(alg) {
				if found != nil {
					return nil, invalid("the token names no kid and the issuer publishes several keys for %s", alg)
				}
				found = k
			}
		}
		return found, nil
	}
	known := false
	for _, k := range ks.keys {
		if k.kid == kid {
			known = true
			if k.fits(alg) {
				return k, nil
			}
		}
	}
	if known {
		return nil, invalid("the issuer's key %s is not for algorithm %s", quoteShort(kid), alg)
	}
	return nil, nil
}

// start begins a fetch in its own goroutine, detached from any caller's
// context (callers wait for it, or not). ks.mu is held.
func (ks *keySet) start(now time.Time) *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	ks.inflight = call
	ks.lastAttempt = now
	jwksURI := ks.jwksURI
	go func() {
		defer close(call.done)
		keys, uri, ttl, err := ks.v.fetchKeys(context.Background(), ks.issuer, jwksURI)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		ks.inflight = nil
		if err != nil {
			ks.lastErr = err
			ks.jwksURI = "" // discover again next time: the jwks_uri may have moved
			ks.v.log.Warn("fetching an identity provider's keys failed; keeping the keys held",
				"issuer", ks.issuer, "keys_held", len(ks.keys), "err", err)
			return
		}
		ks.keys, ks.loaded, ks.jwksURI, ks.lastErr = keys, true, uri, nil
		ks.expires = ks.v.now().Add(ttl)
		ks.v.log.Info("fetched an identity provider's keys", "issuer", ks.issuer, "jwks_uri", uri, "keys", len(keys), "ttl", ttl)
	}()
	return call
}

// fetchKeys discovers the jwks_uri (unless known) and fetches the keys.
func (v *Verifier) fetchKeys(ctx context.Context, issuer, jwksURI string) ([]*publicKey, string, time.Duration, error) {
	if jwksURI == "" {
		doc, err := discover(ctx, v.client, issuer)
		if err != nil {
			return nil, "", 0, err
		}
		jwksURI = doc.JWKSURI
	}
	body, hdr, err := get(ctx, v.client, jwksURI)
	if err != nil {
		return nil, "", 0, err
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, "", 0, fmt.Errorf("%s: %w", jwksURI, err)
	}
	for _, s := range skipped {
		v.log.Debug("skipping a key of an identity provider", "jwks_uri", jwksURI, "why", s)
	}
	if len(keys) == 0 {
		return nil, "", 0, fmt.Errorf("%s: no usable signing key (%w)", jwksURI, errors.Join(skipped...))
	}
	return keys, jwksURI, keyTTL(hdr), nil
}

// keyTTL is how long a JWKS response may be used: its Cache-Control
// max-age bounded to 5 min .. 24 h, 1 h without one, 5 min with no-store
// or no-cache.
func keyTTL(h http.Header) time.Duration {
	ttl := defaultKeyTTL
	for _, d := range strings.Split(h.Get("Cache-Control"), ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return minKeyTTL
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseUint(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if errors.Is(err, strconv.ErrRange) {
				n, err = math.MaxUint64, nil
			}
			if err == nil {
				ttl = time.Duration(min(n, uint64(maxKeyTTL/time.Second))) * time.Second
			}
		}
	}
	return max(minKeyTTL, min(ttl, maxKeyTTL))
}

// metadata is the part of a discovery document this package reads.
type metadata struct {
	Issuer             string   `json:"issuer"`
	JWKSURI            string   `json:"jwks_uri"`
	IDTokenSigningAlgs []string `json:"id_token_signing_alg_values_supported"`
	url                string   // where it was found
}

// DiscoveryURLs returns where issuer's metadata is looked for, in order:
// OpenID Connect Discovery ({issuer}/.well-known/openid-configuration) and
// RFC 8414 ({origin}/.well-known/oauth-authorization-server{path}).
func DiscoveryURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path
	return []string{oidc, rfc}, nil
}

// discover fetches issuer's metadata: OpenID Connect Discovery, else RFC
// 8414. A document whose issuer is not exactly issuer is refused, never
// passed over.
func discover(ctx context.Context, c *http.Client, issuer string) (*metadata, error) {
	urls, err := DiscoveryURLs(issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer %s: %w", issuer, err)
	}
	var errs []error
	for _, u := range urls {
		body, _, err := get(ctx, c, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var m metadata
		if err := json.Unmarshal(body, &m); err != nil {
			errs = append(errs, fmt.Errorf("%s: not a metadata document: %w", u, err))
			continue
		}
		m.url = u
		if m.Issuer != issuer {
			return nil, fmt.Errorf("%s: the document's issuer %q is not the configured issuer %q (they must be identical)", u, m.Issuer, issuer)
		}
		if m.JWKSURI == "" {
			return nil, fmt.Errorf("%s: the document has no jwks_uri", u)
		}
		ju, err := url.Parse(m.JWKSURI)
		if err != nil || ju.Host == "" {
			return nil, fmt.Errorf("%s: jwks_uri %q is not an absolute URL", u, m.JWKSURI)
		}
		if err := checkScheme(ju); err != nil {
			return nil, fmt.Errorf("%s: jwks_uri: %w", u, err)
		}
		return &m, nil
	}
	return nil, fmt.Errorf("discovering issuer %s: %w", issuer, errors.Join(errs...))
}

// get fetches u with a time limit and a size limit, and wants a 200.
func get(ctx context.Context, c *http.Client, u string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	if err := checkScheme(req.URL); err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("fetching %s: status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", u, err)
	}
	if len(body) > maxResponseSize {
		return nil, nil, fmt.Errorf("reading %s: the response is larger than %d bytes", u, maxResponseSize)
	}
	return body, resp.Header, nil
}
