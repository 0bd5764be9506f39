package store

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The audit journal (SQLite only). A call's request record must be durable
// before the call goes on; committing it to SQLite costs a transaction per
// batch: the head read, the concludes check, an INSERT into a table and
// its indexes (six B-trees before migration 7, five since), and a WAL commit of every page they touch (two writes per
// page, about fifteen system calls) plus the fsync. That was 40-47% of the
// gateway's CPU per forwarded call.
//
// With the journal a batch is made durable by one synced write (pwritev2
// with RWF_DSYNC on Linux: journal_linux.go) to a file of its own, next to
// the database (PATH-auditjournal), and the callers are answered; a
// goroutine of the store (the applier) then inserts the journaled records
// into audit_log in larger transactions, many calls' records to a commit,
// 32 rows to an INSERT (per-statement costs paid once a chunk; an empty
// text bound as NULL, stored as the empty text: see sqliteAuditInsert).
// The file is preallocated and rewritten in place from its start whenever
// everything in it has reached the database, so the sync flushes data
// only, never the file's size.
//
// The chain is extended in memory: this process holds an exclusive lock on
// the journal (flock) for as long as the store is open, and it is the only
// process that appends to this database's audit log. Another process
// opening the same database (a CLI reading the log, a second gateway) finds
// the journal locked: it reads as usual and refuses to append (ErrUnavailable).
//
// Reads of the audit log (ListAudit, ExportAudit, VerifyAudit) first wait
// until everything journaled when they started is applied, so a reader of
// this store always sees every record appended before it. At open, records
// the journal holds beyond the database's head are applied before anything
// else; the journal is checked against the chain (sequence numbers, prev
// hash, each record's hash), and a journal that does not continue the
// database's chain stops the open with an error saying so.
const (
	journalSuffix = "-auditjournal"
	// journalSizeDefault is the journal's preallocated size; it grows
	// (rarely) to hold a batch larger than itself.
	journalSizeDefault = 8 << 20
	// journalInitial is what a new journal starts with; it doubles up to
	// journalSize as records come (a store that appends little, a test's
	// or a CLI's, writes little).
	journalInitial = 256 << 10
	// applyLinger is how long the applier lets records gather before it
	// inserts them, unless applyBatch are waiting or a reader needs them.
	applyLinger = 100 * time.Millisecond
	applyBatch  = 512
	// openRequestsMax bounds the requests remembered as open; an outcome
	// whose request is not remembered is checked against the database.
	openRequestsMax = 1 << 16
	// maxJournalFrame bounds one record's encoding (a larger length is a
	// corrupt frame).
	maxJournalFrame = 64 << 20
)

// journalSize is journalSizeDefault; tests make it small to wrap often.
var journalSize int64 = journalSizeDefault

// A journal frame: magic, payload length, CRC-32C of the payload, then the
// payload, the record as JSON (every field the hash covers; the reader
// recomputes the hash).
var journalMagic = [4]byte{'A', 'Q', 'J', '1'}

const frameHeader = 12

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalRecord is a record as a frame's payload holds it. The arguments
// go as a string, byte for byte: encoding/json rewrites a RawMessage
// (compacted, <, > and & escaped), and the hash covers the bytes stored.
type journalRecord struct {
	*AuditRecord
	Arguments string `json:"arguments"`
}

// appendFrame appends rec's frame to b.
func appendFrame(b []byte, rec *AuditRecord) ([]byte, error) {
	start := len(b)
	b = append(b, journalMagic[:]...)
	b = append(b, make([]byte, 8)...)
	b, err := appendRecordPayload(b, rec)
	if err != nil {
		return b[:start], err
	}
	payload := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start+4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+8:], crc32.Checksum(payload, castagnoli))
	return b, nil
}

