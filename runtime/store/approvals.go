package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"
)

// HumanStore is the state of the gateway's human side: approvals of held
// calls, device logins (armoriq login) and console sessions. It is part of
// Store.
type HumanStore interface {
	// CreateApproval records a new pending approval. ErrConflict if the id
	// exists or the same call (token, step, arguments hash) already has an
	// open one (pending or approved, expired or not); ErrInvalid if a
	// required field is missing.
	CreateApproval(ctx context.Context, a Approval) error
	// GetApproval returns the approval with this id.
	GetApproval(ctx context.Context, id string) (Approval, error)
	// ListApprovals returns the approvals matching f: pending ones first,
	// then newest first.
	ListApprovals(ctx context.Context, f ApprovalFilter) ([]Approval, error)
	// DecideApproval moves a pending, unexpired approval to approved or
	// denied, recording who, when and why, and returns it. If the approval
	// is no longer pending (or expired before at) it changes nothing and
	// returns the approval as it is with an error matching ErrConflict.
	DecideApproval(ctx context.Context, id string, d ApprovalDecision) (Approval, error)
	// ExecuteApproval moves an approved, unexpired approval to executed:
	// exactly one caller ever succeeds. Otherwise it returns the approval
	// as it is with an error matching ErrConflict.
	ExecuteApproval(ctx context.Context, id string, at time.Time) (Approval, error)
	// ExpireApprovals marks pending and approved approvals whose expiry is
	// at or before at as expired and returns them.
	ExpireApprovals(ctx context.Context, at time.Time) ([]Approval, error)

	// CreateDeviceLogin records a new pending device login. ErrConflict if
	// its code hash or user code is taken.
	CreateDeviceLogin(ctx context.Context, d DeviceLogin) error
	// DeviceLoginByCode returns the device login of a device code hash.
	DeviceLoginByCode(ctx context.Context, codeHash []byte) (DeviceLogin, error)
	// DeviceLoginByUserCode returns the device login of a user code.
	DeviceLoginByUserCode(ctx context.Context, userCode string) (DeviceLogin, error)
	// ListDeviceLogins returns device logins created at or after since,
	// pending first, then newest first.
	ListDeviceLogins(ctx context.Context, since time.Time) ([]DeviceLogin, error)
	// CountPendingDeviceLogins counts pending, unexpired device logins.
	CountPendingDeviceLogins(ctx context.Context, at time.Time) (int, error)
	// TouchDeviceLogin records a poll at at and returns the device login as
	// it was before the poll (its LastPollAt is the previous poll).
	TouchDeviceLogin(ctx context.Context, codeHash []byte, at time.Time) (DeviceLogin, error)
	// DecideDeviceLogin approves or denies a pending, unexpired device
	// login; ErrConflict (with the login as it is) otherwise.
	DecideDeviceLogin(ctx context.Context, userCode string, d DeviceDecision) (DeviceLogin, error)
	// ConsumeDeviceLogin moves an approved device login to consumed,
	// recording the id of the key made for it: exactly one caller ever
	// succeeds; ErrConflict otherwise.
	ConsumeDeviceLogin(ctx context.Context, codeHash []byte, keyID string, at time.Time) (DeviceLogin, error)

	// CreateSession records a console session.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns the unexpired session with this id hash.
	GetSession(ctx context.Context, idHash []byte, at time.Time) (Session, error)
	// DeleteSession ends a session; deleting a missing one is not an error.
	DeleteSession(ctx context.Context, idHash []byte) error
	// PruneHuman deletes sessions that expired before t and device logins
	// created before t, and returns how many rows it deleted.
	PruneHuman(ctx context.Context, t time.Time) (int64, error)
}

// ApprovalState is where an approval is in its life.
type ApprovalState string

// The approval states. Pending becomes approved, denied or expired;
// approved becomes executed (once) or expired.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	ApprovalExpired  ApprovalState = "expired"
	ApprovalExecuted ApprovalState = "executed"
)

// Valid reports whether s is one of the known states.
func (s ApprovalState) Valid() bool {
	switch s {
	case ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalExpired, ApprovalExecuted:
		return true
	}
	return false
}

