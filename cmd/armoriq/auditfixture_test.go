package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdAuditFixture writes a small audit log into DIR/armoriq.db (a gateway
// data directory) through the real store, as a gateway would have:
//
//	auditfixture DIR
//
// #1 a blocked call; #2 an allowed call's request and #3 its outcome;
// #4 a request whose outcome never came (the gateway was killed mid-call).
// Times are fixed, so the chain's head hash is too.
func cmdAuditFixture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: auditfixture DIR")
	}
	ctx := context.Background()
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o700))
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "armoriq.db"))
	ts.Check(err)
	defer st.Close()
	at := func(s int) time.Time { return time.Date(2026, 3, 1, 12, 0, s, 0, time.UTC) }
	base := store.AuditRecord{APIKeyID: "k1a2b3c4d5e6", Service: "support-bot", User: "alice@example.com",
		Agent: "support", Server: "tools", BundleRevision: "rev1", Client: "claude-code"}
	add := func(r store.AuditRecord) int64 {
		seq, err := st.AppendAudit(ctx, r)
		ts.Check(err)
		return seq
	}
	blocked := base
	blocked.Time, blocked.RequestID, blocked.User, blocked.Tool, blocked.Decision, blocked.Rule =
		at(1), "req-1", "bob@example.com", "delete_repo", store.Blocked, "policy.deny[0]"
	add(blocked)
	req := base
	req.Time, req.RequestID, req.Tool, req.Decision, req.Rule, req.Phase =
		at(2), "req-2", "echo", store.Allowed, "policy.allow[0]", store.PhaseRequest
	req.Arguments = json.RawMessage(`{"text":"hi"}`)
	seq := add(req)
	out := req
	out.Time, out.Phase, out.Concludes, out.Outcome, out.DurationMS = at(3), store.PhaseOutcome, seq, "ok", 12
	add(out)
	cut := req
	cut.Time, cut.RequestID, cut.Tool = at(4), "req-3", "slow"
	add(cut)
}
