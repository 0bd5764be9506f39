package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// testHost runs this test binary as the adapter (see TestMain); mode
// "crashy" serves an adapter that dies during a call to "crash".
func testHost(t testing.TB, mode string) *plugins.Host {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return plugins.NewHost(
		plugins.WithExecutable(exe, "-test.run=^$"),
		plugins.WithEnv("ARMORIQ_TEST_ADAPTER="+mode),
		plugins.WithLog(io.Discard, "error"),
		plugins.WithRestartBackoff(20*time.Millisecond, 200*time.Millisecond),
		plugins.WithCallTimeout(5*time.Second),
	)
}

// stdioServer is a bundle server whose MCP server is this test binary on
// stdio, reached through the stdio adapter.
func stdioServer(id, prefix string) bundle.Server {
	exe, _ := os.Executable()
	return bundle.Server{ID: id, Transport: "stdio", Command: exe, Args: []string{"-test.run=^$"},
		Env: map[string]string{"ARMORIQ_TEST_STDIO_SERVER": "1"}, ToolPrefix: prefix}
}

// adapterGateway is a test gateway whose upstream is a plugin host.
func adapterGateway(t testing.TB, mode string, st store.Store, opts ...gatewayOpt) *testGateway {
	t.Helper()
	return newTestGateway(t, st, append([]gatewayOpt{func(c *Config) { c.Upstream = NewAdapterUpstream(testHost(t, mode)) }}, opts...)...)
}

// pushServers activates a bundle with pol and servers.
func (g *testGateway) pushServers(rev string, seq int64, pol bundle.Policy, servers ...bundle.Server) {
	g.t.Helper()
	b := &bundle.Bundle{
		Manifest: bundle.Manifest{FormatVersion: bundle.FormatVersion, Revision: rev, Sequence: seq, Compiler: "test", CreatedAt: time.Unix(seq, 0).UTC()},
		Policy:   pol,
		Servers:  servers,
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b, g.signKey, g.signID); err != nil {
		g.t.Fatal(err)
	}
	g.do("PUT", "/v1/bundle", g.adminKey, buf.Bytes(), 200, nil)
}

func allowAll() bundle.Policy {
	return bundle.Policy{Rules: []bundle.Rule{{ID: "all", Effect: bundle.Allow, Tools: []string{"*/*"}}}}
}

type headerRT struct {
	hdr  map[string]string
	base http.RoundTripper
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.hdr {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// mcpClient connects an MCP client (the official SDK) to the gateway.
func (g *testGateway) mcpClient(key string, hdr map[string]string) *mcp.ClientSession {
	g.t.Helper()
	h := map[string]string{"Authorization": "Bearer " + key}
	for k, v := range hdr {
		h[k] = v
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: g.http.URL + "/mcp", HTTPClient: &http.Client{Transport: headerRT{h, http.DefaultTransport}}, DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		g.t.Fatalf("connecting to /mcp: %v", err)
	}
	g.t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

func callText(t testing.TB, cs *mcp.ClientSession, name string, args map[string]any) (string, error) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	if len(res.Content) == 0 {
		return "", nil
	}
	return res.Content[0].(*mcp.TextContent).Text, nil
}

func lastAudit(t testing.TB, g *testGateway) store.AuditRecord {
	t.Helper()
	g.srv.waitOutcomes(5 * time.Second)
	recs, err := g.store.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit: %v (%d records)", err, len(recs))
	}
	return recs[len(recs)-1]
}

func TestMCPAggregatesThroughAdapters(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	web := bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "conditional"}
	g.pushServers("r1", 1, allowAll(), web, stdioServer("local", "conditional"))
	cs := g.mcpClient(g.agentKey, nil)

	// conditional: only names both servers have are prefixed.
	got := toolNames(t, cs)
	want := []string{"crash", "local_add", "local_echo", "pay", "slow", "web_add", "web_echo"}
	if !slices.Equal(got, want) {
		t.Fatalf("conditional tools/list = %v, want %v", got, want)
	}
	if out, err := callText(t, cs, "local_echo", map[string]any{"text": "hi"}); err != nil || out != "stdio-upstream: hi" {
		t.Fatalf("local_echo = %q, %v", out, err)
	}
	if out, err := callText(t, cs, "web_echo", map[string]any{"text": "hi"}); err != nil || out != "echo: hi" {
		t.Fatalf("web_echo = %q, %v", out, err)
	}
	rec := lastAudit(t, g)
	if rec.Decision != store.Allowed || rec.Server != "web" || rec.Tool != "echo" || rec.User != "agent" || rec.BundleRevision != "r1" {
		t.Fatalf("audit record = %+v", rec)
	}

	// Resources and prompts of the stdio server are routed to it.
	rr, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "test://stdio-upstream/readme"})
	if err != nil || rr.Contents[0].Text != "hello from stdio-upstream" {
		t.Fatalf("resources/read = %+v, %v", rr, err)
	}
	pr, err := cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "ann"}})
	if err != nil || pr.Messages[0].Content.(*mcp.TextContent).Text != "hello ann" {
		t.Fatalf("prompts/get = %+v, %v", pr, err)
	}

	// always and never.
	web.ToolPrefix = "always"
	g.pushServers("r2", 2, allowAll(), web, stdioServer("local", "never"))
	got = toolNames(t, cs)
	want = []string{"add", "crash", "echo", "web_add", "web_echo", "web_pay", "web_slow"}
	if !slices.Equal(got, want) {
		t.Fatalf("always/never tools/list = %v, want %v", got, want)
	}
	if out, err := callText(t, cs, "echo", map[string]any{"text": "x"}); err != nil || out != "stdio-upstream: x" {
		t.Fatalf("echo = %q, %v", out, err)
	}

	// Status shows both adapters up.
	states := g.srv.serverStates()
	if states["web"].State != "up" || states["local"].State != "up" {
		t.Fatalf("serverStates = %+v", states)
	}
}