// Approval is a held call waiting for, or past, a person's decision. The
// fields from TokenID to ArgsHash bind it to exactly one call.
type Approval struct {
	ID        string        `json:"id"`
	State     ApprovalState `json:"state"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"`

	TokenID  string `json:"token_id"` // the intent token (jti) of the call
	PlanHash string `json:"plan_hash"`
	Step     int64  `json:"step"` // the plan step
	Server   string `json:"server"`
	Tool     string `json:"tool"`
	ArgsHash string `json:"args_hash"` // hex SHA-256 of the canonical arguments
	// Arguments are the call's arguments, secrets redacted, for display.
	Arguments json.RawMessage `json:"arguments"`
	User      string          `json:"user"` // end user
	Agent     string          `json:"agent"`

	Rule      string   `json:"rule"`   // the rule that held the call
	Reason    string   `json:"reason"` // its reason
	Approvers []string `json:"approvers,omitempty"`
	// RequesterKeyID and Requester name the API key that made the call.
	RequesterKeyID string `json:"requester_key_id"`
	Requester      string `json:"requester"`
	RequestID      string `json:"request_id"`

	DecidedByKeyID string    `json:"decided_by_key_id,omitempty"`
	DecidedBy      string    `json:"decided_by,omitempty"`
	DecidedAt      time.Time `json:"decided_at,omitzero"`
	Comment        string    `json:"comment,omitempty"`
	ExecutedAt     time.Time `json:"executed_at,omitzero"`
}

// ApprovalFilter selects approvals. Zero fields match everything.
type ApprovalFilter struct {
	State   ApprovalState
	TokenID string
	// Step and ArgsHash apply only with TokenID: the approvals of one call.
	Step     int64
	ArgsHash string
	Limit    int // 0 means 100, at most 1000
}

// ApprovalDecision is a person's decision on an approval.
type ApprovalDecision struct {
	Approve bool
	ByKeyID string
	By      string // the approver's identity (email or key name)
	Comment string
	At      time.Time
}

// DeviceState is where a device login is in its life.
type DeviceState string

// The device login states.
const (
	DevicePending  DeviceState = "pending"
	DeviceApproved DeviceState = "approved"
	DeviceDenied   DeviceState = "denied"
	DeviceConsumed DeviceState = "consumed" // the key was handed out
)

