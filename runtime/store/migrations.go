package store

import (
	"context"
	"database/sql"
	"strings"
)

// A migration is one step of the schema. The list is append-only: never edit
// a released step, add a new one. Statements are written once for both
// engines; the dialect rewrites the few words that differ (BLOB, the zero
// hash literal).
type migration struct {
	version    int64
	name       string
	statements []string
}

// All times are BIGINT nanoseconds since the Unix epoch (UTC): the same type
// on both engines, exact, and what the audit hash covers.
var migrations = []migration{
	{1, "initial schema", []string{
		`CREATE TABLE api_keys (
			id          TEXT PRIMARY KEY,
			name        TEXT NOT NULL,
			role        TEXT NOT NULL CHECK (role IN ('admin', 'agent', 'viewer')),
			secret_hash BLOB NOT NULL,
			last4       TEXT NOT NULL,
			created_at  BIGINT NOT NULL,
			revoked_at  BIGINT
		)`,
		`CREATE TABLE signing_keys (
			kid         TEXT PRIMARY KEY,
			private_key BLOB NOT NULL,
			created_at  BIGINT NOT NULL,
			retired_at  BIGINT
		)`,
		`CREATE TABLE tokens (
			id          TEXT PRIMARY KEY,
			plan_id     TEXT NOT NULL,
			plan_hash   TEXT NOT NULL,
			merkle_root TEXT NOT NULL,
			api_key_id  TEXT NOT NULL,
			end_user    TEXT NOT NULL,
			agent       TEXT NOT NULL,
			issued_at   BIGINT NOT NULL,
			expires_at  BIGINT NOT NULL,
			revoked_at  BIGINT
		)`,
		`CREATE INDEX tokens_expires_at ON tokens (expires_at)`,
		`CREATE TABLE bundle_state (
			id            INTEGER PRIMARY KEY CHECK (id = 1),
			revision      TEXT NOT NULL,
			sequence      BIGINT NOT NULL,
			data          BLOB,
			activated_at  BIGINT,
			error_message TEXT NOT NULL,
			error_at      BIGINT
		)`,
		`INSERT INTO bundle_state (id, revision, sequence, error_message) VALUES (1, '', 0, '')`,
		`CREATE TABLE audit_head (
			id   INTEGER PRIMARY KEY CHECK (id = 1),
			seq  BIGINT NOT NULL,
			hash BLOB NOT NULL
		)`,
		`INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ZEROHASH)`,
		`CREATE TABLE audit_log (
			seq             BIGINT PRIMARY KEY,
			recorded_at     BIGINT NOT NULL,
			request_id      TEXT NOT NULL,
			api_key_id      TEXT NOT NULL,
			service         TEXT NOT NULL,
			end_user        TEXT NOT NULL,
			agent           TEXT NOT NULL,
			server          TEXT NOT NULL,
			tool            TEXT NOT NULL,
			arguments       TEXT NOT NULL,
			decision        TEXT NOT NULL,
			rule            TEXT NOT NULL,
			bundle_revision TEXT NOT NULL,
			plan_hash       TEXT NOT NULL,
			step            BIGINT NOT NULL,
			outcome         TEXT NOT NULL,
			duration_ms     BIGINT NOT NULL,
			prev_hash       BLOB NOT NULL,
			hash            BLOB NOT NULL
		)`,
		`CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at)`,
		`CREATE INDEX audit_log_end_user ON audit_log (end_user, seq)`,
		`CREATE INDEX audit_log_server_tool ON audit_log (server, tool, seq)`,
	}},
	// Audit before action: a call is a request record and an outcome
	// record; new records are hashed with encoding v2, which covers the new
	// columns. Rows already stored keep hash_version 1 and still verify.
	{2, "audit phases, hash v2, revocation times", []string{
		`ALTER TABLE audit_log ADD COLUMN hash_version BIGINT NOT NULL DEFAULT 1`,
		`ALTER TABLE audit_log ADD COLUMN phase TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN concludes BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE audit_log ADD COLUMN client TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN trace_id TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN approval_id TEXT NOT NULL DEFAULT ''`,
		// At most one outcome per request; also the lookup that finds a
		// request's outcome (queries repeat concludes > 0 to use it).
		`CREATE UNIQUE INDEX audit_log_concludes ON audit_log (concludes) WHERE concludes > 0`,
		`CREATE INDEX audit_log_request_id ON audit_log (request_id, seq)`,
		`CREATE INDEX api_keys_revoked_at ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL`,
		`CREATE INDEX tokens_revoked_at ON tokens (revoked_at) WHERE revoked_at IS NOT NULL`,
	}},
	{3, "api key agent identity", []string{
		`ALTER TABLE api_keys ADD COLUMN agent TEXT NOT NULL DEFAULT ''`,
	}},
	{4, "approvals, device logins, console sessions", humanTables},
	{5, "one open approval per call", oneOpenApproval},
	{6, "who is calling: OAuth access tokens, keys that assert end users", []string{
		`ALTER TABLE audit_log ADD COLUMN user_source TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN auth_issuer TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN auth_subject TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE api_keys ADD COLUMN assert_users INTEGER NOT NULL DEFAULT 0`,
	}},
}

// migrate applies the steps the database lacks (all of migrations, but
// for tests that build an older schema), all in one
// transaction. On PostgreSQL a transaction-scoped advisory lock makes a
// second process starting at the same moment wait, then find nothing to do;
// on SQLite the writer's BEGIN IMMEDIATE does the same.
func migrate(ctx context.Context, db *sql.DB, d *dialect, steps []migration) error {
	const op = "migrate"
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op, err)
	}
	defer tx.Rollback()
	if err := d.lock(ctx, tx, lockMigrate); err != nil {
		return dbError(op, err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return dbError(op, err)
	}
	var current int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return dbError(op, err)
	}
	latest := steps[len(steps)-1].version
	if current > latest {
		return errorf(op, ErrConflict, "database schema version %d is newer than this binary's %d", current, latest)
	}
	for _, m := range steps {
		if m.version <= current {
			continue
		}
		for _, stmt := range m.statements {
			if _, err := tx.ExecContext(ctx, d.ddl(stmt)); err != nil {
				return dbError(op+" "+m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
			m.version, m.name, now().UnixNano()); err != nil {
			return dbError(op, err)
		}
	}
	return dbError(op, tx.Commit())
}

// ddl adapts a migration statement to the engine.
func (d *dialect) ddl(stmt string) string {
	stmt = strings.ReplaceAll(stmt, "ZEROHASH", d.zeroHash)
	return strings.ReplaceAll(stmt, " BLOB", " "+d.blob)
}
