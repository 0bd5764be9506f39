package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// auditCols are the stored columns, in scanAudit's order.
const auditCols = `seq, recorded_at, request_id, api_key_id, service, end_user, agent, server, tool,
	arguments, decision, rule, bundle_revision, plan_hash, step, outcome, duration_ms, prev_hash, hash,
	hash_version, phase, concludes, client, trace_id, approval_id, user_source, auth_issuer, auth_subject`

const auditNumCols = 28

// auditPlaceholders is one row of auditCols' placeholders.
var auditPlaceholders = "(" + strings.TrimSuffix(strings.Repeat("?, ", auditNumCols), ", ") + ")"

// concludedBy selects, for each row a of audit_log, the seq of the outcome
// that concludes it (NULL if none, or if a is not a request); one lookup in
// the unique partial index on concludes per row, in the same query.
const concludedBy = `(SELECT o.seq FROM audit_log o WHERE o.concludes = a.seq AND o.concludes > 0 AND a.phase = 'request')`

func (s *sqlStore) AppendAudit(ctx context.Context, rec AuditRecord) (int64, error) {
	if err := prepareRecord(&rec); err != nil {
		return 0, err
	}
	return s.audit.append(ctx, rec)
}

// AppendAuditDetached implements DetachedAppender.
func (s *sqlStore) AppendAuditDetached(rec AuditRecord, then func(seq int64, err error)) {
	if err := prepareRecord(&rec); err != nil {
		then(0, err)
		return
	}
	s.audit.appendDetached(rec, then)
}

// prepareRecord checks rec and sets what the store assigns.
func prepareRecord(rec *AuditRecord) error {
	if err := checkAudit(rec); err != nil {
		return errorf("append audit", ErrInvalid, "%v", err)
	}
	if rec.Time.IsZero() {
		rec.Time = now()
	}
	rec.Time = rec.Time.UTC()
	rec.HashVersion = auditHashVersion
	rec.Seq, rec.PrevHash, rec.Hash = 0, nil, nil
	rec.OutcomeMissing, rec.ConcludedBy = false, 0
	return nil
}

// checkAudit refuses, before anything is queued, a record the store could
// not keep exactly as given: both engines must store every text field
// unchanged (PostgreSQL refuses NUL and invalid UTF-8 in TEXT), and the hash
// is computed over what is stored.
func checkAudit(rec *AuditRecord) error {
	if !rec.Decision.Valid() {
		return fmt.Errorf("unknown decision %q", rec.Decision)
	}
	if !rec.Phase.Valid() {
		return fmt.Errorf("unknown phase %q", rec.Phase)
	}
	switch {
	case rec.Phase == PhaseOutcome && rec.Concludes <= 0:
		return fmt.Errorf("an outcome must name the request it concludes")
	case rec.Phase != PhaseOutcome && rec.Concludes != 0:
		return fmt.Errorf("only an outcome concludes a request (phase %q)", rec.Phase)
	}
	rec.Arguments = rawJSON(rec.Arguments)
	if !json.Valid(rec.Arguments) || !utf8.Valid(rec.Arguments) {
		return fmt.Errorf("arguments are not valid UTF-8 JSON")
	}
	for _, f := range []struct{ name, v string }{
		{"request_id", rec.RequestID}, {"api_key_id", rec.APIKeyID}, {"service", rec.Service},
		{"user", rec.User}, {"agent", rec.Agent}, {"server", rec.Server}, {"tool", rec.Tool},
		{"rule", rec.Rule}, {"bundle_revision", rec.BundleRevision}, {"plan_hash", rec.PlanHash},
		{"outcome", rec.Outcome}, {"client", rec.Client}, {"trace_id", rec.TraceID}, {"approval_id", rec.ApprovalID},
		{"user_source", rec.UserSource}, {"auth_issuer", rec.AuthIssuer}, {"auth_subject", rec.AuthSubject},
	} {
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("%s is not valid UTF-8 or contains NUL", f.name)
		}
	}
	return nil
}

// auditStmts are the group writer's statements, prepared once per store.
// A batch runs them through tx.StmtContext, which reuses the statement
// already prepared on the transaction's connection: the pure-Go SQLite
// driver keeps no statement cache, and parsing every statement again in
// every transaction (a multi-row INSERT of one placeholder per column per
// row most of all) was the largest share of a commit's CPU after the WAL
// writes and the fsync. Every text is fixed, whatever the batch's size.
type auditStmts struct {
	head      *sql.Stmt // the chain head, locked (FOR UPDATE on PostgreSQL)
	concludes *sql.Stmt // the records a batch's outcomes name, and their outcome if any
	insertRow *sql.Stmt // one row; on PostgreSQL the head is moved in the same statement
	moveHead  *sql.Stmt // SQLite: the head moved to the batch's last record
	// insertChunk (SQLite) inserts auditInsertChunk rows: the applier's.
	insertChunk *sql.Stmt
	// insertBatch (PostgreSQL) inserts the whole batch, one array per
	// column, and moves the head.
	insertBatch *sql.Stmt
}

