package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/identity/oauth"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
)

// Config holds a Server's dependencies and settings.
type Config struct {
	Store store.Store
	// TrustedKeys are the bundle-signing public keys, by key id. A bundle
	// signed by any other key is refused.
	TrustedKeys map[string]ed25519.PublicKey
	// Upstream forwards allowed calls to MCP servers.
	Upstream Upstream
	// Registrar serves POST /iap/sdk/register; nil disables the route (404).
	Registrar Registrar
	Logger    *slog.Logger
	// MaxTokenTTL caps the validity a client may ask for (default 1h).
	MaxTokenTTL time.Duration
	// DefaultTokenTTL applies when neither the request nor the bundle's
	// intent.ttl_seconds sets one (default 60s, as the SDKs).
	DefaultTokenTTL time.Duration
	// CallTimeout bounds each forwarded tool call (default 30s).
	CallTimeout time.Duration
	// BundlePoll is how often a replica looks for a bundle another replica
	// activated in the shared store (default 5s; 0 keeps the default,
	// negative disables).
	BundlePoll time.Duration
	// Tracing is where spans go (default: off, a no-op tracer).
	Tracing *telemetry.Tracing
	// TraceEndUser records the end user on spans (enduser.id); off by
	// default, as traces often leave the security boundary of the audit log.
	TraceEndUser bool
	// Metrics receives the gateway's metrics (default: a registry of its
	// own, served at GET /metrics either way). One Metrics serves one Server.
	Metrics *telemetry.Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Human configures approvals, device logins and the console.
	Human HumanConfig
	// Limits bound connections, bodies and concurrent calls (limits.go);
	// zero fields take their defaults.
	Limits Limits
	// OAuth configures how access tokens of the bundle's identity
	// providers are checked (the HTTP client that fetches their keys,
	// the clock skew); the providers themselves come from the bundle.
	OAuth oauth.Options
}

// Registrar validates, compiles and signs a whole armoriq.yaml sent by the
// SDK's register call. It is implemented outside the runtime (the runtime
// never imports the compiler) and wired in by cmd/armoriq.
type Registrar interface {
	// Register turns the config into a signed bundle. A config the user
	// must fix is reported in Diagnostics with a nil error.
	Register(ctx context.Context, filename string, body []byte) (RegisterResult, error)
}

// RegisterResult is what a Registrar produced.
type RegisterResult struct {
	Bundle      []byte   // the signed bundle; nil when Diagnostics has errors
	Diagnostics []string // file:line:col: message lines
	Changes     any      // what changed in effective access, JSON-encodable
}

