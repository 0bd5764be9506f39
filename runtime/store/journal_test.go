package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The audit journal (journal.go): SQLite stores make a batch durable in
// PATH-auditjournal and apply it to the database afterwards.

func journalDB(t *testing.T) (dsn, path string) {
	t.Helper()
	if !journalSupported {
		t.Skip("no audit journal on this system (no flock)")
	}
	path = filepath.Join(t.TempDir(), "armoriq.db")
	return "sqlite:" + path, path
}

// records returns every record of s, in order.
func records(t *testing.T, s Store) []AuditRecord {
	t.Helper()
	var recs []AuditRecord
	if err := s.ExportAudit(ctxT(t), AuditFilter{}, func(r AuditRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatalf("ExportAudit: %v", err)
	}
	return recs
}

// TestJournalKilledMidAppends kills a process appending from eight
// goroutines (SIGKILL, no Close) and reopens its database: every record it
// acknowledged is there, in one chain that verifies, and appends go on.
func TestJournalKilledMidAppends(t *testing.T) {
	if os.Getenv("ARMORIQ_JOURNAL_CHILD") != "" {
		t.Skip("the child runs in TestJournalChild")
	}
	dsn, _ := journalDB(t)
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestJournalChild$", "-test.v")
		cmd.Env = append(os.Environ(), "ARMORIQ_JOURNAL_CHILD="+dsn)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[int64]string{}
		sc := bufio.NewScanner(out)
		killed := false
		for sc.Scan() {
			kind, seq, ok := strings.Cut(sc.Text(), " ")
			if !ok || (kind != "R" && kind != "O") {
				continue
			}
			n, err := strconv.ParseInt(seq, 10, 64)
			if err != nil {
				t.Fatalf("child wrote %q", sc.Text())
			}
			acked[n] = kind
			if len(acked) == 1500 && !killed {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("round %d: the child stopped before it was killed, after %d acknowledged records", round, len(acked))
		}
		s, err := Open(ctxT(t), dsn)
		if err != nil {
			t.Fatalf("round %d: reopening after the kill: %v", round, err)
		}
		have := map[int64]AuditRecord{}
		for _, r := range records(t, s) {
			have[r.Seq] = r
		}
		for seq, kind := range acked {
			r, ok := have[seq]
			switch {
			case !ok:
				t.Errorf("round %d: record %d was acknowledged before the kill and is gone", round, seq)
			case (kind == "R") != (r.Phase == PhaseRequest):
				t.Errorf("round %d: record %d acknowledged as %s, stored as phase %q", round, seq, kind, r.Phase)
			}
		}
		rep, err := s.VerifyAudit(ctxT(t))
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: VerifyAudit = %+v (problem %v), %v", round, rep, rep.Problem, err)
		}
		t.Logf("round %d: %d records acknowledged before the kill, %d stored", round, len(acked), rep.Records)
		if _, err := s.AppendAudit(ctxT(t), auditRec(1)); err != nil {
			t.Fatalf("round %d: append after reopening: %v", round, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJournalChild is the process TestJournalKilledMidAppends kills: it
// appends calls (a request, then its outcome) from eight goroutines and
// prints each acknowledged record, until it is killed.
func TestJournalChild(t *testing.T) {
	dsn := os.Getenv("ARMORIQ_JOURNAL_CHILD")
	if dsn == "" {
		t.Skip("run by TestJournalKilledMidAppends")
	}
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ack := func(kind string, seq int64) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "%s %d\n", kind, seq)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec := request(w*1_000_000 + i)
				// Arguments as clients send them: spaced, with characters
				// JSON encoders like to escape.
				rec.Arguments = json.RawMessage(fmt.Sprintf("{ \"i\": %d, \"q\": \"a < b && c > d\" }", i))
				seq, err := s.AppendAudit(context.Background(), rec)
				if err != nil {
					t.Error(err)
					return
				}
				ack("R", seq)
				out, err := s.AppendAudit(context.Background(), outcome(w*1_000_000+i, seq))
				if err != nil {
					t.Error(err)
					return
				}
				ack("O", out)
			}
		})
	}
	wg.Wait()
}

