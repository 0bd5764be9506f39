package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/store"
)

func resultText(t *testing.T, out map[string]any) string {
	t.Helper()
	res, ok := out["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result in %v", out)
	}
	content := res["content"].([]any)
	return content[0].(map[string]any)["text"].(string)
}

func TestInvokeAllowedForwardsAndAudits(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}), step("other", "add", map[string]any{"a": 1, "b": 2}))

	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("invoke echo: status %d: %v", resp.StatusCode, out)
	}
	if got := resultText(t, out); got != "echo: hi" {
		t.Errorf("echo result = %q, want %q", got, "echo: hi")
	}
	// The second step is on another server: one token reaches both.
	resp, out = g.sdkInvoke(g.agentKey, tok, "other", "add", map[string]any{"a": 1, "b": 2}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("invoke other/add: status %d: %v", resp.StatusCode, out)
	}
	if got := resultText(t, out); got != "3" {
		t.Errorf("add result = %q, want 3", got)
	}

	// Each call is a request record, committed before the upstream ran,
	// and an outcome record.
	recs := g.records(store.AuditFilter{Phase: store.PhaseRequest})
	if len(recs) != 2 {
		t.Fatalf("audit has %d request records, want 2: %+v", len(recs), recs)
	}
	if outs := g.records(store.AuditFilter{Phase: store.PhaseOutcome}); len(outs) != 2 || outs[0].Concludes != recs[0].Seq || outs[0].Outcome != "ok" {
		t.Errorf("outcome records = %+v", outs)
	}
	r := recs[0]
	if r.Decision != store.Allowed || r.Server != "tools" || r.Tool != "echo" || r.User != "alice@example.com" || r.Agent != "agent" || r.Client != "agent-1" || r.BundleRevision != "rev1" || r.Step != 0 || r.Rule != "policy.allow[0]" {
		t.Errorf("audit record = %+v", r)
	}
	if strings.Contains(string(r.Arguments), "_iam_context") {
		t.Errorf("audit arguments keep the SDK's injected context: %s", r.Arguments)
	}
	rep, err := g.store.VerifyAudit(context.Background())
	if err != nil || !rep.OK() {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
}

func TestInvokeRefusals(t *testing.T) {
	g := newTestGateway(t, nil)
	// The token is issued under a policy without the size limit; the limit
	// lands afterwards, as a policy change would, and applies at invoke.
	lenient := testPolicy()
	lenient.Rules = append(lenient.Rules[:2:2], lenient.Rules[3:]...)
	g.pushBundle("rev1", 100, lenient)
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}), step("tools", "add", map[string]any{"a": 5000, "b": 1}))
	g.pushBundle("rev2", 200, testPolicy())

	tests := []struct {
		name       string
		mcp, tool  string
		params     map[string]any
		extra      map[string]any
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"params differ from the plan", "tools", "echo", map[string]any{"text": "rm -rf /"}, nil, 409, "intent_mismatch", "differ from those planned in step 0"},
		{"action not in the plan", "tools", "slow", nil, nil, 409, "intent_mismatch", "not a step of the signed plan"},
		{"action planned on another server", "other", "echo", map[string]any{"text": "hi"}, nil, 409, "intent_mismatch", `planned for server "tools"`},
		{"policy denies by condition", "tools", "add", map[string]any{"a": 5000, "b": 1}, nil, 403, "policy_blocked", "sums over 1000 need review"},
		{"two end users in one call", "tools", "echo", map[string]any{"text": "hi", "user_email": "alice@example.com"}, map[string]any{"user_email": "mallory@example.com"}, 400, "invalid", "two different end users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := g.sdkInvoke(g.agentKey, tok, tt.mcp, tt.tool, tt.params, tt.extra)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tt.wantStatus, out)
			}
			code := out["error"].(map[string]any)["code"]
			if code != tt.wantCode || !strings.Contains(out["message"].(string), tt.wantInMsg) {
				t.Errorf("answer = %v; want code %s and message containing %q", out, tt.wantCode, tt.wantInMsg)
			}
		})
	}
	// The block carries the SDK's enforcement body.
	_, out := g.sdkInvoke(g.agentKey, tok, "tools", "add", map[string]any{"a": 5000, "b": 1}, nil)
	enf, _ := out["enforcement"].(map[string]any)
	if enf["action"] != "block" || enf["metadata"].(map[string]any)["rule"] != "no-big-sums" {
		t.Errorf("enforcement = %v", enf)
	}
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{Decision: store.Blocked})
	if len(recs) != len(tests)+1 {
		t.Errorf("blocked audit records = %d, want %d", len(recs), len(tests)+1)
	}
}

