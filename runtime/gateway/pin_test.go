package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/plugins"
)

// TestMCPPinnedStdioUpstream: a stdio server pinned to 2025-11-25
// (bundle.Server.Protocol) is served under the initialize handshake for
// clients of both eras, one session, as an upstream that speaks nothing
// newer would be. A legacy client that declared elicitation is asked by
// the upstream itself (a server request, relayed); a 2026-07-28 client,
// which cannot be sent one, gets an error when the tool needs input, not
// an input_required result (its upstream session cannot return one) nor
// an empty success.
func TestMCPPinnedStdioUpstream(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	srv := stdioServer("local", "never")
	srv.Env = map[string]string{"ARMORIQ_TEST_STDIO_SERVER": "asker"}
	srv.Protocol = plugins.LegacyVersion
	g.pushServers("pin1", 1, allowAll(), srv)
	url := g.http.URL + "/mcp"

	sid := legacySession(t, url, g.agentKey, nil)
	legacyHdr := map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}
	modernHdr := func(tool string) map[string]string {
		return map[string]string{headerProtocol: "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool}
	}
	modernCall := func(id int, tool string) map[string]any {
		return map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": map[string]any{},
			"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{}, "x-trace": "t2"}}}
	}
	metaSeen := func(msgs []map[string]any) map[string]any {
		t.Helper()
		for _, m := range msgs {
			if res, ok := m["result"].(map[string]any); ok {
				if content, _ := res["content"].([]any); len(content) == 1 {
					var meta map[string]any
					text, _ := content[0].(map[string]any)["text"].(string)
					if err := json.Unmarshal([]byte(text), &meta); err == nil {
						return meta
					}
				}
			}
		}
		t.Fatalf("no meta result in %v", msgs)
		return nil
	}

	// Both eras' calls reach the upstream under the handshake: no
	// 2026-07-28 envelope in the _meta it sees.
	for i := range 2 {
		msgs, _ := sseMessages(t, url, g.agentKey, legacyHdr, map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call",
			"params": map[string]any{"name": "meta", "arguments": map[string]any{}, "_meta": map[string]any{"x-trace": "t1"}}})
		if m := metaSeen(msgs); m["x-trace"] != "t1" || m[plugins.MetaProtocolVersion] != nil || m[plugins.MetaClientCapabilities] != nil {
			t.Errorf("round %d: a legacy client's call reached the upstream with _meta %v, want x-trace and no 2026-07-28 envelope", i, m)
		}
		msgs, _ = sseMessages(t, url, g.agentKey, modernHdr("meta"), modernCall(3, "meta"))
		if m := metaSeen(msgs); m["x-trace"] != "t2" || m[plugins.MetaProtocolVersion] != nil || m[plugins.MetaClientCapabilities] != nil {
			t.Errorf("round %d: a 2026-07-28 client's call reached the upstream with _meta %v, want x-trace and no 2026-07-28 envelope", i, m)
		}
	}

	// A tool that asks for input, from a 2026-07-28 client: the upstream
	// asks with a server request, which the gateway cannot send it; the
	// upstream's error, saying why, is the answer.
	msgs, _ := sseMessages(t, url, g.agentKey, modernHdr("ask"), modernCall(4, "ask"))
	b, _ := json.Marshal(msgs)
	if len(msgs) != 1 || msgs[0]["result"] != nil || !strings.Contains(string(b), "pinned to MCP protocol 2025-11-25") || strings.Contains(string(b), "input_required") {
		t.Errorf("a 2026-07-28 client's call to a tool asking for input: %s, want one error naming the pin", b)
	}

	// From a legacy client that declared elicitation.
	status, asker, _ := rawMCP(t, url, g.agentKey, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
		"params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"elicitation": map[string]any{}}, "clientInfo": map[string]any{"name": "asker", "version": "1"}}})
	if status != 200 || asker == "" {
		t.Fatalf("initialize: %d %q", status, asker)
	}
	ask := map[string]any{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": map[string]any{"name": "ask", "arguments": map[string]any{}}}
	asked, final := legacyExchange(t, url, g.agentKey, asker, "pin-ask-1", ask, func(map[string]any) map[string]any {
		return map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}
	})
	if b, _ := json.Marshal(final); len(asked) != 1 || asked[0]["method"] != "elicitation/create" || !strings.Contains(string(b), "Hello, Ada (state s1)") {
		t.Errorf("a legacy client that declared elicitation: asked %v, answered %s; want one elicitation/create, then Hello, Ada (state s1)", asked, b)
	}

	// Without the pin (a new bundle: the host restarts the adapter), the
	// server is reached as before, 2026-07-28 first.
	srv.Protocol = ""
	g.pushServers("pin2", 2, allowAll(), srv)
	msgs, _ = sseMessages(t, url, g.agentKey, modernHdr("meta"), modernCall(6, "meta"))
	if m := metaSeen(msgs); m[plugins.MetaProtocolVersion] != plugins.FirstStatelessVersion {
		t.Errorf("unpinned: a 2026-07-28 client's call reached the upstream with _meta %v, want protocol version %s", m, plugins.FirstStatelessVersion)
	}
}