// journalFrames encodes recs as the store would journal them after a
// chain that ends with prev.
func journalFrames(t *testing.T, first int64, prev []byte, recs ...AuditRecord) []byte {
	t.Helper()
	var b []byte
	for i := range recs {
		rec := &recs[i]
		rec.Time = time.Unix(1_700_000_000+int64(i), 123).UTC()
		rec.HashVersion = auditHashVersion
		rec.Seq, rec.PrevHash = first+int64(i), prev
		rec.Hash = AuditHash(rec)
		prev = rec.Hash
		var err error
		if b, err = appendFrame(b, rec); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestJournalRecovers writes records into the journal of a closed store,
// as a process killed before applying them leaves it, and reopens it.
func TestJournalRecovers(t *testing.T) {
	setup := func(t *testing.T) (dsn, path string, head []byte) {
		dsn, path = journalDB(t)
		s := open(t, dsn)
		appendN(t, s, 3)
		recs := records(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return dsn, path, recs[2].Hash
	}
	write := func(t *testing.T, path string, b []byte) {
		t.Helper()
		f, err := os.OpenFile(path+journalSuffix, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("records beyond the head, then a torn frame", func(t *testing.T) {
		dsn, path, head := setup(t)
		frames := journalFrames(t, 4, head, request(4), request(5), request(6))
		torn := journalFrames(t, 7, nil, request(7))
		write(t, path, append(frames, torn[:len(torn)/2]...))
		s := open(t, dsn)
		recs := records(t, s)
		if len(recs) != 6 || recs[5].RequestID != "req-6" {
			t.Fatalf("after reopening: %d records; want 6, the last req-6", len(recs))
		}
		if seq, err := s.AppendAudit(ctxT(t), auditRec(9)); err != nil || seq != 7 {
			t.Fatalf("next append: seq %d, %v; want 7", seq, err)
		}
		checkChain(t, s, 7)
	})
	t.Run("a frame that does not link to the head", func(t *testing.T) {
		dsn, path, _ := setup(t)
		write(t, path, journalFrames(t, 4, make([]byte, 32), request(4)))
		s := open(t, dsn)
		checkChain(t, s, 3)
	})
	t.Run("a frame whose hash does not match", func(t *testing.T) {
		dsn, path, head := setup(t)
		b := journalFrames(t, 4, head, request(4))
		rec, _, _ := decodeFrame(b)
		rec.Tool = "tampered"
		bad, _ := appendFrame(nil, &rec)
		write(t, path, bad)
		s := open(t, dsn)
		checkChain(t, s, 3)
	})
	t.Run("a gap after the head", func(t *testing.T) {
		dsn, path, head := setup(t)
		frames := journalFrames(t, 4, head, request(4), request(5), request(6))
		_, n, _ := decodeFrame(frames)
		_, m, _ := decodeFrame(frames[n:])
		write(t, path, frames[n+m:]) // record 6 only
		_, err := Open(ctxT(t), dsn)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "records 4 to 5 are missing") {
			t.Fatalf("Open = %v; want ErrInvalid saying records 4 to 5 are missing", err)
		}
	})
}

// TestJournalSyncFails fails a batch after its frames are written, as a
// failed fdatasync would: its callers get an error, the next batch takes
// its place in the chain and in the file, and a reopen finds that one.
func TestJournalSyncFails(t *testing.T) {
	dsn, _ := journalDB(t)
	s := open(t, dsn)
	appendN(t, s, 2)
	j := s.(*sqlStore).journal
	j.testHookSync = func() error { return errors.New("emulated EIO") }
	_, err := s.AppendAudit(ctxT(t), request(100))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "emulated EIO") {
		t.Fatalf("append while the sync fails: %v; want ErrUnavailable saying emulated EIO", err)
	}
	j.testHookSync = nil
	if seq, err := s.AppendAudit(ctxT(t), request(200)); err != nil || seq != 3 {
		t.Fatalf("append after the failure: seq %d, %v; want 3", seq, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dsn)
	recs := records(t, s)
	if len(recs) != 3 || recs[2].RequestID != "req-200" {
		t.Fatalf("after reopening: %d records, the last %q; want 3, the last req-200", len(recs), recs[len(recs)-1].RequestID)
	}
	checkChain(t, s, 3)
}

// TestJournalDatabaseRefuses makes the database refuse a journaled record
// (a trigger): appends stop (fail closed), reads say why, Close reports
// it, and once the database accepts the record again a reopen applies it
// and everything acknowledged is there.
func TestJournalDatabaseRefuses(t *testing.T) {
	dsn, _ := journalDB(t)
	ctx := ctxT(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 2)
	records(t, s) // applied
	db, _ := rawDB(t, dsn)
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON audit_log WHEN NEW.request_id = 'boom'
		BEGIN SELECT RAISE(ABORT, 'emulated refusal'); END`); err != nil {
		t.Fatal(err)
	}
	rec := request(3)
	rec.RequestID = "boom"
	if seq, err := s.AppendAudit(ctx, rec); err != nil || seq != 3 {
		t.Fatalf("append of the record the database will refuse: seq %d, %v; want 3 (journaled)", seq, err)
	}
	if _, err := s.ListAudit(ctx, AuditFilter{}); err == nil || !strings.Contains(err.Error(), "emulated refusal") {
		t.Fatalf("ListAudit after the refusal: %v; want an error saying why", err)
	}
	if _, err := s.AppendAudit(ctx, request(4)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append after the refusal: %v; want ErrUnavailable", err)
	}
	if js, ok := JournalState(s); !ok || js.Refused == nil || !strings.Contains(js.Refused.Error(), "emulated refusal") || js.Pending != 1 {
		t.Fatalf("JournalState after the refusal = %+v, %v; want the refusal and 1 record pending", js, ok)
	}
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), "emulated refusal") {
		t.Fatalf("Close: %v; want an error saying the journal could not be applied", err)
	}
	if _, err := db.ExecContext(ctx, `DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	s = open(t, dsn)
	recs := records(t, s)
	if len(recs) != 3 || recs[2].RequestID != "boom" {
		t.Fatalf("after reopening: %d records; want 3, the last the refused one", len(recs))
	}
	checkChain(t, s, 3)
}

// TestJournalOneAppender opens one database twice: the second store reads
// what the first appends and refuses to append itself.
func TestJournalOneAppender(t *testing.T) {
	dsn, path := journalDB(t)
	a := open(t, dsn)
	b := open(t, dsn)
	_, err := b.AppendAudit(ctxT(t), auditRec(1))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), path+journalSuffix) {
		t.Fatalf("append through the second store: %v; want ErrUnavailable naming the journal", err)
	}
	appendN(t, a, 5)
	deadline := time.Now().Add(30 * time.Second)
	for len(records(t, b)) != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the second store reads %d records, want the first's 5", len(records(t, b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkChain(t, b, 5)
}

// TestJournalWraps runs a tiny journal, written over from its start many
// times and grown once for a record larger than itself.
func TestJournalWraps(t *testing.T) {
	defer func(n int64) { journalSize = n }(journalSize)
	journalSize = 4096
	dsn, path := journalDB(t)
	s := open(t, dsn)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 75 {
				if _, err := s.AppendAudit(ctxT(t), auditRec(w*100+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	big := auditRec(1000)
	big.Arguments = json.RawMessage(`{"blob":"` + strings.Repeat("x", 20000) + `"}`)
	if seq, err := s.AppendAudit(ctxT(t), big); err != nil || seq != 301 {
		t.Fatalf("append of a record larger than the journal: seq %d, %v; want 301", seq, err)
	}
	appendN(t, s, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path + journalSuffix)
	if err != nil || st.Size() < 20000 {
		t.Fatalf("journal after a 20 KB record: %v, %v; want it grown past 20 KB", st, err)
	}
	s = open(t, dsn)
	checkChain(t, s, 311)
}

// TestJournalAppendsDoNotWaitForTheDatabase holds the database's write
// lock: appends are acknowledged from the journal meanwhile, and Close
// waits until they are applied.
func TestJournalAppendsDoNotWaitForTheDatabase(t *testing.T) {
	dsn, _ := journalDB(t)
	s, err := Open(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	release := holdWriteLock(t, dsn)
	appendN(t, s, 20)
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	time.Sleep(50 * time.Millisecond)
	release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dsn)
	checkChain(t, s, 20)
}

// FuzzJournalTail feeds the journal reader arbitrary bytes after a valid
// frame: whatever it returns continues the chain, record by record.
func FuzzJournalTail(f *testing.F) {
	var head [32]byte
	var frames []byte
	prev := head[:]
	for i := range 3 {
		rec := request(i)
		rec.Time = time.Unix(1_700_000_000, 0).UTC()
		rec.HashVersion, rec.Seq, rec.PrevHash = auditHashVersion, int64(i+1), prev
		rec.Hash = AuditHash(&rec)
		prev = rec.Hash
		frames, _ = appendFrame(frames, &rec)
	}
	f.Add(frames, int64(0))
	f.Add(frames[:len(frames)-5], int64(1))
	f.Add(append(frames, 0, 0, 0), int64(2))
	f.Fuzz(func(t *testing.T, data []byte, headSeq int64) {
		if headSeq < 0 {
			headSeq = -headSeq
		}
		headHash := head[:]
		recs, err := journalTail(data, headSeq, headHash)
		if err != nil {
			return
		}
		prev, seq := headHash, headSeq
		for _, r := range recs {
			if r.Seq != seq+1 || string(r.PrevHash) != string(prev) || string(AuditHash(&r)) != string(r.Hash) {
				t.Fatalf("record %d does not continue the chain after %d", r.Seq, seq)
			}
			prev, seq = r.Hash, r.Seq
		}
	})
}

// TestJournalNoWait: a read with NoWait returns what the database holds
// without waiting for the journal; any other read waits for every record
// appended before it.
func TestJournalNoWait(t *testing.T) {
	dsn, _ := journalDB(t)
	s := open(t, dsn)
	release := holdWriteLock(t, dsn) // the applier cannot apply meanwhile
	appendN(t, s, 3)
	recs, err := s.ListAudit(ctxT(t), AuditFilter{NoWait: true})
	if err != nil || len(recs) != 0 {
		t.Fatalf("ListAudit(NoWait) with the records still journaled: %d records, %v; want 0", len(recs), err)
	}
	release()
	if recs, err = s.ListAudit(ctxT(t), AuditFilter{}); err != nil || len(recs) != 3 {
		t.Fatalf("ListAudit: %d records, %v; want the 3 appended", len(recs), err)
	}
}

// TestJournalFrameKeepsBytes: a record comes out of its frame exactly as
// it went in, arguments byte for byte (whitespace, characters JSON
// encoders escape, escapes of their own), so its hash still matches.
func TestJournalFrameKeepsBytes(t *testing.T) {
	for _, args := range []string{
		`{"n":1}`,
		"{ \"q\" :\t\"a < b && c > d\" ,\n \"e\": \"\\u00e9\\n\", \"x\": [1, 2.50, 1e3] }",
		`"<script>&amp;</script>"`,
		`null`,
	} {
		rec := request(1)
		rec.Arguments = json.RawMessage(args)
		rec.Time = time.Unix(1_700_000_000, 987654321).UTC()
		rec.HashVersion, rec.Seq, rec.PrevHash = auditHashVersion, 1, make([]byte, 32)
		rec.Hash = AuditHash(&rec)
		b, err := appendFrame(nil, &rec)
		if err != nil {
			t.Fatal(err)
		}
		got, n, ok := decodeFrame(b)
		if !ok || n != len(b) {
			t.Fatalf("arguments %q: the frame does not decode (ok %v, %d of %d bytes)", args, ok, n, len(b))
		}
		if string(got.Arguments) != args || string(AuditHash(&got)) != string(rec.Hash) || !got.Time.Equal(rec.Time) {
			t.Errorf("arguments %q: came back as %q (hash matches: %v, time %v)", args, got.Arguments, string(AuditHash(&got)) == string(rec.Hash), got.Time)
		}
	}
}