// decodeFrame decodes the frame at the start of b. ok is false when b does
// not start with a whole, intact frame: zeros (the preallocated rest), a
// torn write, or anything else.
func decodeFrame(b []byte) (rec AuditRecord, n int, ok bool) {
	if len(b) < frameHeader || !bytes.Equal(b[:4], journalMagic[:]) {
		return rec, 0, false
	}
	size := binary.LittleEndian.Uint32(b[4:])
	if size > maxJournalFrame || uint64(len(b)-frameHeader) < uint64(size) {
		return rec, 0, false
	}
	payload := b[frameHeader : frameHeader+int(size)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return rec, 0, false
	}
	jr := journalRecord{AuditRecord: &rec}
	if err := json.Unmarshal(payload, &jr); err != nil || rec.Seq <= 0 {
		return AuditRecord{}, 0, false
	}
	rec.Arguments = json.RawMessage(jr.Arguments)
	rec.Time = rec.Time.UTC()
	rec.OutcomeMissing, rec.ConcludedBy = false, 0
	return rec, frameHeader + int(size), true
}

// errJournalHeld says another process appends to this database's audit log.
var errJournalHeld = errors.New("audit journal held by another process")

type auditJournal struct {
	s *sqlStore
	// checkpoints is woken after each apply (set once, before the first
	// append).
	checkpoints *walCheckpointer
	path        string
	f           *os.File
	sync        bool // sync every batch (synchronous=full)

	// The writer's own state (the group commit's leaders call write, one
	// at a time).
	off  int64
	size int64
	seq  int64  // the last record journaled
	hash []byte // its hash
	open map[int64]struct{}
	buf  []byte

	// dw writes and syncs a batch (journal_linux.go, journal_other.go).
	dw durableWriter

	// testHookSync, if set, runs after a batch is written and before it is
	// synced; an error fails the batch as a failed sync would (the frames
	// are in the file).
	testHookSync func() error

	// The applier's state.
	mu       sync.Mutex
	pending  []*AuditRecord
	progress chan struct{} // closed and replaced when applied moves or the applier fails
	applyErr error         // the last apply failure, nil once one succeeds
	broken   error         // set when the journal can no longer be applied: appends fail
	flush    bool          // a reader waits: apply now
	asleep   bool          // the applier waits for records: wake it for the next
	closing  bool
	poke     chan struct{}
	done     chan struct{}

	journaled atomic.Int64
	applied   atomic.Int64
}

// openJournal opens (creating it if needed) and locks the journal of the
// SQLite database at dbPath, applies what it holds beyond the database's
// head, and starts the applier. It returns errJournalHeld (wrapped) when
// another process holds it.
func openJournal(ctx context.Context, s *sqlStore, dbPath string, sync bool) (*auditJournal, error) {
	const op = "open audit journal"
	path := dbPath + journalSuffix
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errorf(op, ErrUnavailable, "%v", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", errJournalHeld, path, err)
	}
	j := &auditJournal{s: s, path: path, f: f, sync: sync, open: make(map[int64]struct{}),
		progress: make(chan struct{}), poke: make(chan struct{}, 1), done: make(chan struct{})}
	if err := j.recover(ctx); err != nil {
		f.Close()
		return nil, err
	}
	go j.applyLoop()
	return j, nil
}

// recover applies the records the journal holds beyond the database's
// head, then readies the file to be written from its start.
func (j *auditJournal) recover(ctx context.Context) error {
	const op = "open audit journal"
	data, err := io.ReadAll(io.NewSectionReader(j.f, 0, 1<<62))
	if err != nil {
		return errorf(op, ErrUnavailable, "read %s: %v", j.path, err)
	}
	var headSeq int64
	var headHash []byte
	if err := j.s.w.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
		return dbError(op, err)
	}
	recs, err := journalTail(data, headSeq, headHash)
	if err != nil {
		return errorf(op, ErrInvalid, "%s: %v", j.path, err)
	}
	for len(recs) > 0 {
		n := min(len(recs), applyBatch)
		chunk := make([]*AuditRecord, n)
		for i := range chunk {
			chunk[i] = &recs[i]
		}
		if err := j.apply(ctx, chunk); err != nil {
			return err
		}
		recs = recs[n:]
	}
	// What the journal held, and what an earlier process applied without
	// syncing, must be durable in the database before the journal is
	// written over from its start.
	if err := j.syncDatabase(ctx); err != nil {
		return err
	}
	if err := j.s.w.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&j.seq, &j.hash); err != nil {
		return dbError(op, err)
	}
	j.journaled.Store(j.seq)
	j.applied.Store(j.seq)
	// Everything the journal held is in the database now: write from the
	// start, over it. The rest of the file must exist (written zeros) so
	// that writes never change its size.
	j.size = int64(len(data))
	if initial := min(journalInitial, journalSize); j.size < initial {
		if err := j.grow(initial); err != nil {
			return errorf(op, ErrUnavailable, "%v", err)
		}
	}
	return nil
}