// DeviceLogin is one armoriq login (RFC 8628 device authorization).
type DeviceLogin struct {
	CodeHash   []byte      `json:"-"` // SHA-256 of the device code; the code is never stored
	UserCode   string      `json:"user_code"`
	State      DeviceState `json:"state"`
	Client     string      `json:"client"` // what the device said it is, for the approver
	CreatedAt  time.Time   `json:"created_at"`
	ExpiresAt  time.Time   `json:"expires_at"`
	LastPollAt time.Time   `json:"last_poll_at,omitzero"`

	Role      Role      `json:"role,omitempty"`  // granted
	Email     string    `json:"email,omitempty"` // the identity the key is named after
	ByKeyID   string    `json:"by_key_id,omitempty"`
	By        string    `json:"by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	KeyID     string    `json:"key_id,omitempty"` // the key made when consumed
}

// Expired reports whether the device login can no longer be approved or
// consumed at t.
func (d DeviceLogin) Expired(t time.Time) bool { return !t.Before(d.ExpiresAt) }

// DeviceDecision is a person's decision on a device login.
type DeviceDecision struct {
	Approve bool
	Role    Role
	Email   string
	ByKeyID string
	By      string
	At      time.Time
}

// Session is a signed-in console session. The cookie holds the id; the
// store holds its hash.
type Session struct {
	IDHash    []byte
	KeyID     string // the API key the session acts as
	CSRF      string // the token every form must carry
	CreatedAt time.Time
	ExpiresAt time.Time
	// RevokeKeyOnEnd: the key was made for this session (device sign-in)
	// and is revoked at logout.
	RevokeKeyOnEnd bool
}

// humanTables is the migration that creates the tables of HumanStore.
var humanTables = []string{
	`CREATE TABLE approvals (
		id                TEXT PRIMARY KEY,
		state             TEXT NOT NULL,
		created_at        BIGINT NOT NULL,
		expires_at        BIGINT NOT NULL,
		token_id          TEXT NOT NULL,
		plan_hash         TEXT NOT NULL,
		step              BIGINT NOT NULL,
		server            TEXT NOT NULL,
		tool              TEXT NOT NULL,
		args_hash         TEXT NOT NULL,
		arguments         TEXT NOT NULL,
		end_user          TEXT NOT NULL,
		agent             TEXT NOT NULL,
		rule              TEXT NOT NULL,
		reason            TEXT NOT NULL,
		approvers         TEXT NOT NULL,
		requester_key_id  TEXT NOT NULL,
		requester         TEXT NOT NULL,
		request_id        TEXT NOT NULL,
		decided_by_key_id TEXT NOT NULL,
		decided_by        TEXT NOT NULL,
		decided_at        BIGINT,
		comment           TEXT NOT NULL,
		executed_at       BIGINT
	)`,
	`CREATE INDEX approvals_call ON approvals (token_id, step, args_hash)`,
	`CREATE INDEX approvals_state ON approvals (state, created_at)`,
	`CREATE TABLE device_logins (
		code_hash    BLOB PRIMARY KEY,
		user_code    TEXT NOT NULL UNIQUE,
		state        TEXT NOT NULL,
		client       TEXT NOT NULL,
		created_at   BIGINT NOT NULL,
		expires_at   BIGINT NOT NULL,
		last_poll_at BIGINT,
		role         TEXT NOT NULL,
		email        TEXT NOT NULL,
		by_key_id    TEXT NOT NULL,
		by_name      TEXT NOT NULL,
		decided_at   BIGINT,
		key_id       TEXT NOT NULL
	)`,
	`CREATE INDEX device_logins_created_at ON device_logins (created_at)`,
	`CREATE TABLE console_sessions (
		id_hash           BLOB PRIMARY KEY,
		key_id            TEXT NOT NULL,
		csrf              TEXT NOT NULL,
		created_at        BIGINT NOT NULL,
		expires_at        BIGINT NOT NULL,
		revoke_key_on_end BIGINT NOT NULL
	)`,
	`CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at)`,
}

// oneOpenApproval makes a second open (pending or approved) approval of
// the same call a conflict, so two replicas holding the same call at once
// create one approval between them.
var oneOpenApproval = []string{
	`CREATE UNIQUE INDEX approvals_open_call ON approvals (token_id, step, args_hash) WHERE state IN ('pending', 'approved')`,
}

// ---- approvals

const approvalCols = `id, state, created_at, expires_at, token_id, plan_hash, step, server, tool, args_hash,
	arguments, end_user, agent, rule, reason, approvers, requester_key_id, requester, request_id,
	decided_by_key_id, decided_by, decided_at, comment, executed_at`

func scanApproval(sc rowScanner) (Approval, error) {
	var a Approval
	var created, expires int64
	var decided, executed sql.NullInt64
	var args, approvers string
	err := sc.Scan(&a.ID, &a.State, &created, &expires, &a.TokenID, &a.PlanHash, &a.Step, &a.Server, &a.Tool, &a.ArgsHash,
		&args, &a.User, &a.Agent, &a.Rule, &a.Reason, &approvers, &a.RequesterKeyID, &a.Requester, &a.RequestID,
		&a.DecidedByKeyID, &a.DecidedBy, &decided, &a.Comment, &executed)
	if err != nil {
		return Approval{}, err
	}
	a.CreatedAt, a.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC()
	a.DecidedAt, a.ExecutedAt = fromNS(decided), fromNS(executed)
	a.Arguments = json.RawMessage(args)
	if approvers != "" {
		a.Approvers = strings.Split(approvers, "\n")
	}
	return a, nil
}

func (s *sqlStore) CreateApproval(ctx context.Context, a Approval) error {
	const op = "create approval"
	switch {
	case a.ID == "" || a.TokenID == "" || a.Server == "" || a.Tool == "" || a.ArgsHash == "":
		return errorf(op, ErrInvalid, "id, token, server, tool and arguments hash are required")
	case a.CreatedAt.IsZero() || !a.ExpiresAt.After(a.CreatedAt):
		return errorf(op, ErrInvalid, "expiry must follow creation")
	}
	for _, ap := range a.Approvers {
		if ap == "" || strings.ContainsAny(ap, "\n") {
			return errorf(op, ErrInvalid, "malformed approver %q", ap)
		}
	}
	if a.State == "" {
		a.State = ApprovalPending
	}
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO approvals (`+approvalCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		a.ID, string(a.State), a.CreatedAt.UnixNano(), a.ExpiresAt.UnixNano(), a.TokenID, a.PlanHash, a.Step, a.Server, a.Tool, a.ArgsHash,
		string(rawJSON(a.Arguments)), a.User, a.Agent, a.Rule, a.Reason, strings.Join(a.Approvers, "\n"), a.RequesterKeyID, a.Requester, a.RequestID,
		a.DecidedByKeyID, a.DecidedBy, nsOrNull(a.DecidedAt), a.Comment, nsOrNull(a.ExecutedAt))
	return dbError(op, err)
}

