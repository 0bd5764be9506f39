package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins"
)

// v2Upstream is an MCP server (stateless, both protocol eras) with the
// tools that exercise adapter contract v2: meta echoes the _meta it
// received, logs logs three messages, ask asks for the client's name in an
// input_required result (SEP-2322).
func v2Upstream(t testing.TB) string {
	srv := v2Server()
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(ts.Close)
	return ts.URL + "/"
}

// v2Server is v2Upstream's MCP server.
func v2Server() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "v2", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "meta", Description: "the request's _meta"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		b, _ := json.Marshal(req.Params.Meta)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "logs", Description: "logs three messages"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		for i := range 3 {
			_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "v2", Data: fmt.Sprintf("message %d", i+1)})
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "logged"}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "ask", Description: "asks the client's name"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if r, ok := req.Params.InputResponses["name"].(*mcp.ElicitResult); ok && r.Action == "accept" {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("Hello, %v (state %s)", r.Content["name"], req.Params.RequestState)}}}, nil, nil
		}
		return &mcp.CallToolResult{
			InputRequests: mcp.InputRequestMap{"name": &mcp.ElicitParams{Message: "Your name?", RequestedSchema: &jsonschema.Schema{
				Type: "object", Properties: map[string]*jsonschema.Schema{"name": {Type: "string"}}}}},
			RequestState: "s1",
		}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "steps", Description: "reports progress three times"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if tok := req.Params.GetProgressToken(); tok != nil {
			for i := range 3 {
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i + 1), Total: 3, Message: fmt.Sprintf("step %d", i+1)})
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	return srv
}

// sseMessages posts msg to /mcp with hdr and returns the JSON-RPC
// messages of the answer, in order, and its content type.
func sseMessages(t testing.TB, url, key string, hdr map[string]string, msg map[string]any) ([]map[string]any, string) {
	t.Helper()
	b, _ := json.Marshal(msg)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	var out []map[string]any
	if !strings.HasPrefix(ct, "text/event-stream") {
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return append(out, m), ct
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var m map[string]any
			if json.Unmarshal([]byte(d), &m) == nil {
				out = append(out, m)
			}
		}
	}
	return out, ct
}

// logLines summarizes an answer: each log message's data, then "result".
func logLines(msgs []map[string]any) string {
	var parts []string
	for _, m := range msgs {
		switch {
		case m["method"] == "notifications/message":
			parts = append(parts, fmt.Sprint(m["params"].(map[string]any)["data"]))
		case m["result"] != nil:
			parts = append(parts, "result")
		default:
			parts = append(parts, fmt.Sprint(m))
		}
	}
	return strings.Join(parts, "; ")
}

func TestMCPRelaysLogMessages(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	g.pushServers("l1", 1, allowAll(), bundle.Server{ID: "v2", Transport: "http", URL: v2Upstream(t), ToolPrefix: "never"})
	url := g.http.URL + "/mcp"
	const want = "message 1; message 2; message 3; result"
	if st := g.srv.serverStates()["v2"]; st.Contract != plugins.ProtocolVersion {
		t.Errorf("server state %+v, want contract %d", st, plugins.ProtocolVersion)
	}
	if _, body := g.send("GET", "/metrics", g.adminKey, nil, nil); !strings.Contains(string(body), fmt.Sprintf(`armoriq_upstream_contract{server="v2"} %d`, plugins.ProtocolVersion)) {
		t.Errorf("metrics lack the contract version:\n%s", body)
	}

	// A legacy session: the fast path answers with an event stream.
	sid := legacySession(t, url, g.agentKey, nil)
	call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "logs", "arguments": map[string]any{}}}
	msgs, ct := sseMessages(t, url, g.agentKey, map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}, call)
	if got := logLines(msgs); got != want || !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("legacy tools/call logs: got %q (%s), want %q as an event stream", got, ct, want)
	}
	// With a progress token too (the fast path relays progress as well).
	call["params"].(map[string]any)["_meta"] = map[string]any{"progressToken": "p1"}
	msgs, _ = sseMessages(t, url, g.agentKey, map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}, call)
	if got := logLines(msgs); got != want {
		t.Errorf("legacy tools/call logs with a progress token: got %q, want %q", got, want)
	}

	// 2026-07-28: the client asks for a level in _meta.
	modern := func(level string) map[string]any {
		meta := map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{}}
		if level != "" {
			meta["io.modelcontextprotocol/logLevel"] = level
		}
		return map[string]any{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": map[string]any{"name": "logs", "arguments": map[string]any{}, "_meta": meta}}
	}
	hdr := map[string]string{headerProtocol: "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "logs"}
	msgs, _ = sseMessages(t, url, g.agentKey, hdr, modern("info"))
	if got := logLines(msgs); got != want {
		t.Errorf("2026-07-28 tools/call logs at info: got %q, want %q", got, want)
	}
	msgs, ct = sseMessages(t, url, g.agentKey, hdr, modern("error"))
	if got := logLines(msgs); got != "result" || !strings.HasPrefix(ct, "application/json") {
		t.Errorf("2026-07-28 tools/call logs at error: got %q (%s), want the result alone, as JSON", got, ct)
	}

	// Every one of these calls took the raw path of contract 3 in the
	// adapter (the metric says which path a call took).
	if st := g.srv.cfg.Upstream.Status(); len(st) != 1 || st[0].RawCalls != 4 || st[0].SDKCalls != 0 {
		t.Errorf("upstream status %+v, want 4 raw calls and no sdk one", st)
	}
	if _, body := g.send("GET", "/metrics", g.adminKey, nil, nil); !strings.Contains(string(body), `armoriq_upstream_calls_total{path="raw",server="v2"} 4`) {
		t.Errorf("metrics lack the raw path's count:\n%s", body)
	}
}

