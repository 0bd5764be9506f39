package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dialect is all that differs between the engines.
type dialect struct {
	name      string
	blob      string // column type for bytes
	zeroHash  string // literal for 32 zero bytes
	forUpdate string // row-lock suffix for SELECT in a write transaction
	dollar    bool   // placeholders are $1, $2, … instead of ?
	// lock takes a transaction-scoped lock (PostgreSQL advisory lock); on
	// SQLite the writer's BEGIN IMMEDIATE already excludes other writers.
	lock func(ctx context.Context, tx *sql.Tx, key int64) error
	// notify sends a revocation inside the transaction that makes it
	// (PostgreSQL NOTIFY); nil means publish in-process after commit.
	notify func(ctx context.Context, tx *sql.Tx, r Revocation) error
	// snapshot are the options of a read transaction that sees one
	// consistent state.
	snapshot *sql.TxOptions
	// arrays: the group writer inserts a batch in one statement of one
	// array per column (PostgreSQL), not one row at a time (SQLite).
	arrays bool
	// seqIn is the condition "in the list of sequence numbers given as one
	// parameter", and seqList makes that parameter: one statement text for
	// any number of sequence numbers.
	seqIn   string
	seqList func(seqs []int64) any
}

// Advisory lock keys (PostgreSQL). Arbitrary, but fixed forever.
const (
	lockMigrate int64 = 0x61726d6f72000001
	lockSigning int64 = 0x61726d6f72000002
)

