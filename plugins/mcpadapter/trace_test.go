package mcpadapter

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestWithTraceContext(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name string
		meta mcp.Meta
		want traceContext
	}{
		{"traceparent and tracestate", mcp.Meta{"traceparent": good, "tracestate": "k=v"}, traceContext{good, "k=v"}},
		{"none", mcp.Meta{}, traceContext{}},
		{"not a string", mcp.Meta{"traceparent": 1}, traceContext{}},
		{"header injection", mcp.Meta{"traceparent": good[:54] + "\n"}, traceContext{}},
		{"upper case hex", mcp.Meta{"traceparent": strings.ToUpper(good)}, traceContext{}},
		{"invalid version ff", mcp.Meta{"traceparent": "ff" + good[2:]}, traceContext{}},
		{"tracestate with a newline dropped", mcp.Meta{"traceparent": good, "tracestate": "a=b\r\nX: y"}, traceContext{good, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := withTraceContext(context.Background(), tt.meta).Value(traceKey{}).(traceContext)
			if got != tt.want {
				t.Errorf("withTraceContext(%v) = %+v, want %+v", tt.meta, got, tt.want)
			}
		})
	}
}

func FuzzValidTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if validTraceparent(s) && (len(s) != 55 || strings.ContainsAny(s, "\r\n :")) {
			t.Fatalf("validTraceparent(%q) = true", s)
		}
	})
}