func TestTokenIssueDeniedByPolicy(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	status, out := g.sdkToken(g.agentKey, "alice@example.com", step("tools", "echo", nil), step("tools", "delete_repo", nil))
	if status != 403 || out["success"] != false {
		t.Fatalf("token for a denied step: status %d: %v", status, out)
	}
	pv := out["policy_validation"].(map[string]any)
	if d := pv["denied_tools"].([]any); len(d) != 1 || d[0] != "delete_repo" {
		t.Errorf("denied_tools = %v, want [delete_repo]", d)
	}
	if r := pv["denied_reasons"].([]any); !strings.Contains(r[0].(string), "policy.deny[0]") {
		t.Errorf("denied_reasons = %v, want the deciding rule named", r)
	}
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{Decision: store.Blocked})
	if len(recs) != 1 || recs[0].Rule != "policy.deny[0]" || recs[0].Tool != "delete_repo" {
		t.Errorf("audit of the refused token = %+v; want one blocked record naming policy.deny[0]", recs)
	}
}

func TestNoBundleDeniesEverything(t *testing.T) {
	g := newTestGateway(t, nil)
	g.do("GET", "/v1/bundle", g.adminKey, nil, 404, nil)
	status, out := g.sdkToken(g.agentKey, "alice@example.com", step("tools", "echo", nil))
	if status != 403 || !strings.Contains(out["message"].(string), "no policy bundle is active") {
		t.Fatalf("token without a bundle: status %d: %v", status, out)
	}
}

func TestHoldAndEnforceOnly(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("eve@example.com", step("tools", "echo", map[string]any{"text": "x"}))
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "x"}, nil)
	enf, _ := out["enforcement"].(map[string]any)
	if resp.StatusCode != 403 || enf["action"] != "hold" || enf["delegation_context"] == nil {
		t.Fatalf("held call: status %d: %v", resp.StatusCode, out)
	}
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "x"}, map[string]any{"enforce_only": true})
	if resp.StatusCode != 200 || out["allowed"] != false || out["action"] != "hold" || out["matched_policy"] != "hold-eve" {
		t.Fatalf("enforce_only: status %d: %v", resp.StatusCode, out)
	}
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{Decision: store.Held})
	if len(recs) != 2 {
		t.Errorf("held records = %d, want 2", len(recs))
	}
}

func TestSecretArgumentsRefused(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	status, out := g.sdkToken(g.agentKey, "alice@example.com", step("tools", "echo", map[string]any{"text": "x", "auth": map[string]any{"api_key": "k"}}))
	if status != 400 || !strings.Contains(out["message"].(string), "steps[0].params.auth.api_key") {
		t.Fatalf("plan with a secret argument: status %d: %v", status, out)
	}
}

func TestExpiredToken(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	// A first call verifies the token and caches that; expiry is still
	// checked on every later call.
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
		t.Fatalf("first call: status %d: %v", resp.StatusCode, out)
	}
	g.clock.advance(61 * time.Second)
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 401 || out["error"].(map[string]any)["code"] != "token_expired" {
		t.Fatalf("expired token: status %d: %v", resp.StatusCode, out)
	}
}

