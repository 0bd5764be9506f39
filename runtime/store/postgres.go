package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
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
		arrays:   true,
		seqIn:    `= ANY(?::bigint[])`,
		seqList:  func(seqs []int64) any { return seqs },
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
	// The connections are read and written with raw system calls: a call
	// commits its audit record over one of them before its tool runs
	// (docs/plugins.md, "Raw reads and writes").
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return rawconn.Wrap(c), nil
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
	s.startAudit(nil)
	s.listener = newPGListener(cfg, channel, s.hub)
	return s, nil
}

// Listener heartbeat: an idle LISTEN connection is pinged this often, so a
// connection that died silently (a partition, a dropped NAT entry) is found
// within heartbeat+pingTimeout, and a Resync says from when on revocations
// may have been missed.
const (
	listenHeartbeat = 30 * time.Second
	listenPingLimit = 5 * time.Second
)

// pgListener holds one dedicated connection per store that LISTENs for
// revocations and publishes them to the store's hub, reconnecting with
// backoff when the connection drops. It starts with the first Subscribe.
type pgListener struct {
	cfg       *pgx.ConnConfig
	channel   string
	hub       *hub
	heartbeat time.Duration
	pingLimit time.Duration
	// aliveAt (Unix ns) is the last moment the connection was known to be
	// listening: when LISTEN returned, a notification arrived, or a ping
	// was answered. Every revocation committed before it was heard.
	aliveAt atomic.Int64

	mu      sync.Mutex
	running bool
	ctx     context.Context // ends at stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pid     atomic.Uint32 // backend of the listening connection, for tests
}

func newPGListener(cfg *pgx.ConnConfig, channel string, h *hub) *pgListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &pgListener{cfg: cfg, channel: channel, hub: h, heartbeat: listenHeartbeat, pingLimit: listenPingLimit, ctx: ctx, cancel: cancel}
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
	l.alive()
	return conn, nil
}

func (l *pgListener) alive() { l.aliveAt.Store(time.Now().UnixNano()) }

func (l *pgListener) run(conn *pgx.Conn) {
	defer l.wg.Done()
	for {
		wctx, cancel := context.WithTimeout(l.ctx, l.heartbeat)
		n, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil && l.ctx.Err() == nil
		cancel()
		if err == nil {
			l.alive()
			if r, ok := parseRevocation(n.Payload); ok {
				l.hub.publish(r)
			}
			continue
		}
		if idle && l.ping(conn) {
			continue // notifications that came with the ping's answer are kept for the next wait
		}
		lost := time.Unix(0, l.aliveAt.Load()).UTC()
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		cancel()
		if conn = l.reconnect(); conn == nil {
			return
		}
		// Revocations committed since the connection was last known to
		// listen may not have been heard.
		l.hub.publish(Revocation{Kind: Resync, At: lost})
	}
}

// ping checks an idle connection; a timed-out wait leaves it usable.
func (l *pgListener) ping(conn *pgx.Conn) bool {
	ctx, cancel := context.WithTimeout(l.ctx, l.pingLimit)
	defer cancel()
	if conn.Ping(ctx) != nil {
		return false
	}
	l.alive()
	return true
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
