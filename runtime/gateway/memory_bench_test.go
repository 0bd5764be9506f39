package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkRequestMemory reports the bytes allocated to serve one request
// with a large body, as a multiple of the body's size (x-body): the
// memory one client can make the gateway take per request. Client, gateway
// and upstream share the process, so the figures include the test client
// (small: it sends from one buffer) and, when the call is forwarded, the
// in-process upstream MCP server.
//
//	go test ./runtime/gateway -run XXX -bench RequestMemory -benchtime 20x
//
// Shapes: "text" is one long string argument; "rows" is a list of small
// objects (the worst case for decoding JSON into Go values).
func BenchmarkRequestMemory(b *testing.B) {
	shapes := []struct {
		name   string
		params func(n int) map[string]any
	}{
		{"text", func(n int) map[string]any { return map[string]any{"text": strings.Repeat("a", n)} }},
		{"rows", func(n int) map[string]any {
			rows := make([]any, n/40)
			for i := range rows {
				rows[i] = map[string]any{"id": i, "name": fmt.Sprint("row ", i), "ok": true}
			}
			return map[string]any{"text": "rows", "rows": rows}
		}},
	}
	const size = 1 << 20 // of the params; the SDK's body carries them 4 times
	for _, sh := range shapes {
		params := sh.params(size)
		b.Run("invoke/bad-token/"+sh.name, func(b *testing.B) {
			g := benchGateway(b)
			tok := g.issue("alice@example.com", step("tools", "echo", params))
			bad := map[string]any{}
			for k, v := range tok["token"].(map[string]any) {
				bad[k] = v
			}
			bad["signature"] = strings.Repeat("00", 64)
			tok["token"] = bad
			body, hdr := invokeRequestFor(tok, "tools", "echo", params)
			measureRequests(b, len(body), func() int { return benchStatus(b, g.http.URL+"/invoke", g.agentKey, body, hdr) }, http.StatusUnauthorized)
		})
		b.Run("invoke/enforce-only/"+sh.name, func(b *testing.B) {
			g := benchGateway(b)
			tok := g.issue("alice@example.com", step("tools", "echo", params))
			body, hdr := invokeRequestFor(tok, "tools", "echo", params)
			body = withField(body, "enforce_only", true)
			measureRequests(b, len(body), func() int { return benchStatus(b, g.http.URL+"/invoke", g.agentKey, body, hdr) }, http.StatusOK)
		})
		if sh.name == "text" { // the echo tool takes only text
			b.Run("invoke/forwarded/"+sh.name, func(b *testing.B) {
				g := benchGateway(b)
				tok := g.issue("alice@example.com", step("tools", "echo", params))
				body, hdr := invokeRequestFor(tok, "tools", "echo", params)
				measureForwarded(b, g, len(body), params, func() int { return benchStatus(b, g.http.URL+"/invoke", g.agentKey, body, hdr) })
			})
		}
		b.Run("token/"+sh.name, func(b *testing.B) {
			g := benchGateway(b)
			body, _ := json.Marshal(map[string]any{
				"user_id": "alice@example.com", "agent_id": "bench", "context_id": "default", "expires_in": 60,
				"plan": map[string]any{"goal": "bench", "steps": []any{step("tools", "echo", params)}},
			})
			measureRequests(b, len(body), func() int { return benchStatus(b, g.http.URL+"/iap/sdk/token", g.agentKey, body, nil) }, http.StatusOK)
		})
		b.Run("mcp-tools-call/"+sh.name, func(b *testing.B) {
			g := benchGateway(b)
			body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{
				"name": "tools_echo", "arguments": params,
				"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": firstStatelessVersion, "io.modelcontextprotocol/clientCapabilities": map[string]any{}},
			}})
			hdr := map[string]string{"Accept": "application/json, text/event-stream", headerProtocol: firstStatelessVersion, "Mcp-Method": "tools/call", "Mcp-Name": "tools_echo"}
			if sh.name == "text" {
				measureForwarded(b, g, len(body), params, func() int { return benchStatus(b, g.http.URL+"/mcp", g.agentKey, body, hdr) })
			} else {
				measureRequests(b, len(body), func() int { return benchStatus(b, g.http.URL+"/mcp", g.agentKey, body, hdr) }, http.StatusOK)
			}
		})
	}
}

func benchGateway(b *testing.B) *testGateway {
	g := newTestGateway(b, nil, withLimits(Limits{MaxBody: 64 << 20}))
	g.pushBundle("rev1", 100, testPolicy())
	return g
}

// measureRequests runs do b.N times and reports the bytes allocated per
// request and their ratio to the body size.
func measureRequests(b *testing.B, bodySize int, do func() int, want int) {
	b.Helper()
	per := allocPerCall(b, b.N, func() {
		if got := do(); got != want {
			b.Fatalf("status %d, want %d", got, want)
		}
	})
	b.ReportMetric(float64(bodySize)/(1<<20), "body-MiB")
	b.ReportMetric(per/(1<<20), "alloc-MiB/req")
	b.ReportMetric(per/float64(bodySize), "x-body")
}

// measureForwarded is measureRequests for a call the gateway forwards to
// the in-process upstream: it also calls the upstream directly, with an
// MCP client as the gateway's own, and reports what the gateway adds
// (gateway-x-body): the upstream server and the decoding of its answer run
// in this process in both, and in production the upstream client runs in
// the adapter process.
func measureForwarded(b *testing.B, g *testGateway, bodySize int, args map[string]any, do func() int) {
	b.Helper()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: g.upstream}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	direct := func() {
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
			b.Fatal(err)
		}
	}
	via := func() {
		if got := do(); got != http.StatusOK {
			b.Fatalf("status %d, want 200", got)
		}
	}
	d := allocPerCall(b, b.N, direct)
	per := allocPerCall(b, b.N, via)
	b.ReportMetric(float64(bodySize)/(1<<20), "body-MiB")
	b.ReportMetric(per/(1<<20), "alloc-MiB/req")
	b.ReportMetric(per/float64(bodySize), "x-body")
	b.ReportMetric((per-d)/float64(bodySize), "gateway-x-body")
}

// allocPerCall runs fn once to warm up, then n times, and returns the
// bytes allocated per run.
func allocPerCall(b *testing.B, n int, fn func()) float64 {
	fn()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		fn()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(n)
}

// benchStatus posts body and returns the status, draining the answer.
func benchStatus(b *testing.B, url, key string, body []byte, hdr map[string]string) int {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusUnauthorized {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 600))
		b.Logf("%s: %d %s", url, resp.StatusCode, msg)
	}
	io.Copy(io.Discard, resp.Body) // no buffer of the answer: the client's cost stays small
	return resp.StatusCode
}

// withField adds a top-level field to a JSON object.
func withField(body []byte, k string, v any) []byte {
	var m map[string]json.RawMessage
	json.Unmarshal(body, &m)
	m[k], _ = json.Marshal(v)
	out, _ := json.Marshal(m)
	return out
}
