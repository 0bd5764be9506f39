package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry/cputime"
)

// BenchmarkCallPath measures the gateway's own work for one allowed
// tools/call, handler and all: authentication, the MCP envelope or the
// /invoke body, intent token verification (invoke), policy, the request
// record committed before the call and the outcome record after it, the
// answer. The handler is called in process (no sockets), the store is a
// real SQLite file without fsync (--sqlite-sync normal), and the upstream
// answers in process with fixed bytes, so what is left is mostly the
// gateway's. Besides ns/op, which a loaded machine moves, it reports
// cpu-µs/op, the process's CPU time per call (the store's work and the
// benchmark's own included), and allocs/op and B/op, which no load moves.
// For the handler's share, take a CPU profile (-cpuprofile) and read it
// with -focus instrument and the store's packages ignored (docs/mcp.md,
// Performance).
//
//	go test ./runtime/gateway -run '^$' -bench CallPath -benchmem
//
// Cases: mcp-session (2025-11-25, a legacy session as armoriq bench opens
// one per worker), mcp-stateless (2026-07-28) and invoke (POST /invoke as
// the SDKs send it, the token verified on every call).
func BenchmarkCallPath(b *testing.B) {
	for _, target := range []string{"mcp-session", "mcp-stateless", "invoke"} {
		b.Run(target, func(b *testing.B) {
			st, err := store.OpenSQLiteSync(context.Background(), filepath.Join(b.TempDir(), "armoriq.db"), store.SyncNormal)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			g := newTestGateway(b, st, withCannedUpstream(cannedEcho))
			g.pushBundle("rev1", 100, testPolicy())
			h := g.srv.Handler()
			send := callPathRequest(b, g, h, target)
			for i := 0; i < 20; i++ { // warm: catalogue, caches, pools
				send()
			}
			b.ReportAllocs()
			cpu0, cpuOK := cputime.Process()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				send()
			}
			g.srv.waitOutcomes(5e9)
			b.StopTimer()
			if cpu1, ok := cputime.Process(); ok && cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			}
		})
	}
}

// cannedEcho is the CallToolResult the canned upstream answers with.
var cannedEcho = json.RawMessage(`{"content":[{"type":"text","text":"echo: hi"}]}`)

// cannedUpstream answers every tools/call with the same result, in
// process; everything else goes to the real upstream it wraps (the
// catalogue comes from there).
type cannedUpstream struct {
	Upstream
	result json.RawMessage
}

func (u cannedUpstream) CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error) {
	return u.result, nil
}

func withCannedUpstream(result json.RawMessage) gatewayOpt {
	return func(c *Config) { c.Upstream = cannedUpstream{Upstream: c.Upstream, result: result} }
}

// callPathRequest returns a function that sends one tools/call of target
// to h and checks that it was answered with the upstream's text.
func callPathRequest(b *testing.B, g *testGateway, h http.Handler, target string) func() {
	b.Helper()
	var (
		url  = "/mcp"
		body []byte
		hdr  = http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	)
	hdr.Set("X-API-Key", g.agentKey)
	params := map[string]any{"text": "hi"}
	switch target {
	case "mcp-session":
		init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", url, bytes.NewReader([]byte(init)))
		r.Header = hdr.Clone()
		h.ServeHTTP(w, r)
		sid := w.Header().Get(headerSessionID)
		if w.Code != 200 || sid == "" {
			b.Fatalf("initialize: status %d, session %q: %s", w.Code, sid, w.Body)
		}
		hdr.Set(headerSessionID, sid)
		hdr.Set(headerProtocol, "2025-11-25")
		body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": "tools_echo", "arguments": params}})
	case "mcp-stateless":
		hdr.Set(headerProtocol, firstStatelessVersion)
		hdr.Set("Mcp-Method", "tools/call")
		hdr.Set("Mcp-Name", "tools_echo")
		body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{
			"name": "tools_echo", "arguments": params,
			"_meta": map[string]any{
				"io.modelcontextprotocol/protocolVersion":    firstStatelessVersion,
				"io.modelcontextprotocol/clientCapabilities": map[string]any{},
				"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "bench", "version": "1"},
			},
		}})
	case "invoke":
		url = "/invoke"
		tok := g.issue("alice@example.com", step("tools", "echo", params))
		var h map[string]string
		body, h = invokeRequestFor(tok, "tools", "echo", params)
		for k, v := range h {
			hdr.Set(k, v)
		}
	default:
		b.Fatalf("unknown target %q", target)
	}
	want := []byte("echo: hi")
	return func() {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", url, bytes.NewReader(body))
		r.Header = hdr.Clone()
		h.ServeHTTP(w, r)
		if w.Code != 200 || !bytes.Contains(w.Body.Bytes(), want) {
			b.Fatal(fmt.Sprintf("%s: status %d: %s", target, w.Code, w.Body))
		}
	}
}