func TestMCPPassesMetaAndInputResponses(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	g.pushServers("m1", 1, allowAll(), bundle.Server{ID: "v2", Transport: "http", URL: v2Upstream(t), ToolPrefix: "never"})

	// SEP-2322 end to end: the official client fulfills the input request
	// with its elicitation handler and retries with the answer and state.
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
		},
	})
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: g.http.URL + "/mcp", DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: headerRT{map[string]string{"Authorization": "Bearer " + g.agentKey}, http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated %s, want 2026-07-28", v)
	}
	if out, err := callText(t, cs, "ask", nil); err != nil || out != "Hello, Ada (state s1)" {
		t.Fatalf("ask = %q, %v; want Hello, Ada (state s1)", out, err)
	}

	// _meta reaches the upstream, but for the gateway's own keys.
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "meta", Arguments: map[string]any{}, Meta: mcp.Meta{"x-trace": "t1"}})
	if err != nil {
		t.Fatal(err)
	}
	var seen map[string]any
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &seen); err != nil || seen["x-trace"] != "t1" {
		t.Fatalf("upstream saw _meta %v (%v), want x-trace t1", seen, err)
	}
	if caps, ok := seen["io.modelcontextprotocol/clientCapabilities"].(map[string]any); !ok || caps["elicitation"] == nil {
		t.Errorf("upstream saw client capabilities %v, want the client's (elicitation)", seen["io.modelcontextprotocol/clientCapabilities"])
	}
}

func TestForwardMeta(t *testing.T) {
	got := forwardMeta(map[string]any{"x-trace": "t1", metaIntent: map[string]any{"token": "secret"}, "progressToken": "p1"})
	if string(got) != `{"x-trace":"t1"}` {
		t.Errorf("forwardMeta = %s, want only x-trace", got)
	}
	if got := forwardMeta(map[string]any{metaIntent: 1}); got != nil {
		t.Errorf("forwardMeta of the intent alone = %s, want nothing", got)
	}
}

// TestMCPRelaysServerRequests: an upstream's server request during a call
// reaches a legacy client, whose answer completes the call; also with one
// call at a time per key, where the answer must get in while the call
// holds the key's only slot.
func TestMCPRelaysServerRequests(t *testing.T) {
	t.Run("default limits", func(t *testing.T) { testRelaysServerRequests(t) })
	t.Run("one call per key", func(t *testing.T) {
		testRelaysServerRequests(t, withLimits(Limits{MaxConcurrentPerKey: 1}))
	})
}

