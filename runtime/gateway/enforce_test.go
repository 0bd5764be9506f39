package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// faultyStore is a real store whose audit appends can be made to fail, as
// they do when the database is down.
type faultyStore struct {
	store.Store
	failAudit atomic.Bool
}

func (f *faultyStore) AppendAudit(ctx context.Context, rec store.AuditRecord) (int64, error) {
	if f.failAudit.Load() {
		return 0, fmt.Errorf("append audit: injected outage: %w", store.ErrUnavailable)
	}
	return f.Store.AppendAudit(ctx, rec)
}

func newFaultyGateway(t *testing.T) (*testGateway, *faultyStore) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "armoriq.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fs := &faultyStore{Store: st}
	return newTestGateway(t, fs), fs
}

// requests returns the audit records of calls let through to an upstream,
// after the gateway's pending outcome records landed.
func (g *testGateway) records(f store.AuditFilter) []store.AuditRecord {
	g.t.Helper()
	g.srv.waitOutcomes(5 * time.Second)
	f.Limit = 1000
	recs, err := g.store.ListAudit(context.Background(), f)
	if err != nil {
		g.t.Fatal(err)
	}
	return recs
}

// checkNoUnauditedExecution fails unless every tool execution the upstream
// saw has a committed request record, and the chain verifies.
func (g *testGateway) checkNoUnauditedExecution() {
	g.t.Helper()
	reqs := g.records(store.AuditFilter{Phase: store.PhaseRequest})
	if n := g.execs.Load(); n > int64(len(reqs)) {
		g.t.Errorf("the upstream executed %d tool calls but only %d request records exist: %d calls ran without an audit record", n, len(reqs), n-int64(len(reqs)))
	}
	rep, err := g.store.VerifyAudit(context.Background())
	if err != nil || !rep.OK() {
		g.t.Errorf("audit verify = %+v, %v", rep, err)
	}
}

// TestNoAuditNoAction: when the audit record cannot be written, the call is
// refused and the upstream never sees it, on /invoke and on /mcp.
func TestNoAuditNoAction(t *testing.T) {
	g, fs := newFaultyGateway(t)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	cs := g.mcpClient(g.agentKey, nil)

	// Healthy: the call runs, with a request and an outcome record.
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
		t.Fatalf("healthy invoke: status %d: %v", resp.StatusCode, out)
	}
	if _, err := callText(t, cs, "tools_echo", map[string]any{"text": "x"}); err != nil {
		t.Fatalf("healthy /mcp call: %v", err)
	}
	before := g.execs.Load()
	if before != 2 {
		t.Fatalf("upstream executions = %d, want 2", before)
	}

	fs.failAudit.Store(true)
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(out["message"]), "not forwarded") {
		t.Errorf("invoke with the store down: status %d: %v; want 503 saying the call was not forwarded", resp.StatusCode, out)
	}
	if _, err := callText(t, cs, "tools_echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), "not forwarded") {
		t.Errorf("/mcp call with the store down: err = %v, want a JSON-RPC error saying it was not forwarded", err)
	}
	if _, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "test://nothing"}); err == nil {
		t.Errorf("resources/read with the store down succeeded")
	}
	if got := g.execs.Load(); got != before {
		t.Errorf("upstream executions with the store down = %d, want %d (unchanged)", got-before, 0)
	}
	fs.failAudit.Store(false)
	g.checkNoUnauditedExecution()
	for _, r := range g.records(store.AuditFilter{Phase: store.PhaseRequest}) {
		if r.OutcomeMissing {
			t.Errorf("request %d has no outcome after the calls ended", r.Seq)
		}
	}
}