func TestTamperedTokenAndPlan(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))

	// A longer validity written into the token breaks its signature.
	forged := map[string]any{}
	for k, v := range tok["token"].(map[string]any) {
		forged[k] = v
	}
	forged["expires_at"] = forged["expires_at"].(float64) + 3600
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, map[string]any{"token": forged, "csrg_token": forged, "intent_token": map[string]any{"token": forged, "intent_reference": tok["intent_reference"]}})
	if resp.StatusCode != 401 || !strings.Contains(out["message"].(string), "signature") {
		t.Errorf("forged expiry: status %d: %v", resp.StatusCode, out)
	}

	// Another plan with the same token.
	other := map[string]any{"goal": "x", "steps": []any{map[string]any{"action": "echo", "mcp": "tools", "params": map[string]any{"text": "evil"}}}}
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "evil"}, map[string]any{"plan": other, "intent_token": map[string]any{"plan": other, "token": tok["token"], "intent_reference": tok["intent_reference"]}})
	if resp.StatusCode != 401 || !strings.Contains(out["message"].(string), "not the plan the token signed") {
		t.Errorf("swapped plan: status %d: %v", resp.StatusCode, out)
	}

	// The same token re-signed by a key the gateway does not know: the
	// public key it carries is never trusted.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	var resigned intent.Token
	raw, _ := json.Marshal(tok["token"])
	if err := json.Unmarshal(raw, &resigned); err != nil {
		t.Fatal(err)
	}
	if err := intent.SignToken(&resigned, stranger); err != nil {
		t.Fatal(err)
	}
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, map[string]any{"token": resigned, "csrg_token": resigned, "intent_token": map[string]any{"token": resigned, "plan": tok["plan_echo"], "intent_reference": tok["intent_reference"]}})
	if resp.StatusCode != 401 || !strings.Contains(out["message"].(string), "not signed by this gateway") {
		t.Errorf("token signed by an unknown key: status %d: %v", resp.StatusCode, out)
	}

	// A genuine token used by another API key.
	resp, out = g.sdkInvoke(g.createKey("agent2", "agent"), tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 401 || !strings.Contains(out["message"].(string), "another API key") {
		t.Errorf("token used by another key: status %d: %v", resp.StatusCode, out)
	}
}

func TestRevokedKey(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	var list struct {
		Keys []struct{ ID, Name string } `json:"keys"`
	}
	g.do("GET", "/v1/keys", g.adminKey, nil, 200, &list)
	var agentID string
	for _, k := range list.Keys {
		if k.Name == "agent" {
			agentID = k.ID
		}
	}
	g.do("DELETE", "/v1/keys/"+agentID, g.adminKey, nil, 200, nil)
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 401 || resp.Header.Get("X-Armoriq-Revoked") != "true" {
		t.Fatalf("revoked key: status %d, X-Armoriq-Revoked=%q: %v", resp.StatusCode, resp.Header.Get("X-Armoriq-Revoked"), out)
	}
	hresp, _ := g.send("GET", "/health", g.agentKey, nil, nil)
	if hresp.StatusCode != 401 {
		t.Errorf("health with a revoked key: status %d, want 401", hresp.StatusCode)
	}
}

func TestRevokedToken(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	ref := tok["intent_reference"].(string)
	// Used once, so its record is cached: the revocation must still win.
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
		t.Fatalf("first call: status %d: %v", resp.StatusCode, out)
	}
	g.do("DELETE", "/v1/tokens/"+ref, g.agentKey, nil, 403, nil)
	g.do("DELETE", "/v1/tokens/"+ref, g.adminKey, nil, 200, nil)
	g.do("DELETE", "/v1/tokens/nope", g.adminKey, nil, 404, nil)
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 401 || resp.Header.Get("X-Armoriq-Revoked") != "true" {
		t.Fatalf("revoked token: status %d: %v", resp.StatusCode, out)
	}
}

