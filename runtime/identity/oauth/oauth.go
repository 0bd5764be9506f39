package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/runtime/identity"
)

// Provider is one configured identity provider (from the bundle).
type Provider struct {
	Name     string // how the config names it; recorded as Principal.Provider
	Issuer   string // the exact "iss" of its tokens and the base of discovery
	Audience string // the resource URI its tokens must name in "aud" (RFC 8707)

	UserClaim   string // the claim naming the end user; default "email"
	GroupsClaim string // the claim listing the user's groups; optional

	RequiredScopes    []string // every one must be granted, else insufficient_scope
	AllowedAlgorithms []string // default: RS256, ES256, PS256, EdDSA (never none, never HS*)
}

// Principal is who a verified access token names.
type Principal struct {
	Provider string // the Provider's Name
	Issuer   string
	Subject  string // "sub"

	// User is the user claim, normalised with identity.User (email rules);
	// empty for a token without it (client credentials).
	User string
	// ClientID is the client_id, azp or cid claim, the first present.
	ClientID string
	// Groups is the groups claim (a string or an array of strings), each
	// checked with identity.Check; sorted, deduplicated.
	Groups []string
	// Scopes are "scope" (space separated) and "scp" (an array or a space
	// separated string) together; sorted, deduplicated.
	Scopes []string
	Expiry time.Time
}

// Options tune a Verifier. The zero value is usable.
type Options struct {
	// HTTPClient fetches discovery documents and key sets. Default: a
	// client with a 5 s timeout. Whatever the client, redirects must stay
	// on https (or loopback http) and every fetch is bounded to 5 s.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Skew is the clock skew allowed on exp, nbf and iat; default 60 s.
	// A negative value means none.
	Skew time.Duration
	// MinRefresh is the least time between two fetches of one issuer's
	// keys that a call may trigger (an unknown kid, a failed first fetch);
	// default 30 s.
	MinRefresh time.Duration
	// Logger receives key refreshes and their failures; default: discarded.
	Logger *slog.Logger
}

// Limits on what is parsed and fetched.
const (
	MaxTokenSize    = 16 << 10 // bytes of a raw access token
	maxResponseSize = 1 << 20  // bytes of a discovery document or a JWKS
	maxKeys         = 100      // keys read from one JWKS
	maxGroups       = 1000     // groups in one token
	maxScopes       = 256      // scopes in one token
	maxClaimString  = 256      // bytes of sub, client id, a group, a scope
	fetchTimeout    = 5 * time.Second
	minKeyTTL       = 5 * time.Minute
	maxKeyTTL       = 24 * time.Hour
	defaultKeyTTL   = time.Hour
)

// DefaultAlgorithms returns the algorithms a provider allows when its
// config names none.
func DefaultAlgorithms() []string { return []string{"RS256", "ES256", "PS256", "EdDSA"} }

// Error codes of RFC 6750, section 3.1.
const (
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
)

// ErrUnavailable is wrapped by the Error of a token that could not be
// checked because its issuer's keys could not be fetched (the identity
// provider is down or misconfigured): a gateway may answer 503 rather than
// 401.
var ErrUnavailable = errors.New("the identity provider's keys are unavailable")

// Error is why a token was refused. Code is "invalid_token" or
// "insufficient_scope" (RFC 6750); Description is safe to show the caller
// (it holds no key material and no token); Scope is the space-separated
// list of required scopes, for the WWW-Authenticate challenge; Err is the
// cause, for logs.
type Error struct {
	Code, Description, Scope string
	Err                      error
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Description
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func invalid(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidToken, Description: fmt.Sprintf(format, args...)}
}

// Verifier verifies access tokens from a set of providers. It is safe for
// concurrent use.
type Verifier struct {
	client     *http.Client
	now        func() time.Time
	skew       time.Duration
	minRefresh time.Duration
	log        *slog.Logger

	mu  sync.Mutex             // serialises Update
	cfg atomic.Pointer[config] // read without a lock by Verify
}

// config is one immutable set of providers.
type config struct {
	providers []Provider
	byIssuer  map[string]*entry
}

type entry struct {
	p    Provider
	algs map[string]bool
	keys *keySet // shared across Updates while the issuer stays
}

// NewVerifier checks the providers' configs and returns a Verifier for
// them. It does no network I/O: keys are fetched on first use.
func NewVerifier(providers []Provider, opts Options) (*Verifier, error) {
	v := &Verifier{
		client:     opts.HTTPClient,
		now:        opts.Now,
		skew:       opts.Skew,
		minRefresh: opts.MinRefresh,
		log:        opts.Logger,
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: fetchTimeout}
	}
	v.client = safeClient(v.client)
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case v.skew == 0:
		v.skew = 60 * time.Second
	case v.skew < 0:
		v.skew = 0
	}
	if v.minRefresh <= 0 {
		v.minRefresh = 30 * time.Second
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if err := v.Update(providers); err != nil {
		return nil, err
	}
	return v, nil
}

// Update replaces the providers, as when a new bundle is loaded. The keys
// already fetched for an issuer that stays are kept. On error the
// providers in use are unchanged.
func (v *Verifier) Update(providers []Provider) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.cfg.Load()
	c := &config{byIssuer: make(map[string]*entry, len(providers))}
	names := map[string]bool{}
	var errs []error
	for i, p := range providers {
		p, err := Normalize(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("identity provider %d: %w", i, err))
			continue
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("identity provider %q: the name is used twice", p.Name))
		}
		names[p.Name] = true
		if _, dup := c.byIssuer[p.Issuer]; dup {
			errs = append(errs, fmt.Errorf("identity provider %q: issuer %s is configured twice; a token is matched to its provider by issuer", p.Name, p.Issuer))
			continue
		}
		e := &entry{p: p, algs: map[string]bool{}}
		for _, a := range p.AllowedAlgorithms {
			e.algs[a] = true
		}
		if old != nil {
			if o := old.byIssuer[p.Issuer]; o != nil {
				e.keys = o.keys
			}
		}
		if e.keys == nil {
			e.keys = &keySet{issuer: p.Issuer, v: v}
		}
		c.byIssuer[p.Issuer] = e
		c.providers = append(c.providers, p)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	v.cfg.Store(c)
	return nil
}

