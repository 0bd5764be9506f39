package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver
)

// sqlitePragmas apply to every connection. synchronous=FULL by default: in
// WAL mode NORMAL may lose the last commits on power loss, and an audit
// record must be durable before the gateway answers the call it records.
// NORMAL (Open's "sqlite:PATH?synchronous=normal") still survives a crash
// or kill of the gateway process; it trades power-loss durability for a
// commit without fsync.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"

// Synchronous levels OpenSQLiteSync accepts.
const (
	SyncFull   = "full"
	SyncNormal = "normal"
)

var sqliteDialect = &dialect{
	name:     "sqlite",
	blob:     "BLOB",
	zeroHash: "X'" + strings.Repeat("00", 32) + "'",
	lock:     func(context.Context, *sql.Tx, int64) error { return nil },
	seqIn:    `IN (SELECT value FROM json_each(?))`,
	seqList: func(seqs []int64) any {
		b := []byte{'['}
		for i, seq := range seqs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, seq, 10)
		}
		return string(append(b, ']'))
	},
}

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies migrations. Writes go through one connection whose transactions
// start with BEGIN IMMEDIATE; reads use a small separate pool, which WAL
// mode lets run beside the writer.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	return OpenSQLiteSync(ctx, path, SyncFull)
}

// OpenSQLiteSync is OpenSQLite with the commit durability chosen: SyncFull
// (fsync at every commit, survives power loss) or SyncNormal (survives a
// crash of the process, not of the machine).
func OpenSQLiteSync(ctx context.Context, path, sync string) (Store, error) {
	return OpenSQLiteWith(ctx, path, SQLiteOptions{Sync: sync})
}

// SQLiteOptions are the choices of a SQLite store.
type SQLiteOptions struct {
	// Sync is SyncFull (the default) or SyncNormal.
	Sync string
	// NoAuditJournal commits every audit batch to the database itself
	// instead of journaling it first (journal.go): slower, for comparison.
	NoAuditJournal bool
}

// OpenSQLiteWith opens (creating if needed) the SQLite database at path
// with the given options, and applies migrations.
func OpenSQLiteWith(ctx context.Context, path string, o SQLiteOptions) (Store, error) {
	const op = "open sqlite"
	sync := o.Sync
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, errorf(op, ErrInvalid, "unusable database path %q", path)
	}
	var pragmas string
	switch strings.ToLower(sync) {
	case "", SyncFull:
		pragmas = sqlitePragmas + "&_pragma=synchronous(FULL)"
	case SyncNormal:
		pragmas = sqlitePragmas + "&_pragma=synchronous(NORMAL)"
	default:
		return nil, errorf(op, ErrInvalid, "synchronous=%q: want full or normal", sync)
	}
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_txlock=immediate"+
		"&_pragma=wal_autocheckpoint("+strconv.Itoa(walBackstopPages)+")"+sqliteWriterTempStore)
	if err != nil {
		return nil, dbError(op, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := enableWAL(ctx, w); err != nil {
		w.Close()
		return nil, dbError(op, err)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, dbError(op, err)
	}
	r.SetMaxOpenConns(4)
	ckpt, err := sql.Open("sqlite", "file:"+path+"?"+pragmas)
	if err != nil {
		w.Close()
		r.Close()
		return nil, dbError(op, err)
	}
	ckpt.SetMaxOpenConns(1)
	s, err := newSQLStore(ctx, sqliteDialect, w, r)
	if err != nil {
		w.Close()
		r.Close()
		ckpt.Close()
		return nil, err
	}
	var write func([]*appendReq) error
	every := walCheckpointEvery
	if journalSupported && !o.NoAuditJournal {
		j, err := openJournal(ctx, s, path, !strings.EqualFold(sync, SyncNormal))
		switch {
		case errors.Is(err, errJournalHeld):
			// Another process appends to this database's audit log; this
			// one reads it and refuses to append (two appenders would fork
			// the chain).
			msg := err.Error()
			s.appendRefused = err
			// (No warning: a CLI reading beside a running gateway is the
			// common case; the gateway checks CanAppendAudit at start.)
			slog.Debug("store: the audit journal is held by another process: this one can read the audit log but not append to it", "err", msg)
			write = func([]*appendReq) error {
				return errorf("append audit", ErrUnavailable, "%s (the process holding it appends to this database's audit log; use PostgreSQL for several gateways)", msg)
			}
		case err != nil:
			s.Close()
			ckpt.Close()
			return nil, err
		default:
			s.journal, write, every = j, j.write, walCheckpointJournaled
		}
	}
	s.checkpoints = newWALCheckpointer(ckpt, every)
	if s.journal != nil {
		s.journal.checkpoints = s.checkpoints
	}
	s.startAudit(write)
	return s, nil
}

// CanAppendAudit returns why st cannot append audit records, or nil: a
// SQLite store whose audit journal another process holds reads the log
// but refuses every append. The gateway checks it at start.
func CanAppendAudit(st Store) error {
	if s, ok := st.(*sqlStore); ok && s.appendRefused != nil {
		return s.appendRefused
	}
	return nil
}

// enableWAL switches the database to WAL mode (a persistent setting of the
// file). Switching needs an exclusive lock and SQLite answers SQLITE_BUSY at
// once rather than waiting when another connection is opening the same new
// file, so retry for as long as busy_timeout would wait.
func enableWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode)
		switch {
		case err == nil && strings.EqualFold(mode, "wal"):
			return nil
		case err == nil:
			return fmt.Errorf("journal mode is %q, want wal", mode)
		case !isBusy(err) || time.Now().After(deadline):
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// isConstraint reports whether err is SQLite refusing a write under a
// constraint (a trigger's RAISE included).
func isConstraint(err error) bool {
	var e *sqlite.Error
	const constraint = 19
	return errors.As(err, &e) && e.Code()&0xff == constraint
}

func isBusy(err error) bool {
	var e *sqlite.Error
	const busy, locked = 5, 6
	return errors.As(err, &e) && (e.Code()&0xff == busy || e.Code()&0xff == locked)
}
