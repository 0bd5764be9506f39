package store

import (
	"strings"
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
	if got := next(); got.Kind != Resync || got.At.After(killedAt) || got.At.Before(beforeKill.Add(-time.Second)) {
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
