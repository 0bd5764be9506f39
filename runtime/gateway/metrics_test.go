package gateway

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/runtime/telemetry"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	m := telemetry.NewMetrics()
	g := newTestGateway(t, nil, func(c *Config) { c.Metrics = m })
	g.pushBundle("rev1", 100, testPolicy())
	if status, _ := g.sdkToken(g.agentKey, "alice@example.com", step("tools", "add", map[string]any{"a": 2000, "b": 1})); status != 403 {
		t.Fatalf("token for a denied plan: %d, want 403", status)
	}
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}), step("tools", "add", map[string]any{"a": 1, "b": 2}))
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
		t.Fatalf("invoke echo: %d %v", resp.StatusCode, out)
	}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "add", map[string]any{"a": 1, "b": 2}, nil); resp.StatusCode != 200 {
		t.Fatalf("invoke add: %d %v", resp.StatusCode, out)
	}
	// A tool name the caller made up is counted, but never becomes a label.
	if resp, _ := g.sdkInvoke(g.agentKey, tok, "tools", "made-up-by-the-caller", nil, nil); resp.StatusCode < 400 {
		t.Fatalf("invoke of an unplanned tool: %d, want refused", resp.StatusCode)
	}
	if resp, _ := g.sdkInvoke(g.agentKey, tok, "no-such-server", "x", nil, nil); resp.StatusCode < 400 {
		t.Fatalf("invoke on an unknown server: %d, want refused", resp.StatusCode)
	}
	// And one through /mcp.
	mcpBody := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_echo","arguments":{"text":"hi"}}}`
	if resp, data := g.send("POST", "/mcp", g.agentKey, []byte(mcpBody), map[string]string{
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-06-18",
	}); resp.StatusCode != 200 || !strings.Contains(string(data), "echo: hi") {
		t.Fatalf("tools/call through /mcp: %d %q", resp.StatusCode, data)
	}
	g.srv.waitOutcomes(readWait)

	problems, err := testutil.CollectAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	_, body := g.send("GET", "/metrics", g.adminKey, nil, nil)
	text := string(body)
	for _, want := range []string{
		`armoriq_tool_calls_total{decision="allowed",route="invoke",server="tools",tool="echo"} 1`,
		`armoriq_tool_calls_total{decision="allowed",route="invoke",server="tools",tool="add"} 1`,
		`armoriq_tool_calls_total{decision="allowed",route="mcp",server="tools",tool="echo"} 1`,
		`armoriq_mcp_tool_calls_total{decision="allowed"} 1`,
		`armoriq_mcp_requests_total 1`,
		`armoriq_tool_calls_total{decision="blocked",route="invoke",server="tools",tool="other"} 1`,
		`armoriq_tool_calls_total{decision="blocked",route="invoke",server="other",tool="other"} 1`,
		`armoriq_tokens_issued_total{result="issued"} 1`,
		`armoriq_tokens_issued_total{result="denied"} 1`,
		`armoriq_http_requests_total{code="2xx",route="invoke"} 2`,
		`armoriq_http_requests_total{code="4xx",route="invoke"} 2`,
		`armoriq_bundle_info{revision="rev1",sequence="100"} 1`,
		`armoriq_audit_commit_seconds_count{phase="request"} 3`,
		`armoriq_audit_commit_seconds_count{phase="outcome"} 3`,
		`armoriq_audit_commit_seconds_count{phase="decision"} 3`,
		`armoriq_upstream_call_seconds_count{result="ok",server="tools"} 3`,
		`armoriq_added_latency_seconds_count{route="mcp"} 1`,
		`armoriq_added_latency_seconds_count{route="invoke"} 4`,
		`armoriq_added_latency_seconds_count{route="token"} 2`,
		`armoriq_policy_decision_seconds_count `,
		`armoriq_audit_chain_length 9`,
		`armoriq_audit_records_total 9`,
		`armoriq_audit_journal_pending_records `,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Nine records, each call's request waited for before the next: at
	// least one batch, at most one per record.
	if b := metricValue(t, text, "armoriq_audit_batches_total"); b < 1 || b > 9 {
		t.Errorf("armoriq_audit_batches_total = %v, want 1 to 9 for 9 records", b)
	}
	if strings.Contains(text, "made-up") || strings.Contains(text, "alice") {
		t.Errorf("a caller-chosen value became a label:\n%s", text)
	}
	if rep, err := g.store.VerifyAudit(context.Background()); err != nil || rep.Records != 9 {
		t.Fatalf("VerifyAudit = %+v, %v; the chain length metric says 9", rep, err)
	}
}

// metricValue returns the value of the unlabelled sample name in a
// Prometheus text exposition.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metrics lack %s", name)
	return 0
}
