package store

import (
	"testing"
	"time"
)

// A replica whose LISTEN connection drops reconnects, tells its subscribers
// to resync (they may have missed revocations), and hears the next ones.
func TestPostgresListenerReconnects(t *testing.T) {
	ctx := ctxT(t)
	dsn := postgresEngine.newDB(t)
	s, other := open(t, dsn), open(t, dsn)
	ch, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := s.(*sqlStore).listener.pid.Load()
	var killed bool
	if err := other.(*sqlStore).w.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}
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
	if got := next(); got.Kind != Resync {
		t.Errorf("after the listener's connection was killed: got %+v, want a resync event", got)
	}
	now := time.Now()
	if err := other.PutToken(ctx, Token{ID: "t1", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.RevokeToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), (Revocation{RevokedToken, "t1"}); got != want {
		t.Errorf("after reconnecting: got %+v, want %+v", got, want)
	}
	if now := s.(*sqlStore).listener.pid.Load(); now == pid {
		t.Errorf("listener still reports backend %d", pid)
	}
}
