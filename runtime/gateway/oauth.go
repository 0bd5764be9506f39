package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/runtime/store"
)

// The gateway as an OAuth 2.1 resource server (the MCP authorization
// specification): besides its own API keys, /mcp, /invoke and the token
// endpoint accept an access token (a JWT) from an identity provider the
// active bundle configures. The provider's word is taken for who the user
// is and which groups they are in; nothing the client sets beside the token
// is (docs/identity.md).

// Where a call's end user came from, as the audit record says it
// (store.AuditRecord.UserSource); the call-named fields are identity.Claim
// fields ("params.user_email", "X-Armoriq-User", …).
const (
	sourceAccessToken = "access token"
	// sourceAccessTokenClient: a token naming no user (client
	// credentials): the client acts as itself, its id is the end user.
	sourceAccessTokenClient = "access token client"
	sourceAPIKey            = "api key"
)

// oauthKeyPrefix starts the caller id of a request made with an access
// token: "oauth:<provider>:<subject>". It never parses as an API key id
// (base36), so the two kinds of caller cannot collide.
const oauthKeyPrefix = "oauth:"

// providersOf returns the identity providers b configures, for the
// verifier.
func providersOf(b *bundle.Bundle) []oauth.Provider {
	if b == nil {
		return nil
	}
	out := make([]oauth.Provider, 0, len(b.Policy.IdentityProviders))
	for _, p := range b.Policy.IdentityProviders {
		out = append(out, oauth.Provider{
			Name: p.Name, Issuer: p.Issuer, Audience: p.Audience, UserClaim: p.UserClaim, GroupsClaim: p.GroupsClaim,
			RequiredScopes: p.RequiredScopes, AllowedAlgorithms: p.AllowedAlgorithms,
		})
	}
	return out
}

// useProviders makes the verifier accept exactly the providers of ab, before
// ab becomes the active bundle: a provider a new bundle removes is refused
// from that moment on. The verifier keeps the keys of issuers that stay.
func (s *Server) useProviders(ab *activeBundle) error {
	if err := s.oauth.Update(providersOf(ab.b)); err != nil {
		return err
	}
	s.verified.reset() // a token of a removed provider is not taken from the cache either
	return nil
}

// verifiedTokens remembers access tokens whose signature and claims were
// checked, until they expire, so a client sending the same token on every
// call pays one SHA-256, not a signature check (about 0.1 ms for RS256).
// It is keyed by the token's hash, emptied whenever the providers change,
// and bounded: when full it starts over. A token checked under providers
// that changed meanwhile is not kept (gen).
type verifiedTokens struct {
	mu  sync.Mutex
	m   map[tokenKey]*oauth.Principal
	gen uint64 // bumped by reset
}

const maxVerifiedTokens = 10000

// tokenKey is a token's key in verifiedTokens.
type tokenKey [sha256.Size]byte

// get returns the principal of the token keyed k if it was checked and has
// not expired, and the generation to put it under otherwise.
func (c *verifiedTokens) get(k tokenKey, now time.Time) (*oauth.Principal, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.m[k]
	if p != nil && !now.Before(p.Expiry) {
		delete(c.m, k)
		return nil, c.gen
	}
	return p, c.gen
}

func (c *verifiedTokens) put(k tokenKey, p *oauth.Principal, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // checked under providers since replaced
	}
	if c.m == nil || len(c.m) >= maxVerifiedTokens {
		c.m = make(map[tokenKey]*oauth.Principal)
	}
	c.m[k] = p
}

func (c *verifiedTokens) reset() {
	c.mu.Lock()
	c.m = nil
	c.gen++
	c.mu.Unlock()
}

