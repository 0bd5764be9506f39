package store

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// A replica whose LISTEN connection drops reconnects, tells its subscribers
// to resync (they may have missed revocations), and hears the next ones.
func TestPostgresListenerReconnects(t *testing.T) {
	ctx := ctxT(t)
	dsn := postgresEngine.newDB(t)
	s, other := open(t, dsn), open(t, dsn)
	l := s.(*sqlStore).listener
	l.heartbeat = 20 * time.Millisecond // ping the idle connection often
	subscribed := time.Now()
	ch, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := l.pid.Load()
	// The idle connection is pinged: it stays known alive.
	time.Sleep(200 * time.Millisecond)
	beforeKill := time.Now()
	if alive := time.Unix(0, l.aliveAt.Load()); alive.Before(subscribed.Add(100 * time.Millisecond)) {
		t.Errorf("listener last known alive %v after subscribing, want pings to keep it within the last 100ms", alive.Sub(subscribed))
	}
	var killed bool
	if err := other.(*sqlStore).w.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}
	killedAt := time.Now()
	next := func() Revocation {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(15 * time.Second):
			t.Fatal("no revocation event within 15s")
			return Revocation{}
		}
	}
	// pg_terminate_backend signals the backend and returns: a ping may
	// still succeed in the moment before it exits, so the last known
	// alive time may follow killedAt by that moment (seen: 50µs).
	if got := next(); got.Kind != Resync || got.At.After(killedAt.Add(time.Second)) || got.At.Before(beforeKill.Add(-time.Second)) {
		t.Errorf("after the listener's connection was killed at %v: got %+v, want a resync event from the last ping before", killedAt, got)
	}
	now := time.Now()
	if err := other.PutToken(ctx, Token{ID: "t1", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.RevokeToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), (Revocation{Kind: RevokedToken, ID: "t1"}); got != want {
		t.Errorf("after reconnecting: got %+v, want %+v", got, want)
	}
	if now := s.(*sqlStore).listener.pid.Load(); now == pid {
		t.Errorf("listener still reports backend %d", pid)
	}
}

// Stores in different schemas of one database must not hear each other's
// revocations, though NOTIFY channels are database-wide.
func TestPostgresSchemasDoNotShareRevocations(t *testing.T) {
	ctx := ctxT(t)
	a, b := open(t, postgresEngine.newDB(t)), open(t, postgresEngine.newDB(t))
	chA, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chB, err := b.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, s := range []Store{a, b} {
		if err := s.PutToken(ctx, Token{ID: "same-id", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.RevokeToken(ctx, "same-id"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-chB:
		if r != (Revocation{Kind: RevokedToken, ID: "same-id"}) {
			t.Errorf("store b heard %+v, want its own revocation", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("store b did not hear its own revocation")
	}
	select {
	case r := <-chA:
		t.Errorf("store a, in another schema, heard %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if got, _ := a.GetToken(ctx, "same-id"); !got.RevokedAt.IsZero() {
		t.Errorf("store a's token was revoked by store b")
	}
}

func TestChannelFor(t *testing.T) {
	long := strings.Repeat("s", 60)
	for _, tt := range []struct{ schema, want string }{
		{"public", "armoriq_revocations"},
		{"", "armoriq_revocations"},
		{"armoriq", "armoriq_revocations_armoriq"},
	} {
		if got := channelFor(tt.schema); got != tt.want || len(got) > 63 {
			t.Errorf("channelFor(%q) = %q, want %q (at most 63 bytes)", tt.schema, got, tt.want)
		}
	}
	a, b := channelFor(long+"a"), channelFor(long+"b")
	if len(a) > 63 || !strings.HasPrefix(a, "armoriq_revocations_") || a == b {
		t.Errorf("channelFor of two 61-byte schemas = %q and %q, want distinct names of at most 63 bytes", a, b)
	}
}

// A LISTEN connection that goes silent without being reset (a partition: the
// packets stop, no FIN, no RST) is found by the idle pings, replaced, and the
// Resync says the listener may have missed what was revoked meanwhile.
func TestPostgresListenerFindsSilentConnection(t *testing.T) {
	ctx := ctxT(t)
	dsn := postgresEngine.newDB(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newBlackholeProxy(t, u.Host)
	u.Host = p.addr
	s, other := open(t, u.String()), open(t, dsn)
	l := s.(*sqlStore).listener
	l.heartbeat, l.pingLimit = 50*time.Millisecond, 200*time.Millisecond
	ch, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := other.PutToken(ctx, Token{ID: "t1", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	silenced := time.Now()
	p.silence() // every connection open now stops passing bytes
	if _, err := other.RevokeToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.Kind != Resync || r.At.After(silenced) {
			t.Fatalf("after the connection went silent at %v: got %+v, want a resync from before then", silenced, r)
		}
		// The pool's connections went silent too: a read with a deadline
		// fails, drops its connection, and the next try gets a new one
		// (as the gateway's catch-up does).
		var missed []Revocation
		for try := 0; try < 10; try++ {
			actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			missed, err = s.RevokedSince(actx, r.At.Add(-time.Minute))
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil || len(missed) != 1 || missed[0].ID != "t1" {
			t.Errorf("RevokedSince(resync - 1m) = %v, %v; want the revocation made while silent", missed, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no event within 15s of the connection going silent")
	}
}

// blackholeProxy forwards TCP to target until silence, after which the
// connections it has stop passing bytes in either direction while staying
// open; new connections are forwarded normally.
type blackholeProxy struct {
	addr string
	mu   sync.Mutex
	live []chan struct{} // closed to silence a connection
}

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{addr: ln.Addr().String()}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			quiet := make(chan struct{})
			p.mu.Lock()
			p.live = append(p.live, quiet)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					select {
					case <-quiet:
						continue // swallowed
					default:
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

func (p *blackholeProxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range p.live {
		close(q)
	}
	p.live = nil
}
