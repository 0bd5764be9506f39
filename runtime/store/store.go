// Package store is the gateway's durable state: API keys, token-signing keys,
// issued intent tokens, the active policy bundle and the hash-chained audit log.
//
// One interface, Store, has two engines behind it: SQLite in a single file (the
// embedded default, one gateway process) and PostgreSQL (several gateway
// replicas sharing state). Both run the same schema migrations, the same SQL
// (a few dialect words apart) and the same test suite. See docs/store.md for
// the tables, the key-hashing rationale, the audit hash encoding and the
// replica notes.
package store

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Store is everything the gateway keeps across restarts and shares between
// replicas. Methods are safe for concurrent use. Errors carry one of the kinds
// below (ErrNotFound, ErrConflict, ...) for errors.Is; context errors are
// passed through.
type Store interface {
	// CreateAPIKey records a new key. k.SecretHash comes from GenerateAPIKey;
	// the secret itself is never stored. ErrConflict if the id exists.
	CreateAPIKey(ctx context.Context, k APIKey) error
	// GetAPIKey returns the key with this id, revoked or not.
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	// ListAPIKeys returns all keys, oldest first.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey revokes a key and returns when it was revoked. Revoking
	// again is not an error and returns the first revocation time.
	RevokeAPIKey(ctx context.Context, id string) (time.Time, error)

	// PutSigningKey adds a token-signing key. ErrConflict if the kid exists.
	PutSigningKey(ctx context.Context, k SigningKey) error
	// RetireSigningKey stops a key from signing; it still verifies. Idempotent.
	RetireSigningKey(ctx context.Context, kid string) (time.Time, error)
	// SigningKeys returns active and retired keys, oldest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	// BootstrapSigningKey returns the newest active signing key, storing
	// candidate first if there is none. Replicas starting at once all get
	// the same key: only one candidate is ever stored.
	BootstrapSigningKey(ctx context.Context, candidate SigningKey) (SigningKey, error)

	// PutToken records an issued intent token. ErrConflict if the id exists.
	PutToken(ctx context.Context, t Token) error
	// GetToken returns the token with this id (jti).
	GetToken(ctx context.Context, id string) (Token, error)
	// RevokeToken revokes a token; idempotent like RevokeAPIKey.
	RevokeToken(ctx context.Context, id string) (time.Time, error)
	// PruneTokens deletes tokens that expired before t (they can no longer
	// be used, revoked or not) and returns how many it deleted.
	PruneTokens(ctx context.Context, t time.Time) (int64, error)

	// SetActiveBundle makes b the active bundle if the active one still has
	// sequence prevSeq (0: none yet), else ErrStale: another writer got there
	// first. b.Sequence must be greater than prevSeq (ErrInvalid otherwise).
	// It clears the last bundle error.
	SetActiveBundle(ctx context.Context, b Bundle, prevSeq int64) error
	// ActiveBundle returns the active bundle with its bytes; ErrNotFound if
	// none was ever set.
	ActiveBundle(ctx context.Context) (Bundle, error)
	// SetBundleError records why the latest bundle was refused; "" clears it.
	SetBundleError(ctx context.Context, msg string) error
	// BundleStatus returns the active bundle's metadata and the last error.
	BundleStatus(ctx context.Context) (BundleStatus, error)

	// AppendAudit appends rec to the hash chain and returns its sequence
	// number once the record is committed. Concurrent appends are grouped
	// into one transaction. If ctx ends first, the record may or may not be
	// committed.
	AppendAudit(ctx context.Context, rec AuditRecord) (int64, error)
	// ListAudit returns records matching f in sequence order.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
	// ExportAudit calls fn for every record matching f, in sequence order,
	// streaming; an error from fn stops the export and is returned.
	ExportAudit(ctx context.Context, f AuditFilter, fn func(AuditRecord) error) error
	// VerifyAudit walks the whole chain and reports the first record that
	// was edited, inserted or deleted.
	VerifyAudit(ctx context.Context) (VerifyReport, error)

	// Subscribe delivers every key and token revocation, from this process
	// and (on PostgreSQL) from every replica, until ctx ends or the store
	// is closed; then the channel is closed.
	Subscribe(ctx context.Context) (<-chan Revocation, error)
	// RevokedSince returns the key and token revocations whose revocation
	// time is at or after t, oldest first, each with At set. A subscriber
	// that receives Resync calls it to catch up on what it did not hear.
	RevokedSince(ctx context.Context, t time.Time) ([]Revocation, error)

	// HumanStore: approvals, device logins, console sessions (approvals.go).
	HumanStore

	// Close commits pending audit appends, then releases the database.
	Close() error
}

// DetachedAppender is a Store that can append an audit record nobody waits
// for (a forwarded call's outcome) without a goroutine waiting on it:
// AppendAuditDetached queues rec and returns; then is called once with its
// sequence number or the error, from the goroutine that committed it, and
// must not block. The record's durability is AppendAudit's, decided by
// the same group commit; an outcome queued alone waits (up to 5 ms) for
// the next request's record to be committed with it.
type DetachedAppender interface {
	AppendAuditDetached(rec AuditRecord, then func(seq int64, err error))
}