// rawRequest sends bytes as they are (headers a well-behaved client would
// refuse to send) and returns the status.
func (g *testGateway) rawRequest(method, path string, hdr [][2]string, body string) int {
	g.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.http.URL, "http://"))
	if err != nil {
		g.t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n", method, path, len(body))
	for _, h := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := conn.Write([]byte(b.String())); err != nil {
		g.t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		g.t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHostileIdentities: what a caller controls (headers, names, ids)
// never makes a record unwritable after a tool ran, and an unusable
// identity is refused with 400 before anything happens.
func TestHostileIdentities(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	body, hdr := invokeRequestFor(tok, "tools", "echo", map[string]any{"text": "hi"})
	base := [][2]string{{"X-API-Key", g.agentKey}, {"X-CSRG-Proof", hdr["X-CSRG-Proof"]}}

	for _, tc := range []struct {
		name   string
		hdr    [2]string
		status int
	}{
		{"X-Request-ID invalid UTF-8 is replaced", [2]string{"X-Request-ID", "\xff\xfe"}, 200},
		{"X-Request-ID holding an API key is replaced", [2]string{"X-Request-ID", g.agentKey}, 200},
		// net/http itself refuses control characters in header values.
		{"X-Request-ID with an escape is refused by net/http", [2]string{"X-Request-ID", "id\x1b[2J"}, 400},
		{"X-Request-ID with a NUL is refused by net/http", [2]string{"X-Request-ID", "id\x00"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.rawRequest("POST", "/invoke", append(base, tc.hdr), string(body)); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
		})
	}

	// Identities in the body: 400, nothing forwarded.
	before := g.execs.Load()
	for _, tc := range []struct {
		name  string
		extra map[string]any
		param map[string]any
	}{
		{"user_email with NUL", map[string]any{"user_email": "bob\x00@example.com"}, nil},
		{"user_email invalid UTF-8", map[string]any{"user_email": "bob\xff@example.com"}, nil},
		{"params.user_email with a newline", nil, map[string]any{"user_email": "bob@example.com\nadmin"}},
		{"params.user_email not a string", nil, map[string]any{"user_email": 42}},
		{"user_email is an API key", map[string]any{"user_email": g.agentKey}, nil},
		{"two different users", map[string]any{"user_email": "alice@example.com"}, map[string]any{"user_email": "bob@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := map[string]any{"text": "hi"}
			for k, v := range tc.param {
				params[k] = v
			}
			resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, tc.extra)
			if resp.StatusCode != 400 {
				t.Errorf("status %d, want 400: %v", resp.StatusCode, out)
			}
		})
	}
	if got := g.execs.Load(); got != before {
		t.Errorf("refused identities reached the upstream %d times", got-before)
	}

	// A token request with a hostile user_id or agent_id: 400.
	for _, user := range []string{"mallory\x00@example.com", "\xffmallory", "ak_live_abcdefgh_0123456789", strings.Repeat("m", 400)} {
		if status, out := g.sdkToken(g.agentKey, user, step("tools", "echo", nil)); status != 400 {
			t.Errorf("token for user_id %q: status %d, want 400: %v", user, status, out)
		}
	}

	// /mcp: a NUL in X-Armoriq-User or clientInfo.name is refused.
	initBody := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"evil\u0000client","version":"1"}}}`
	mcpHdr := [][2]string{{"Authorization", "Bearer " + g.agentKey}, {"Accept", "application/json, text/event-stream"}}
	if got := g.rawRequest("POST", "/mcp", mcpHdr, initBody); got != 400 {
		t.Errorf("initialize with a NUL in clientInfo.name: status %d, want 400", got)
	}
	okInit := strings.Replace(initBody, `evil\u0000client`, "fine", 1)
	if got := g.rawRequest("POST", "/mcp", append(mcpHdr, [2]string{"X-Armoriq-User", "bob\x01@example.com"}), okInit); got != 400 {
		t.Errorf("X-Armoriq-User with a control character: status %d, want 400", got)
	}
	if got := g.rawRequest("POST", "/mcp", append(mcpHdr, [2]string{"X-Armoriq-User", "b\xffob@example.com"}), okInit); got != 400 {
		t.Errorf("X-Armoriq-User with invalid UTF-8: status %d, want 400", got)
	}

	g.checkNoUnauditedExecution()
	for _, r := range g.records(store.AuditFilter{}) {
		for _, f := range []string{r.RequestID, r.User, r.Agent, r.Client, r.Outcome} {
			if strings.Contains(f, "ak_live_") || strings.ContainsAny(f, "\x00\x1b") {
				t.Errorf("record %d holds %q", r.Seq, f)
			}
		}
	}
}

// endUserPolicy is the seeds' quickstart: one service calls for its users;
// bob is denied by a rule, everyone else may echo.
func endUserPolicy() bundle.Policy {
	return bundle.Policy{Rules: []bundle.Rule{
		{ID: "echo-for-all", Effect: bundle.Allow, Tools: []string{"tools/echo"}},
		{ID: "no-bob", Effect: bundle.Deny, Tools: []string{"tools/*"}, Users: []string{"bob@customer.com"}, Reason: "bob may not use tools"},
		{ID: "no-bad-bot", Effect: bundle.Deny, Tools: []string{"*/*"}, Agents: []string{"bad-bot"}, Reason: "bad-bot is suspended"},
	}}
}

// TestEndUserTheCallNames: the end user the official SDK names inside the
// params is the one the policy decides for and the audit records.
func TestEndUserTheCallNames(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, endUserPolicy())
	echo := step("tools", "echo", map[string]any{"text": "hi"})
	tok := g.issue("weather-service", echo)
	sdkParams := func(email string) map[string]any {
		// What @armoriq/sdk 0.2.6's invoke(..., userEmail) sends.
		return map[string]any{"text": "hi", "user_email": email,
			"_iam_context": map[string]any{"email": email, "user_email": email, "user_id": "weather-service", "agent_id": "agent-1"}}
	}
	for _, tc := range []struct {
		name, email string
		status      int
		wantUser    string
	}{
		{"alice is allowed", "alice@customer.com", 200, "alice@customer.com"},
		{"bob is denied by a rule", "bob@customer.com", 403, "bob@customer.com"},
		{"bob with capitals and a trailing space is still bob", "Bob@Customer.com ", 403, "bob@customer.com"},
		{"no user named: the token's user_id", "", 200, "weather-service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := map[string]any{"text": "hi"}
			if tc.email != "" {
				params = sdkParams(tc.email)
			}
			resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tc.status, out)
			}
			if tc.status == 403 {
				if enf, _ := out["enforcement"].(map[string]any); enf["action"] != "block" {
					t.Errorf("enforcement = %v, want a block", out["enforcement"])
				}
			}
			recs := g.records(store.AuditFilter{})
			last := recs[len(recs)-1]
			if last.User != tc.wantUser || last.Service != "agent" {
				t.Errorf("record user %q service %q, want user %q service %q", last.User, last.Service, tc.wantUser, "agent")
			}
		})
	}

	// A token bound to alice (user_email at issue) acts only for alice.
	resp, data := g.send("POST", "/iap/sdk/token", g.agentKey, map[string]any{
		"user_id": "weather-service", "user_email": "Alice@Customer.com", "agent_id": "agent-1",
		"plan": map[string]any{"goal": "test", "steps": []any{echo}}, "expires_in": 60.0,
	}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("bound token: status %d: %s", resp.StatusCode, data)
	}
	var bound map[string]any
	json.Unmarshal(data, &bound)
	bound["plan_echo"] = tok["plan_echo"]
	if resp, out := g.sdkInvoke(g.agentKey, bound, "tools", "echo", sdkParams("bob@customer.com"), nil); resp.StatusCode != 401 {
		t.Errorf("bound token used for bob: status %d, want 401: %v", resp.StatusCode, out)
	}
	if resp, out := g.sdkInvoke(g.agentKey, bound, "tools", "echo", sdkParams("alice@customer.com"), nil); resp.StatusCode != 200 {
		t.Errorf("bound token used for alice: status %d, want 200: %v", resp.StatusCode, out)
	}
	g.checkNoUnauditedExecution()
}

// TestAgentIdentityFromTheKey: agents: rules match the agent an admin gave
// the key, whatever name the client gives itself.
func TestAgentIdentityFromTheKey(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, endUserPolicy())
	var out struct {
		Key string `json:"key"`
	}
	g.do("POST", "/v1/keys", g.adminKey, map[string]any{"name": "ci", "role": "agent", "agent": "bad-bot"}, 201, &out)
	bad := out.Key

	// On /mcp, renaming the client does not escape the rule.
	cs := g.mcpClient(bad, nil)
	if _, err := callText(t, cs, "tools_echo", map[string]any{"text": "hi"}); err == nil || !strings.Contains(err.Error(), "bad-bot is suspended") {
		t.Errorf("bad-bot's call = %v, want blocked by no-bad-bot", err)
	}
	rec := lastAudit(t, g)
	if rec.Agent != "bad-bot" || rec.Client != "test-client" || rec.Decision != store.Blocked {
		t.Errorf("record agent %q client %q decision %s; want agent bad-bot, client test-client, blocked", rec.Agent, rec.Client, rec.Decision)
	}
	// A token request naming another agent is refused for a pinned key.
	if status, body := g.sdkToken(bad, "alice@customer.com", step("tools", "echo", nil)); status != 403 {
		t.Errorf("token for agent-1 with bad-bot's key: status %d, want 403: %v", status, body)
	}
	// The other key's calls go through.
	cs2 := g.mcpClient(g.agentKey, nil)
	if _, err := callText(t, cs2, "tools_echo", map[string]any{"text": "hi"}); err != nil {
		t.Errorf("agent key's call: %v", err)
	}
	g.checkNoUnauditedExecution()
}

// TestCleanText: the last line before a record is written makes any text
// storable and free of credentials.
func TestCleanText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "intent_mismatch: action x is not planned", "intent_mismatch: action x is not planned"},
		{"invalid UTF-8", "bad \xff byte", "bad \uFFFD byte"},
		{"NUL and escape", "a\x00b\x1bc", "a\uFFFDb\uFFFDc"},
		{"bidi override", "user\u202eevil", "user\uFFFDevil"},
		{"our API key inside", "unknown key ak_live_abcdefgh_0123456789abcdefghij", "unknown key [REDACTED]"},
		{"too long", strings.Repeat("x", maxRecordText+10), strings.Repeat("x", maxRecordText)},
	} {
		if got := cleanText(tc.in, maxRecordText); got != tc.want {
			t.Errorf("%s: cleanText(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// TestUnboundTokenIssueCheck: a token issued without user_email is for a
// service whose calls name their users, so a step is refused at issue only
// when no user could be allowed it; each call is decided for its user.
func TestUnboundTokenIssueCheck(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, bundle.Policy{Rules: []bundle.Rule{
		{ID: "alice-echoes", Effect: bundle.Allow, Tools: []string{"tools/echo"}, Users: []string{"alice@customer.com"}},
		{ID: "no-deletes", Effect: bundle.Deny, Tools: []string{"tools/delete_*"}},
	}})
	echo := step("tools", "echo", map[string]any{"text": "hi"})
	tok := g.issue("weather-service", echo)
	sdk := func(email string) map[string]any {
		return map[string]any{"text": "hi", "user_email": email, "_iam_context": map[string]any{"email": email, "user_email": email}}
	}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", sdk("alice@customer.com"), nil); resp.StatusCode != 200 {
		t.Errorf("alice: status %d: %v", resp.StatusCode, out)
	}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", sdk("bob@customer.com"), nil); resp.StatusCode != 403 {
		t.Errorf("bob (no rule allows him): status %d, want 403: %v", resp.StatusCode, out)
	}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 403 {
		t.Errorf("no user named (the token's user_id): status %d, want 403: %v", resp.StatusCode, out)
	}
	// Nobody may delete: refused at issue.
	if status, out := g.sdkToken(g.agentKey, "weather-service", step("tools", "delete_repo", nil)); status != 403 {
		t.Errorf("delete_repo for any user: status %d, want 403: %v", status, out)
	}
	// A token bound to bob is decided for bob at issue.
	resp, data := g.send("POST", "/iap/sdk/token", g.agentKey, map[string]any{
		"user_id": "weather-service", "user_email": "bob@customer.com", "agent_id": "agent-1",
		"plan": map[string]any{"goal": "test", "steps": []any{echo}},
	}, nil)
	if resp.StatusCode != 403 {
		t.Errorf("token bound to bob: status %d, want 403: %s", resp.StatusCode, data)
	}
}