// rebind turns ? placeholders into $n where the engine needs it. Our SQL has
// no ? inside literals.
func (d *dialect) rebind(q string) string {
	if !d.dollar {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// sqlStore is the Store over database/sql, for both engines.
type sqlStore struct {
	d     *dialect
	w     *sql.DB // writes; on SQLite a single connection
	r     *sql.DB // reads; may be w
	hub   *hub
	audit *auditWriter
	as    *auditStmts // the audit writer's prepared statements, on w
	// listener hears other replicas' revocations (PostgreSQL only).
	listener *pgListener
	// checkpoints copies the WAL back into the database off the commit
	// path (SQLite only; checkpoint.go).
	checkpoints *walCheckpointer
	// journal makes audit batches durable before they reach the database
	// (SQLite only; journal.go). nil: batches commit to the database.
	journal *auditJournal
	// appendRefused says why this store refuses audit appends (another
	// process holds the journal), or is nil.
	appendRefused error

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*sqlStore)(nil)

func newSQLStore(ctx context.Context, d *dialect, w, r *sql.DB) (*sqlStore, error) {
	if err := migrate(ctx, w, d, migrations); err != nil {
		return nil, err
	}
	as, err := prepareAudit(ctx, w, d)
	if err != nil {
		return nil, err
	}
	// The caller starts the audit writer (startAudit), once it knows how
	// batches are written.
	return &sqlStore{d: d, w: w, r: r, hub: newHub(), as: as}, nil
}

// startAudit starts the group writer with write, or with the database's
// own transactions if write is nil.
func (s *sqlStore) startAudit(write func([]*appendReq) error) {
	if write == nil {
		write = s.writeAuditBatch
	}
	s.audit = newAuditWriter(write)
}

// auditSynced waits, before a read of the audit log, until every record
// appended before it is in the database (with a journal; at once without).
func (s *sqlStore) auditSynced(ctx context.Context, op string) error {
	if s.journal == nil {
		return nil
	}
	return s.journal.synced(ctx, op)
}

// now is the store's clock, in UTC.
func now() time.Time { return time.Now().UTC() }

func nsOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNS(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func (s *sqlStore) q(query string) string { return s.d.rebind(query) }

// writeTx runs fn in a write transaction and commits it.
func (s *sqlStore) writeTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return dbError(op, err)
	}
	return dbError(op, tx.Commit())
}

// ---- API keys

const apiKeyCols = `id, name, role, secret_hash, last4, created_at, revoked_at, agent, assert_users`

func scanAPIKey(sc rowScanner) (APIKey, error) {
	var k APIKey
	var created int64
	var revoked sql.NullInt64
	var assert int64
	err := sc.Scan(&k.ID, &k.Name, &k.Role, &k.SecretHash, &k.Last4, &created, &revoked, &k.Agent, &assert)
	k.CreatedAt, k.RevokedAt, k.AssertUsers = time.Unix(0, created).UTC(), fromNS(revoked), assert != 0
	return k, err
}

func (s *sqlStore) CreateAPIKey(ctx context.Context, k APIKey) error {
	const op = "create api key"
	switch {
	case len(k.ID) < apiKeyMinIDLen || len(k.ID) > apiKeyMaxIDLen || !only(k.ID, base36):
		return errorf(op, ErrInvalid, "malformed id %q", k.ID)
	case !k.Role.Valid():
		return errorf(op, ErrInvalid, "unknown role %q", k.Role)
	case len(k.SecretHash) != 32:
		return errorf(op, ErrInvalid, "secret hash must be 32 bytes")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO api_keys (`+apiKeyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.Name, string(k.Role), k.SecretHash, k.Last4, k.CreatedAt.UnixNano(), nsOrNull(k.RevokedAt), k.Agent, boolInt(k.AssertUsers))
	return dbError(op, err)
}

func (s *sqlStore) GetAPIKey(ctx context.Context, id string) (APIKey, error) {
	k, err := scanAPIKey(s.r.QueryRowContext(ctx, s.q(`SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`), id))
	return k, dbError("get api key", err)
}

// rowScanner is what the scan functions read a row from.
type rowScanner interface{ Scan(...any) error }

// queryAll runs query on the reader and scans every row with scan; errors
// are reported under op.
func queryAll[T any](ctx context.Context, s *sqlStore, op, query string, args []any, scan func(rowScanner) (T, error)) ([]T, error) {
	rows, err := s.r.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, dbError(op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, dbError(op, err)
		}
		out = append(out, v)
	}
	return out, dbError(op, rows.Err())
}

func (s *sqlStore) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	return queryAll(ctx, s, "list api keys", `SELECT `+apiKeyCols+` FROM api_keys ORDER BY created_at, id`, nil, scanAPIKey)
}

func (s *sqlStore) RevokeAPIKey(ctx context.Context, id string) (time.Time, error) {
	return s.revoke(ctx, "revoke api key", "api_keys", Revocation{Kind: RevokedAPIKey, ID: id})
}

// revoke sets revoked_at once, reads it back, and notifies, all in one
// transaction (PostgreSQL delivers NOTIFY at commit).
func (s *sqlStore) revoke(ctx context.Context, op, table string, r Revocation) (time.Time, error) {
	var at sql.NullInt64
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE `+table+` SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`),
			now().UnixNano(), r.ID); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, s.q(`SELECT revoked_at FROM `+table+` WHERE id = ?`), r.ID).Scan(&at); err != nil {
			return err
		}
		if s.d.notify != nil {
			return s.d.notify(ctx, tx, r)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	if s.d.notify == nil {
		s.hub.publish(r)
	}
	return fromNS(at), nil
}

// ---- signing keys

const signingKeyCols = `kid, private_key, created_at, retired_at`

func scanSigningKey(sc rowScanner) (SigningKey, error) {
	var k SigningKey
	var priv []byte
	var created int64
	var retired sql.NullInt64
	err := sc.Scan(&k.ID, &priv, &created, &retired)
	k.PrivateKey = ed25519.PrivateKey(priv)
	k.CreatedAt, k.RetiredAt = time.Unix(0, created).UTC(), fromNS(retired)
	return k, err
}

// NewSigningKey generates a fresh Ed25519 signing key with a random kid,
// for PutSigningKey or BootstrapSigningKey.
func NewSigningKey() (SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return SigningKey{}, errorf("new signing key", ErrUnavailable, "%v", err)
	}
	return SigningKey{ID: randomID(16), PrivateKey: priv, CreatedAt: now()}, nil
}

