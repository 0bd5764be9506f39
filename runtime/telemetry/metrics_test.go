package telemetry

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLint(t *testing.T) {
	m := NewMetrics()
	m.Request("invoke", 200)
	m.ToolCall("invoke", "tools", Other, "blocked")
	m.AddedLatency("invoke", time.Millisecond)
	m.PolicyDecision(time.Microsecond)
	m.AuditCommit("", time.Millisecond, 3)
	m.UpstreamCall("tools", true, time.Second)
	m.TokenRequest(503)
	problems, err := testutil.CollectAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"chain length", testutil.ToFloat64(m.auditHead), 3},
		{"token errors", testutil.ToFloat64(m.tokens.WithLabelValues("error")), 1},
		{"decision phase", float64(testutil.CollectAndCount(m.auditCommit)), 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestMetricsCountedTwice counts through the resolved children: the same
// labels again add to the same series, other labels make their own.
func TestMetricsCountedTwice(t *testing.T) {
	m := NewMetrics()
	for i := 0; i < 2; i++ {
		m.Request("mcp", 200)
		m.ToolCall("mcp", "tools", "echo", "allowed")
		m.AddedLatency("mcp", time.Millisecond)
		m.AuditCommit("request", time.Millisecond, int64(i+1))
		m.UpstreamCall("tools", false, time.Millisecond)
	}
	m.Request("mcp", 404)
	m.ToolCall("mcp", "tools", "echo", "blocked")
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"requests mcp 2xx", testutil.ToFloat64(m.requests.WithLabelValues("mcp", "2xx")), 2},
		{"requests mcp 4xx", testutil.ToFloat64(m.requests.WithLabelValues("mcp", "4xx")), 1},
		{"tool calls allowed", testutil.ToFloat64(m.toolCalls.WithLabelValues("mcp", "tools", "echo", "allowed")), 2},
		{"tool calls blocked", testutil.ToFloat64(m.toolCalls.WithLabelValues("mcp", "tools", "echo", "blocked")), 1},
		{"request series", float64(testutil.CollectAndCount(m.requests)), 2},
		{"added latency series", float64(testutil.CollectAndCount(m.added)), 1},
		{"audit commit series", float64(testutil.CollectAndCount(m.auditCommit)), 1},
		{"upstream call series", float64(testutil.CollectAndCount(m.upstreamCall)), 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// BenchmarkMetricsPerCall counts what one tool call counts.
func BenchmarkMetricsPerCall(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Request("mcp", 200)
		m.ToolCall("mcp", "tools", "echo", "allowed")
		m.AddedLatency("mcp", time.Millisecond)
		m.AuditCommit("request", time.Millisecond, 1)
		m.AuditCommit("outcome", time.Millisecond, 2)
		m.UpstreamCall("tools", false, time.Millisecond)
	}
}
