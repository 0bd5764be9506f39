package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// auditRowsV6 builds, at schema version 6 (before audit_log became a rowid
// table on SQLite), a chain of records as the binaries of that time wrote
// them: version-1 records from before phases, version-2 requests and
// outcomes, then version-3 records with who-is-calling fields, an approval
// and one request left without an outcome. It returns how many it wrote.
func auditRowsV6(t *testing.T, ctx context.Context, db *sql.DB, d *dialect) int64 {
	t.Helper()
	prev := zeroHash
	var seq int64
	insert := func(r AuditRecord) int64 {
		t.Helper()
		seq++
		r.Seq, r.Time, r.PrevHash = seq, time.Unix(1700000000, seq*1001).UTC(), prev
		r.Hash = AuditHash(&r)
		if r.Hash == nil {
			t.Fatalf("record %d (version %d) does not hash: a field its version lacks", seq, r.HashVersion)
		}
		prev = r.Hash
		if _, err := db.ExecContext(ctx, d.rebind(`INSERT INTO audit_log (`+auditLogV6Cols+`) VALUES `+auditPlaceholders),
			appendAuditRow(nil, &r)...); err != nil {
			t.Fatalf("inserting record %d: %v", seq, err)
		}
		return seq
	}
	for i := range 4 {
		r := auditRec(i)
		r.HashVersion = 1
		insert(r)
	}
	for i := range 3 {
		req := request(10 + i)
		req.HashVersion = 2
		out := outcome(10+i, insert(req))
		out.HashVersion = 2
		insert(out)
	}
	for i := range 3 {
		req := request(20 + i)
		req.HashVersion = 3
		req.UserSource, req.AuthIssuer, req.AuthSubject = "oauth", "https://issuer.example", fmt.Sprint("sub-", i)
		req.User = "ünïcødé@例え.jp\U0010FFFF"
		req.Arguments = []byte(`{"b": [1, 2.50, "\u00e9"], "a":null}`) // stored byte for byte, not compacted
		out := outcome(20+i, insert(req))
		out.HashVersion = 3
		insert(out)
	}
	approval := auditRec(30)
	approval.HashVersion, approval.Phase, approval.ApprovalID = 3, PhaseApproval, "appr-1"
	insert(approval)
	open := request(31) // a call whose outcome has not landed
	open.HashVersion = 3
	insert(open)
	if _, err := db.ExecContext(ctx, d.rebind(`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`), seq, prev); err != nil {
		t.Fatal(err)
	}
	return seq
}

