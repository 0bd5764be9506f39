package store

import (
	"context"
	"database/sql"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// sqlitePragmas apply to every connection. synchronous=FULL: in WAL mode
// NORMAL may lose the last commits on power loss, and an audit record must
// be durable before the gateway answers the call it records.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"

var sqliteDialect = &dialect{
	name:     "sqlite",
	blob:     "BLOB",
	zeroHash: "X'" + strings.Repeat("00", 32) + "'",
	lock:     func(context.Context, *sql.Tx, int64) error { return nil },
}

// OpenSQLite opens (creating if needed) the SQLite database at path and
// applies migrations. Writes go through one connection whose transactions
// start with BEGIN IMMEDIATE; reads use a small separate pool, which WAL
// mode lets run beside the writer.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	const op = "open sqlite"
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, errorf(op, ErrInvalid, "unusable database path %q", path)
	}
	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&"+sqlitePragmas+"&_txlock=immediate")
	if err != nil {
		return nil, dbError(op, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", "file:"+path+"?"+sqlitePragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, dbError(op, err)
	}
	r.SetMaxOpenConns(4)
	s, err := newSQLStore(ctx, sqliteDialect, w, r)
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	return s, nil
}