// SQLite inserts a batch with prepared statements of 1 and (the applier)
// auditInsertChunk rows, no round trips to save: see sqliteAuditInsert.
// PostgreSQL inserts a batch in one statement that
// also moves the head (a data-modifying WITH): one round trip for the
// batch, whatever its size; a batch of one (a lone caller's) with scalar
// parameters, a larger one with one array parameter per column (unnest),
// which costs more to encode for one row but the same text for any size.
var (
	auditInsertRow         = `INSERT INTO audit_log (` + auditCols + `) VALUES ` + auditPlaceholders
	postgresAuditInsertRow = `WITH ins AS (` + auditInsertRow + `) UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`
	postgresAuditInsertAll = `WITH ins AS (INSERT INTO audit_log (` + auditCols + `)
		SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
			?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[],
			?::text[], ?::bigint[], ?::bytea[], ?::bytea[], ?::bigint[], ?::text[], ?::bigint[],
			?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]))
		UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`
)

// prepareAudit prepares the group writer's statements on db.
func prepareAudit(ctx context.Context, db *sql.DB, d *dialect) (*auditStmts, error) {
	const op = "prepare audit statements"
	st := &auditStmts{}
	type text struct {
		dst  **sql.Stmt
		text string
	}
	texts := []text{
		{&st.head, `SELECT seq, hash FROM audit_head WHERE id = 1` + d.forUpdate},
		{&st.concludes, `SELECT a.seq, a.phase, ` + concludedBy + ` FROM audit_log a WHERE a.seq ` + d.seqIn},
	}
	if d.arrays {
		texts = append(texts, text{&st.insertRow, postgresAuditInsertRow}, text{&st.insertBatch, postgresAuditInsertAll})
	} else {
		texts = append(texts, text{&st.insertRow, sqliteAuditInsert(1)}, text{&st.insertChunk, sqliteAuditInsert(auditInsertChunk)},
			text{&st.moveHead, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`})
	}
	for _, t := range texts {
		stmt, err := db.PrepareContext(ctx, d.rebind(t.text))
		if err != nil {
			st.close()
			return nil, dbError(op, err)
		}
		*t.dst = stmt
	}
	return st, nil
}

func (st *auditStmts) close() {
	for _, stmt := range []*sql.Stmt{st.head, st.concludes, st.insertRow, st.moveHead, st.insertBatch, st.insertChunk} {
		if stmt != nil {
			stmt.Close()
		}
	}
}

// writeAuditBatch writes one group of records in one transaction. The chain
// head row is locked first (FOR UPDATE on PostgreSQL; the SQLite writer
// holds the database write lock), so replicas sharing a database take turns
// and each batch continues from the head as committed, never from memory.
// An outcome that does not conclude a request still open is refused on its
// own (r.err), the rest of the batch is written. Any other failure, up to
// and including the COMMIT, fails the whole batch and leaves nothing of it.
func (s *sqlStore) writeAuditBatch(batch []*appendReq) error {
	const op = "append audit"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op, err)
	}
	defer tx.Rollback()
	// On SQLite the statements run under the write lock BEGIN IMMEDIATE
	// took: none waits for anyone, so none needs cancelling, and the driver
	// starts a goroutine to watch the context of every statement whose
	// context can end. The BEGIN and COMMIT keep ctx.
	sctx := ctx
	if !s.d.arrays {
		sctx = context.WithoutCancel(ctx)
	}
	var seq int64
	var prev []byte
	if err := tx.StmtContext(sctx, s.as.head).QueryRowContext(sctx).Scan(&seq, &prev); err != nil {
		return dbError(op, err)
	}
	if err := s.checkConcludes(sctx, tx, batch); err != nil {
		return dbError(op, err)
	}
	recs, seq, prev := chainBatch(batch, seq, prev)
	if len(recs) == 0 {
		return nil
	}
	switch {
	case !s.d.arrays:
		err = s.insertRows(sctx, tx, recs, seq, prev, false)
	case len(recs) == 1:
		args := appendAuditRow(make([]any, 0, auditNumCols+2), recs[0])
		_, err = tx.StmtContext(sctx, s.as.insertRow).ExecContext(sctx, append(args, seq, prev)...)
	default:
		_, err = tx.StmtContext(sctx, s.as.insertBatch).ExecContext(sctx, auditColumns(recs, seq, prev)...)
	}
	if err != nil {
		return dbError(op, err)
	}
	if err := tx.Commit(); err != nil {
		return dbError(op, err)
	}
	if s.checkpoints != nil {
		s.checkpoints.wake()
	}
	for _, r := range batch {
		if r.err == nil {
			r.seq = r.rec.Seq
		}
	}
	return nil
}

// chainBatch numbers and hashes the records of batch not refused on their
// own, continuing the chain whose last record is seq with hash prev; it
// returns them and the new head.
func chainBatch(batch []*appendReq, seq int64, prev []byte) ([]*AuditRecord, int64, []byte) {
	recs := make([]*AuditRecord, 0, len(batch))
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		rec := &r.rec
		seq++
		rec.Seq, rec.PrevHash = seq, prev
		rec.Hash = AuditHash(rec)
		prev = rec.Hash
		recs = append(recs, rec)
	}
	return recs, seq, prev
}

// The SQLite applier's INSERT (journal.go). Per record, what costs CPU
// besides the B-tree inserts themselves is per statement (database/sql's
// Exec, the VM's start, halt and reset) and per argument (database/sql's
// conversion; the driver copies every text and blob into a C buffer it
// mallocs, binds it, unbinds it after the step and frees it). So:
//
//   - A batch goes in multi-row INSERTs of auditInsertChunk rows (the rest
//     one row at a time): the per-statement costs are paid once a chunk.
//     Supplying the INTEGER PRIMARY KEY (seq) makes SQLite check that it
//     is an integer, a check that can abort a statement after some of its
//     rows are written, so a multi-row INSERT needs a statement journal
//     (the single-row one does not): each page the statement changes is
//     copied to it first. The applier's connection keeps temp files in
//     memory (sqliteWriterTempStore), so that journal is a memory copy; in
//     a temp file (past 64 KiB, the default) its writes cost more than the
//     chunks save.
//   - An empty text is bound as NULL, which IFNULL stores as the empty
//     TEXT: binding NULL allocates nothing and leaves nothing to unbind.
//     The stored value is the same empty TEXT as before, never NULL (reads
//     and the hash depend on it).
//
// A refused row fails its statement as before, and the batch with it.
const auditInsertChunk = 32

// sqliteWriterTempStore is in the DSN of the writer's connections (the
// applier's among them): temp files, the multi-row INSERT's statement
// journal among them, are kept in memory. Set once per connection as it
// opens, not before each apply. The readers keep files: a large sort of
// theirs (an export) should not grow the heap.
const sqliteWriterTempStore = "&_pragma=temp_store(2)" // 2: MEMORY

// sqliteAuditInsert is SQLite's INSERT of rows rows, in auditCols' order,
// every TEXT column's placeholder wrapped in IFNULL, which stores a NULL
// as the empty TEXT (appendSQLiteRow binds an empty text as NULL).
func sqliteAuditInsert(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO audit_log (` + auditCols + `) VALUES `)
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for c := range auditNumCols {
			if c > 0 {
				b.WriteString(", ")
			}
			if auditTextCol[c] {
				b.WriteString("IFNULL(?, '')")
			} else {
				b.WriteString("?")
			}
		}
		b.WriteString(")")
	}
	return b.String()
}

// auditTextCol says which of auditCols are TEXT (the others are integers
// and the two hashes, BLOBs).
var auditTextCol = [auditNumCols]bool{2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true,
	10: true, 11: true, 12: true, 13: true, 15: true, 20: true, 22: true, 23: true, 24: true, 25: true, 26: true, 27: true}

// insertRows inserts recs and moves the head to seq and hash (SQLite).
// With chunked, whole chunks of auditInsertChunk records go in one
// statement each (the writer's connections have sqliteWriterTempStore);
// without, every record in a statement of its own (the group writer's
// batches, committed to the database directly, are small).
func (s *sqlStore) insertRows(ctx context.Context, tx *sql.Tx, recs []*AuditRecord, seq int64, hash []byte, chunked bool) error {
	var args []any
	if chunked && len(recs) >= auditInsertChunk {
		args = make([]any, 0, auditInsertChunk*auditNumCols)
		insert := tx.StmtContext(ctx, s.as.insertChunk)
		for ; len(recs) >= auditInsertChunk; recs = recs[auditInsertChunk:] {
			args = args[:0]
			for _, rec := range recs[:auditInsertChunk] {
				args = appendSQLiteRow(args, rec)
			}
			if _, err := insert.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
	}
	if len(recs) > 0 {
		insert := tx.StmtContext(ctx, s.as.insertRow)
		for _, rec := range recs {
			args = appendSQLiteRow(args[:0], rec)
			if _, err := insert.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
	}
	_, err := tx.StmtContext(ctx, s.as.moveHead).ExecContext(ctx, seq, hash)
	return err
}

// appendSQLiteRow appends rec's columns to args as sqliteAuditInsert binds
// them: appendAuditRow's, but an empty text as nil.
func appendSQLiteRow(args []any, rec *AuditRecord) []any {
	return append(args, rec.Seq, rec.Time.UnixNano(), textArg(rec.RequestID), textArg(rec.APIKeyID),
		textArg(rec.Service), textArg(rec.User), textArg(rec.Agent), textArg(rec.Server), textArg(rec.Tool),
		textArg(string(rec.Arguments)), textArg(string(rec.Decision)), textArg(rec.Rule),
		textArg(rec.BundleRevision), textArg(rec.PlanHash), rec.Step, textArg(rec.Outcome), rec.DurationMS,
		rec.PrevHash, rec.Hash, rec.HashVersion, textArg(string(rec.Phase)), rec.Concludes, textArg(rec.Client),
		textArg(rec.TraceID), textArg(rec.ApprovalID), textArg(rec.UserSource), textArg(rec.AuthIssuer),
		textArg(rec.AuthSubject))
}

// textArg is s as an argument of sqliteAuditInsert: nil (NULL, which
// IFNULL stores as the empty TEXT) for "".
func textArg(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// appendAuditRow appends rec's columns to args, in auditCols' order.
func appendAuditRow(args []any, rec *AuditRecord) []any {
	return append(args, rec.Seq, rec.Time.UnixNano(), rec.RequestID, rec.APIKeyID, rec.Service, rec.User,
		rec.Agent, rec.Server, rec.Tool, string(rec.Arguments), string(rec.Decision), rec.Rule,
		rec.BundleRevision, rec.PlanHash, rec.Step, rec.Outcome, rec.DurationMS, rec.PrevHash, rec.Hash,
		rec.HashVersion, string(rec.Phase), rec.Concludes, rec.Client, rec.TraceID, rec.ApprovalID,
		rec.UserSource, rec.AuthIssuer, rec.AuthSubject)
}

// auditColumns returns the arguments of postgresAuditInsertAll: recs column
// by column, in auditCols' order, then the new head.
func auditColumns(recs []*AuditRecord, seq int64, hash []byte) []any {
	return []any{
		column(recs, func(r *AuditRecord) int64 { return r.Seq }),
		column(recs, func(r *AuditRecord) int64 { return r.Time.UnixNano() }),
		column(recs, func(r *AuditRecord) string { return r.RequestID }),
		column(recs, func(r *AuditRecord) string { return r.APIKeyID }),
		column(recs, func(r *AuditRecord) string { return r.Service }),
		column(recs, func(r *AuditRecord) string { return r.User }),
		column(recs, func(r *AuditRecord) string { return r.Agent }),
		column(recs, func(r *AuditRecord) string { return r.Server }),
		column(recs, func(r *AuditRecord) string { return r.Tool }),
		column(recs, func(r *AuditRecord) string { return string(r.Arguments) }),
		column(recs, func(r *AuditRecord) string { return string(r.Decision) }),
		column(recs, func(r *AuditRecord) string { return r.Rule }),
		column(recs, func(r *AuditRecord) string { return r.BundleRevision }),
		column(recs, func(r *AuditRecord) string { return r.PlanHash }),
		column(recs, func(r *AuditRecord) int64 { return r.Step }),
		column(recs, func(r *AuditRecord) string { return r.Outcome }),
		column(recs, func(r *AuditRecord) int64 { return r.DurationMS }),
		column(recs, func(r *AuditRecord) []byte { return r.PrevHash }),
		column(recs, func(r *AuditRecord) []byte { return r.Hash }),
		column(recs, func(r *AuditRecord) int64 { return int64(r.HashVersion) }),
		column(recs, func(r *AuditRecord) string { return string(r.Phase) }),
		column(recs, func(r *AuditRecord) int64 { return r.Concludes }),
		column(recs, func(r *AuditRecord) string { return r.Client }),
		column(recs, func(r *AuditRecord) string { return r.TraceID }),
		column(recs, func(r *AuditRecord) string { return r.ApprovalID }),
		column(recs, func(r *AuditRecord) string { return r.UserSource }),
		column(recs, func(r *AuditRecord) string { return r.AuthIssuer }),
		column(recs, func(r *AuditRecord) string { return r.AuthSubject }),
		seq, hash,
	}
}

func column[T any](recs []*AuditRecord, field func(*AuditRecord) T) []T {
	c := make([]T, len(recs))
	for i, r := range recs {
		c[i] = field(r)
	}
	return c
}

// checkConcludes sets r.err on each outcome of the batch that does not
// conclude a request record still without an outcome: one query for the
// batch, under the chain lock, so two outcomes for one request cannot both
// pass.
func (s *sqlStore) checkConcludes(ctx context.Context, tx *sql.Tx, batch []*appendReq) error {
	var seqs []int64
	for _, r := range batch {
		if r.rec.Phase == PhaseOutcome {
			seqs = append(seqs, r.rec.Concludes)
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	type target struct {
		phase       AuditPhase
		concludedBy sql.NullInt64
	}
	found := make(map[int64]target, len(seqs))
	rows, err := tx.StmtContext(ctx, s.as.concludes).QueryContext(ctx, s.d.seqList(seqs))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var t target
		if err := rows.Scan(&seq, &t.phase, &t.concludedBy); err != nil {
			return err
		}
		found[seq] = t
	}
	if err := rows.Err(); err != nil {
		return err
	}
	claimed := make(map[int64]bool, len(seqs))
	for _, r := range batch {
		if r.rec.Phase != PhaseOutcome {
			continue
		}
		c := r.rec.Concludes
		t, ok := found[c]
		switch {
		case !ok:
			r.err = errorf("append audit", ErrInvalid, "outcome concludes record %d, which does not exist", c)
		case t.phase != PhaseRequest:
			r.err = errorf("append audit", ErrInvalid, "outcome concludes record %d, which is not a request", c)
		case t.concludedBy.Valid || claimed[c]:
			r.err = errorf("append audit", ErrInvalid, "request %d already has an outcome", c)
		default:
			claimed[c] = true
		}
	}
	return nil
}

func scanAudit(sc interface{ Scan(...any) error }, withConcluded bool) (AuditRecord, error) {
	var r AuditRecord
	var at int64
	var args, decision, phase string
	var by sql.NullInt64
	dst := []any{&r.Seq, &at, &r.RequestID, &r.APIKeyID, &r.Service, &r.User, &r.Agent, &r.Server, &r.Tool,
		&args, &decision, &r.Rule, &r.BundleRevision, &r.PlanHash, &r.Step, &r.Outcome, &r.DurationMS,
		&r.PrevHash, &r.Hash, &r.HashVersion, &phase, &r.Concludes, &r.Client, &r.TraceID, &r.ApprovalID,
		&r.UserSource, &r.AuthIssuer, &r.AuthSubject}
	if withConcluded {
		dst = append(dst, &by)
	}
	err := sc.Scan(dst...)
	r.Time, r.Arguments, r.Decision, r.Phase = time.Unix(0, at).UTC(), json.RawMessage(args), Decision(decision), AuditPhase(phase)
	if r.Phase == PhaseRequest && withConcluded {
		r.ConcludedBy, r.OutcomeMissing = by.Int64, !by.Valid
	}
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
	if f.Phase != "" {
		add("phase = ?", string(f.Phase))
	}
	if f.RequestID != "" {
		add("request_id = ?", f.RequestID)
	}
	if !f.Since.IsZero() {
		add("recorded_at >= ?", f.Since.UnixNano())
		// Records are appended in about the order of their times, so
		// those from Since on are about the last ones: start at the first
		// of them (found in the index on recorded_at, read alone: +seq
		// keeps SQLite from walking the table from its first record
		// instead) and read on in seq order. Without it SQLite read the
		// whole log for the console's last hour. Exact whatever the times:
		// the bound only restates the condition.
		add("a.seq >= (SELECT MIN(+seq) FROM audit_log WHERE recorded_at >= ?)", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("recorded_at < ?", f.Until.UnixNano())
	}
	if f.AfterSeq > 0 {
		add("a.seq > ?", f.AfterSeq)
	}
	q := `SELECT ` + auditCols + `, ` + concludedBy + ` AS concluded_by FROM audit_log a`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY a.seq`
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
	if !f.NoWait {
		if err := s.auditSynced(ctx, op); err != nil {
			return err
		}
	}
	q, args := s.auditQuery(f)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return dbError(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows, true)
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
	if err := s.auditSynced(ctx, op); err != nil {
		return VerifyReport{}, err
	}
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
		r, err := scanAudit(rows, false)
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