func checkSigningKey(op string, k *SigningKey) error {
	if k.ID == "" {
		return errorf(op, ErrInvalid, "empty kid")
	}
	if len(k.PrivateKey) != ed25519.PrivateKeySize {
		return errorf(op, ErrInvalid, "private key must be %d bytes", ed25519.PrivateKeySize)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	return nil
}

func (s *sqlStore) PutSigningKey(ctx context.Context, k SigningKey) error {
	const op = "put signing key"
	if err := checkSigningKey(op, &k); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO signing_keys (`+signingKeyCols+`) VALUES (?, ?, ?, ?)`),
		k.ID, []byte(k.PrivateKey), k.CreatedAt.UnixNano(), nsOrNull(k.RetiredAt))
	return dbError(op, err)
}

func (s *sqlStore) RetireSigningKey(ctx context.Context, kid string) (time.Time, error) {
	var at sql.NullInt64
	err := s.writeTx(ctx, "retire signing key", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE signing_keys SET retired_at = COALESCE(retired_at, ?) WHERE kid = ?`),
			now().UnixNano(), kid); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, s.q(`SELECT retired_at FROM signing_keys WHERE kid = ?`), kid).Scan(&at)
	})
	return fromNS(at), err
}

func (s *sqlStore) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	return queryAll(ctx, s, "signing keys", `SELECT `+signingKeyCols+` FROM signing_keys ORDER BY created_at, kid`, nil, scanSigningKey)
}

// BootstrapSigningKey checks for an active key and inserts the candidate
// under one lock (advisory on PostgreSQL, the write lock on SQLite), so two
// replicas starting together cannot both insert.
func (s *sqlStore) BootstrapSigningKey(ctx context.Context, candidate SigningKey) (SigningKey, error) {
	const op = "bootstrap signing key"
	if err := checkSigningKey(op, &candidate); err != nil {
		return SigningKey{}, err
	}
	candidate.RetiredAt = time.Time{}
	var got SigningKey
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		if err := s.d.lock(ctx, tx, lockSigning); err != nil {
			return err
		}
		k, err := scanSigningKey(tx.QueryRowContext(ctx,
			`SELECT `+signingKeyCols+` FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1`))
		if err == nil {
			got = k
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		got = candidate
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO signing_keys (`+signingKeyCols+`) VALUES (?, ?, ?, NULL)`),
			candidate.ID, []byte(candidate.PrivateKey), candidate.CreatedAt.UnixNano())
		return err
	})
	if err != nil {
		return SigningKey{}, err
	}
	return got, nil
}

// ---- tokens

const tokenCols = `id, plan_id, plan_hash, merkle_root, api_key_id, end_user, agent, issued_at, expires_at, revoked_at`

func (s *sqlStore) PutToken(ctx context.Context, t Token) error {
	const op = "put token"
	if t.ID == "" || t.IssuedAt.IsZero() || t.ExpiresAt.IsZero() {
		return errorf(op, ErrInvalid, "id, issued_at and expires_at are required")
	}
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		t.ID, t.PlanID, t.PlanHash, t.MerkleRoot, t.APIKeyID, t.User, t.Agent,
		t.IssuedAt.UnixNano(), t.ExpiresAt.UnixNano(), nsOrNull(t.RevokedAt))
	return dbError(op, err)
}

func (s *sqlStore) GetToken(ctx context.Context, id string) (Token, error) {
	var t Token
	var issued, expires int64
	var revoked sql.NullInt64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens WHERE id = ?`), id).Scan(
		&t.ID, &t.PlanID, &t.PlanHash, &t.MerkleRoot, &t.APIKeyID, &t.User, &t.Agent, &issued, &expires, &revoked)
	if err != nil {
		return Token{}, dbError("get token", err)
	}
	t.IssuedAt, t.ExpiresAt, t.RevokedAt = time.Unix(0, issued).UTC(), time.Unix(0, expires).UTC(), fromNS(revoked)
	return t, nil
}

func (s *sqlStore) RevokeToken(ctx context.Context, id string) (time.Time, error) {
	return s.revoke(ctx, "revoke token", "tokens", Revocation{Kind: RevokedToken, ID: id})
}

func (s *sqlStore) PruneTokens(ctx context.Context, t time.Time) (int64, error) {
	const op = "prune tokens"
	res, err := s.w.ExecContext(ctx, s.q(`DELETE FROM tokens WHERE expires_at < ?`), t.UnixNano())
	if err != nil {
		return 0, dbError(op, err)
	}
	n, err := res.RowsAffected()
	return n, dbError(op, err)
}

// ---- bundles