func TestMCPPolicyHidesAndRefuses(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	pol := bundle.Policy{Rules: []bundle.Rule{
		{ID: "echo-ok", Effect: bundle.Allow, Tools: []string{"web/echo", "web/add"}},
		{ID: "big-sums", Effect: bundle.Hold, Tools: []string{"web/add"}, When: "args.a > 1000", Reason: "big sums need approval"},
		{ID: "no-slow", Effect: bundle.Deny, Tools: []string{"web/slow"}, Reason: "slow is off limits"},
	}}
	g.pushServers("p1", 1, pol, bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "never"})
	cs := g.mcpClient(g.agentKey, nil)
	if got, want := toolNames(t, cs), []string{"add", "echo"}; !slices.Equal(got, want) {
		t.Fatalf("tools/list = %v, want %v (slow hidden)", got, want)
	}
	_, err := callText(t, cs, "slow", nil)
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != codeBlocked || !strings.Contains(werr.Message, "slow is off limits") {
		t.Fatalf("calling a hidden tool: err = %v, want a blocked JSON-RPC error", err)
	}
	if rec := lastAudit(t, g); rec.Decision != store.Blocked || rec.Tool != "slow" || rec.Rule != "no-slow" {
		t.Fatalf("audit = %+v, want blocked by no-slow", rec)
	}
	_, err = callText(t, cs, "add", map[string]any{"a": 5000, "b": 1})
	if !errors.As(err, &werr) || werr.Code != codeHeld || !strings.Contains(werr.Message, "big sums need approval") {
		t.Fatalf("held call: err = %v", err)
	}
	if rec := lastAudit(t, g); rec.Decision != store.Held {
		t.Fatalf("audit = %+v, want held", rec)
	}
	_, err = callText(t, cs, "echo", map[string]any{"password": "hunter2"})
	if !errors.As(err, &werr) || werr.Code != jsonrpc.CodeInvalidParams {
		t.Fatalf("secret argument: err = %v", err)
	}
	if rec := lastAudit(t, g); rec.Decision != store.Blocked || strings.Contains(string(rec.Arguments), "hunter2") {
		t.Fatalf("audit = %+v, want blocked and redacted", rec)
	}
	if out, err := callText(t, cs, "add", map[string]any{"a": 2, "b": 3}); err != nil || out != "5" {
		t.Fatalf("add = %q, %v", out, err)
	}
}

func TestMCPAuth(t *testing.T) {
	g := newTestGateway(t, nil)
	resp, body := g.send("POST", "/mcp", "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}, nil)
	want := `Bearer resource_metadata="` + g.http.URL + `/.well-known/oauth-protected-resource"`
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("no key: %d %q, want 401 %q; body %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want, body)
	}
	var md map[string]any
	g.do("GET", "/.well-known/oauth-protected-resource", "", nil, 200, &md)
	if md["resource"] != g.http.URL+"/mcp" || md["bearer_methods_supported"].([]any)[0] != "header" {
		t.Fatalf("metadata = %v", md)
	}
	viewer := g.createKey("v", "viewer")
	resp, _ = g.send("POST", "/mcp", viewer, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}, nil)
	if resp.StatusCode != 403 {
		t.Fatalf("viewer key: %d, want 403", resp.StatusCode)
	}
	resp, _ = g.send("POST", "/mcp", "ak_live_nope_nope", nil, nil)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("bad key: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// rawMCP posts one JSON-RPC message as a legacy client does and returns
// the answer's session id and JSON message (from JSON or SSE).
func rawMCP(t testing.TB, url, key, session string, msg map[string]any) (int, string, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(msg)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set(headerSessionID, session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]any
				if json.Unmarshal([]byte(d), &m) == nil && m["id"] != nil {
					out = m
				}
			}
		}
	} else {
		data, _ := io.ReadAll(resp.Body)
		json.Unmarshal(data, &out)
	}
	return resp.StatusCode, resp.Header.Get(headerSessionID), out
}