// journalTail returns the records of a journal's contents that continue
// the chain whose last record is headSeq, with hash headHash. Frames up to
// the head (already in the database) are skipped; the tail ends at the
// first frame that is not intact or does not continue the chain. A journal
// whose first frame beyond the head leaves a gap is an error: records the
// database never received are gone.
func journalTail(data []byte, headSeq int64, headHash []byte) ([]AuditRecord, error) {
	var recs []AuditRecord
	expected, prev := headSeq+1, headHash
	for off := 0; off < len(data); {
		rec, n, ok := decodeFrame(data[off:])
		if !ok {
			break
		}
		off += n
		if rec.Seq <= headSeq {
			if len(recs) > 0 {
				break // an older round of the file, after the newest frames
			}
			continue
		}
		if rec.Seq != expected {
			if len(recs) == 0 {
				return nil, fmt.Errorf("holds record %d but the database's audit log ends at %d: records %d to %d are missing (was the database restored from an older copy? move the journal aside to open the database as it is)",
					rec.Seq, headSeq, expected, rec.Seq-1)
			}
			break
		}
		if !bytes.Equal(rec.PrevHash, prev) || !bytes.Equal(AuditHash(&rec), rec.Hash) {
			// A frame of a batch whose write failed and was written over
			// since, or a damaged one: the chain ends before it.
			break
		}
		recs = append(recs, rec)
		expected, prev = rec.Seq+1, rec.Hash
	}
	return recs, nil
}

// grow extends the journal with zeros to size bytes and syncs it.
func (j *auditJournal) grow(size int64) error {
	zeros := make([]byte, 1<<20)
	for off := j.size; off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := j.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("preallocate %s: %w", j.path, err)
		}
		off += n
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", j.path, err)
	}
	j.size = size
	return nil
}

// write is the group writer's write (groupcommit.go) with the journal: it
// checks the outcomes, chains and hashes the batch from the head in
// memory, writes the batch's frames in one write at the journal's offset,
// syncs, and hands the records to the applier. A failure of the write or
// the sync fails the whole batch and leaves the head where it was: the
// next batch is written over whatever of it reached the file.
func (j *auditJournal) write(batch []*appendReq) error {
	const op = "append audit"
	j.mu.Lock()
	broken := j.broken
	j.mu.Unlock()
	if broken != nil {
		return errorf(op, ErrUnavailable, "%v", broken)
	}
	claimed, err := j.checkConcludes(batch)
	undo := func() {
		for _, c := range claimed {
			j.open[c] = struct{}{}
		}
	}
	if err != nil {
		undo()
		return err
	}
	recs, seq, prev := chainBatch(batch, j.seq, j.hash)
	if len(recs) == 0 {
		return nil
	}
	buf := j.buf[:0]
	for _, rec := range recs {
		if buf, err = appendFrame(buf, rec); err != nil {
			undo()
			return errorf(op, ErrInvalid, "encode record: %v", err)
		}
	}
	if err := j.writeFrames(buf); err != nil {
		undo()
		slog.Error("audit journal write failed: the batch's calls are refused", "journal", j.path, "records", len(recs), "err", err)
		return errorf(op, ErrUnavailable, "%v", err)
	}
	if cap(buf) <= 1<<20 {
		j.buf = buf
	}
	j.seq, j.hash = seq, prev
	for _, rec := range recs {
		if rec.Phase == PhaseRequest {
			j.remember(rec.Seq)
		}
	}
	for _, r := range batch {
		if r.err == nil {
			r.seq = r.rec.Seq
		}
	}
	j.journaled.Store(seq)
	j.mu.Lock()
	j.pending = append(j.pending, recs...)
	// A lingering applier is not woken for each batch: its timer, a
	// reader (flush) or a full batch ends the linger.
	wake := j.asleep || len(j.pending) >= applyBatch
	j.mu.Unlock()
	if wake {
		j.wake()
	}
	return nil
}