// Server is the gateway. Create it with NewServer, serve Handler, Close it.
type Server struct {
	cfg   Config
	store store.Store
	log   *slog.Logger
	now   func() time.Time

	active atomic.Pointer[activeBundle]
	// oauth verifies access tokens of the active bundle's identity
	// providers (oauth.go).
	oauth    *oauth.Verifier
	verified verifiedTokens // access tokens already checked (oauth.go)
	// activateMu serializes bundle activations in this process.
	activateMu sync.Mutex

	signMu   sync.RWMutex
	signKey  store.SigningKey             // the key new tokens are signed with
	verifyBy map[string]ed25519.PublicKey // every token key, by kid

	keys   keyCache
	tokens tokenCache
	// outcomes counts outcome records still being appended; Close waits
	// for them.
	outcomes sync.WaitGroup
	inflight inflightSet

	mcpMetrics *mcpMetrics
	// mcpFastOff sends every tools/call to the SDK's path: for the tests
	// that compare the two paths' answers (mcp_paths_test.go).
	mcpFastOff atomic.Bool
	metrics    *telemetry.Metrics
	tracing    *telemetry.Tracing
	live       atomic.Pointer[Settings] // what Reload may change
	tools      toolLabels               // bounds the tool label of the metrics
	human      human                    // approvals, device logins, console (human.go)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// activeBundle is the bundle in force, with its compiled decision engine.
type activeBundle struct {
	b           *bundle.Bundle
	raw         []byte // the signed file, as activated
	engine      *policy.Engine
	servers     map[string]bundle.Server
	storeSeq    int64 // the store's activation counter
	activatedAt time.Time
}

// NewServer loads the gateway's state from cfg.Store: the token-signing key
// (created on first start), the active bundle, and starts listening for
// revocations.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway: a store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTokenTTL <= 0 {
		cfg.MaxTokenTTL = time.Hour
	}
	if cfg.DefaultTokenTTL <= 0 {
		cfg.DefaultTokenTTL = 60 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	cfg.Limits = cfg.Limits.withDefaults(cfg.CallTimeout)
	if cfg.BundlePoll == 0 {
		cfg.BundlePoll = 5 * time.Second
	}
	if cfg.Upstream == nil {
		cfg.Upstream = NewHTTPUpstream(nil)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = telemetry.NewMetrics()
	}
	if cfg.Tracing == nil {
		cfg.Tracing, _ = telemetry.NewTracing(ctx, telemetry.TracingConfig{})
	}
	s := &Server{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now, mcpMetrics: newMCPMetrics(), metrics: cfg.Metrics, tracing: cfg.Tracing}
	var err error
	s.cfg.Upstream = meteredUpstream{Upstream: cfg.Upstream, s: s}
	s.live.Store(&Settings{TrustedKeys: maps.Clone(cfg.TrustedKeys), MaxTokenTTL: cfg.MaxTokenTTL, CallTimeout: cfg.CallTimeout})
	if err := s.metrics.Register(stateCollector{s}); err != nil {
		return nil, fmt.Errorf("gateway: registering metrics (one Metrics serves one Server): %w", err)
	}
	oo := cfg.OAuth
	if oo.Logger == nil {
		oo.Logger = cfg.Logger
	}
	if oo.Now == nil {
		oo.Now = cfg.Now
	}
	if s.oauth, err = oauth.NewVerifier(nil, oo); err != nil {
		return nil, fmt.Errorf("gateway: the access-token verifier: %w", err)
	}
	s.keys.init()
	s.tokens.init()
	s.inflight.init()
	if err := s.loadSigningKeys(ctx); err != nil {
		return nil, err
	}
	if err := s.loadActiveBundle(ctx); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	revs, err := s.store.Subscribe(bg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway: subscribing to revocations: %w", err)
	}
	s.wg.Add(1)
	go s.watchRevocations(bg, revs)
	if cfg.BundlePoll > 0 {
		s.wg.Add(1)
		go s.pollBundle(bg, cfg.BundlePoll)
	}
	s.every(bg, time.Hour, s.pruneTokens)
	s.initHuman(bg)
	return s, nil
}

// Close stops the background work. It does not close the store or the
// upstream, which the caller owns.
func (s *Server) Close() error {
	s.outcomes.Wait()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Bootstrap creates an admin API key if the store has no key at all and
// returns it (shown once); created is false when keys already exist.
func (s *Server) Bootstrap(ctx context.Context) (key string, created bool, err error) {
	keys, err := s.store.ListAPIKeys(ctx)
	if err != nil {
		return "", false, err
	}
	if len(keys) > 0 {
		return "", false, nil
	}
	full, id, hash := store.GenerateAPIKey()
	err = s.store.CreateAPIKey(ctx, store.APIKey{
		ID: id, Name: "bootstrap admin", Role: store.RoleAdmin, SecretHash: hash,
		Last4: store.APIKeyLast4(full), CreatedAt: s.now().UTC(),
	})
	if err != nil {
		return "", false, err
	}
	return full, true, nil
}

// EnsureAdminKey makes full, a complete API key (ak_live_<id>_<secret>)
// that an operator keeps in a secret store, an admin key of this gateway:
// created if the store has no key with its id, accepted if it has that very
// key. A key with that id and another secret or role, or a revoked one, is
// an error: a file never overrides or resurrects a key in the store.
// Replicas starting at once with the same file all succeed. Errors never
// contain the key.
func (s *Server) EnsureAdminKey(ctx context.Context, full string) (created bool, err error) {
	id, secret, err := store.ParseAPIKey(full)
	if err != nil {
		return false, fmt.Errorf("not an API key: %v", err)
	}
	check := func() (bool, error) {
		k, err := s.store.GetAPIKey(ctx, id)
		if err != nil {
			return false, err
		}
		switch {
		case !store.CheckAPISecret(id, secret, k.SecretHash):
			return false, fmt.Errorf("the store has another key with id %s: refusing to replace it", id)
		case k.Revoked():
			return false, fmt.Errorf("admin key %s was revoked: put a new key in the file", id)
		case k.Role != store.RoleAdmin:
			return false, fmt.Errorf("key %s has role %s, not admin", id, k.Role)
		}
		return false, nil
	}
	if _, err := s.store.GetAPIKey(ctx, id); err == nil {
		return check()
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	err = s.store.CreateAPIKey(ctx, store.APIKey{
		ID: id, Name: "admin (key file)", Role: store.RoleAdmin, SecretHash: store.HashAPISecret(id, secret),
		Last4: store.APIKeyLast4(full), CreatedAt: s.now().UTC(),
	})
	if errors.Is(err, store.ErrConflict) {
		return check() // another replica created it first
	}
	return err == nil, err
}

func (s *Server) loadSigningKeys(ctx context.Context) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	cand := store.SigningKey{ID: tokenKeyID(priv.Public().(ed25519.PublicKey)), PrivateKey: priv, CreatedAt: s.now().UTC()}
	k, err := s.store.BootstrapSigningKey(ctx, cand)
	if err != nil {
		return fmt.Errorf("gateway: loading the token-signing key: %w", err)
	}
	all, err := s.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("gateway: loading token-signing keys: %w", err)
	}
	by := make(map[string]ed25519.PublicKey, len(all))
	for _, sk := range all {
		by[sk.ID] = sk.PrivateKey.Public().(ed25519.PublicKey)
	}
	s.signMu.Lock()
	s.signKey, s.verifyBy = k, by
	s.signMu.Unlock()
	return nil
}