// auditRowsRaw reads every row of audit_log, every column as the driver
// returns it: a value whose stored type changed (an integer become text,
// a blob become text) reads back as another Go type.
func auditRowsRaw(t *testing.T, ctx context.Context, db *sql.DB) [][]any {
	t.Helper()
	rows, err := db.QueryContext(ctx, `SELECT `+auditLogV6Cols+` FROM audit_log ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all [][]any
	for rows.Next() {
		row := make([]any, auditNumCols)
		ptrs := make([]any, auditNumCols)
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		all = append(all, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return all
}

// A database at schema version 6 with records of every hash version is
// migrated to the latest schema (on SQLite, audit_log rebuilt as a rowid
// table): every row is the same, column for column, the chain verifies,
// and appends continue it, an outcome of a request written before the
// migration included.
func testAuditMigrateRowid(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	db, d := rawDB(t, dsn)
	if err := migrate(ctx, db, d, migrations[:6]); err != nil {
		t.Fatalf("building the version-6 schema: %v", err)
	}
	n := auditRowsV6(t, ctx, db, d)
	before := auditRowsRaw(t, ctx, db)

	s := open(t, dsn) // migrates to the latest schema
	ss := s.(*sqlStore)
	after := auditRowsRaw(t, ctx, ss.r)
	if len(after) != len(before) {
		t.Fatalf("after migrating audit_log has %d rows, want %d", len(after), len(before))
	}
	for i := range before {
		if !reflect.DeepEqual(after[i], before[i]) {
			t.Errorf("row %d after migrating:\n got %#v\nwant %#v", i+1, after[i], before[i])
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != n || rep.PendingOutcomes != 1 || rep.FirstPending != n {
		t.Fatalf("VerifyAudit after migrating = %+v (problem %v), %v; want %d records, record %d pending", rep, rep.Problem, err, n, n)
	}

	if e.name == "sqlite" {
		var table string
		if err := ss.r.QueryRowContext(ctx, `SELECT sql FROM sqlite_schema WHERE name = 'audit_log'`).Scan(&table); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(table, "seq             INTEGER PRIMARY KEY,") {
			t.Errorf("audit_log is %s; want seq INTEGER PRIMARY KEY", table)
		}
		var notAlias int
		if err := ss.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log WHERE rowid <> seq`).Scan(&notAlias); err != nil || notAlias != 0 {
			t.Errorf("%d rows whose rowid is not their seq (%v), want 0", notAlias, err)
		}
		var indexes []string
		rows, err := ss.r.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'audit_log' ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			rows.Scan(&name)
			indexes = append(indexes, name)
		}
		rows.Close()
		want := []string{"audit_log_concludes", "audit_log_end_user", "audit_log_recorded_at", "audit_log_request_id", "audit_log_server_tool"}
		if !slices.Equal(indexes, want) {
			t.Errorf("audit_log's indexes are %v, want %v (no index on seq besides the table itself)", indexes, want)
		}
	}

	// The outcome of the request left open before the migration is checked
	// against the rebuilt table; a second one is refused.
	if _, err := s.AppendAudit(ctx, outcome(31, n)); err != nil {
		t.Fatalf("AppendAudit(outcome of request %d, written before the migration): %v", n, err)
	}
	if _, err := s.AppendAudit(ctx, outcome(31, n)); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAudit(a second outcome of request %d): %v, want ErrInvalid", n, err)
	}
	if _, err := s.AppendAudit(ctx, outcome(10, 5)); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAudit(a second outcome of request 5, concluded before the migration): %v, want ErrInvalid", err)
	}
	req, err := s.AppendAudit(ctx, request(40))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, outcome(40, req)); err != nil {
		t.Fatal(err)
	}
	rep, err = s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != n+3 || rep.PendingOutcomes != 0 {
		t.Errorf("VerifyAudit after appending = %+v (problem %v), %v; want %d records, none pending", rep, rep.Problem, err, n+3)
	}
	got, err := s.ListAudit(ctx, AuditFilter{RequestID: "req-31"})
	if err != nil || len(got) != 2 || got[0].Seq != n || got[0].ConcludedBy != n+1 || got[1].Concludes != n {
		t.Errorf("ListAudit(request req-31) = %+v, %v; want request %d concluded by %d", got, err, n, n+1)
	}

	// The unique index still holds a second outcome off, should the
	// check before it be bypassed.
	tx, err := ss.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE audit_log SET concludes = 5 WHERE seq = 7`); !isUniqueViolation(err) {
		t.Errorf("giving request 5 a second outcome by hand: %v, want a unique violation", err)
	}
}

// On SQLite, a row of audit_log whose seq is not an integer (possible only
// by editing the database by hand: the column allowed NULL) cannot keep its
// seq in the rebuilt table; the migration stops, saying which, and leaves
// the database as it was.
func TestSQLiteMigrateRowidRefusesNonIntegerSeq(t *testing.T) {
	ctx := ctxT(t)
	dsn := sqliteEngine.newDB(t)
	db, d := rawDB(t, dsn)
	if err := migrate(ctx, db, d, migrations[:6]); err != nil {
		t.Fatalf("building the version-6 schema: %v", err)
	}
	n := auditRowsV6(t, ctx, db, d)
	if _, err := db.ExecContext(ctx, `UPDATE audit_log SET seq = NULL WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, dsn)
	if err == nil {
		s.Close()
		t.Fatalf("Open of a database whose audit_log holds a NULL seq: no error, want ErrInvalid")
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "seq is NULL") {
		t.Errorf("Open of a database whose audit_log holds a NULL seq: %v, want ErrInvalid naming it", err)
	}
	var version, rows int64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil || version != 6 {
		t.Errorf("schema version after the refused migration: %d (%v), want 6", version, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log`).Scan(&rows); err != nil || rows != n {
		t.Errorf("audit_log after the refused migration: %d rows (%v), want %d", rows, err, n)
	}
}

// Every query that reads audit_log on SQLite is answered through the
// table's own key or an index: the list and export filters, the outcome
// lookup of each listed request, the writer's check of a batch's outcomes,
// and verification's walk in seq order. A filter on columns no index
// leads with (tool alone, decision, phase, a lower time bound) walks the
// table in seq order, as the LIMIT wants.
func TestSQLiteAuditQueryPlans(t *testing.T) {
	ctx := ctxT(t)
	s := open(t, sqliteEngine.newDB(t))
	ss := s.(*sqlStore)
	appendN(t, s, 10)
	ts := time.Unix(1700000000, 0)
	plan := func(q string, args ...any) string {
		t.Helper()
		rows, err := ss.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatalf("EXPLAIN QUERY PLAN %s: %v", q, err)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, detail)
		}
		return strings.Join(lines, "; ")
	}
	// The first record from a time on, in the index on recorded_at alone.
	const sinceLookup = "SEARCH audit_log USING COVERING INDEX audit_log_recorded_at (recorded_at>?)"
	// Every query's outcome lookup (concludedBy) is answered by the unique
	// index on concludes alone: the outcome's seq is the rowid its entries
	// end with.
	const outcomeLookup = "SEARCH o USING COVERING INDEX audit_log_concludes (concludes=?)"
	for _, tt := range []struct {
		f    AuditFilter
		want string // how the query reaches the rows of a
		sort bool   // it sorts what it found by seq
	}{
		{AuditFilter{}, "SCAN a", false},
		{AuditFilter{AfterSeq: 5}, "SEARCH a USING INTEGER PRIMARY KEY (rowid>?)", false},
		{AuditFilter{User: "u"}, "SEARCH a USING INDEX audit_log_end_user (end_user=?)", false},
		{AuditFilter{User: "u", AfterSeq: 5}, "SEARCH a USING INDEX audit_log_end_user (end_user=? AND rowid>?)", false},
		{AuditFilter{Server: "s", Tool: "t"}, "SEARCH a USING INDEX audit_log_server_tool (server=? AND tool=?)", false},
		{AuditFilter{Server: "s", Tool: "t", AfterSeq: 5}, "SEARCH a USING INDEX audit_log_server_tool (server=? AND tool=? AND rowid>?)", false},
		{AuditFilter{Server: "s"}, "SEARCH a USING INDEX audit_log_server_tool (server=?)", true},
		{AuditFilter{RequestID: "r"}, "SEARCH a USING INDEX audit_log_request_id (request_id=?)", false},
		{AuditFilter{RequestID: "r", AfterSeq: 5}, "SEARCH a USING INDEX audit_log_request_id (request_id=? AND rowid>?)", false},
		{AuditFilter{Since: ts}, "SEARCH a USING INTEGER PRIMARY KEY (rowid>?)", false},
		{AuditFilter{Since: ts, Until: ts.Add(time.Hour)}, "SEARCH a USING INDEX audit_log_recorded_at (recorded_at>? AND recorded_at<?)", true},
		{AuditFilter{User: "u", Since: ts, Limit: 10}, "SEARCH a USING INDEX audit_log_end_user (end_user=? AND rowid>?)", false},
		{AuditFilter{Until: ts}, "SCAN a", false},
		{AuditFilter{Tool: "t"}, "SCAN a", false},
		{AuditFilter{Decision: Allowed, Phase: PhaseRequest}, "SCAN a", false},
	} {
		q, args := ss.auditQuery(tt.f)
		got := plan(q, args...)
		if !strings.HasPrefix(got, tt.want+";") || !strings.Contains(got, outcomeLookup) ||
			strings.Contains(got, sinceLookup) == tt.f.Since.IsZero() ||
			strings.Contains(got, "TEMP B-TREE") != tt.sort || strings.Contains(got, "AUTOMATIC") {
			t.Errorf("plan of the list query for %+v:\n got %s\nwant %s first, %s, a sort by seq: %v, %s: %v",
				tt.f, got, tt.want, outcomeLookup, tt.sort, sinceLookup, !tt.f.Since.IsZero())
		}
	}
	got := plan(`SELECT a.seq, a.phase, `+concludedBy+` FROM audit_log a WHERE a.seq `+sqliteDialect.seqIn, "[1,2]")
	if !strings.HasPrefix(got, "SEARCH a USING INTEGER PRIMARY KEY (rowid=?)") || !strings.Contains(got, outcomeLookup) {
		t.Errorf("plan of the writer's outcome check:\n got %s\nwant each seq found by the table's key, %s", got, outcomeLookup)
	}
	if got := plan(`SELECT ` + auditCols + ` FROM audit_log ORDER BY seq`); got != "SCAN audit_log" {
		t.Errorf("plan of verification's walk: got %s, want SCAN audit_log (the table in seq order, no sort, no index)", got)
	}
}