// writeFrames writes buf at the journal's offset and syncs it, first
// waiting for the applier and starting over at the file's start when buf
// does not fit in what is left.
func (j *auditJournal) writeFrames(buf []byte) error {
	n := int64(len(buf))
	if j.off+n > j.size && j.size < journalSize {
		// Still short of its full size: the file grows (doubling) rather
		// than being written over.
		if size := min(max(2*j.size, j.off+n), journalSize); j.off+n <= size {
			if err := j.grow(size); err != nil {
				return err
			}
		}
	}
	if j.off+n > j.size {
		// Every record in the file must be in the database before the
		// file is written over.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := j.waitApplied(ctx, j.seq)
		if err == nil {
			err = j.syncDatabase(ctx)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("the journal is full and its records are not durable in the database yet: %w", err)
		}
		if n > j.size {
			if err := j.grow((n + journalSize - 1) / journalSize * journalSize); err != nil {
				return err
			}
		}
		j.off = 0
	}
	if j.testHookSync != nil {
		// As a sync failing after the write: the frames reach the file.
		if _, err := j.f.WriteAt(buf, j.off); err != nil {
			return fmt.Errorf("write %s: %w", j.path, err)
		}
		if err := j.testHookSync(); err != nil {
			return fmt.Errorf("sync %s: %w", j.path, err)
		}
	}
	if j.sync {
		// One system call where the system allows (journal_linux.go).
		if err := j.writeSynced(buf, j.off); err != nil {
			return err
		}
	} else if _, err := j.f.WriteAt(buf, j.off); err != nil {
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	j.off += n
	return nil
}

// remember notes seq as a request without an outcome yet.
func (j *auditJournal) remember(seq int64) {
	if len(j.open) >= openRequestsMax {
		// Forget some: their outcomes are checked against the database.
		n := 0
		for c := range j.open {
			delete(j.open, c)
			if n++; n >= openRequestsMax/4 {
				break
			}
		}
	}
	j.open[seq] = struct{}{}
}

// checkConcludes sets r.err on each outcome of batch that does not
// conclude a request still without an outcome, and returns the requests it
// claimed from the open set (to put back if the batch fails, or if it
// returns an error). An outcome
// of a request journaled by this store is decided in memory; any other is
// checked against the database once everything journaled is applied, so
// the database knows every outcome written before it.
func (j *auditJournal) checkConcludes(batch []*appendReq) (claimed []int64, err error) {
	var slow []*appendReq
	for _, r := range batch {
		if r.rec.Phase != PhaseOutcome {
			continue
		}
		if _, ok := j.open[r.rec.Concludes]; ok {
			delete(j.open, r.rec.Concludes)
			claimed = append(claimed, r.rec.Concludes)
			continue
		}
		slow = append(slow, r)
	}
	if len(slow) == 0 {
		return claimed, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := j.waitApplied(ctx, j.seq); err != nil {
		return claimed, errorf("append audit", ErrUnavailable, "check outcomes: %v", err)
	}
	mine := make(map[int64]bool, len(claimed))
	for _, c := range claimed {
		mine[c] = true
	}
	err = j.s.writeTx(ctx, "append audit", func(tx *sql.Tx) error {
		return j.s.checkConcludes(ctx, tx, slow)
	})
	if err != nil {
		return claimed, err
	}
	for _, r := range slow {
		if r.err == nil && mine[r.rec.Concludes] {
			r.err = errorf("append audit", ErrInvalid, "request %d already has an outcome", r.rec.Concludes)
		}
	}
	return claimed, nil
}

// wake pokes the applier (it decides, from its state, whether to linger).
func (j *auditJournal) wake() {
	select {
	case j.poke <- struct{}{}:
	default:
	}
}

// waitApplied waits until every record up to seq is in the database.
func (j *auditJournal) waitApplied(ctx context.Context, seq int64) error {
	for {
		if j.applied.Load() >= seq {
			return nil
		}
		j.mu.Lock()
		ch, broken, last := j.progress, j.broken, j.applyErr
		j.flush = true
		j.mu.Unlock()
		if broken != nil {
			return broken
		}
		if j.applied.Load() >= seq {
			return nil
		}
		j.wake()
		select {
		case <-ch:
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (the audit journal's records cannot reach the database: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		}
	}
}

// synced waits until every record appended before the call is in the
// database, for readers of the audit log.
func (j *auditJournal) synced(ctx context.Context, op string) error {
	if err := j.waitApplied(ctx, j.journaled.Load()); err != nil {
		return dbError(op, err)
	}
	return nil
}

// applyLoop inserts journaled records into the database, in batches, until
// the journal closes with nothing left to apply.
func (j *auditJournal) applyLoop() {
	defer close(j.done)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	backoff := time.Duration(0)
	closeTries := 0
	for {
		j.mu.Lock()
		for len(j.pending) == 0 && !j.closing {
			j.asleep = true
			j.mu.Unlock()
			<-j.poke
			j.mu.Lock()
			j.asleep = false
		}
		if len(j.pending) == 0 && j.closing {
			j.mu.Unlock()
			return
		}
		wait := !j.flush && !j.closing && len(j.pending) < applyBatch
		j.mu.Unlock()
		if backoff > 0 {
			wait = true
			linger.Reset(backoff)
		} else if wait {
			linger.Reset(applyLinger)
		}
		if wait {
		gather:
			for {
				select {
				case <-linger.C:
					break gather
				case <-j.poke:
					j.mu.Lock()
					now := backoff == 0 && (j.flush || j.closing || len(j.pending) >= applyBatch)
					j.mu.Unlock()
					if now {
						linger.Stop()
						break gather
					}
				}
			}
		}
		j.mu.Lock()
		n := min(len(j.pending), applyBatch)
		recs := j.pending[:n:n]
		j.flush = false
		j.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := j.apply(ctx, recs)
		cancel()

		j.mu.Lock()
		if err == nil {
			j.pending = j.pending[n:]
			if len(j.pending) == 0 {
				j.pending = nil
			}
			j.applyErr, backoff = nil, 0
			j.applied.Store(recs[n-1].Seq)
		} else {
			j.applyErr = err
			if errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) {
				// The database's chain moved under the journal, or a record
				// cannot be stored: retrying cannot help. Appends stop; the
				// records stay in the journal for the next open to report.
				j.broken = fmt.Errorf("the audit journal %s cannot be applied to the database: %v", j.path, err)
				slog.Error("audit journal broken: appends refused until the store is reopened", "journal", j.path, "err", err)
			} else {
				backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
				slog.Warn("audit journal: applying records to the database failed; retrying", "journal", j.path, "records", n, "err", err, "retry_in", backoff)
			}
		}
		if err != nil && j.broken == nil && j.closing {
			// Closing: a few more tries, then leave the records to the
			// journal, where the next open finds and applies them.
			if closeTries++; closeTries >= 3 {
				j.broken = fmt.Errorf("closing with journaled audit records not yet in the database (the next open applies them): %v", err)
			}
		}
		close(j.progress)
		j.progress = make(chan struct{})
		broken, closing := j.broken, j.closing
		j.mu.Unlock()
		if err == nil && j.checkpoints != nil {
			j.checkpoints.wake()
		}
		if broken != nil {
			// Nothing more can be applied: wait for close.
			for !closing {
				<-j.poke
				j.mu.Lock()
				closing = j.closing
				j.mu.Unlock()
			}
			return
		}
	}
}

// apply inserts recs, which continue the database's chain, and moves the
// head, in one transaction. With a synchronous journal the transaction
// commits without syncing the WAL (synchronous=NORMAL, on the writer's
// connection for this transaction only): the records are durable in the
// journal, and an fsync of the database per apply only competed with the
// journal's sync on the call path (p99). The journal is written over
// only after syncDatabase, and the checkpointer syncs the WAL and the
// database at each checkpoint (at most a second apart). The connection
// keeps temp files in memory (sqliteWriterTempStore): the multi-row INSERT's
// statement journal.
func (j *auditJournal) apply(ctx context.Context, recs []*AuditRecord) error {
	const op = "apply audit journal"
	first, last := recs[0], recs[len(recs)-1]
	conn, err := j.s.w.Conn(ctx)
	if err != nil {
		return dbError(op, err)
	}
	defer conn.Close()
	if j.sync {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
			return dbError(op, err)
		}
		defer func() {
			if _, err := conn.ExecContext(context.Background(), "PRAGMA synchronous=FULL"); err != nil {
				// Never hand back a connection that commits without
				// syncing: drop it (the pool opens another, FULL).
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}()
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op, err)
	}
	defer tx.Rollback()
	sctx := context.WithoutCancel(ctx)
	var seq int64
	var hash []byte
	if err := tx.StmtContext(sctx, j.s.as.head).QueryRowContext(sctx).Scan(&seq, &hash); err != nil {
		return dbError(op, err)
	}
	if seq != first.Seq-1 || !bytes.Equal(hash, first.PrevHash) {
		return errorf(op, ErrConflict, "the database's audit log ends at record %d, the journal continues from record %d: another process wrote to the audit log", seq, first.Seq-1)
	}
	err = j.s.insertRows(sctx, tx, recs, last.Seq, last.Hash, true)
	if isConstraint(err) {
		// Retrying cannot help: the database refuses the record.
		return errorf(op, ErrInvalid, "the database refuses records %d to %d: %v", first.Seq, last.Seq, err)
	}
	if err != nil {
		return dbError(op, err)
	}
	return dbError(op, tx.Commit())
}

// syncDatabase makes every transaction committed on the database durable,
// before the journal is written over: a commit with synchronous=FULL syncs
// the WAL, and with it every frame before its own.
func (j *auditJournal) syncDatabase(ctx context.Context) error {
	if !j.sync {
		return nil
	}
	return j.s.writeTx(ctx, "sync audit log", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE audit_head SET seq = seq WHERE id = 1`)
		return err
	})
}

// AuditJournalState is what a SQLite store's audit journal holds back.
type AuditJournalState struct {
	// Pending counts journaled records not yet in the database.
	Pending int
	// ApplyError is the last failure to apply them (nil once one succeeds):
	// the database is busy or failing, and appends go on from the journal.
	ApplyError error
	// Refused is why appends are refused (the database refuses a journaled
	// record), or nil.
	Refused error
}

// JournalState returns the state of st's audit journal; ok is false for a
// store without one (PostgreSQL, or SQLite with audit_journal=off).
func JournalState(st Store) (state AuditJournalState, ok bool) {
	s, isSQL := st.(*sqlStore)
	if !isSQL {
		return state, false
	}
	if s.appendRefused != nil {
		return AuditJournalState{Refused: s.appendRefused}, true
	}
	j := s.journal
	if j == nil {
		return state, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return AuditJournalState{Pending: len(j.pending), ApplyError: j.applyErr, Refused: j.broken}, true
}

// AuditWrites counts what a store's group commit wrote (groupcommit.go).
type AuditWrites struct {
	// Batches is the number of batches written: each one synced write of
	// the audit journal (SQLite), or one transaction (PostgreSQL, or SQLite
	// with audit_journal=off). A failed batch counts too.
	Batches int64
	// Records is the number of records in those batches: Records over
	// Batches is how many records shared a sync.
	Records int64
}

// AuditWriteCounts returns what st's group commit has written since it
// opened; ok is false for a store that is not one of this package's.
func AuditWriteCounts(st Store) (w AuditWrites, ok bool) {
	s, isSQL := st.(*sqlStore)
	if !isSQL || s.audit == nil {
		return w, false
	}
	return AuditWrites{Batches: s.audit.commits.Load(), Records: s.audit.records.Load()}, true
}

// close applies everything journaled and stops the applier. The journal
// keeps its contents: the next open skips what the database holds.
func (j *auditJournal) close() error {
	j.mu.Lock()
	j.closing = true
	j.mu.Unlock()
	j.wake()
	<-j.done
	j.mu.Lock()
	err := j.broken
	if err == nil && len(j.pending) > 0 {
		err = fmt.Errorf("%d journaled audit records not applied: %v", len(j.pending), j.applyErr)
	}
	j.mu.Unlock()
	return errors.Join(err, j.f.Close())
}
