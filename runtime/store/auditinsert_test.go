package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestApplyChunks applies batches through the journal's apply, as the
// applier does, whose sizes straddle the multi-row INSERT's chunk (whole
// chunks, a remainder, both), and checks every stored row column by column,
// type included, against the arguments the single-row INSERT bound before
// (appendAuditRow), then that the chain verifies. Text columns are empty
// in some records and not in others, so each goes both through the NULL
// IFNULL stores as the empty TEXT and through a bound text. A batch with a
// row the database refuses (a second outcome for one request, inside a
// chunk or in the remainder) fails as a whole with ErrInvalid and leaves
// nothing of itself; the next batch applies.
func TestApplyChunks(t *testing.T) {
	ctx := ctxT(t)
	// The writer as OpenSQLiteWith opens it, synchronous=FULL.
	s := openSQLiteWriter(t, ctx, filepath.Join(t.TempDir(), "armoriq.db"), "&_pragma=synchronous(FULL)&_txlock=immediate", migrations)
	db := s.w
	j := &auditJournal{s: s, sync: true, path: "test journal"}

	var stored []*AuditRecord // every record applied, in seq order
	seq, prev := int64(0), zeroHash
	var open []int64 // requests applied without an outcome
	n := 0           // records made, for their contents
	// chain makes size records continuing the stored chain: requests, and
	// outcomes for the oldest requests applied without one while any are
	// left. dup, if >= 0, makes record dup a second outcome for the first
	// request stored concluded: a row the database refuses.
	chain := func(size, dup int) []*AuditRecord {
		recs := make([]*AuditRecord, size)
		s, p := seq, prev
		pending := append([]int64(nil), open...)
		concluded := int64(0)
		for _, r := range stored {
			if r.Phase == PhaseOutcome {
				concluded = r.Concludes
				break
			}
		}
		for i := range recs {
			r := variedRecord(n)
			n++
			switch {
			case i == dup && concluded > 0:
				r.Phase, r.Concludes, r.Outcome = PhaseOutcome, concluded, "again"
			case i%3 == 2 && len(pending) > 0:
				r.Phase, r.Concludes = PhaseOutcome, pending[0]
				pending = pending[1:]
			default:
				r.Phase, r.Concludes, r.Outcome, r.DurationMS = PhaseRequest, 0, "", 0
			}
			s++
			r.Seq, r.PrevHash, r.HashVersion = s, p, auditHashVersion
			r.Hash = AuditHash(&r)
			p = r.Hash
			recs[i] = &r
		}
		return recs
	}
	// applied records recs as stored: the chain moves on.
	applied := func(recs []*AuditRecord) {
		for _, r := range recs {
			stored = append(stored, r)
			switch r.Phase {
			case PhaseRequest:
				open = append(open, r.Seq)
			case PhaseOutcome:
				for k, o := range open {
					if o == r.Concludes {
						open = append(open[:k], open[k+1:]...)
						break
					}
				}
			}
		}
		last := recs[len(recs)-1]
		seq, prev = last.Seq, last.Hash
	}

	for _, size := range []int{1, auditInsertChunk - 1, auditInsertChunk, auditInsertChunk + 1, 2*auditInsertChunk + 5, applyBatch} {
		recs := chain(size, -1)
		if err := j.apply(ctx, recs); err != nil {
			t.Fatalf("apply of %d records: %v", size, err)
		}
		applied(recs)
		checkStored(t, db, stored, seq)
	}
	for _, tc := range []struct {
		name      string
		size, dup int
	}{
		{"in a chunk", 2*auditInsertChunk + 3, auditInsertChunk + 4},
		{"in the remainder", 2*auditInsertChunk + 3, 2*auditInsertChunk + 1},
		{"alone", 1, 0},
	} {
		recs := chain(tc.size, tc.dup)
		if recs[tc.dup].Phase != PhaseOutcome {
			t.Fatalf("%s: record %d of the batch is not the duplicate outcome", tc.name, tc.dup)
		}
		err := j.apply(ctx, recs)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "UNIQUE") {
			t.Fatalf("%s: apply of a batch with a second outcome for request %d: %v; want ErrInvalid (UNIQUE)", tc.name, recs[tc.dup].Concludes, err)
		}
		checkStored(t, db, stored, seq)
		// The connection is usable, and the chain goes on.
		recs = chain(auditInsertChunk+1, -1)
		if err := j.apply(ctx, recs); err != nil {
			t.Fatalf("%s: apply after the refusal: %v", tc.name, err)
		}
		applied(recs)
		checkStored(t, db, stored, seq)
	}
	// apply leaves the connection syncing every commit.
	var sync int
	if err := db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Fatalf("synchronous after apply = %d, %v; want 2 (FULL)", sync, err)
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != int64(len(stored)) || rep.HeadSeq != seq {
		t.Fatalf("VerifyAudit = %+v, %v; want %d records verified, head %d", rep, err, len(stored), seq)
	}
}