func (s *sqlStore) GetApproval(ctx context.Context, id string) (Approval, error) {
	a, err := scanApproval(s.r.QueryRowContext(ctx, s.q(`SELECT `+approvalCols+` FROM approvals WHERE id = ?`), id))
	return a, dbError("get approval", err)
}

func (s *sqlStore) ListApprovals(ctx context.Context, f ApprovalFilter) ([]Approval, error) {
	const op = "list approvals"
	var where []string
	var args []any
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.TokenID != "" {
		where = append(where, "token_id = ?", "step = ?", "args_hash = ?")
		args = append(args, f.TokenID, f.Step, f.ArgsHash)
	}
	q := `SELECT ` + approvalCols + ` FROM approvals`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q += ` ORDER BY CASE WHEN state = 'pending' THEN 0 ELSE 1 END, created_at DESC, id LIMIT ?`
	args = append(args, limit)
	return queryAll(ctx, s, op, q, args, scanApproval)
}

// transition runs update (which must match only rows in the wanted state)
// and reads the approval back in the same transaction. No row changed
// means the approval was not in that state: ErrConflict, or ErrNotFound if
// there is none.
func (s *sqlStore) transition(ctx context.Context, op, id, update string, args ...any) (Approval, error) {
	var a Approval
	var changed int64
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(update), args...)
		if err != nil {
			return err
		}
		if changed, err = res.RowsAffected(); err != nil {
			return err
		}
		a, err = scanApproval(tx.QueryRowContext(ctx, s.q(`SELECT `+approvalCols+` FROM approvals WHERE id = ?`), id))
		return err
	})
	if err != nil {
		return Approval{}, err
	}
	if changed == 0 {
		return a, errorf(op, ErrConflict, "approval %s is %s", id, a.State)
	}
	return a, nil
}

func (s *sqlStore) DecideApproval(ctx context.Context, id string, d ApprovalDecision) (Approval, error) {
	const op = "decide approval"
	if d.At.IsZero() || d.ByKeyID == "" {
		return Approval{}, errorf(op, ErrInvalid, "the decider and the time are required")
	}
	state := ApprovalDenied
	if d.Approve {
		state = ApprovalApproved
	}
	a, err := s.transition(ctx, op, id, `UPDATE approvals
		SET state = ?, decided_by_key_id = ?, decided_by = ?, decided_at = ?, comment = ?
		WHERE id = ? AND state = 'pending' AND expires_at > ?`,
		string(state), d.ByKeyID, d.By, d.At.UnixNano(), d.Comment, id, d.At.UnixNano())
	if err != nil && a.ID != "" && a.State == ApprovalPending {
		a.State = ApprovalExpired // expired, not yet swept
	}
	return a, err
}

func (s *sqlStore) ExecuteApproval(ctx context.Context, id string, at time.Time) (Approval, error) {
	a, err := s.transition(ctx, "execute approval", id, `UPDATE approvals SET state = 'executed', executed_at = ?
		WHERE id = ? AND state = 'approved' AND expires_at > ?`,
		at.UnixNano(), id, at.UnixNano())
	if err != nil && a.ID != "" && (a.State == ApprovalApproved || a.State == ApprovalPending) {
		a.State = ApprovalExpired
	}
	return a, err
}

