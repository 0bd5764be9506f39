package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/store/storetest"
)

// TestReplicasSharePostgres runs two gateways on one PostgreSQL schema, as
// replicas behind a load balancer: a token issued by one is honoured by the
// other, a key revoked on one is refused by the other at once (LISTEN/NOTIFY),
// a bundle activated on one is picked up by the other, and the two write one
// audit chain.
func TestReplicasSharePostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	open := func() store.Store {
		st, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := newTestGateway(t, open())
	b := newTestGateway(t, open(), func(c *Config) {
		c.TrustedKeys = a.srv.cfg.TrustedKeys
		c.BundlePoll = 50 * time.Millisecond
	})
	b.signKey, b.signID = a.signKey, a.signID

	// Activated on a, picked up by b.
	a.pushBundle("rev1", 100, testPolicy())
	waitFor(t, "replica b to load rev1", func() bool {
		ab := b.srv.active.Load()
		return ab != nil && ab.b.Manifest.Revision == "rev1"
	})

	// Both replicas share the token-signing key: a token from a works on b.
	tok := a.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	resp, out := b.sdkInvoke(a.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("token from replica a on replica b: status %d: %v", resp.StatusCode, out)
	}

	// b has the key cached now; a revocation on a must reach it at once.
	id, _, _ := store.ParseAPIKey(a.agentKey)
	a.do("DELETE", "/v1/keys/"+id, a.adminKey, nil, 200, nil)
	waitFor(t, "replica b to refuse the revoked key", func() bool {
		r, _ := b.send("GET", "/health", a.agentKey, nil, nil)
		return r.StatusCode == 401 && r.Header.Get("X-Armoriq-Revoked") == "true"
	})

	b.srv.waitOutcomes(5 * time.Second) // b appends the call's outcome after answering
	rep, err := a.store.VerifyAudit(ctx)
	// One call: its request record and its outcome record.
	if err != nil || !rep.OK() || rep.Records != 2 || rep.PendingOutcomes != 0 {
		t.Errorf("shared audit chain: %+v, %v; want 2 verified records, no pending outcome", rep, err)
	}
	var st bundleStatus
	b.do("GET", "/v1/bundle/status", b.adminKey, nil, 200, &st)
	if st.Revision != "rev1" || !strings.HasPrefix(st.Revision, "rev") {
		t.Errorf("replica b status = %+v", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