// legacySession opens a 2025-11-25 session at url (/mcp) with key, as a
// client named "legacy" that declares caps (nil: none), and returns its id.
func legacySession(t testing.TB, url, key string, caps map[string]any) string {
	t.Helper()
	if caps == nil {
		caps = map[string]any{}
	}
	status, sid, out := rawMCP(t, url, key, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": map[string]any{"name": "legacy", "version": "1"}}})
	if status != 200 || sid == "" {
		t.Fatalf("initialize: %d, session %q: %v", status, sid, out)
	}
	return sid
}

func TestMCPLegacySessionSurvivesRestart(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	g.pushServers("s1", 1, allowAll(), bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "never"})
	status, sid, out := rawMCP(t, g.http.URL+"/mcp", g.agentKey, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "legacy", "version": "1"}}})
	if status != 200 || !strings.HasPrefix(sid, sessionPrefix) {
		t.Fatalf("initialize: %d, session %q, %v", status, sid, out)
	}
	if v := out["result"].(map[string]any)["protocolVersion"]; v != "2025-11-25" {
		t.Fatalf("negotiated %v", v)
	}
	rawMCP(t, g.http.URL+"/mcp", g.agentKey, sid, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})

	// A second gateway on the same store (a restart, or another replica)
	// takes the session up.
	g2 := adapterGateway(t, "1", g.store, func(c *Config) { c.TrustedKeys[g.signID] = g.signKey.Public().(ed25519.PublicKey) })
	call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "echo", "arguments": map[string]any{"text": "again"}}}
	status, _, out = rawMCP(t, g2.http.URL+"/mcp", g.agentKey, sid, call)
	if status != 200 || out["result"] == nil {
		t.Fatalf("tools/call on the second gateway: %d %v; states %+v", status, out, g2.srv.serverStates())
	}
	rec := lastAudit(t, g2)
	if rec.Client != "legacy" || rec.Agent != "agent" || rec.Decision != store.Allowed {
		t.Fatalf("audit = %+v", rec)
	}
	// The session is bound to its key, and a forged id is unknown.
	if status, _, _ := rawMCP(t, g2.http.URL+"/mcp", g2.agentKey, sid, call); status != 404 {
		t.Fatalf("another key's session: %d, want 404", status)
	}
	// A character of the sealed bytes replaced by another (the id's last
	// ones carry fewer bits; TestSessionIDOneSpelling covers those).
	forged := []byte(sid)
	i := len(sessionPrefix) + 8
	if forged[i] = 'A'; sid[i] == 'A' {
		forged[i] = 'B'
	}
	if status, _, _ := rawMCP(t, g2.http.URL+"/mcp", g.agentKey, string(forged), call); status != 404 {
		t.Fatalf("forged session: %d, want 404", status)
	}
}

func TestMCPAdapterCrashMidCall(t *testing.T) {
	g := adapterGateway(t, "crashy", nil)
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return testMCPServer("web") }, nil))
	t.Cleanup(up.Close)
	g.pushServers("c1", 1, allowAll(), bundle.Server{ID: "web", Transport: "http", URL: up.URL + "/", ToolPrefix: "never"})
	cs := g.mcpClient(g.agentKey, nil)
	_, err := callText(t, cs, "crash", nil)
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != codeUpstream {
		t.Fatalf("call during a crash: err = %v, want an upstream JSON-RPC error", err)
	}
	if rec := lastAudit(t, g); rec.Decision != store.Failed || rec.Tool != "crash" {
		t.Fatalf("audit = %+v, want failed", rec)
	}
	// The host restarts the adapter; the next call succeeds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := callText(t, cs, "echo", map[string]any{"text": "back"})
		if err == nil && out == "web: back" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the crash: %q, %v", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := g.srv.serverStates()["web"]; st.State != "up" || st.Restarts < 1 {
		t.Fatalf("state after restart = %+v", st)
	}
}