func (s *sqlStore) ExpireApprovals(ctx context.Context, at time.Time) ([]Approval, error) {
	const op = "expire approvals"
	var out []Approval
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+approvalCols+` FROM approvals
			WHERE state IN ('pending', 'approved') AND expires_at <= ?`+s.d.forUpdate), at.UnixNano())
		if err != nil {
			return err
		}
		for rows.Next() {
			a, err := scanApproval(rows)
			if err != nil {
				rows.Close()
				return err
			}
			a.State = ApprovalExpired
			out = append(out, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, a := range out {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE approvals SET state = 'expired'
				WHERE id = ? AND state IN ('pending', 'approved')`), a.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ---- device logins

const deviceCols = `code_hash, user_code, state, client, created_at, expires_at, last_poll_at,
	role, email, by_key_id, by_name, decided_at, key_id`

func scanDevice(sc rowScanner) (DeviceLogin, error) {
	var d DeviceLogin
	var created, expires int64
	var polled, decided sql.NullInt64
	err := sc.Scan(&d.CodeHash, &d.UserCode, &d.State, &d.Client, &created, &expires, &polled,
		&d.Role, &d.Email, &d.ByKeyID, &d.By, &decided, &d.KeyID)
	d.CreatedAt, d.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC()
	d.LastPollAt, d.DecidedAt = fromNS(polled), fromNS(decided)
	return d, err
}

func (s *sqlStore) CreateDeviceLogin(ctx context.Context, d DeviceLogin) error {
	const op = "create device login"
	if len(d.CodeHash) != 32 || d.UserCode == "" || !d.ExpiresAt.After(d.CreatedAt) {
		return errorf(op, ErrInvalid, "a 32-byte code hash, a user code and an expiry after creation are required")
	}
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO device_logins (`+deviceCols+`)
		VALUES (?, ?, 'pending', ?, ?, ?, NULL, '', '', '', '', NULL, '')`),
		d.CodeHash, d.UserCode, d.Client, d.CreatedAt.UnixNano(), d.ExpiresAt.UnixNano())
	return dbError(op, err)
}

func (s *sqlStore) DeviceLoginByCode(ctx context.Context, codeHash []byte) (DeviceLogin, error) {
	d, err := scanDevice(s.r.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+` FROM device_logins WHERE code_hash = ?`), codeHash))
	return d, dbError("get device login", err)
}

func (s *sqlStore) DeviceLoginByUserCode(ctx context.Context, userCode string) (DeviceLogin, error) {
	d, err := scanDevice(s.r.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+` FROM device_logins WHERE user_code = ?`), userCode))
	return d, dbError("get device login", err)
}

func (s *sqlStore) ListDeviceLogins(ctx context.Context, since time.Time) ([]DeviceLogin, error) {
	return queryAll(ctx, s, "list device logins", `SELECT `+deviceCols+` FROM device_logins WHERE created_at >= ?
		ORDER BY CASE WHEN state = 'pending' THEN 0 ELSE 1 END, created_at DESC LIMIT 200`, []any{since.UnixNano()}, scanDevice)
}

func (s *sqlStore) CountPendingDeviceLogins(ctx context.Context, at time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM device_logins WHERE state = 'pending' AND expires_at > ?`),
		at.UnixNano()).Scan(&n)
	return n, dbError("count device logins", err)
}

func (s *sqlStore) TouchDeviceLogin(ctx context.Context, codeHash []byte, at time.Time) (DeviceLogin, error) {
	var d DeviceLogin
	err := s.writeTx(ctx, "poll device login", func(tx *sql.Tx) error {
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+` FROM device_logins WHERE code_hash = ?`+s.d.forUpdate), codeHash))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE device_logins SET last_poll_at = ? WHERE code_hash = ?`), at.UnixNano(), codeHash)
		return err
	})
	return d, err
}

