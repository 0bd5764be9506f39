package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for rawDB
)

// rawDB opens the database behind dsn without a Store: to build an older
// schema, or to hold a lock the store's writer must wait for.
func rawDB(t *testing.T, dsn string) (*sql.DB, *dialect) {
	t.Helper()
	var db *sql.DB
	var d *dialect
	var err error
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		d = sqliteDialect
	} else {
		db, err = sql.Open("pgx", dsn)
		d = postgresDialect("unused")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, d
}

// request and outcome build the two records of one allowed call.
func request(i int) AuditRecord {
	r := auditRec(i)
	r.Decision, r.Phase, r.Outcome, r.DurationMS = Allowed, PhaseRequest, "", 0
	r.Client, r.TraceID = "claude-code", fmt.Sprintf("trace-%d", i)
	return r
}

func outcome(i int, concludes int64) AuditRecord {
	r := request(i)
	r.Phase, r.Concludes, r.Outcome, r.DurationMS = PhaseOutcome, concludes, "ok", 7
	return r
}

func testAuditPhases(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	mustAppend := func(rec AuditRecord) int64 {
		t.Helper()
		seq, err := s.AppendAudit(ctx, rec)
		if err != nil {
			t.Fatalf("AppendAudit(%s %s): %v", rec.Phase, rec.RequestID, err)
		}
		return seq
	}
	req1 := mustAppend(request(1))
	req2 := mustAppend(request(2))
	blocked := auditRec(3) // a one-shot decision
	blocked.Decision = Blocked
	dec := mustAppend(blocked)
	out1 := mustAppend(outcome(1, req1))

	// Outcomes that conclude nothing open are refused, each on its own.
	for _, tt := range []struct {
		name string
		rec  AuditRecord
	}{
		{"a second outcome for a request", outcome(1, req1)},
		{"an outcome of a decision", outcome(3, dec)},
		{"an outcome of an outcome", outcome(1, out1)},
		{"an outcome of a record that does not exist", outcome(9, 999)},
		{"an outcome that concludes nothing", outcome(9, 0)},
		{"an outcome that concludes a negative seq", outcome(9, -1)},
		{"a request that concludes", func() AuditRecord { r := request(9); r.Concludes = req2; return r }()},
		{"a decision that concludes", func() AuditRecord { r := auditRec(9); r.Concludes = req2; return r }()},
		{"an unknown phase", func() AuditRecord { r := request(9); r.Phase = "maybe"; return r }()},
	} {
		if seq, err := s.AppendAudit(ctx, tt.rec); !errors.Is(err, ErrInvalid) {
			t.Errorf("AppendAudit(%s) = %d, %v; want ErrInvalid", tt.name, seq, err)
		}
	}

	// Two outcomes for one request racing (likely in one batch): one wins.
	req3 := mustAppend(request(3))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.AppendAudit(ctx, outcome(3, req3)) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrInvalid):
			t.Errorf("racing outcome: %v, want success or ErrInvalid", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d racing outcomes for request %d were written, want 1", won, len(errs), req3)
	}

	all, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	bySeq := make(map[int64]AuditRecord)
	for _, r := range all {
		bySeq[r.Seq] = r
		if r.HashVersion != auditHashVersion || !bytes.Equal(AuditHash(&r), r.Hash) {
			t.Errorf("record %d: hash version %d, rehash matches: %v", r.Seq, r.HashVersion, bytes.Equal(AuditHash(&r), r.Hash))
		}
	}
	if len(all) != 6 {
		t.Fatalf("ListAudit = %d records, want 6 (3 requests, 1 decision, 2 outcomes)", len(all))
	}
	for _, tt := range []struct {
		seq         int64
		missing     bool
		concludedBy int64
		phase       AuditPhase
	}{
		{req1, false, out1, PhaseRequest},
		{req2, true, 0, PhaseRequest},
		{dec, false, 0, PhaseDecision},
		{out1, false, 0, PhaseOutcome},
	} {
		r := bySeq[tt.seq]
		if r.OutcomeMissing != tt.missing || r.ConcludedBy != tt.concludedBy || r.Phase != tt.phase {
			t.Errorf("record %d: phase %q, outcome missing %v, concluded by %d; want %q, %v, %d",
				tt.seq, r.Phase, r.OutcomeMissing, r.ConcludedBy, tt.phase, tt.missing, tt.concludedBy)
		}
	}
	if r := bySeq[out1]; r.Concludes != req1 || r.Client != "claude-code" || r.TraceID != "trace-1" {
		t.Errorf("outcome %d read back as %+v", out1, r)
	}

	for _, tt := range []struct {
		f    AuditFilter
		want int
	}{
		{AuditFilter{Phase: PhaseRequest}, 3},
		{AuditFilter{Phase: PhaseOutcome}, 2},
		{AuditFilter{RequestID: "req-1"}, 2},
		{AuditFilter{RequestID: "req-1", Phase: PhaseOutcome}, 1},
		{AuditFilter{RequestID: "nope"}, 0},
	} {
		if got, err := s.ListAudit(ctx, tt.f); err != nil || len(got) != tt.want {
			t.Errorf("ListAudit(%+v) = %d records, %v; want %d", tt.f, len(got), err, tt.want)
		}
	}

	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 6 || rep.PendingOutcomes != 1 || rep.FirstPending != req2 {
		t.Errorf("VerifyAudit = %+v (problem %v), %v; want 6 records, 1 pending from %d", rep, rep.Problem, err, req2)
	}

	var lines []string
	if err := s.ExportAudit(ctx, AuditFilter{Phase: PhaseRequest}, func(r AuditRecord) error {
		b, err := json.Marshal(r)
		lines = append(lines, string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || !strings.Contains(lines[1], `"outcome_missing":true`) || strings.Contains(lines[0], "outcome_missing") {
		t.Errorf("export of the requests:\n%s\nwant outcome_missing on the second only", strings.Join(lines, "\n"))
	}
	var back AuditRecord
	if err := json.Unmarshal([]byte(lines[1]), &back); err != nil || !bytes.Equal(AuditHash(&back), back.Hash) {
		t.Errorf("exported request %s does not rehash to its hash (%v)", lines[1], err)
	}
}

// A record with a field the store could not keep exactly is refused
// before anything is written, naming the field.
func testAuditRefusesUnstorable(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	for _, tt := range []struct {
		field string
		edit  func(r *AuditRecord)
	}{
		{"request_id", func(r *AuditRecord) { r.RequestID = "\xff" }},
		{"user", func(r *AuditRecord) { r.User = "bob\x00" }},
		{"client", func(r *AuditRecord) { r.Client = "a\x00b" }},
		{"client", func(r *AuditRecord) { r.Client = "\xc3\x28" }},
		{"trace_id", func(r *AuditRecord) { r.TraceID = "\x00" }},
		{"approval_id", func(r *AuditRecord) { r.ApprovalID = "\xed\xa0\x80" }}, // a UTF-16 surrogate
		{"outcome", func(r *AuditRecord) { r.Outcome = "failed: \x00" }},
		{"arguments", func(r *AuditRecord) { r.Arguments = json.RawMessage(`{"a":"\xff"}`) }},
	} {
		r := request(1)
		tt.edit(&r)
		_, err := s.AppendAudit(ctx, r)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("AppendAudit with a bad %s: %v, want ErrInvalid naming %s", tt.field, err, tt.field)
		}
	}
	if rep, err := s.VerifyAudit(ctx); err != nil || rep.HeadSeq != 0 {
		t.Errorf("after refused appends the head is %d (%v), want 0: nothing written", rep.HeadSeq, err)
	}
	// What is valid is stored byte for byte: control characters other than
	// NUL, any script, the longest code points.
	r := request(1)
	r.Client, r.User = "cli\x01ent\t\u2028", "ünïcødé@例え.jp\U0010FFFF"
	seq, err := s.AppendAudit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ListAudit(ctx, AuditFilter{AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(got) != 1 || got[0].Client != r.Client || got[0].User != r.User {
		t.Errorf("read back %+v, %v; want client %q, user %q", got, err, r.Client, r.User)
	}
}

// A database written by the version-1 schema, with records in it, is
// migrated in place: the old records still verify under v1, new ones are
// v2, one chain.
func testAuditMigrateV1(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	db, d := rawDB(t, dsn)
	if err := migrate(ctx, db, d, migrations[:1]); err != nil {
		t.Fatalf("building the v1 schema: %v", err)
	}
	const v1Cols = `seq, recorded_at, request_id, api_key_id, service, end_user, agent, server, tool,
		arguments, decision, rule, bundle_revision, plan_hash, step, outcome, duration_ms, prev_hash, hash`
	prev := zeroHash
	for i := 1; i <= 5; i++ {
		r := auditRec(i) // as the old binary wrote them: no version, v1 hash
		r.Seq, r.Time, r.PrevHash = int64(i), time.Unix(0, int64(i)*1e9).UTC(), prev
		r.Hash = AuditHash(&r)
		prev = r.Hash
		if _, err := db.ExecContext(ctx, d.rebind(`INSERT INTO audit_log (`+v1Cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			r.Seq, r.Time.UnixNano(), r.RequestID, r.APIKeyID, r.Service, r.User, r.Agent, r.Server, r.Tool,
			string(r.Arguments), string(r.Decision), r.Rule, r.BundleRevision, r.PlanHash, r.Step, r.Outcome,
			r.DurationMS, r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, d.rebind(`UPDATE audit_head SET seq = 5, hash = ? WHERE id = 1`), prev); err != nil {
		t.Fatal(err)
	}

	s := open(t, dsn) // migrates to the latest schema
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 5 || rep.PendingOutcomes != 0 {
		t.Fatalf("VerifyAudit after migrating = %+v (problem %v), %v; want 5 records, no problem", rep, rep.Problem, err)
	}
	req, err := s.AppendAudit(ctx, request(6))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, outcome(6, req)); err != nil {
		t.Fatal(err)
	}
	rep, err = s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 7 || rep.PendingOutcomes != 0 {
		t.Errorf("VerifyAudit after appending = %+v (problem %v), %v; want 7 records, no problem", rep, rep.Problem, err)
	}
	all, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(all) != 7 {
		t.Fatalf("ListAudit = %d, %v", len(all), err)
	}
	if all[4].HashVersion != 1 || all[5].HashVersion != auditHashVersion || !bytes.Equal(all[5].PrevHash, all[4].Hash) {
		t.Errorf("versions %d, %d; record 6 links to 5: %v; want 1, 3, true", all[4].HashVersion, all[5].HashVersion, bytes.Equal(all[5].PrevHash, all[4].Hash))
	}

	// Giving an old record a field v1 did not hash is an edit, as is
	// relabelling a record's version.
	for _, tt := range []struct {
		name, sql string
		seq       int64
	}{
		{"a v1 record made a request", `UPDATE audit_log SET phase = 'request' WHERE seq = 3`, 3},
		{"a v1 record given a client", `UPDATE audit_log SET client = 'x' WHERE seq = 2`, 2},
		{"a v3 record relabelled v1", `UPDATE audit_log SET hash_version = 1 WHERE seq = 6`, 6},
		{"a v3 record relabelled v2", `UPDATE audit_log SET hash_version = 2 WHERE seq = 6`, 6},
		{"a v1 record given a user source", `UPDATE audit_log SET user_source = 'X-Armoriq-User' WHERE seq = 2`, 2},
		{"a v3 record's issuer edited", `UPDATE audit_log SET auth_issuer = 'https://evil' WHERE seq = 6`, 6},
		{"a v1 record relabelled v2", `UPDATE audit_log SET hash_version = 2 WHERE seq = 1`, 1},
		{"an unknown version", `UPDATE audit_log SET hash_version = 7 WHERE seq = 4`, 4},
		{"an outcome moved to another request", `UPDATE audit_log SET concludes = 2 WHERE seq = 7`, 7},
		{"a request's client edited", `UPDATE audit_log SET client = 'other' WHERE seq = 6`, 6},
		{"a request's trace edited", `UPDATE audit_log SET trace_id = '' WHERE seq = 6`, 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := s.(*sqlStore).w.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, tt.sql); err != nil {
				t.Fatal(err)
			}
			head, hash := int64(0), []byte(nil)
			tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&head, &hash)
			v := newVerifier(head, hash)
			rows, err := tx.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				r, err := scanAudit(rows, false)
				if err != nil {
					t.Fatal(err)
				}
				if !v.next(&r) {
					break
				}
			}
			rows.Close()
			rep := v.done()
			if rep.Problem == nil || rep.Problem.Seq != tt.seq || rep.Problem.Kind != Edited {
				t.Errorf("after %s: problem %v, want record %d edited", tt.name, rep.Problem, tt.seq)
			}
		})
	}
}

