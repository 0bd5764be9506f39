package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

const auditCols = `seq, recorded_at, request_id, api_key_id, service, end_user, agent, server, tool,
	arguments, decision, rule, bundle_revision, plan_hash, step, outcome, duration_ms, prev_hash, hash`

const auditNumCols = 19

func (s *sqlStore) AppendAudit(ctx context.Context, rec AuditRecord) (int64, error) {
	const op = "append audit"
	if !rec.Decision.Valid() {
		return 0, errorf(op, ErrInvalid, "unknown decision %q", rec.Decision)
	}
	rec.Arguments = rawJSON(rec.Arguments)
	if !json.Valid(rec.Arguments) || !utf8.Valid(rec.Arguments) {
		return 0, errorf(op, ErrInvalid, "arguments are not valid UTF-8 JSON")
	}
	for _, f := range []string{rec.RequestID, rec.APIKeyID, rec.Service, rec.User, rec.Agent, rec.Server,
		rec.Tool, rec.Rule, rec.BundleRevision, rec.PlanHash, rec.Outcome} {
		if !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
			return 0, errorf(op, ErrInvalid, "a text field is not valid UTF-8 or contains NUL")
		}
	}
	if rec.Time.IsZero() {
		rec.Time = now()
	}
	rec.Time = rec.Time.UTC()
	return s.audit.append(ctx, rec)
}

// writeAuditBatch writes one group of records in one transaction. The chain
// head row is locked first (FOR UPDATE on PostgreSQL; the SQLite writer
// holds the database write lock), so replicas sharing a database take turns
// and each batch continues from the head as committed, never from memory.
func (s *sqlStore) writeAuditBatch(batch []*appendReq) error {
	const op = "append audit"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op, err)
	}
	defer tx.Rollback()
	var seq int64
	var prev []byte
	if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+s.d.forUpdate).Scan(&seq, &prev); err != nil {
		return dbError(op, err)
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO audit_log (` + auditCols + `) VALUES `)
	args := make([]any, 0, len(batch)*auditNumCols)
	for i, r := range batch {
		rec := &r.rec
		seq++
		rec.Seq, rec.PrevHash = seq, prev
		rec.Hash = AuditHash(rec)
		prev = rec.Hash
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		args = append(args, rec.Seq, rec.Time.UnixNano(), rec.RequestID, rec.APIKeyID, rec.Service, rec.User,
			rec.Agent, rec.Server, rec.Tool, string(rec.Arguments), string(rec.Decision), rec.Rule,
			rec.BundleRevision, rec.PlanHash, rec.Step, rec.Outcome, rec.DurationMS, rec.PrevHash, rec.Hash)
	}
	if _, err := tx.ExecContext(ctx, s.q(q.String()), args...); err != nil {
		return dbError(op, err)
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`), seq, prev); err != nil {
		return dbError(op, err)
	}
	if err := tx.Commit(); err != nil {
		return dbError(op, err)
	}
	for _, r := range batch {
		r.seq = r.rec.Seq
	}
	return nil
}

func scanAudit(sc interface{ Scan(...any) error }) (AuditRecord, error) {
	var r AuditRecord
	var at int64
	var args, decision string
	err := sc.Scan(&r.Seq, &at, &r.RequestID, &r.APIKeyID, &r.Service, &r.User, &r.Agent, &r.Server, &r.Tool,
		&args, &decision, &r.Rule, &r.BundleRevision, &r.PlanHash, &r.Step, &r.Outcome, &r.DurationMS,
		&r.PrevHash, &r.Hash)
	r.Time, r.Arguments, r.Decision = time.Unix(0, at).UTC(), json.RawMessage(args), Decision(decision)
	return r, err
}

// auditQuery builds the SELECT for a filter.
func (s *sqlStore) auditQuery(f AuditFilter) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.User != "" {
		add("end_user = ?", f.User)
	}
	if f.Server != "" {
		add("server = ?", f.Server)
	}
	if f.Tool != "" {
		add("tool = ?", f.Tool)
	}
	if f.Decision != "" {
		add("decision = ?", string(f.Decision))
	}
	if !f.Since.IsZero() {
		add("recorded_at >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("recorded_at < ?", f.Until.UnixNano())
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	q := `SELECT ` + auditCols + ` FROM audit_log`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY seq`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return s.q(q), args
}

func (s *sqlStore) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	switch {
	case f.Limit <= 0:
		f.Limit = 100
	case f.Limit > 1000:
		f.Limit = 1000
	}
	var recs []AuditRecord
	err := s.exportAudit(ctx, "list audit", f, func(r AuditRecord) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

func (s *sqlStore) ExportAudit(ctx context.Context, f AuditFilter, fn func(AuditRecord) error) error {
	return s.exportAudit(ctx, "export audit", f, fn)
}

func (s *sqlStore) exportAudit(ctx context.Context, op string, f AuditFilter, fn func(AuditRecord) error) error {
	q, args := s.auditQuery(f)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return dbError(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return dbError(op, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return dbError(op, rows.Err())
}

// VerifyAudit reads the head and every record in one snapshot, so appends
// running meanwhile neither show up as insertions nor hide a deletion.
func (s *sqlStore) VerifyAudit(ctx context.Context) (VerifyReport, error) {
	const op = "verify audit"
	tx, err := s.r.BeginTx(ctx, s.d.snapshot)
	if err != nil {
		return VerifyReport{}, dbError(op, err)
	}
	defer tx.Rollback()
	var headSeq int64
	var headHash []byte
	if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		return VerifyReport{}, dbError(op, err)
	}
	v := newVerifier(headSeq, headHash)
	rows, err := tx.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log ORDER BY seq`)
	if err != nil {
		return VerifyReport{}, dbError(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return VerifyReport{}, dbError(op, err)
		}
		if !v.next(&r) {
			return v.done(), nil
		}
	}
	if err := rows.Err(); err != nil {
		return VerifyReport{}, dbError(op, err)
	}
	return v.done(), nil
}