// bearerJWT returns the access token of r: an Authorization: Bearer value
// shaped like a JWT (API keys never are). X-API-Key always carries a key.
func bearerJWT(r *http.Request) string {
	if r.Header.Get(headerAPIKey) != "" {
		return ""
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	tok = strings.TrimSpace(tok)
	if !oauth.LooksLikeJWT(tok) {
		return ""
	}
	return tok
}

// authenticateAccessToken checks an access token against the active
// bundle's identity providers and returns its caller: an agent whose
// agent identity is the token's client (or subject), acting for the
// token's user.
func (s *Server) authenticateAccessToken(ctx context.Context, raw string) (caller, error) {
	if !s.oauth.Configured() {
		return caller{}, &Error{Kind: KindUnauthenticated,
			Message:   "an access token was presented, but the gateway's policy configures no identity provider: use an API key",
			Challenge: challenge(oauth.CodeInvalidToken, "no identity provider is configured", "")}
	}
	key := tokenKey(sha256.Sum256([]byte(raw)))
	p, gen := s.verified.get(key, s.now())
	var err error
	if p == nil {
		if p, err = s.oauth.Verify(ctx, raw); err == nil {
			s.verified.put(key, p, gen)
		}
	}
	if err != nil {
		var oe *oauth.Error
		if !errors.As(err, &oe) {
			return caller{}, &Error{Kind: KindUnauthenticated, Message: "the access token was refused", Err: err,
				Challenge: challenge(oauth.CodeInvalidToken, "the access token was refused", "")}
		}
		if errors.Is(err, oauth.ErrUnavailable) {
			// The provider's keys cannot be had: the token is not known
			// bad, the gateway cannot tell. 503, not 401, so a client
			// does not throw its token away.
			return caller{}, &Error{Kind: KindUnavailable, Message: "cannot check the access token: " + oe.Description, Err: err}
		}
		kind := KindUnauthenticated
		if oe.Code == oauth.CodeInsufficientScope {
			kind = KindForbidden
		}
		return caller{}, &Error{Kind: kind, Message: "access token refused: " + oe.Description, Err: err,
			Challenge: challenge(oe.Code, oe.Description, oe.Scope)}
	}
	agent := p.ClientID
	if agent == "" {
		agent = p.Subject
	}
	if err := identity.Check("access token client", agent, identity.MaxAgent); err != nil {
		return caller{}, &Error{Kind: KindUnauthenticated, Message: "access token refused: " + err.Error(),
			Challenge: challenge(oauth.CodeInvalidToken, err.Error(), "")}
	}
	name := p.User
	if name == "" {
		name = agent
	}
	return caller{
		KeyID: oauthKeyPrefix + p.Provider + ":" + p.Subject, Name: name, Role: store.RoleAgent,
		Agent: agent, AgentPinned: true, Principal: p,
	}, nil
}

// challenge is the WWW-Authenticate value of a refused access token (RFC
// 6750 section 3); the resource_metadata parameter is added where the
// request's URL is known (withResourceMetadata).
func challenge(code, desc, scope string) string {
	v := `Bearer error="` + code + `", error_description="` + quoteParam(desc) + `"`
	if scope != "" {
		v += `, scope="` + quoteParam(scope) + `"`
	}
	return v
}

// quoteParam makes s safe inside a quoted auth-param: no quote, backslash
// or control character, bounded.
func quoteParam(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f || r > 0x7e {
			return '\''
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// withResourceMetadata points a challenge at the protected-resource
// metadata (RFC 9728 section 5.1), so a client can find where to sign in.
func withResourceMetadata(r *http.Request, v string) string {
	md := `resource_metadata="` + baseURL(r) + `/.well-known/oauth-protected-resource"`
	if v == "" {
		return "Bearer " + md
	}
	return v + ", " + md
}

// endUserClaims are the claims the caller itself makes about its end user:
// an access token's user. It is added to what the call names, so a call
// naming anybody else is refused (identity.Resolve).
func (c caller) endUserClaims() []identity.Claim {
	if c.Principal != nil && c.Principal.User != "" {
		return []identity.Claim{{Field: sourceAccessToken, Value: c.Principal.User}}
	}
	return nil
}

// groupsFor returns the groups the caller's access token puts user in: the
// token's groups claim, when the token is user's; none otherwise.
func (c caller) groupsFor(user string) []string {
	if c.Principal != nil && c.Principal.User != "" && c.Principal.User == user {
		return c.Principal.Groups
	}
	return nil
}

// stamp records in rec who the caller is: for an access token, the service
// is the token's client, the key id names the provider and subject
// (oauth:<provider>:<subject>), and the issuer and subject are recorded.
func (c caller) stamp(rec *store.AuditRecord) {
	rec.APIKeyID, rec.Service = c.KeyID, c.Name
	if p := c.Principal; p != nil {
		rec.Service, rec.AuthIssuer, rec.AuthSubject = c.Agent, p.Issuer, p.Subject
	}
}