// variedRecord is record i, whose text columns are empty in some records
// and not in others (column c is empty when bit c%5 of i is set), and
// whose texts hold quotes, Unicode, white space and a lone zero: whatever
// the bindings, each must be stored byte for byte.
func variedRecord(i int) AuditRecord {
	texts := []string{"", "x", "'quoted'", "ünïcødé ✓", "0", "a b\tc\nd"}
	pick := func(c int) string {
		if (i>>(c%5))&1 == 1 {
			return ""
		}
		return texts[(i+c)%len(texts)]
	}
	decisions := []Decision{Allowed, Blocked, Held, Failed}
	return AuditRecord{
		Time:      time.Unix(1700000000, int64(i)*1e6+int64(i%7)).UTC(),
		RequestID: pick(0), APIKeyID: pick(1), Service: pick(2), User: pick(3), Agent: pick(4),
		Server: pick(5), Tool: pick(6), Arguments: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":%q}`, i, pick(7))),
		Decision: decisions[i%4], Rule: pick(8), BundleRevision: pick(9), PlanHash: pick(10), Step: int64(i % 5),
		Outcome: pick(11), DurationMS: int64(i % 11), Client: pick(12), TraceID: pick(13), ApprovalID: pick(14),
		UserSource: pick(15), AuthIssuer: pick(16), AuthSubject: pick(17),
	}
}

// openSQLiteWriter opens the database at path as the store opens its
// writer (sqlitePragmas, then pragmas, then the writer's temp store), one
// connection, in WAL mode, migrated with steps and with the audit
// statements prepared: a store of the writer alone, closed when tb ends.
func openSQLiteWriter(tb testing.TB, ctx context.Context, path, pragmas string, steps []migration) *sqlStore {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?"+sqlitePragmas+pragmas+sqliteWriterTempStore)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if err := enableWAL(ctx, db); err != nil {
		tb.Fatal(err)
	}
	if err := migrate(ctx, db, sqliteDialect, steps); err != nil {
		tb.Fatal(err)
	}
	as, err := prepareAudit(ctx, db, sqliteDialect)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(as.close)
	return &sqlStore{d: sqliteDialect, w: db, r: db, as: as}
}

// checkStored checks that audit_log holds exactly recs, each column as the
// single-row INSERT stored it (appendAuditRow's value, an integer, text or
// blob), and that the head is at seq.
func checkStored(t *testing.T, db *sql.DB, recs []*AuditRecord, seq int64) {
	t.Helper()
	ctx := context.Background()
	var headSeq, count int64
	var headHash []byte
	if err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM audit_log`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if headSeq != seq || count != int64(len(recs)) {
		t.Fatalf("head %d, %d rows; want head %d, %d rows", headSeq, count, seq, len(recs))
	}
	if len(recs) > 0 && !reflect.DeepEqual(headHash, recs[len(recs)-1].Hash) {
		t.Fatalf("head hash %x; want record %d's, %x", headHash, seq, recs[len(recs)-1].Hash)
	}
	cols := strings.Split(strings.Join(strings.Fields(auditCols), ""), ",")
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, c := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "%s, typeof(%s)", c, c)
	}
	q.WriteString(" FROM audit_log ORDER BY seq")
	rows, err := db.QueryContext(ctx, q.String())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := make([]any, 2*auditNumCols)
	ptrs := make([]any, len(got))
	for i := range got {
		ptrs[i] = &got[i]
	}
	k := 0
	for ; rows.Next(); k++ {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		want := appendAuditRow(nil, recs[k])
		for c := range auditNumCols {
			w, typ := want[c], ""
			switch v := w.(type) {
			case int:
				w, typ = int64(v), "integer"
			case int64:
				typ = "integer"
			case string:
				typ = "text"
			case []byte:
				typ = "blob"
			default:
				t.Fatalf("column %s: unexpected argument type %T", cols[c], w)
			}
			if !reflect.DeepEqual(got[2*c], w) || got[2*c+1] != typ {
				t.Fatalf("record %d, column %s: stored %#v (%v); want %#v (%s)", recs[k].Seq, cols[c], got[2*c], got[2*c+1], w, typ)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if k != len(recs) {
		t.Fatalf("read %d rows; want %d", k, len(recs))
	}
}

// TestWriterTempStore: the writer's connections keep temp files in memory
// (the applier's multi-row INSERT journals its statement there), set as
// each connection opens; the readers keep theirs on disk.
func TestWriterTempStore(t *testing.T) {
	ctx := ctxT(t)
	st, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "armoriq.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, ok := st.(*sqlStore)
	if !ok {
		t.Fatalf("OpenSQLite returned a %T", st)
	}
	for _, tt := range []struct {
		name string
		db   *sql.DB
		want int
	}{{"writer", s.w, 2}, {"reader", s.r, 0}} {
		var got int
		if err := tt.db.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("the %s's temp_store is %d, want %d", tt.name, got, tt.want)
		}
	}
}