var _ DetachedAppender = (*sqlStore)(nil)

// Error kinds. Every error a Store returns for one of these conditions
// matches it with errors.Is; database failures match ErrUnavailable.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("already exists or conflicts")
	ErrStale       = errors.New("stale: changed by another writer")
	ErrInvalid     = errors.New("invalid")
	ErrUnavailable = errors.New("database unavailable")
	ErrClosed      = errors.New("store closed")
)

// Role is what an API key may do. It is fixed when the key is created.
type Role string

// The roles.
const (
	RoleAdmin  Role = "admin"
	RoleAgent  Role = "agent"
	RoleViewer Role = "viewer"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleAgent || r == RoleViewer
}

// APIKey is a stored API key: everything but the secret.
type APIKey struct {
	ID   string
	Name string
	Role Role
	// Agent is the agent identity calls made with this key act as, for
	// policy rules' agents: set by an admin when the key is created, never
	// by the caller. Empty: the key's Name.
	Agent string
	// AssertUsers: calls made with this key may name their end user in
	// the X-Armoriq-User header (a service acting for its users). Set by
	// an admin; without it the header is refused.
	AssertUsers bool
	SecretHash  []byte // HashAPISecret(ID, secret)
	Last4       string // last four characters of the full key, for display
	CreatedAt   time.Time
	RevokedAt   time.Time // zero while the key is valid
}

// AgentID is the agent identity of calls made with k: Agent, else Name.
func (k APIKey) AgentID() string {
	if k.Agent != "" {
		return k.Agent
	}
	return k.Name
}

// Revoked reports whether the key has been revoked.
func (k APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }

// SigningKey is one of the gateway's Ed25519 token-signing keys.
type SigningKey struct {
	ID         string // kid
	PrivateKey ed25519.PrivateKey
	CreatedAt  time.Time
	RetiredAt  time.Time // zero while the key signs
}

// Token is an issued intent token.
type Token struct {
	ID         string // jti
	PlanID     string
	PlanHash   string
	MerkleRoot string
	APIKeyID   string // the key that asked for the token
	User       string
	Agent      string
	IssuedAt   time.Time
	ExpiresAt  time.Time
	RevokedAt  time.Time // zero unless revoked
}

// Bundle is an activated policy bundle.
type Bundle struct {
	Revision    string
	Sequence    int64
	Data        []byte
	ActivatedAt time.Time // set by SetActiveBundle
}

// BundleStatus is what the gateway reports about its bundle.
type BundleStatus struct {
	Active      Bundle // without Data; zero if none was ever set
	LastError   string
	LastErrorAt time.Time
}

// RevocationKind says what a Revocation revoked.
type RevocationKind string

// The revocation kinds. Resync means events may have been missed (the
// listener reconnected): drop any cached key or token state, and catch up
// with RevokedSince(Resync's At minus a margin for clock skew).
const (
	RevokedAPIKey RevocationKind = "apikey"
	RevokedToken  RevocationKind = "token"
	Resync        RevocationKind = "resync"
)

// Revocation is one revocation event. On PostgreSQL its payload on the
// armoriq_revocations channel is "<kind>:<id>".
type Revocation struct {
	Kind RevocationKind
	ID   string
	// At is when it was revoked in RevokedSince's results. On a Resync
	// event it is the last moment the listener was known to hear every
	// revocation: anything revoked since may have been missed. Zero on
	// the other events.
	At time.Time
}

func (r Revocation) payload() string { return string(r.Kind) + ":" + r.ID }

func parseRevocation(s string) (Revocation, bool) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok || (kind != string(RevokedAPIKey) && kind != string(RevokedToken)) {
		return Revocation{}, false
	}
	return Revocation{Kind: RevocationKind(kind), ID: id}, true
}

// Open opens the store named by dsn: "postgres://…" or "postgresql://…" is
// PostgreSQL; "sqlite:PATH" (optionally "?synchronous=normal",
// "?audit_journal=off", or both joined by "&") or a plain
// file path is SQLite.
func Open(ctx context.Context, dsn string) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "sqlite:"), "?")
		o := SQLiteOptions{Sync: SyncFull}
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "":
			case "synchronous":
				o.Sync = v
			case "audit_journal":
				switch v {
				case "on":
				case "off":
					o.NoAuditJournal = true
				default:
					return nil, errorf("open", ErrInvalid, "audit_journal=%q: want on or off", v)
				}
			default:
				return nil, errorf("open", ErrInvalid, "unknown SQLite option %q (known: synchronous=full|normal, audit_journal=on|off)", k)
			}
		}
		return OpenSQLiteWith(ctx, path, o)
	case strings.Contains(dsn, "://"):
		return nil, errorf("open", ErrInvalid, "unknown database scheme in %q", redactDSN(dsn))
	default:
		return OpenSQLite(ctx, dsn)
	}
}

// redactDSN drops anything that may be a password from a DSN for messages.
func redactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "…@" + rest[at+1:]
	}
	return scheme + "://" + rest
}

// rawJSON normalizes empty arguments to JSON null so every stored record
// exports as valid JSON.
func rawJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}