// SetActiveBundle is a compare-and-set on the single bundle_state row: the
// UPDATE matches only while the stored sequence is still prevSeq.
func (s *sqlStore) SetActiveBundle(ctx context.Context, b Bundle, prevSeq int64) error {
	const op = "set active bundle"
	if b.Sequence <= prevSeq {
		return errorf(op, ErrInvalid, "sequence %d does not follow %d", b.Sequence, prevSeq)
	}
	if b.Revision == "" || b.Data == nil {
		return errorf(op, ErrInvalid, "revision and data are required")
	}
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE bundle_state
		SET revision = ?, sequence = ?, data = ?, activated_at = ?, error_message = '', error_at = NULL
		WHERE id = 1 AND sequence = ?`),
		b.Revision, b.Sequence, b.Data, now().UnixNano(), prevSeq)
	if err != nil {
		return dbError(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return dbError(op, err)
	} else if n == 0 {
		return errorf(op, ErrStale, "the active bundle is no longer sequence %d", prevSeq)
	}
	return nil
}

func (s *sqlStore) ActiveBundle(ctx context.Context) (Bundle, error) {
	const op = "active bundle"
	var b Bundle
	var at sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT revision, sequence, data, activated_at FROM bundle_state WHERE id = 1`).
		Scan(&b.Revision, &b.Sequence, &b.Data, &at)
	if err != nil {
		return Bundle{}, dbError(op, err)
	}
	if b.Sequence == 0 {
		return Bundle{}, errorf(op, ErrNotFound, "no bundle has been activated")
	}
	b.ActivatedAt = fromNS(at)
	return b, nil
}

func (s *sqlStore) SetBundleError(ctx context.Context, msg string) error {
	at := nsOrNull(now())
	if msg == "" {
		at = nil
	}
	_, err := s.w.ExecContext(ctx, s.q(`UPDATE bundle_state SET error_message = ?, error_at = ? WHERE id = 1`), msg, at)
	return dbError("set bundle error", err)
}

func (s *sqlStore) BundleStatus(ctx context.Context) (BundleStatus, error) {
	var st BundleStatus
	var activated, errAt sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT revision, sequence, activated_at, error_message, error_at FROM bundle_state WHERE id = 1`).
		Scan(&st.Active.Revision, &st.Active.Sequence, &activated, &st.LastError, &errAt)
	if err != nil {
		return BundleStatus{}, dbError("bundle status", err)
	}
	st.Active.ActivatedAt, st.LastErrorAt = fromNS(activated), fromNS(errAt)
	return st, nil
}

// ---- revocations and shutdown

func (s *sqlStore) Subscribe(ctx context.Context) (<-chan Revocation, error) {
	if s.listener != nil {
		if err := s.listener.start(ctx); err != nil {
			return nil, err
		}
	}
	return s.hub.subscribe(ctx)
}

func (s *sqlStore) RevokedSince(ctx context.Context, t time.Time) ([]Revocation, error) {
	const op = "revoked since"
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT 'apikey', id, revoked_at FROM api_keys WHERE revoked_at >= ?
		UNION ALL SELECT 'token', id, revoked_at FROM tokens WHERE revoked_at >= ?
		ORDER BY 3, 1, 2`), t.UnixNano(), t.UnixNano())
	if err != nil {
		return nil, dbError(op, err)
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		var kind string
		var at int64
		if err := rows.Scan(&kind, &r.ID, &at); err != nil {
			return nil, dbError(op, err)
		}
		r.Kind, r.At = RevocationKind(kind), time.Unix(0, at).UTC()
		out = append(out, r)
	}
	return out, dbError(op, rows.Err())
}

func (s *sqlStore) Close() error {
	s.closeOnce.Do(func() {
		if s.audit != nil {
			s.audit.close()
		}
		var jerr error
		if s.journal != nil {
			jerr = s.journal.close()
		}
		s.as.close()
		if s.checkpoints != nil {
			s.checkpoints.close()
		}
		if s.listener != nil {
			s.listener.stop()
		}
		s.hub.close()
		err := s.w.Close()
		if s.r != s.w {
			err = errors.Join(err, s.r.Close())
		}
		if err != nil {
			s.closeErr = dbError("close", err)
		}
		if jerr != nil {
			s.closeErr = errors.Join(s.closeErr, errorf("close", ErrUnavailable, "audit journal: %v", jerr))
		}
	})
	return s.closeErr
}

// boolInt stores a flag as the INTEGER both engines read back.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