// tokenKeyID is the kid of a token-signing key: a fingerprint of its public key.
func tokenKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "tk_" + hex.EncodeToString(sum[:8])
}

func (s *Server) signingKey() store.SigningKey {
	s.signMu.RLock()
	defer s.signMu.RUnlock()
	return s.signKey
}

func (s *Server) verifyKeys() map[string]ed25519.PublicKey {
	s.signMu.RLock()
	defer s.signMu.RUnlock()
	return s.verifyBy
}

// resyncMargin is how far before the listener was last known to hear every
// revocation a resync reads back: revoked_at comes from the revoking
// replica's clock and a notification takes a moment to arrive.
const resyncMargin = time.Minute

// watchRevocations applies revocations from this and other replicas: the
// key cache forgets the key and calls in flight with it are cancelled. On
// Resync (the store's listener was disconnected and may have missed some)
// the caches are dropped and the revocations since the listener was last
// known to hear them are read back and applied, in the background, retried
// until they are read or ctx ends.
func (s *Server) watchRevocations(ctx context.Context, revs <-chan store.Revocation) {
	defer s.wg.Done()
	apply := func(r store.Revocation) {
		switch r.Kind {
		case store.RevokedAPIKey:
			s.keys.forget(r.ID)
			s.inflight.revokeKey(r.ID)
		case store.RevokedToken:
			s.tokens.forget(r.ID)
			s.inflight.revokeToken(r.ID)
		}
	}
	for r := range revs {
		if r.Kind != store.Resync {
			apply(r)
			continue
		}
		s.keys.reset()
		s.tokens.reset()
		since := r.At.Add(-resyncMargin)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
				// Bounded: a pool connection that went silent with the
				// listener's would hang the read; the next try gets a new one.
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				missed, err := s.store.RevokedSince(actx, since)
				cancel()
				if err == nil {
					for _, m := range missed {
						apply(m)
					}
					s.log.Info("revocation listener reconnected; re-read revocations", "since", since, "count", len(missed))
					return
				}
				s.log.Warn("revocation listener reconnected; re-reading revocations failed, retrying", "since", since, "error", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}()
	}
}

// every runs fn every d until ctx ends, in a goroutine Close waits for.
func (s *Server) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
}

// pruneTokens deletes token records a day after they expired, so the
// tokens table does not grow without bound. It runs hourly.
func (s *Server) pruneTokens(ctx context.Context) {
	n, err := s.store.PruneTokens(ctx, s.now().Add(-24*time.Hour))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("pruning expired tokens failed", "error", err)
	} else if n > 0 {
		s.log.Info("pruned expired tokens", "count", n)
	}
}

// Handler returns the gateway's HTTP handler.
func (s *Server) Handler() http.Handler { return s.instrument(s.routes()) }
