package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// jaegerBinary finds Jaeger all-in-one (v1.75.0, built by .ci/run).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ARMORIQ_JAEGER"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "armoriq-tools", "jaeger-v1.75.0")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("Jaeger is not installed (%s; .ci/run builds it, or set ARMORIQ_JAEGER): skipping the tracing test against a real backend", p)
	}
	return p
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 50ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// jaeger is a running Jaeger all-in-one with in-memory storage.
type jaeger struct {
	query, otlpGRPC, otlpHTTP string
}

func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	j := &jaeger{query: freePort(t), otlpGRPC: freePort(t), otlpHTTP: freePort(t)}
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(jaegerConfig, j.query, freePort(t), j.otlpGRPC, j.otlpHTTP)), 0o600)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + j.query + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger did not start: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s jaegerSpan) tag(k string) string {
	for _, t := range s.Tags {
		if t.Key == k {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// trace reads a trace back through the query API, waiting until it has at
// least n spans.
func (j *jaeger) trace(t *testing.T, traceID string, n int) []jaegerSpan {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + j.query + "/api/traces/" + traceID)
		if err == nil {
			var out struct {
				Data []struct {
					Spans []jaegerSpan `json:"spans"`
				} `json:"data"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if len(out.Data) == 1 && len(out.Data[0].Spans) >= n {
				return out.Data[0].Spans
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s did not reach %d spans in Jaeger", traceID, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tracedUpstream is a real MCP server over HTTP that records the trace
// context each call brought: the traceparent header and _meta.traceparent.
type tracedUpstream struct {
	url    string
	mu     sync.Mutex
	header []string
	meta   []string
}

func newTracedUpstream(t *testing.T) *tracedUpstream {
	u := &tracedUpstream{}
	srv := testMCPServer("web")
	srv.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if ctr, ok := req.(*mcp.CallToolRequest); ok {
				tp, _ := ctr.Params.Meta["traceparent"].(string)
				u.mu.Lock()
				u.meta = append(u.meta, tp)
				u.mu.Unlock()
			}
			return next(ctx, method, req)
		}
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"tools/call"`)) {
				u.mu.Lock()
				u.header = append(u.header, r.Header.Get("traceparent"))
				u.mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	u.url = ts.URL + "/"
	return u
}

// TestTracingToJaeger sends a tools/call through /mcp and an /invoke call,
// each continuing a client's traceparent, with tracing to a real Jaeger
// over OTLP, and reads the traces back through Jaeger's query API: the
// span tree (server span, authentication, policy decision, audit commits,
// upstream call), the MCP and GenAI attributes and ours; the trace id in
// the audit records; and the trace context at the upstream, as the
// traceparent header and in _meta.
func TestTracingToJaeger(t *testing.T) {
	j := startJaeger(t)
	for i, exporter := range []string{telemetry.TraceOTLPGRPC, telemetry.TraceOTLPHTTP} {
		t.Run(exporter, func(t *testing.T) {
			endpoint := "http://" + j.otlpGRPC
			if exporter == telemetry.TraceOTLPHTTP {
				endpoint = "http://" + j.otlpHTTP + "/v1/traces"
			}
			tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{Exporter: exporter, Endpoint: endpoint})
			if err != nil {
				t.Fatal(err)
			}
			testTracing(t, j, tr, fmt.Sprint(i+1))
		})
	}
}

// testTracing runs the calls; tag (one hex digit) keeps each run's trace
// ids apart in the one Jaeger.
func testTracing(t *testing.T, j *jaeger, tr *telemetry.Tracing, tag string) {
	up := newTracedUpstream(t)
	g := adapterGateway(t, "1", nil, func(c *Config) { c.Tracing = tr; c.TraceEndUser = false })
	g.pushServers("rev-traced", 1, bundle.Policy{Rules: []bundle.Rule{{ID: "allow-web", Effect: bundle.Allow, Tools: []string{"web/*"}}}},
		bundle.Server{ID: "web", Transport: "http", URL: up.url, ToolPrefix: "never"})

	// A client's trace: the gateway continues it.
	clientTrace, clientSpan := tag+"bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`
	resp, data := g.send("POST", "/mcp", g.agentKey, []byte(body), map[string]string{
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-06-18",
		"traceparent": "00-" + clientTrace + "-" + clientSpan + "-01",
	})
	if resp.StatusCode != 200 || !bytes.Contains(data, []byte("web: hi")) {
		t.Fatalf("tools/call through /mcp: %d %s", resp.StatusCode, data)
	}
	recs := g.records(store.AuditFilter{})
	if len(recs) != 2 {
		t.Fatalf("audit has %d records, want a request and its outcome", len(recs))
	}
	for _, r := range recs {
		if r.TraceID != clientTrace {
			t.Errorf("audit record %d (%s) trace_id = %q, want the client's %s", r.Seq, r.Phase, r.TraceID, clientTrace)
		}
	}

	// The SDK's token request and /invoke, each continuing a trace.
	tokenTrace, invokeTrace := tag+"cf92f3577b34da6a3ce929d0e0e4736", tag+"df92f3577b34da6a3ce929d0e0e4736"
	planSteps := []any{map[string]any{"action": "echo", "mcp": "web", "params": map[string]any{"text": "hi"}}}
	resp, data = g.send("POST", "/iap/sdk/token", g.agentKey, map[string]any{
		"user_id": "alice@example.com", "agent_id": "agent-1", "plan": map[string]any{"goal": "test", "steps": planSteps}, "expires_in": 60.0,
	}, map[string]string{"traceparent": "00-" + tokenTrace + "-" + clientSpan + "-01"})
	var tok map[string]any
	if err := json.Unmarshal(data, &tok); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token: %d %s", resp.StatusCode, data)
	}
	tok["plan_echo"] = map[string]any{"goal": "test", "steps": planSteps}
	ibody, ihdr := invokeRequestFor(tok, "web", "echo", map[string]any{"text": "hi"})
	ihdr["traceparent"] = "00-" + invokeTrace + "-" + clientSpan + "-01"
	if resp, data := g.send("POST", "/invoke", g.agentKey, ibody, ihdr); resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, data)
	}
	for _, r := range g.records(store.AuditFilter{Phase: store.PhaseRequest}) {
		if r.RequestID != recs[0].RequestID && r.TraceID != invokeTrace {
			t.Errorf("/invoke's request record trace_id = %q, want %s", r.TraceID, invokeTrace)
		}
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("flushing spans: %v", err)
	}
	checkSpans(t, j.trace(t, tokenTrace, 3), "POST /iap/sdk/token", clientSpan, "armoriq.authenticate", "armoriq.policy.decide")
	inv := checkSpans(t, j.trace(t, invokeTrace, 6), "POST /invoke", clientSpan, "armoriq.authenticate", "armoriq.policy.decide", "armoriq.audit.commit", "tools/call echo")
	for k, want := range map[string]string{"gen_ai.tool.name": "echo", "armoriq.decision": "allowed", "armoriq.rule": "allow-web", "mcp.method.name": "tools/call"} {
		if got := inv.tag(k); got != want {
			t.Errorf("/invoke span %s = %q, want %q", k, got, want)
		}
	}

	spans := j.trace(t, clientTrace, 6)
	t.Logf("trace %s in Jaeger: %v", clientTrace, names(spans))
	byName := map[string][]jaegerSpan{}
	for _, s := range spans {
		byName[s.OperationName] = append(byName[s.OperationName], s)
	}
	var server, client jaegerSpan
	for _, s := range byName["tools/call echo"] {
		switch s.tag("span.kind") {
		case "server":
			server = s
		case "client":
			client = s
		}
	}
	if server.SpanID == "" || client.SpanID == "" {
		t.Fatalf("want a server and a client span named \"tools/call echo\"; got %v", names(spans))
	}
	if server.parent() != clientSpan {
		t.Errorf("server span's parent = %q, want the client's span %s (the incoming traceparent)", server.parent(), clientSpan)
	}
	for _, want := range []struct{ name, parent string }{
		{"armoriq.authenticate", server.SpanID},
		{"armoriq.policy.decide", server.SpanID},
		{"tools/call echo", server.SpanID},
	} {
		found := false
		for _, s := range byName[want.name] {
			if s.parent() == want.parent {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s span under the server span; spans: %v", want.name, names(spans))
		}
	}
	if commits := byName["armoriq.audit.commit"]; len(commits) != 2 || commits[0].parent() != server.SpanID || commits[1].parent() != server.SpanID {
		t.Errorf("audit commit spans = %v, want two (request, outcome) under the server span", commits)
	}
	for k, want := range map[string]string{
		"mcp.method.name": "tools/call", "gen_ai.tool.name": "echo", "gen_ai.operation.name": "execute_tool",
		"armoriq.decision": "allowed", "armoriq.rule": "allow-web", "armoriq.bundle.revision": "rev-traced",
		"armoriq.server": "web", "mcp.protocol.version": "2025-06-18", "http.response.status_code": "200",
	} {
		if got := server.tag(k); got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	if got := server.tag("enduser.id"); got != "" {
		t.Errorf("server span carries enduser.id %q; it is recorded only when configured", got)
	}
	if got := client.tag("gen_ai.tool.name"); got != "echo" {
		t.Errorf("client span gen_ai.tool.name = %q", got)
	}

	// The upstream continued the trace, under the client span, both as the
	// traceparent header and in _meta.
	wantTP := "00-" + clientTrace + "-" + client.SpanID + "-01"
	up.mu.Lock()
	header, meta := up.header, up.meta
	up.mu.Unlock()
	if len(header) != 2 || header[0] != wantTP || !strings.Contains(header[1], invokeTrace) {
		t.Errorf("upstream traceparent headers = %q, want [%s, one of trace %s]", header, wantTP, invokeTrace)
	}
	if len(meta) != 2 || meta[0] != wantTP || !strings.Contains(meta[1], invokeTrace) {
		t.Errorf("upstream _meta.traceparent = %q, want [%s, one of trace %s]", meta, wantTP, invokeTrace)
	}
}

// checkSpans finds the server span called name, under the client's span,
// with a child of each of the given names, and returns it.
func checkSpans(t *testing.T, spans []jaegerSpan, name, parent string, children ...string) jaegerSpan {
	t.Helper()
	var server jaegerSpan
	for _, s := range spans {
		if s.OperationName == name && s.tag("span.kind") == "server" {
			server = s
		}
	}
	if server.SpanID == "" || server.parent() != parent {
		t.Fatalf("no server span %q under the client's span %s: %v", name, parent, names(spans))
	}
	for _, c := range children {
		found := false
		for _, s := range spans {
			if s.OperationName == c && s.parent() == server.SpanID {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s child span: %v", name, c, names(spans))
		}
	}
	return server
}

func names(spans []jaegerSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.OperationName+"("+s.tag("span.kind")+")")
	}
	return out
}
