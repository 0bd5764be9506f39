package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// A migration is one step of the schema. The list is append-only: never edit
// a released step, add a new one. Statements are written once for both
// engines; the dialect rewrites the few words that differ (BLOB, the zero
// hash literal). A step that concerns one engine only names it (only): the
// other records the step and runs nothing, so both count the same versions.
type migration struct {
	version    int64
	name       string
	statements []string
	// only is the dialect name of the one engine the step is for; empty
	// for both.
	only string
	// refuse, if set, is a query run before the statements: a row it
	// returns (one text column) says why the step cannot run on this
	// database, and the migration stops with ErrInvalid saying so.
	refuse string
}

// All times are BIGINT nanoseconds since the Unix epoch (UTC): the same type
// on both engines, exact, and what the audit hash covers.
var migrations = []migration{
	{version: 1, name: "initial schema", statements: []string{
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
	{version: 2, name: "audit phases, hash v2, revocation times", statements: []string{
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
	{version: 3, name: "api key agent identity", statements: []string{
		`ALTER TABLE api_keys ADD COLUMN agent TEXT NOT NULL DEFAULT ''`,
	}},
	{version: 4, name: "approvals, device logins, console sessions", statements: humanTables},
	{version: 5, name: "one open approval per call", statements: oneOpenApproval},
	{version: 6, name: "who is calling: OAuth access tokens, keys that assert end users", statements: []string{
		`ALTER TABLE audit_log ADD COLUMN user_source TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN auth_issuer TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE audit_log ADD COLUMN auth_subject TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE api_keys ADD COLUMN assert_users INTEGER NOT NULL DEFAULT 0`,
	}},
	{version: 7, name: "audit_log as a rowid table (SQLite)", only: "sqlite", statements: auditLogRowid,
		refuse: `SELECT 'audit_log holds a row whose seq is ' || quote(seq) || ', not an integer, which a table keyed by seq cannot keep: correct or remove that row by hand'
			FROM audit_log WHERE typeof(seq) <> 'integer' LIMIT 1`},
}

// auditLogRowid rebuilds audit_log on SQLite with seq INTEGER PRIMARY KEY,
// an alias of the rowid. Declared BIGINT PRIMARY KEY (migration 1), seq was
// a column beside a hidden rowid, and every insert wrote the table's B-tree
// and a unique index on seq besides the others; the records now live in a
// B-tree keyed by seq itself, which list, export and verify read in order.
// The other indexes lose their trailing seq: an index of a rowid table
// ends with the rowid already, so (end_user) orders an end user's records
// by seq as (end_user, seq) did.
//
// SQLite's documented way to change a table's definition: create the new
// table, copy every row, drop the old one, rename the new one, recreate
// the indexes, all in the migration's transaction. Every column is copied
// as stored (the same declared types, so the same affinities: no value
// changes type), hashes included. No other table references audit_log and
// the schema has no view or trigger on it, so the foreign key switch (on,
// and not to be changed inside a transaction) plays no part.
var auditLogRowid = []string{
	`CREATE TABLE audit_log_new (
		seq             INTEGER PRIMARY KEY,
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
		hash            BLOB NOT NULL,
		hash_version    BIGINT NOT NULL DEFAULT 1,
		phase           TEXT NOT NULL DEFAULT '',
		concludes       BIGINT NOT NULL DEFAULT 0,
		client          TEXT NOT NULL DEFAULT '',
		trace_id        TEXT NOT NULL DEFAULT '',
		approval_id     TEXT NOT NULL DEFAULT '',
		user_source     TEXT NOT NULL DEFAULT '',
		auth_issuer     TEXT NOT NULL DEFAULT '',
		auth_subject    TEXT NOT NULL DEFAULT ''
	)`,
	`INSERT INTO audit_log_new (` + auditLogV6Cols + `)
		SELECT ` + auditLogV6Cols + ` FROM audit_log ORDER BY seq`,
	`DROP TABLE audit_log`,
	`ALTER TABLE audit_log_new RENAME TO audit_log`,
	`CREATE INDEX audit_log_recorded_at ON audit_log (recorded_at)`,
	`CREATE INDEX audit_log_end_user ON audit_log (end_user)`,
	`CREATE INDEX audit_log_server_tool ON audit_log (server, tool)`,
	`CREATE UNIQUE INDEX audit_log_concludes ON audit_log (concludes) WHERE concludes > 0`,
	`CREATE INDEX audit_log_request_id ON audit_log (request_id)`,
}

// auditLogV6Cols are audit_log's columns as of migration 6: what the
// rebuild copies (fixed here, whatever auditCols becomes later).
const auditLogV6Cols = `seq, recorded_at, request_id, api_key_id, service, end_user, agent, server, tool,
	arguments, decision, rule, bundle_revision, plan_hash, step, outcome, duration_ms, prev_hash, hash,
	hash_version, phase, concludes, client, trace_id, approval_id, user_source, auth_issuer, auth_subject`

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
		if m.only != "" && m.only != d.name {
			m.statements, m.refuse = nil, ""
		}
		if m.refuse != "" {
			var why string
			switch err := tx.QueryRowContext(ctx, m.refuse).Scan(&why); {
			case err == nil:
				return errorf(op+" "+m.name, ErrInvalid, "%s", why)
			case !errors.Is(err, sql.ErrNoRows):
				return dbError(op+" "+m.name, err)
			}
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