func testRelaysServerRequests(t *testing.T, opts ...gatewayOpt) {
	// A stateful upstream, whose tool asks its client during the call.
	srv := mcp.NewServer(&mcp.Implementation{Name: "asker", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "elicit", Description: "asks the client's name"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Your name?", RequestedSchema: &jsonschema.Schema{
			Type: "object", Properties: map[string]*jsonschema.Schema{"name": {Type: "string"}}}})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("Hello, %v", res.Content["name"])}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(up.Close)
	g := adapterGateway(t, "1", nil, opts...)
	g.pushServers("e1", 1, allowAll(), bundle.Server{ID: "asker", Transport: "http", URL: up.URL + "/", ToolPrefix: "never"})
	url := g.http.URL + "/mcp"
	other := g.createKey("other", "agent")

	sid := legacySession(t, url, g.agentKey, map[string]any{"elicitation": map[string]any{}})
	call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "elicit", "arguments": map[string]any{}}}
	asked, final := legacyExchange(t, url, g.agentKey, sid, "relay-1", call, func(req map[string]any) map[string]any {
		answer := map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}
		// Only the key the call runs under may answer.
		if status, _, _ := rawMCP(t, url, other, sid, map[string]any{"jsonrpc": "2.0", "id": req["id"], "result": answer}); status == http.StatusAccepted {
			t.Errorf("another key's answer: %d, want it refused", status)
		}
		return answer
	})
	if b, _ := json.Marshal(final); len(asked) != 1 || asked[0]["method"] != "elicitation/create" || !strings.Contains(string(b), "Hello, Ada") {
		t.Fatalf("tools/call elicit: asked %v, answered %s; want one elicitation/create, then Hello, Ada", asked, b)
	}
	if rec := lastAudit(t, g); rec.Tool != "elicit" || rec.Decision != "allowed" {
		t.Fatalf("audit = %+v", rec)
	}

	// A client that did not declare elicitation is not asked: the
	// upstream is refused at once.
	var status int
	status, sid, _ = rawMCP(t, url, g.agentKey, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "plain", "version": "1"}}})
	if status != 200 || sid == "" {
		t.Fatalf("initialize: %d %q", status, sid)
	}
	msgs, _ := sseMessages(t, url, g.agentKey, map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"},
		map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "elicit", "arguments": map[string]any{}}})
	if b, _ := json.Marshal(msgs); len(msgs) != 1 || !strings.Contains(string(b), "did not declare") {
		t.Fatalf("tools/call elicit without the capability: %s, want one answer saying the client did not declare it", b)
	}
}

// TestMCPRelaysProgress: a tools/call with a progress token takes the fast
// path too (the adapter's raw path), and the upstream's progress reaches
// the client on the answer's event stream under the client's own token,
// string or integer, before the result. A token of another type, which
// MCP does not allow but the SDK relays as it is, takes the fast path too
// and is relayed alike (TestMCPToolCallPaths compares the two paths).
func TestMCPRelaysProgress(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	g.pushServers("p1", 1, allowAll(), bundle.Server{ID: "v2", Transport: "http", URL: v2Upstream(t), ToolPrefix: "never"})
	url := g.http.URL + "/mcp"
	sid := legacySession(t, url, g.agentKey, nil)
	legacy := map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}
	modernHdr := map[string]string{headerProtocol: "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "steps"}
	progressOf := func(msgs []map[string]any) string {
		var parts []string
		for _, m := range msgs {
			switch {
			case m["method"] == "notifications/progress":
				p := m["params"].(map[string]any)
				parts = append(parts, fmt.Sprintf("%v:%v/%v %v", p["progressToken"], p["progress"], p["total"], p["message"]))
			case m["result"] != nil:
				parts = append(parts, "result")
			default:
				parts = append(parts, fmt.Sprint(m))
			}
		}
		return strings.Join(parts, "; ")
	}
	for _, tt := range []struct {
		name  string
		hdr   map[string]string
		token any
		meta  map[string]any
	}{
		{"legacy session, string token", legacy, "p-1", nil},
		{"legacy session, integer token", legacy, 7, nil},
		{"2026-07-28, string token", modernHdr, "p-2", map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{}}},
	} {
		meta := map[string]any{"progressToken": tt.token}
		for k, v := range tt.meta {
			meta[k] = v
		}
		call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "steps", "arguments": map[string]any{}, "_meta": meta}}
		msgs, ct := sseMessages(t, url, g.agentKey, tt.hdr, call)
		tok := fmt.Sprint(tt.token)
		want := tok + ":1/3 step 1; " + tok + ":2/3 step 2; " + tok + ":3/3 step 3; result"
		if got := progressOf(msgs); got != want || !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("%s: got %q (%s), want %q as an event stream", tt.name, got, ct, want)
		}
	}
	// Every call took the gateway's fast path, and the adapter's raw path.
	if n := g.srv.mcpMetrics.fast.Load(); n != 3 {
		t.Errorf("%d calls took the fast path, want 3", n)
	}
	if st := g.srv.cfg.Upstream.Status(); len(st) != 1 || st[0].RawCalls != 3 || st[0].SDKCalls != 0 {
		t.Errorf("upstream status %+v, want 3 raw calls and no sdk one", st)
	}
	if _, body := g.send("GET", "/metrics", g.adminKey, nil, nil); !strings.Contains(string(body), "armoriq_mcp_fast_tool_calls_total 3") {
		t.Errorf("metrics lack the fast path's count:\n%s", body)
	}

	// A token that is neither a string nor an integer is not MCP's; it is
	// relayed as it is, as the SDK's path does.
	bad := map[string]any{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": map[string]any{"name": "steps", "arguments": map[string]any{}, "_meta": map[string]any{"progressToken": 1.5}}}
	msgs, _ := sseMessages(t, url, g.agentKey, legacy, bad)
	if got, want := progressOf(msgs), "1.5:1/3 step 1; 1.5:2/3 step 2; 1.5:3/3 step 3; result"; got != want {
		t.Errorf("a fractional progress token: got %q, want %q", got, want)
	}
	if n := g.srv.mcpMetrics.fast.Load(); n != 4 {
		t.Errorf("%d calls took the fast path, want 4", n)
	}
}

