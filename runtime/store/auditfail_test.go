package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// A batch the database refuses part-way fails every caller in it and leaves
// nothing of it behind; the chain goes on from the last committed record.
// The failures are the database's own, injected with triggers on the
// audit_log table: at the INSERT of one record in the middle of the group,
// at COMMIT (a deferred constraint), and (PostgreSQL) the writer's
// connection dying under the INSERT.
func testAuditBatchFailure(t *testing.T, e engine) {
	type failure struct {
		name string
		// setup creates the trigger that fails a batch holding a record
		// with request id "boom"; the returned SQL removes it.
		setup map[string][]string
		drop  map[string][]string
		// want is in the error every caller of the failed batch gets.
		want string
	}
	failures := []failure{{
		name: "insert fails",
		setup: map[string][]string{
			"sqlite": {`CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log WHEN NEW.request_id = 'boom'
				BEGIN SELECT RAISE(ABORT, 'emulated disk full'); END`},
			"postgres": {`CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.request_id = 'boom' THEN RAISE EXCEPTION 'emulated disk full'; END IF; RETURN NEW; END $$`,
				`CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_fail()`},
		},
		drop: map[string][]string{
			"sqlite":   {`DROP TRIGGER audit_fail`},
			"postgres": {`DROP TRIGGER audit_fail ON audit_log`, `DROP FUNCTION audit_fail()`},
		},
		want: "emulated disk full",
	}, {
		name: "commit fails",
		setup: map[string][]string{
			// A deferred foreign key: the INSERT passes, the COMMIT fails.
			"sqlite": {`CREATE TABLE audit_fail_parent (id INTEGER PRIMARY KEY)`,
				`CREATE TABLE audit_fail_child (p INTEGER REFERENCES audit_fail_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
				`CREATE TRIGGER audit_fail AFTER INSERT ON audit_log WHEN NEW.request_id = 'boom'
				BEGIN INSERT INTO audit_fail_child VALUES (42); END`},
			// A deferred constraint trigger runs at COMMIT.
			"postgres": {`CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.request_id = 'boom' THEN RAISE EXCEPTION 'emulated failure at commit'; END IF; RETURN NULL; END $$`,
				`CREATE CONSTRAINT TRIGGER audit_fail AFTER INSERT ON audit_log DEFERRABLE INITIALLY DEFERRED
				FOR EACH ROW EXECUTE FUNCTION audit_fail()`},
		},
		drop: map[string][]string{
			"sqlite":   {`DROP TRIGGER audit_fail`, `DROP TABLE audit_fail_child`, `DROP TABLE audit_fail_parent`},
			"postgres": {`DROP TRIGGER audit_fail ON audit_log`, `DROP FUNCTION audit_fail()`},
		},
		want: map[string]string{"sqlite": "FOREIGN KEY constraint failed", "postgres": "emulated failure at commit"}[e.name],
	}, {
		name: "connection lost",
		setup: map[string][]string{
			"postgres": {`CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.request_id = 'boom' THEN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); END IF; RETURN NEW; END $$`,
				`CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_fail()`},
		},
		drop: map[string][]string{
			"postgres": {`DROP TRIGGER audit_fail ON audit_log`, `DROP FUNCTION audit_fail()`},
		},
		want: "unavailable",
	}}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			if f.setup[e.name] == nil {
				t.Skipf("no way to emulate %q on %s", f.name, e.name)
			}
			testAuditFailure(t, e, f.setup[e.name], f.drop[e.name], f.want)
		})
	}
}

func testAuditFailure(t *testing.T, e engine, setup, drop []string, want string) {
	ctx := ctxT(t)
	// A journaled SQLite store has acknowledged the batch before the
	// database sees it: TestJournalDatabaseRefuses.
	dsn := e.directDSN(e.newDB(t))
	s := open(t, dsn)
	appendN(t, s, 3)
	db, _ := rawDB(t, dsn)
	for _, q := range setup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("injecting the failure: %s: %v", q, err)
		}
	}

	// One record alone, then a group of nine with "boom" in the middle:
	// the writer takes the first record at once and waits for the lock
	// held here; the nine queue behind it and form the next batch.
	aw := s.(*sqlStore).audit
	waitQueue := func(queued int64, inChannel int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		// The writer must be inside its write (blocked on the lock), not
		// between taking the lone record and looking for more.
		for aw.queued.Load() != queued || aw.waiting() != inChannel || !aw.writing.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("queue: %d accepted, %d not taken, writing %v; want %d and %d, writing", aw.queued.Load(), aw.waiting(), aw.writing.Load(), queued, inChannel)
			}
			time.Sleep(time.Millisecond)
		}
	}
	release := holdWriteLock(t, dsn)
	var wg sync.WaitGroup
	var loneSeq int64
	var loneErr error
	wg.Go(func() { loneSeq, loneErr = s.AppendAudit(ctx, request(100)) })
	waitQueue(1, 0)
	const group = 9
	errs, seqs := make([]error, group), make([]int64, group)
	for i := range group {
		rec := request(200 + i)
		if i == group/2 {
			rec.RequestID = "boom"
		}
		wg.Go(func() { seqs[i], errs[i] = s.AppendAudit(ctx, rec) })
	}
	waitQueue(1+group, group)
	release()
	wg.Wait()

	if loneErr != nil || loneSeq != 4 {
		t.Fatalf("the record before the failing batch: seq %d, %v; want 4", loneSeq, loneErr)
	}
	t.Logf("the failing batch's callers get: %v", errs[0])
	for i, err := range errs {
		if err == nil {
			t.Errorf("record %d of the failing batch: acknowledged as seq %d, want an error", i, seqs[i])
			continue
		}
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("record %d of the failing batch: %v; want ErrUnavailable saying %q", i, err, want)
		}
	}
	recs, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[3].RequestID != "req-100" {
		t.Fatalf("after the failed batch: %d records, want the 4 committed before it", len(recs))
	}
	checkChain(t, s, 4)

	// Recovered: the next records continue the chain from seq 5.
	for _, q := range drop {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("removing the failure: %s: %v", q, err)
		}
	}
	for i := range 3 {
		rec := request(300 + i)
		rec.RequestID = "boom" // the same record that failed goes through now
		if seq, err := s.AppendAudit(ctx, rec); err != nil || seq != int64(5+i) {
			t.Fatalf("append after recovery: seq %d, %v; want %d", seq, err, 5+i)
		}
	}
	checkChain(t, s, 7)
}

// checkChain verifies the audit chain and wants n records in it.
func checkChain(t *testing.T, s Store, n int64) {
	t.Helper()
	rep, err := s.VerifyAudit(context.Background())
	if err != nil || !rep.OK() || rep.Records != n || rep.HeadSeq != n {
		t.Fatalf("VerifyAudit = %+v (problem %v), %v; want %d records, no problem", rep, rep.Problem, err, n)
	}
}