// deviceTransition is transition for device logins.
func (s *sqlStore) deviceTransition(ctx context.Context, op, where string, key any, update string, args ...any) (DeviceLogin, error) {
	var d DeviceLogin
	var changed int64
	err := s.writeTx(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(update), args...)
		if err != nil {
			return err
		}
		if changed, err = res.RowsAffected(); err != nil {
			return err
		}
		d, err = scanDevice(tx.QueryRowContext(ctx, s.q(`SELECT `+deviceCols+` FROM device_logins WHERE `+where+` = ?`), key))
		return err
	})
	if err != nil {
		return DeviceLogin{}, err
	}
	if changed == 0 {
		return d, errorf(op, ErrConflict, "device login %s is %s", d.UserCode, d.State)
	}
	return d, nil
}

func (s *sqlStore) DecideDeviceLogin(ctx context.Context, userCode string, dd DeviceDecision) (DeviceLogin, error) {
	const op = "decide device login"
	if dd.At.IsZero() || dd.ByKeyID == "" {
		return DeviceLogin{}, errorf(op, ErrInvalid, "the decider and the time are required")
	}
	state := DeviceDenied
	if dd.Approve {
		if !dd.Role.Valid() {
			return DeviceLogin{}, errorf(op, ErrInvalid, "unknown role %q", dd.Role)
		}
		state = DeviceApproved
	}
	return s.deviceTransition(ctx, op, "user_code", userCode, `UPDATE device_logins
		SET state = ?, role = ?, email = ?, by_key_id = ?, by_name = ?, decided_at = ?
		WHERE user_code = ? AND state = 'pending' AND expires_at > ?`,
		string(state), string(dd.Role), dd.Email, dd.ByKeyID, dd.By, dd.At.UnixNano(), userCode, dd.At.UnixNano())
}

func (s *sqlStore) ConsumeDeviceLogin(ctx context.Context, codeHash []byte, keyID string, at time.Time) (DeviceLogin, error) {
	return s.deviceTransition(ctx, "consume device login", "code_hash", codeHash, `UPDATE device_logins
		SET state = 'consumed', key_id = ? WHERE code_hash = ? AND state = 'approved' AND expires_at > ?`,
		keyID, codeHash, at.UnixNano())
}

// ---- console sessions

func (s *sqlStore) CreateSession(ctx context.Context, ss Session) error {
	const op = "create session"
	if len(ss.IDHash) != 32 || ss.KeyID == "" || ss.CSRF == "" || !ss.ExpiresAt.After(ss.CreatedAt) {
		return errorf(op, ErrInvalid, "a 32-byte id hash, a key, a CSRF token and an expiry after creation are required")
	}
	revoke := 0
	if ss.RevokeKeyOnEnd {
		revoke = 1
	}
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO console_sessions (id_hash, key_id, csrf, created_at, expires_at, revoke_key_on_end)
		VALUES (?, ?, ?, ?, ?, ?)`), ss.IDHash, ss.KeyID, ss.CSRF, ss.CreatedAt.UnixNano(), ss.ExpiresAt.UnixNano(), revoke)
	return dbError(op, err)
}

func (s *sqlStore) GetSession(ctx context.Context, idHash []byte, at time.Time) (Session, error) {
	var ss Session
	var created, expires, revoke int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT id_hash, key_id, csrf, created_at, expires_at, revoke_key_on_end
		FROM console_sessions WHERE id_hash = ? AND expires_at > ?`), idHash, at.UnixNano()).
		Scan(&ss.IDHash, &ss.KeyID, &ss.CSRF, &created, &expires, &revoke)
	if err != nil {
		return Session{}, dbError("get session", err)
	}
	ss.CreatedAt, ss.ExpiresAt, ss.RevokeKeyOnEnd = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC(), revoke != 0
	return ss, nil
}

func (s *sqlStore) DeleteSession(ctx context.Context, idHash []byte) error {
	_, err := s.w.ExecContext(ctx, s.q(`DELETE FROM console_sessions WHERE id_hash = ?`), idHash)
	return dbError("delete session", err)
}

func (s *sqlStore) PruneHuman(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	err := s.writeTx(ctx, "prune sessions and device logins", func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM console_sessions WHERE expires_at < ?`,
			`DELETE FROM device_logins WHERE created_at < ?`,
		} {
			res, err := tx.ExecContext(ctx, s.q(q), t.UnixNano())
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}