// TestMCPUpstreamEraFollowsTheClient: an upstream that speaks both protocol
// eras serves each call in its client's: a legacy session's calls reach it
// under the initialize handshake (no protocol envelope in _meta; it would
// ask that client for input with server requests, which the client can
// answer, not with input_required results, which it cannot read), a
// 2026-07-28 client's with the envelope of its version; alternating, every
// call takes the raw path, and the adapter keeps reporting the newest
// version for the next call's _meta.
func TestMCPUpstreamEraFollowsTheClient(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	g.pushServers("era1", 1, allowAll(), bundle.Server{ID: "v2", Transport: "http", URL: v2Upstream(t), ToolPrefix: "never"})
	url := g.http.URL + "/mcp"

	sid := legacySession(t, url, g.agentKey, nil)
	seen := func(msgs []map[string]any) map[string]any {
		t.Helper()
		for _, m := range msgs {
			res, ok := m["result"].(map[string]any)
			if !ok {
				continue
			}
			content, _ := res["content"].([]any)
			if len(content) != 1 {
				break
			}
			var meta map[string]any
			text, _ := content[0].(map[string]any)["text"].(string)
			if err := json.Unmarshal([]byte(text), &meta); err != nil {
				t.Fatalf("meta tool answered %q: %v", text, err)
			}
			return meta
		}
		t.Fatalf("no result in %v", msgs)
		return nil
	}
	legacyCall := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "meta", "arguments": map[string]any{}, "_meta": map[string]any{"x-trace": "t1"}}}
	modernCall := map[string]any{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": map[string]any{"name": "meta", "arguments": map[string]any{},
		"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{}, "x-trace": "t2"}}}
	modernHdr := map[string]string{headerProtocol: "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "meta"}
	for i := range 2 {
		msgs, _ := sseMessages(t, url, g.agentKey, map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}, legacyCall)
		if m := seen(msgs); m["x-trace"] != "t1" || m[plugins.MetaProtocolVersion] != nil || m[plugins.MetaClientCapabilities] != nil {
			t.Errorf("round %d: a legacy client's call reached the upstream with _meta %v, want x-trace and no 2026-07-28 envelope", i, m)
		}
		msgs, _ = sseMessages(t, url, g.agentKey, modernHdr, modernCall)
		if m := seen(msgs); m["x-trace"] != "t2" || m[plugins.MetaProtocolVersion] != "2026-07-28" {
			t.Errorf("round %d: a 2026-07-28 client's call reached the upstream with _meta %v, want x-trace and protocol version 2026-07-28", i, m)
		}
	}
	if st := g.srv.cfg.Upstream.Status(); len(st) != 1 || st[0].RawCalls != 4 || st[0].SDKCalls != 0 {
		t.Errorf("upstream status %+v, want 4 raw calls and no sdk one", st)
	}

	// A tool that asks for input: the legacy client is not handed an
	// input_required result, which it would read as an empty success; it
	// gets what a direct client of its era gets from this (stateless)
	// server, which cannot ask it under the handshake: an error.
	ask := map[string]any{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": map[string]any{"name": "ask", "arguments": map[string]any{}}}
	msgs, _ := sseMessages(t, url, g.agentKey, map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}, ask)
	if b, _ := json.Marshal(msgs); len(msgs) != 1 || msgs[0]["error"] == nil || strings.Contains(string(b), "input_required") {
		t.Errorf("a legacy client's call to a tool asking for input: %s, want an error, not an input_required result", b)
	}

	// A legacy client that declared elicitation can be asked: its calls
	// stay on the upstream's 2026-07-28 session, whose input_required the
	// gateway turns into a server request to it (mcp_input.go), which a
	// stateless server under the handshake could not send.
	status, asker, _ := rawMCP(t, url, g.agentKey, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"elicitation": map[string]any{}}, "clientInfo": map[string]any{"name": "asker", "version": "1"}}})
	if status != 200 || asker == "" {
		t.Fatalf("initialize: %d %q", status, asker)
	}
	asked, final := legacyExchange(t, url, g.agentKey, asker, "era-ask-1", ask, func(map[string]any) map[string]any {
		return map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}
	})
	if b, _ := json.Marshal(final); len(asked) != 1 || asked[0]["method"] != "elicitation/create" || !strings.Contains(string(b), "Hello, Ada (state s1)") {
		t.Errorf("a legacy client that declared elicitation: asked %v, answered %s; want one elicitation/create, then Hello, Ada (state s1)", asked, b)
	}
}
