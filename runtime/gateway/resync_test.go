package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/store/storetest"
	"github.com/jackc/pgx/v5"
)

// TestRevocationThroughListenerOutage: replica b's connections to
// PostgreSQL are cut and cannot come back while replica a revokes a key
// whose call is in flight on b. b misses the NOTIFY; when its listener
// reconnects it re-reads the revocations it may have missed and cancels
// the call.
func TestRevocationThroughListenerOutage(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()

	// Replica b logs in as a role of its own, so its connections can be
	// cut and kept from coming back without touching anyone else's.
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var rb [6]byte
	rand.Read(rb[:])
	role := "armoriq_resync_" + hex.EncodeToString(rb[:])
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE ROLE " + role + " LOGIN SUPERUSER")
	t.Cleanup(func() { // registered first: runs after the stores are closed
		admin.Exec(ctx, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1", role)
		admin.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		admin.Close(ctx)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	dsnB := u.String()

	open := func(dsn string) store.Store {
		st, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := newTestGateway(t, open(dsn))
	b := newTestGateway(t, open(dsnB), func(c *Config) {
		c.TrustedKeys = a.srv.cfg.TrustedKeys
		c.BundlePoll = 50 * time.Millisecond
	})
	b.signKey, b.signID = a.signKey, a.signID
	a.pushBundle("rev1", 100, testPolicy())
	waitFor(t, "replica b to load rev1", func() bool {
		ab := b.srv.active.Load()
		return ab != nil && ab.b.Manifest.Revision == "rev1"
	})

	tok := a.issue("alice@example.com", step("tools", "slow", nil))
	type answer struct {
		resp *http.Response
		out  map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		resp, out := b.sdkInvoke(a.agentKey, tok, "tools", "slow", nil, nil)
		done <- answer{resp, out}
	}()
	id, _, _ := store.ParseAPIKey(a.agentKey)
	// In flight: its request record is written and the upstream (a's,
	// which the bundle names) is running it.
	waitFor(t, "the call to reach the upstream", func() bool { return a.execs.Load() == 1 })

	// Cut b off: no new logins, every connection of b terminated (and
	// waited for), its LISTEN included.
	exec("ALTER ROLE " + role + " NOLOGIN")
	exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = '" + role + "'")
	a.do("DELETE", "/v1/keys/"+id, a.adminKey, nil, 200, nil)
	select {
	case ans := <-done:
		t.Fatalf("the call was answered (%d: %v) while b could not hear the revocation: this test no longer exercises the resync", ans.resp.StatusCode, ans.out)
	case <-time.After(500 * time.Millisecond):
	}

	// b's listener comes back, re-reads what it missed, cancels the call.
	exec("ALTER ROLE " + role + " LOGIN")
	select {
	case ans := <-done:
		if ans.resp.StatusCode != 401 || ans.resp.Header.Get("X-Armoriq-Revoked") != "true" {
			t.Fatalf("in-flight call after the resync: status %d: %v; want 401 revoked", ans.resp.StatusCode, ans.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the in-flight call was not cancelled after b's listener reconnected")
	}
	// The revoked key is refused by b from now on too.
	if r, _ := b.send("GET", "/health", a.agentKey, nil, nil); r.StatusCode != 401 {
		t.Errorf("revoked key on b after the resync: status %d, want 401", r.StatusCode)
	}
	waitFor(t, "the call's outcome to be recorded", func() bool {
		recs, err := a.store.ListAudit(ctx, store.AuditFilter{Tool: "slow", Phase: store.PhaseOutcome})
		return err == nil && len(recs) == 1
	})
	rep, err := a.store.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.PendingOutcomes != 0 {
		t.Errorf("audit after the outage: %+v (problem %v), %v; want a verified chain, nothing pending", rep, rep.Problem, err)
	}
}
