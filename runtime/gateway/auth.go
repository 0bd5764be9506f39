package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/runtime/store"
)

// caller is the authenticated API key behind a request.
type caller struct {
	KeyID string
	Name  string
	Role  store.Role
	// Agent is the agent identity policy rules match for this key: set by
	// an admin at creation (or the key's name), never by the caller.
	Agent string
	// AgentPinned: the admin set Agent explicitly; a token request must
	// then name that agent.
	AgentPinned bool
	// AssertUsers: the key may name its calls' end user in X-Armoriq-User.
	AssertUsers bool
	// Principal is the access token the request was made with (oauth.go);
	// nil for an API key.
	Principal *oauth.Principal
}

// callerKey is the context key of the request's *caller.
type callerKey struct{}

func callerFrom(ctx context.Context) caller {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return *c
	}
	return caller{}
}

// keyCache keeps looked-up API keys so checking a key costs one hash, not a
// database round trip. Revocations evict entries (watchRevocations), and a
// revoked key is cached as revoked.
type keyCache struct {
	mu   sync.RWMutex
	keys map[string]store.APIKey
}

func (c *keyCache) init() { c.keys = make(map[string]store.APIKey) }

func (c *keyCache) get(id string) (store.APIKey, bool) {
	c.mu.RLock()
	k, ok := c.keys[id]
	c.mu.RUnlock()
	return k, ok
}

func (c *keyCache) put(k store.APIKey) {
	c.mu.Lock()
	c.keys[k.ID] = k
	c.mu.Unlock()
}

func (c *keyCache) forget(id string) {
	c.mu.Lock()
	delete(c.keys, id)
	c.mu.Unlock()
}

func (c *keyCache) reset() {
	c.mu.Lock()
	c.keys = make(map[string]store.APIKey)
	c.mu.Unlock()
}

// presentedKey returns the API key sent as X-API-Key or Authorization: Bearer.
func presentedKey(r *http.Request) string {
	if k := r.Header.Get(headerAPIKey); k != "" {
		return strings.TrimSpace(k)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return ""
}

// authenticateKey checks the request's API key. The key never appears in an
// error or a log line.
func (s *Server) authenticateKey(ctx context.Context, r *http.Request) (caller, error) {
	full := presentedKey(r)
	if full == "" {
		return caller{}, errorf(KindUnauthenticated, "an API key is required (X-API-Key or Authorization: Bearer)")
	}
	id, secret, err := store.ParseAPIKey(full)
	if err != nil {
		return caller{}, errorf(KindUnauthenticated, "invalid API key format: want ak_live_<id>_<secret>")
	}
	k, ok := s.keys.get(id)
	if !ok {
		k, err = s.store.GetAPIKey(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return caller{}, errorf(KindUnauthenticated, "invalid or revoked API key")
		case err != nil:
			return caller{}, &Error{Kind: KindUnavailable, Message: "cannot check the API key: store unavailable", Err: err}
		}
		s.keys.put(k)
	}
	if !store.CheckAPISecret(id, secret, k.SecretHash) {
		return caller{}, errorf(KindUnauthenticated, "invalid or revoked API key")
	}
	if k.Revoked() {
		return caller{}, errorf(KindRevoked, "API key %s was revoked", id)
	}
	return caller{KeyID: k.ID, Name: k.Name, Role: k.Role, Agent: k.AgentID(), AgentPinned: k.Agent != "", AssertUsers: k.AssertUsers}, nil
}

// roleAllows reports whether role may act at level need.
func roleAllows(have, need store.Role) bool {
	switch need {
	case store.RoleViewer:
		return have == store.RoleViewer || have == store.RoleAdmin
	case store.RoleAgent:
		return have == store.RoleAgent || have == store.RoleAdmin
	case store.RoleAdmin:
		return have == store.RoleAdmin
	}
	return false
}

// errRevokedInFlight is the cancellation cause of calls whose key or token
// was revoked while they ran.
var errRevokedInFlight = errors.New("revoked while the call was in flight")

// authed wraps h: the request must carry a key with role need. The request
// context is cancelled, with cause errRevokedInFlight, if the key is revoked
// while the request runs.
func (s *Server) authed(need store.Role, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.authenticate(r.Context(), r)
		if err != nil {
			return err
		}
		if !roleAllows(c.Role, need) {
			return errorf(KindForbidden, "API key %s has role %s; this needs %s", c.KeyID, c.Role, need)
		}
		ctx, cancel := context.WithCancelCause(context.WithValue(r.Context(), callerKey{}, &c))
		defer cancel(nil)
		done, ok := s.inflight.acquire(c.KeyID, s.cfg.Limits.MaxConcurrentPerKey, 1, cancel)
		if !ok {
			return tooManyCalls(c.KeyID, s.cfg.Limits.MaxConcurrentPerKey)
		}
		defer done()
		// Re-check after registering: a revocation that landed between the
		// key check and registration would otherwise be missed.
		if k, ok := s.keys.get(c.KeyID); c.Principal == nil && (!ok || k.Revoked()) {
			if k2, err := s.store.GetAPIKey(ctx, c.KeyID); err == nil && k2.Revoked() {
				return errorf(KindRevoked, "API key %s was revoked", c.KeyID)
			}
		}
		err = h(w, r.WithContext(ctx))
		if context.Cause(ctx) == errRevokedInFlight {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindRevoked {
				return errorf(KindRevoked, "API key %s was revoked while the call was in flight", c.KeyID)
			}
		}
		return err
	}
}

// inflightSet tracks running requests by API key and calls by intent token
// so a revocation can cancel them, and counts the slots each key's running
// requests take, for its concurrency limit. Every call registers and leaves
// (one map entry each way, no allocation once the maps have grown); a
// revocation, rare, looks through all that run.
type inflightSet struct {
	mu    sync.Mutex
	next  uint64
	runs  map[uint64]inflightRun // by registration number
	slots map[string]int         // by API key id: slots its running requests take
}

// inflightRun is one registration: a request of an API key, or a call
// under an intent token.
type inflightRun struct {
	keyID, tokenID string
	cancel         context.CancelCauseFunc
}

func (f *inflightSet) init() {
	f.runs = make(map[uint64]inflightRun)
	f.slots = make(map[string]int)
}

// register adds run and returns its removal; mu held.
func (f *inflightSet) register(run inflightRun) func() {
	f.next++
	n := f.next
	f.runs[n] = run
	return func() {
		f.mu.Lock()
		delete(f.runs, n)
		f.mu.Unlock()
	}
}

func (f *inflightSet) addToken(tokenID string, cancel context.CancelCauseFunc) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.register(inflightRun{tokenID: tokenID, cancel: cancel})
}

// cancelAll cancels the runs that match.
func (f *inflightSet) cancelAll(match func(inflightRun) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.runs {
		if match(r) {
			r.cancel(errRevokedInFlight)
		}
	}
}

func (f *inflightSet) revokeKey(id string) {
	f.cancelAll(func(r inflightRun) bool { return r.keyID == id && id != "" })
}

func (f *inflightSet) revokeToken(id string) {
	f.cancelAll(func(r inflightRun) bool { return r.tokenID == id && id != "" })
}

// running returns the slots keyID's running requests take, or all keys'
// with keyID "".
func (f *inflightSet) running(keyID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if keyID != "" {
		return f.slots[keyID]
	}
	n := 0
	for _, s := range f.slots {
		n += s
	}
	return n
}