func TestRevokeCancelsCallInFlight(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	key := g.createKey("doomed", "agent")
	g.agentKey, key = key, g.agentKey
	tok := g.issue("alice@example.com", step("tools", "slow", nil))
	g.agentKey, key = key, g.agentKey

	type answer struct {
		resp *http.Response
		out  map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		resp, out := g.sdkInvoke(key, tok, "tools", "slow", nil, nil)
		done <- answer{resp, out}
	}()
	// Wait until the call is in flight, then revoke its key.
	id, _, _ := store.ParseAPIKey(key)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if g.srv.inflight.running(id) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("call never became in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.do("DELETE", "/v1/keys/"+id, g.adminKey, nil, 200, nil)
	select {
	case a := <-done:
		if a.resp.StatusCode != 401 || a.resp.Header.Get("X-Armoriq-Revoked") != "true" {
			t.Fatalf("in-flight call after revocation: status %d: %v", a.resp.StatusCode, a.out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight call was not cancelled by the revocation")
	}
	recs := g.records(store.AuditFilter{Tool: "slow", Phase: store.PhaseOutcome})
	if len(recs) != 1 || recs[0].Decision != store.Failed {
		t.Errorf("audit of the cancelled call = %+v", recs)
	}
}

func TestBundleActivationRules(t *testing.T) {
	g := newTestGateway(t, nil)
	ctx := context.Background()
	g.pushBundle("rev2", 200, testPolicy())

	// Same revision again: accepted, unchanged.
	var res map[string]any
	g.do("PUT", "/v1/bundle", g.adminKey, g.bundleBytes("rev2", 200, testPolicy(), g.signKey, g.signID), 200, &res)
	if res["changed"] != false {
		t.Errorf("re-push of the active revision: %v", res)
	}
	// Older: refused, kept, reason recorded.
	var e map[string]any
	g.do("PUT", "/v1/bundle", g.adminKey, g.bundleBytes("rev1", 100, testPolicy(), g.signKey, g.signID), 409, &e)
	if e["error"].(map[string]any)["code"] != "stale_bundle" {
		t.Errorf("older bundle: %v", e)
	}
	// Signed by an unknown key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	g.do("PUT", "/v1/bundle", g.adminKey, g.bundleBytes("rev3", 300, testPolicy(), other, "stranger"), 422, &e)
	if !strings.Contains(e["message"].(string), "bundle refused") {
		t.Errorf("unknown key: %v", e)
	}
	// Altered after signing: flip a byte in the archive.
	data := g.bundleBytes("rev3", 300, testPolicy(), g.signKey, g.signID)
	data[len(data)/2] ^= 0xff
	g.do("PUT", "/v1/bundle", g.adminKey, data, 422, nil)
	// Garbage and empty bodies.
	g.do("PUT", "/v1/bundle", g.adminKey, []byte("not a bundle"), 422, nil)
	g.do("PUT", "/v1/bundle", g.adminKey, []byte{}, 400, nil)
	// Non-admin keys may not push.
	g.do("PUT", "/v1/bundle", g.agentKey, g.bundleBytes("rev3", 300, testPolicy(), g.signKey, g.signID), 403, nil)

	var st bundleStatus
	g.do("GET", "/v1/bundle/status", g.adminKey, nil, 200, &st)
	if len(st.Servers) != 2 || st.Servers[0].State == "" {
		t.Errorf("status servers = %+v; want each server with its state", st.Servers)
	}
	if st.Revision != "rev2" || st.LastError == "" {
		t.Errorf("status after refusals = %+v; want rev2 still active and the last error", st)
	}
	// The active bundle's file can be fetched back as activated.
	resp, data := g.send("GET", "/v1/bundle", g.adminKey, nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Armoriq-Revision") != "rev2" {
		t.Errorf("GET /v1/bundle: status %d, revision %q", resp.StatusCode, resp.Header.Get("X-Armoriq-Revision"))
	} else if b, err := bundle.Verify(data, g.srv.cfg.TrustedKeys); err != nil || b.Manifest.Revision != "rev2" {
		t.Errorf("GET /v1/bundle body does not verify as rev2: %v", err)
	}
	// Explicit rollback.
	g.do("PUT", "/v1/bundle?force=rollback", g.adminKey, g.bundleBytes("rev1", 100, testPolicy(), g.signKey, g.signID), 200, nil)
	st = bundleStatus{}
	g.do("GET", "/v1/bundle/status", g.adminKey, nil, 200, &st)
	if st.Revision != "rev1" || st.LastError != "" {
		t.Errorf("status after rollback = %+v", st)
	}

	// A restarted gateway on the same store runs the persisted bundle.
	srv2, err := NewServer(ctx, Config{Store: g.store, TrustedKeys: g.srv.cfg.TrustedKeys, Upstream: NewHTTPUpstream(nil), BundlePoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if ab := srv2.active.Load(); ab == nil || ab.b.Manifest.Revision != "rev1" {
		t.Errorf("after restart the active bundle is %v, want rev1", ab)
	}
}

func TestHealthAndKeysDocument(t *testing.T) {
	g := newTestGateway(t, nil)
	g.do("GET", "/health", "", nil, 200, nil)
	g.do("GET", "/health", g.agentKey, nil, 200, nil)
	g.do("GET", "/health", "ak_live_nope", nil, 401, nil)
	g.do("GET", "/health", "ak_live_aaaaaaaaaaaaaaaa_"+strings.Repeat("A", 43), nil, 401, nil)
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	g.do("GET", "/.well-known/armoriq-keys.json", "", nil, 200, &doc)
	if len(doc.Keys) != 1 || doc.Keys[0]["crv"] != "Ed25519" || doc.Keys[0]["status"] != "active" {
		t.Errorf("keys document = %v", doc)
	}
	// A role may not exceed itself; bad requests say what is wrong.
	g.do("POST", "/v1/keys", g.agentKey, map[string]any{"name": "x", "role": "admin"}, 403, nil)
	g.do("POST", "/v1/keys", g.adminKey, map[string]any{"name": "x", "role": "root"}, 400, nil)
	g.do("POST", "/v1/keys", g.adminKey, []byte("{"), 400, nil)
	g.do("GET", "/v1/nope", g.adminKey, nil, 404, nil)
	g.do("POST", "/invoke", "", map[string]any{}, 401, nil)
}

func TestAuditEndpoints(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "other"}, nil)

	var list struct {
		Records []store.AuditRecord `json:"records"`
	}
	g.do("GET", "/v1/audit?decision=blocked", g.adminKey, nil, 200, &list)
	if len(list.Records) != 1 || list.Records[0].Tool != "echo" {
		t.Errorf("blocked records = %+v", list.Records)
	}
	g.do("GET", "/v1/audit?decision=maybe", g.adminKey, nil, 400, nil)
	g.do("GET", "/v1/audit?since=yesterday", g.adminKey, nil, 400, nil)
	var v map[string]any
	g.do("GET", "/v1/audit/verify", g.adminKey, nil, 200, &v)
	if v["ok"] != true || v["records"].(float64) != 3 {
		t.Errorf("verify = %v", v)
	}
	resp, data := g.send("GET", "/v1/audit/export", g.adminKey, nil, nil)
	if resp.StatusCode != 200 || strings.Count(string(data), "\n") != 3 {
		t.Errorf("export: status %d: %s", resp.StatusCode, data)
	}
	if strings.Contains(string(data), g.agentKey) || strings.Contains(string(data), "ak_live_") {
		t.Errorf("audit export contains an API key: %s", data)
	}
}

// TestCachedTokenStillChecked calls /invoke with a token and plan the
// gateway has verified and parsed before (cached by their bytes): each
// call is still checked against its own key, plan, step and parameters.
func TestCachedTokenStillChecked(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	ok := func(what string) {
		t.Helper()
		if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %v", what, resp.StatusCode, out)
		}
	}
	ok("first call")
	ok("second call, from the cache")

	other := map[string]any{"goal": "x", "steps": []any{map[string]any{"action": "echo", "mcp": "tools", "params": map[string]any{"text": "evil"}}}}
	tests := []struct {
		name  string
		key   string
		args  map[string]any
		extra map[string]any
		want  string
	}{
		{"another plan with the cached token", g.agentKey, map[string]any{"text": "evil"},
			map[string]any{"plan": other, "intent_token": map[string]any{"plan": other, "token": tok["token"], "intent_reference": tok["intent_reference"]}},
			"not the plan the token signed"},
		{"the cached token and plan from another API key", g.createKey("agent2", "agent"), map[string]any{"text": "hi"}, nil, "another API key"},
		{"the cached token and plan, other parameters", g.agentKey, map[string]any{"text": "bye"}, nil, "differ from those planned"},
	}
	for _, tt := range tests {
		resp, out := g.sdkInvoke(tt.key, tok, "tools", "echo", tt.args, tt.extra)
		if msg, _ := out["message"].(string); resp.StatusCode == 200 || !strings.Contains(msg, tt.want) {
			t.Errorf("%s: status %d: %v; want a refusal saying %q", tt.name, resp.StatusCode, out, tt.want)
		}
	}
	ok("the signed plan again")

	// A plan too large to keep parsed is parsed on every call, and
	// checked the same.
	long := map[string]any{"text": strings.Repeat("x", maxCachedPlanBytes)}
	big := g.issue("alice@example.com", step("tools", "echo", long))
	for _, what := range []string{"first call, large plan", "second call, large plan"} {
		if resp, out := g.sdkInvoke(g.agentKey, big, "tools", "echo", long, nil); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %v", what, resp.StatusCode, out)
		}
	}
	resp, out := g.sdkInvoke(g.agentKey, big, "tools", "echo", map[string]any{"text": "evil"}, map[string]any{"plan": other, "intent_token": map[string]any{"plan": other, "token": big["token"], "intent_reference": big["intent_reference"]}})
	if msg, _ := out["message"].(string); resp.StatusCode == 200 || !strings.Contains(msg, "not the plan the token signed") {
		t.Errorf("another plan with the large plan's token: status %d: %v", resp.StatusCode, out)
	}
}

// TestInvokeStepPlannedTwice: a plan with the same step twice, alike. The
// call is bound to the step its proof verifies for, and to the first of
// them without a proof that verifies; a step planned once is bound
// whatever proof comes with it.
func TestInvokeStepPlannedTwice(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	hi := map[string]any{"text": "hi"}
	tok := g.issue("alice@example.com", step("tools", "echo", hi), step("other", "add", map[string]any{"a": 1, "b": 2}), step("tools", "echo", hi))
	proofs := tok["step_proofs"].([]any)
	proof := func(i int) string {
		p, _ := json.Marshal(proofs[i])
		return string(p)
	}
	for _, tc := range []struct {
		name   string
		action string
		params map[string]any
		proof  string // X-CSRG-Proof; "" for none
		want   int64
	}{
		{"echo with step 2's proof", "echo", hi, proof(2), 2},
		{"echo with step 0's proof", "echo", hi, proof(0), 0},
		{"echo without a proof", "echo", hi, "", 0},
		{"echo with step 1's proof (another leaf)", "echo", hi, proof(1), 0},
		{"echo with a malformed proof", "echo", hi, `{"leaf_index":`, 0},
		{"add (planned once) with step 2's proof", "add", map[string]any{"a": 1, "b": 2}, proof(2), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mcpName := "tools"
			if tc.action == "add" {
				mcpName = "other"
			}
			body, hdr := invokeRequestFor(tok, mcpName, tc.action, tc.params)
			delete(hdr, "X-CSRG-Proof")
			if tc.proof != "" {
				hdr["X-CSRG-Proof"] = tc.proof
			}
			hdr["X-API-Key"] = g.agentKey
			resp, data := g.send("POST", "/invoke", "", body, hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, data)
			}
			recs := g.records(store.AuditFilter{Phase: store.PhaseRequest})
			if got := recs[len(recs)-1].Step; got != tc.want {
				t.Errorf("audit step = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestClientHangsUpMidCall: a client that closes its connection while its
// call runs (through the gateway's front, which has no goroutine reading
// the connection) has the call cancelled upstream, and the call still
// leaves its outcome in the audit.
func TestClientHangsUpMidCall(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "slow", nil))
	body, hdr := sdkInvokeRequest(map[string]string{"X-API-Key": g.agentKey}, tok, "tools", "slow", nil, nil)
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", g.http.URL+"/invoke", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	conn, err := net.Dial("tcp", g.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	id, _, _ := store.ParseAPIKey(g.agentKey)
	deadline := time.Now().Add(5 * time.Second)
	for g.srv.inflight.running(id) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the call never became in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	// The front looks every 100 ms; the harness's call timeout (5s) would
	// end the call too, so the bound sits well below it.
	hungUp := time.Now()
	for g.srv.inflight.running(id) > 0 {
		if time.Since(hungUp) > 3*time.Second {
			t.Fatal("the call still runs 3s after its client hung up: the upstream call was not cancelled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var recs []store.AuditRecord
	for {
		recs = g.records(store.AuditFilter{Tool: "slow", Phase: store.PhaseOutcome})
		if len(recs) > 0 || time.Now().After(deadline.Add(10*time.Second)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(recs) != 1 || recs[0].Decision != store.Failed {
		t.Errorf("the outcome of the call whose client hung up = %+v, want one, failed", recs)
	}
	if st := g.front.Stats(); st.HandedOff != 0 {
		t.Errorf("the front handed %d connections to net/http; the SDK's requests are plain", st.HandedOff)
	}
}