func TestMCPUnreachableServerKeepsOthers(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	g.pushServers("u1", 1, allowAll(),
		bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "always"},
		bundle.Server{ID: "gone", Transport: "http", URL: dead.URL + "/", ToolPrefix: "always"})
	cs := g.mcpClient(g.agentKey, nil)
	if got := toolNames(t, cs); !slices.Equal(got, []string{"web_add", "web_echo", "web_pay", "web_slow"}) {
		t.Fatalf("tools/list = %v", got)
	}
	st := g.srv.serverStates()
	if st["web"].State != "up" || st["gone"].State == "up" || st["gone"].LastError == "" {
		t.Fatalf("serverStates = %+v", st)
	}
	var metrics string
	resp, body := g.send("GET", "/metrics", g.adminKey, nil, nil)
	metrics = string(body)
	if resp.StatusCode != 200 || !strings.Contains(metrics, `armoriq_upstream_up{server="web",transport="http"} 1`) || !strings.Contains(metrics, `armoriq_upstream_up{server="gone",transport="http"} 0`) {
		t.Fatalf("metrics: %d\n%s", resp.StatusCode, metrics)
	}
}

func TestMCPUserHeaderAndIntent(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	pol := bundle.Policy{RequireCSRG: true, Rules: []bundle.Rule{{ID: "ann", Effect: bundle.Allow, Tools: []string{"web/*"}, Users: []string{"ann@example.com"}}}}
	g.pushServers("i1", 1, pol, bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "never"})

	// tools/list is decided for the user the agent names.
	if got := toolNames(t, g.mcpClient(g.agentKey, nil)); len(got) != 0 {
		t.Fatalf("tools/list for the key's own name = %v, want none", got)
	}
	cs := g.mcpClient(g.agentKey, map[string]string{headerUser: "ann@example.com"})
	if got := toolNames(t, cs); len(got) != 4 {
		t.Fatalf("tools/list for ann = %v", got)
	}
	// require_csrg: a call without an intent is refused.
	_, err := callText(t, cs, "echo", map[string]any{"text": "hi"})
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != codeUnauthenticated || !strings.Contains(werr.Message, "intent.require_csrg") || !strings.Contains(werr.Message, `params._meta["armoriq/intent"]`) {
		t.Fatalf("call without intent: got %v, want -32030 naming intent.require_csrg and where the token goes", err)
	}
	// With the SDK's token and plan in _meta it goes through.
	tok := g.issue("ann@example.com", step("web", "echo", map[string]any{"text": "hi"}))
	meta := map[string]any{"token": tok["token"], "plan": tok["plan_echo"], "intent_reference": tok["intent_reference"]}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: mcp.Meta{metaIntent: meta}, Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "echo: hi" {
		t.Fatalf("call with intent: %v %v", res, err)
	}
	if rec := lastAudit(t, g); rec.Decision != store.Allowed || rec.Step != 0 || rec.PlanHash == "" || rec.User != "ann@example.com" {
		t.Fatalf("audit = %+v", rec)
	}
	// Other parameters than planned are refused.
	_, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: mcp.Meta{metaIntent: meta}, Name: "echo", Arguments: map[string]any{"text": "other"}})
	if !errors.As(err, &werr) || werr.Code != codeUnauthenticated {
		t.Fatalf("call off plan: %v", err)
	}
}

func TestMCPTransportEdges(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	g.pushServers("e1", 1, allowAll(), bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "never"})
	call := map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": map[string]any{"name": "echo", "arguments": map[string]any{"text": "x"}}}

	// DNS rebinding: a loopback listener reached under another Host is
	// refused, even for a plain tools/call the fast path would answer.
	b, _ := json.Marshal(call)
	req, _ := http.NewRequest("POST", g.http.URL+"/mcp", bytes.NewReader(b))
	req.Host = "evil.example.com"
	req.Header.Set("Authorization", "Bearer "+g.agentKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("rebinding Host: %d, want 403", resp.StatusCode)
	}
	// No standalone SSE stream: GET is 405.
	resp, _ = g.send("GET", "/mcp", g.agentKey, nil, map[string]string{"Accept": "text/event-stream"})
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
	// A sealed session can be deleted (a no-op) and still be refused to
	// another key.
	_, sid, _ := rawMCP(t, g.http.URL+"/mcp", g.agentKey, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "c", "version": "1"}}})
	resp, _ = g.send("DELETE", "/mcp", "", nil, map[string]string{"Authorization": "Bearer " + g.agentKey, headerSessionID: sid})
	if resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d, want 204", resp.StatusCode)
	}
	// The fast path answers JSON with the request id header; the audit
	// record has the same id.
	status, _, out := rawMCP(t, g.http.URL+"/mcp", g.agentKey, sid, call)
	if status != 200 || out["result"] == nil {
		t.Fatalf("tools/call: %d %v", status, out)
	}
	resp, body := g.send("GET", "/metrics", g.adminKey, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `armoriq_mcp_tool_calls_total{decision="allowed"} 1`) {
		t.Fatalf("metrics: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := g.send("GET", "/metrics", g.agentKey, nil, nil); resp.StatusCode != 403 {
		t.Fatalf("metrics with an agent key: %d, want 403", resp.StatusCode)
	}
}
