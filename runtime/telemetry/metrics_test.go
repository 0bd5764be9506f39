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
