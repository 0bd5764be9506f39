package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// revocationChannel is the NOTIFY channel every replica LISTENs on, for a
// store in the public schema. NOTIFY is database-wide, so a store in another
// schema (another store sharing the database) gets a channel of its own,
// revocationChannel + "_" + schema, hashed if that is longer than an
// identifier may be.
const revocationChannel = "armoriq_revocations"

func channelFor(schema string) string {
	if schema == "" || schema == "public" {
		return revocationChannel
	}
	ch := revocationChannel + "_" + schema
	if len(ch) > 63 {
		sum := sha256.Sum256([]byte(schema))
		ch = revocationChannel + "_" + hex.EncodeToString(sum[:8])
	}
	return ch
}

// postgresDialect returns the dialect of a store whose revocations go to
// channel.
func postgresDialect(channel string) *dialect {
	return &dialect{
		name:      "postgres",
		blob:      "BYTEA",
		zeroHash:  `'\x` + strings.Repeat("00", 32) + `'::bytea`,
		forUpdate: " FOR UPDATE",
		dollar:    true,
		lock: func(ctx context.Context, tx *sql.Tx, key int64) error {
			_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
			return err
		},
		notify: func(ctx context.Context, tx *sql.Tx, r Revocation) error {
			_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, r.payload())
			return err
		},
		snapshot: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	}
}

// OpenPostgres connects to the PostgreSQL database at url and applies
// migrations. The tables live in the URL's search_path
// (postgres://…/db?search_path=armoriq), which must name an existing schema
// if it is set; several gateway replicas may share one database.
func OpenPostgres(ctx context.Context, url string) (Store, error) {
	const op = "open postgres"
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errorf(op, ErrInvalid, "cannot parse database URL %q", redactDSN(url))
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, dbError(op, err)
	}
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		db.Close()
		return nil, dbError(op, err)
	}
	if !schema.Valid {
		db.Close()
		return nil, errorf(op, ErrInvalid, "no schema of the search_path exists")
	}
	channel := channelFor(schema.String)
	s, err := newSQLStore(ctx, postgresDialect(channel), db, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.listener = newPGListener(cfg, channel, s.hub)
	return s, nil
}

// pgListener holds one dedicated connection per store that LISTENs for
// revocations and publishes them to the store's hub, reconnecting with
// backoff when the connection drops. It starts with the first Subscribe.
type pgListener struct {
	cfg     *pgx.ConnConfig
	channel string
	hub     *hub

	mu      sync.Mutex
	running bool
	ctx     context.Context // ends at stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pid     atomic.Uint32 // backend of the listening connection, for tests
}

func newPGListener(cfg *pgx.ConnConfig, channel string, h *hub) *pgListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &pgListener{cfg: cfg, channel: channel, hub: h, ctx: ctx, cancel: cancel}
}

// start connects and LISTENs before returning, so a revocation committed
// after Subscribe returns is never missed.
func (l *pgListener) start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return nil
	}
	if l.ctx.Err() != nil {
		return errorf("subscribe", ErrClosed, "store is closed")
	}
	conn, err := l.connect(ctx)
	if err != nil {
		return dbError("subscribe", err)
	}
	l.running = true
	l.wg.Add(1)
	go l.run(conn)
	return nil
}

func (l *pgListener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	l.pid.Store(conn.PgConn().PID())
	return conn, nil
}

func (l *pgListener) run(conn *pgx.Conn) {
	defer l.wg.Done()
	for {
		n, err := conn.WaitForNotification(l.ctx)
		if err == nil {
			if r, ok := parseRevocation(n.Payload); ok {
				l.hub.publish(r)
			}
			continue
		}
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		cancel()
		if conn = l.reconnect(); conn == nil {
			return
		}
		// Revocations made while we were away were not heard.
		l.hub.publish(Revocation{Kind: Resync})
	}
}

// reconnect retries until it has a listening connection or the listener is
// stopped (nil).
func (l *pgListener) reconnect() *pgx.Conn {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-l.ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		if conn, err := l.connect(l.ctx); err == nil {
			return conn
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (l *pgListener) stop() {
	l.mu.Lock() // no start may Add to wg once Wait runs
	l.cancel()
	l.mu.Unlock()
	l.wg.Wait()
}