// Configured reports whether any provider is in use (without copying
// them, as Providers does: for a request's hot path).
func (v *Verifier) Configured() bool { return len(v.cfg.Load().providers) > 0 }

// Providers returns the providers in use, with their defaults filled in.
func (v *Verifier) Providers() []Provider {
	c := v.cfg.Load()
	out := make([]Provider, len(c.providers))
	for i, p := range c.providers {
		p.RequiredScopes = slices.Clone(p.RequiredScopes)
		p.AllowedAlgorithms = slices.Clone(p.AllowedAlgorithms)
		out[i] = p
	}
	return out
}

// supportedAlgs are the JWS algorithms this package verifies.
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// Normalize checks one provider's config and returns it with its defaults
// filled in (UserClaim "email", AllowedAlgorithms DefaultAlgorithms).
func Normalize(p Provider) (Provider, error) {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("name is required"))
	} else if err := identity.Check("name", p.Name, identity.MaxName); err != nil {
		errs = append(errs, err)
	}
	if err := CheckIssuerURL(p.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	if p.Audience == "" {
		errs = append(errs, errors.New("audience is required: the resource URI of this gateway (RFC 8707) its tokens must name in aud"))
	}
	if p.UserClaim == "" {
		p.UserClaim = "email"
	}
	for _, c := range []struct{ field, v string }{{"user_claim", p.UserClaim}, {"groups_claim", p.GroupsClaim}} {
		if strings.ContainsFunc(c.v, func(r rune) bool { return r <= ' ' || r == 0x7f }) || len(c.v) > 128 {
			errs = append(errs, fmt.Errorf("%s %q is not a claim name", c.field, c.v))
		}
	}
	p.RequiredScopes = slices.Clone(p.RequiredScopes)
	for _, s := range p.RequiredScopes {
		if !validScope(s) {
			errs = append(errs, fmt.Errorf("required scope %q is not a scope (RFC 6749: printable ASCII, no space, quote or backslash)", s))
		}
	}
	if len(p.AllowedAlgorithms) == 0 {
		p.AllowedAlgorithms = DefaultAlgorithms()
	} else {
		p.AllowedAlgorithms = slices.Clone(p.AllowedAlgorithms)
	}
	for _, a := range p.AllowedAlgorithms {
		switch {
		case strings.EqualFold(a, "none"):
			errs = append(errs, errors.New(`allowed algorithm "none" is refused: an unsigned token proves nothing`))
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			errs = append(errs, fmt.Errorf("allowed algorithm %q is refused: an HMAC needs a shared secret, and an issuer's key is public", a))
		case !supportedAlgs[a]:
			errs = append(errs, fmt.Errorf("allowed algorithm %q is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA)", a))
		}
	}
	if err := errors.Join(errs...); err != nil {
		if p.Name != "" {
			return p, fmt.Errorf("%q: %w", p.Name, err)
		}
		return p, err
	}
	return p, nil
}

// validScope reports whether s is a scope-token of RFC 6749, section 3.3.
func validScope(s string) bool {
	if s == "" || len(s) > maxClaimString {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// CheckIssuerURL reports whether issuer may be trusted as an issuer: an
// absolute https URL without query, fragment or user info, or an http URL
// whose host is a loopback address or "localhost" (tests, a provider on
// the same machine). The same rule holds for jwks_uri and redirects.
func CheckIssuerURL(issuer string) error {
	if issuer == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("%q is not a URL", issuer)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an absolute URL", issuer)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#") {
		return fmt.Errorf("%q must not hold user info, a query or a fragment", issuer)
	}
	return checkScheme(u)
}

func checkScheme(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%s uses http; only https is allowed, except http to a loopback host (localhost, 127.0.0.0/8, ::1)", u.Redacted())
	default:
		return fmt.Errorf("%s: scheme %q is not https", u.Redacted(), u.Scheme)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// safeClient returns a copy of c whose redirects must keep to https (or
// loopback http).
func safeClient(c *http.Client) *http.Client {
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkScheme(req.URL); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		if len(via) >= 5 {
			return errors.New("more than 5 redirects")
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &cc
}

// Verify checks raw, a JWT access token, and returns who it names. Every
// error is an *Error.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	p, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Principal, *Error) {
	tok, e := parse(raw)
	if e != nil {
		return nil, e
	}
	c := v.cfg.Load()
	ent := c.byIssuer[tok.iss]
	if ent == nil {
		return nil, invalid("issuer %s is not a configured identity provider", quoteShort(tok.iss))
	}
	if !ent.algs[tok.alg] {
		return nil, invalid("algorithm %s is not allowed for identity provider %q", quoteShort(tok.alg), ent.p.Name)
	}
	now := v.now()
	key, err := ent.keys.find(ctx, tok.kid, tok.alg, now)
	if err != nil {
		return nil, err
	}
	if err := key.verify(tok.alg, tok.signingInput, tok.sig); err != nil {
		return nil, &Error{Code: CodeInvalidToken, Description: "the signature does not verify", Err: err}
	}
	// From here on the payload is the issuer's word.
	return v.claims(ent.p, tok, now)
}

// quoteShort quotes s for a message, cut to 100 bytes: an unverified value
// an attacker chose.
func quoteShort(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return fmt.Sprintf("%q", s)
}