// Outcomes queued when Close starts are all committed before it returns:
// the gateway appends them from goroutines after answering.
func testAuditCloseCommitsQueuedOutcomes(t *testing.T, e engine) {
	ctx := ctxT(t)
	// The database's write lock holds the writer only where batches
	// commit to the database (a journaled store: TestJournalCloseApplies).
	dsn := e.directDSN(e.newDB(t))
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300 // more than two batches
	reqs := make([]int64, n)
	for i := range n {
		if reqs[i], err = s.AppendAudit(ctx, request(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the write lock from outside so the outcomes stay queued.
	release := holdWriteLock(t, dsn)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = s.AppendAudit(context.Background(), outcome(i, reqs[i])) })
	}
	aw := s.(*sqlStore).audit
	deadline := time.Now().Add(10 * time.Second)
	for aw.queued.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d outcomes queued", aw.queued.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	time.Sleep(100 * time.Millisecond) // Close is waiting for the writer
	release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("outcome %d queued before Close: %v", i, err)
		}
	}
	s = open(t, dsn)
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 2*n || rep.PendingOutcomes != 0 {
		t.Errorf("after Close and reopen: VerifyAudit = %+v (problem %v), %v; want %d records, none pending", rep, rep.Problem, err, 2*n)
	}
}

// holdWriteLock takes, from a connection of its own, the lock the store's
// writer needs for a batch (the write lock on SQLite, the chain head's row
// on PostgreSQL), so that appends queue up behind it; release lets them go.
func holdWriteLock(t *testing.T, dsn string) (release func()) {
	t.Helper()
	ctx := ctxT(t)
	db, d := rawDB(t, dsn)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.name == "sqlite" {
		_, err = conn.ExecContext(ctx, `BEGIN IMMEDIATE`)
	} else {
		if _, err = conn.ExecContext(ctx, `BEGIN`); err == nil {
			_, err = conn.ExecContext(ctx, `SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE`)
		}
	}
	if err != nil {
		conn.Close()
		t.Fatalf("locking the database: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
				t.Errorf("releasing the lock: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

func testRevokedSince(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	start := time.Now()
	var keys []string
	for range 3 {
		_, id, hash := GenerateAPIKey()
		if err := s.CreateAPIKey(ctx, APIKey{ID: id, Name: "k", Role: RoleAgent, SecretHash: hash, Last4: "abcd"}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, id)
	}
	for _, id := range []string{"t1", "t2"} {
		if err := s.PutToken(ctx, Token{ID: id, IssuedAt: start, ExpiresAt: start.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	k0, err := s.RevokeAPIKey(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	t1, err := s.RevokeToken(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	k1, err := s.RevokeAPIKey(ctx, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		since time.Time
		want  []Revocation
	}{
		{"before all", start, []Revocation{{RevokedAPIKey, keys[0], k0}, {RevokedToken, "t1", t1}, {RevokedAPIKey, keys[1], k1}}},
		{"at the token's revocation", t1, []Revocation{{RevokedToken, "t1", t1}, {RevokedAPIKey, keys[1], k1}}},
		{"just after it", t1.Add(time.Nanosecond), []Revocation{{RevokedAPIKey, keys[1], k1}}},
		{"after all", k1.Add(time.Nanosecond), nil},
	} {
		got, err := s.RevokedSince(ctx, tt.since)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("RevokedSince(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// recordBatches makes aw note the phases of every batch it writes, and
// returns what it noted so far, as text ("[[request] [outcome request]]").
func recordBatches(aw *auditWriter) func() string {
	var mu sync.Mutex
	var batches [][]AuditPhase
	write := aw.write
	aw.write = func(batch []*appendReq) error {
		phases := make([]AuditPhase, len(batch))
		for i, r := range batch {
			phases[i] = r.rec.Phase
		}
		mu.Lock()
		batches = append(batches, phases)
		mu.Unlock()
		return write(batch)
	}
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(batches)
	}
}

// testAuditOutcomeLingers: an outcome is not committed on its own while the
// next call's request is on its way: it waits (up to the linger) and both
// share one commit, so a caller's next request never waits for the
// previous call's outcome to be committed first. An outcome with nothing
// after it still commits, and Close commits one still lingering.
func testAuditOutcomeLingers(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	aw := s.(*sqlStore).audit
	batches := recordBatches(aw)
	aw.linger = time.Hour // nothing but the next request or Close ends it here
	waitQueued := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); aw.queued.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d records queued, want %d", aw.queued.Load(), n)
			}
		}
	}

	req1, err := s.AppendAudit(ctx, request(1))
	if err != nil {
		t.Fatal(err)
	}
	out1 := make(chan error, 1)
	go func() { _, err := s.AppendAudit(ctx, outcome(1, req1)); out1 <- err }()
	waitQueued(1)
	req2, err := s.AppendAudit(ctx, request(2))
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	if err := <-out1; err != nil {
		t.Fatalf("the lingering outcome: %v", err)
	}
	got := batches()
	if want := "[[request] [outcome request]]"; got != want {
		t.Errorf("commits = %s, want %s: the outcome must share the next request's commit", got, want)
	}

	// Close commits an outcome still lingering.
	out2 := make(chan error, 1)
	go func() { _, err := s.AppendAudit(context.Background(), outcome(2, req2)); out2 <- err }()
	waitQueued(1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-out2; err != nil {
		t.Fatalf("the outcome lingering at Close: %v", err)
	}

	// With the default linger, an outcome alone commits by itself.
	s = open(t, dsn)
	req3, err := s.AppendAudit(ctx, request(3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, outcome(3, req3)); err != nil {
		t.Fatalf("an outcome with nothing after it: %v", err)
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 6 || rep.PendingOutcomes != 0 {
		t.Errorf("VerifyAudit = %+v (problem %v), %v; want 6 records, none pending", rep, rep.Problem, err)
	}
}

// TestSQLiteCheckpointsOffTheCommitPath: the writer's connection checkpoints
// only as a backstop, and the store's own checkpointer copies the WAL back
// into the database after audit commits, so the WAL does not grow with the
// log and no commit pays for a checkpoint.
func TestSQLiteCheckpointsOffTheCommitPath(t *testing.T) {
	ctx := ctxT(t)
	s := open(t, sqliteEngine.newDB(t)).(*sqlStore)
	var pages int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if pages != walBackstopPages {
		t.Errorf("the writer's wal_autocheckpoint = %d, want the backstop %d", pages, walBackstopPages)
	}
	for i := range 300 {
		if _, err := s.AppendAudit(ctx, request(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The checkpointer runs soon after the last commit: every frame of the
	// WAL ends up copied back (PASSIVE reports log == checkpointed).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var busy, log, done int
		if err := s.checkpoints.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
			t.Fatal(err)
		}
		if log > 0 && log == done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the WAL is not checkpointed: %d of %d frames copied back", done, log)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 300 {
		t.Fatalf("VerifyAudit = %+v, %v", rep, err)
	}
}

// testAuditAppendersCancel: appenders of requests and outcomes whose
// contexts end at any moment (while queued, while their own record is
// being written by them as leader, while lingering) never strand another
// appender or Close; every record acknowledged is in the log exactly once,
// and the chain verifies.
func testAuditAppendersCancel(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	const workers, each = 16, 40
	var acked atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				// Every third append has a context that ends after a few
				// microseconds: sometimes before, sometimes during its write.
				actx, cancel := ctx, context.CancelFunc(func() {})
				if n%3 == 0 {
					actx, cancel = context.WithTimeout(ctx, time.Duration(n%50)*time.Microsecond)
				}
				seq, err := s.AppendAudit(actx, request(n))
				cancel()
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("request %d: %v", n, err)
					}
					continue
				}
				acked.Add(1)
				if n%4 == 1 {
					// Detached, as the gateway appends outcomes.
					var owg sync.WaitGroup
					owg.Add(1)
					s.(DetachedAppender).AppendAuditDetached(outcome(n, seq), func(_ int64, err error) {
						if err == nil {
							acked.Add(1)
						} else {
							t.Errorf("detached outcome %d: %v", n, err)
						}
						owg.Done()
					})
					if n%8 == 1 {
						owg.Wait()
					}
					continue
				}
				octx, ocancel := ctx, context.CancelFunc(func() {})
				if n%5 == 0 {
					octx, ocancel = context.WithTimeout(ctx, time.Duration(n%70)*time.Microsecond)
				}
				_, err = s.AppendAudit(octx, outcome(n, seq))
				ocancel()
				if err == nil {
					acked.Add(1)
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("outcome %d: %v", n, err)
				}
			}
		})
	}
	wg.Wait()
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("VerifyAudit = %+v (problem %v), %v", rep, rep.Problem, err)
	}
	// A record whose context ended while it was being written may be in
	// the log though its appender was told otherwise; never the reverse.
	if rep.Records < acked.Load() {
		t.Errorf("%d records in the log, %d acknowledged", rep.Records, acked.Load())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testAuditDetachedOutcome: an outcome appended detached (nobody waits for
// it) lingers on the writer's clock, not a goroutine, and is committed with the next
// request, by that request's caller; alone, when the linger runs out; at
// Close, at once; a refused one is reported to its callback.
func testAuditDetachedOutcome(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	aw := s.(*sqlStore).audit
	batches := recordBatches(aw)
	aw.linger = time.Hour // nothing but the next request or Close ends it here
	type result struct {
		seq int64
		err error
	}
	detached := func(rec AuditRecord) chan result {
		ch := make(chan result, 1)
		s.(DetachedAppender).AppendAuditDetached(rec, func(seq int64, err error) { ch <- result{seq, err} })
		return ch
	}

	req1, err := s.AppendAudit(ctx, request(1))
	if err != nil {
		t.Fatal(err)
	}
	out1 := detached(outcome(1, req1))
	req2, err := s.AppendAudit(ctx, request(2))
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	if r := <-out1; r.err != nil || r.seq != req1+1 {
		t.Fatalf("the detached outcome: seq %d, %v; want %d", r.seq, r.err, req1+1)
	}
	got := batches()
	if want := "[[request] [outcome request]]"; got != want {
		t.Errorf("commits = %s, want %s: the outcome must share the next request's commit", got, want)
	}

	// Close commits a detached outcome still lingering.
	out2 := detached(outcome(2, req2))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := <-out2; r.err != nil {
		t.Fatalf("the outcome lingering at Close: %v", r.err)
	}
	if r := <-detached(outcome(3, req2)); !errors.Is(r.err, ErrClosed) {
		t.Errorf("a detached append after Close: %v, want ErrClosed", r.err)
	}

	// With the default linger, an outcome alone is committed when it runs
	// out.
	s = open(t, dsn)
	req3, err := s.AppendAudit(ctx, request(3))
	if err != nil {
		t.Fatal(err)
	}
	if r := <-detached(outcome(3, req3)); r.err != nil {
		t.Fatalf("a detached outcome with nothing after it: %v", r.err)
	}
	// A refused outcome (its request has one already) is reported.
	if r := <-detached(outcome(1, req1)); !errors.Is(r.err, ErrInvalid) {
		t.Errorf("a second outcome for request %d: %v, want ErrInvalid", req1, r.err)
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 6 || rep.PendingOutcomes != 0 {
		t.Errorf("VerifyAudit = %+v (problem %v), %v; want 6 records, none pending", rep, rep.Problem, err)
	}
}

// testAuditLingerClock: detached outcomes linger on one clock, armed once
// per linger rather than once per outcome (a timer set per call woke a
// runtime thread per call), and a linger that starts while the clock is
// armed for an earlier one still gets its whole time: the clock re-arms
// for the rest instead of writing it early.
func testAuditLingerClock(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	aw := s.(*sqlStore).audit
	arms := func() int {
		aw.mu.Lock()
		defer aw.mu.Unlock()
		return aw.clockArms
	}
	detached := func(rec AuditRecord) chan error {
		ch := make(chan error, 1)
		s.(DetachedAppender).AppendAuditDetached(rec, func(_ int64, err error) { ch <- err })
		return ch
	}

	// A hundred calls, each outcome taken over by the next call's
	// request: the clock is armed once, for the first outcome.
	aw.linger = time.Hour
	var outs []chan error
	for i := range 100 {
		req, err := s.AppendAudit(ctx, request(i))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, detached(outcome(i, req)))
	}
	last, err := s.AppendAudit(ctx, request(100))
	if err != nil {
		t.Fatal(err)
	}
	for i, ch := range outs {
		if err := <-ch; err != nil {
			t.Fatalf("outcome %d: %v", i, err)
		}
	}
	if n := arms(); n != 1 {
		t.Errorf("clock armed %d times for 100 lingers taken over, want 1", n)
	}

	// The clock armed by an earlier linger (taken over) fires while a
	// later one runs: that one is written no sooner than its own linger.
	const linger = 150 * time.Millisecond
	aw.mu.Lock()
	aw.linger = linger
	if aw.lingerClock.Stop() {
		aw.clockArmed = false
	}
	aw.mu.Unlock()
	first := detached(outcome(100, last)) // arms the clock for linger
	req, err := s.AppendAudit(ctx, request(101))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	time.Sleep(linger / 2)
	start := time.Now()
	second := detached(outcome(101, req))
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < linger {
		t.Errorf("an outcome alone was written %v after it was queued, before its linger (%v) ran out", waited, linger)
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.PendingOutcomes != 0 {
		t.Errorf("VerifyAudit = %+v (problem %v), %v; want none pending", rep, rep.Problem, err)
	}
}

// testAuditSlowStoreBoundsLeaders: once a write has failed or been slow,
// an appender that finds nobody writing does not write on its own
// goroutine: its context bounds its wait as a follower's does, while the
// write it started goes on.
func testAuditSlowStoreBoundsLeaders(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	aw := s.(*sqlStore).audit
	release := make(chan struct{})
	write := aw.write
	aw.write = func(batch []*appendReq) error {
		<-release
		return write(batch)
	}
	aw.slow.Store(true) // as after a write that failed
	actx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := s.AppendAudit(actx, request(1))
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AppendAudit while the write is held: %v, want the caller's deadline", err)
	}
	// The write it started commits the record; the next one is quick and
	// clears the flag.
	if _, err := s.AppendAudit(ctx, request(2)); err != nil {
		t.Fatal(err)
	}
	if aw.slow.Load() {
		t.Error("a quick write left the writer marked slow")
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != 2 {
		t.Errorf("VerifyAudit = %+v, %v; want both records", rep, err)
	}
}
