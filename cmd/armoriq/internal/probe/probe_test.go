package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func newServer(tools ...string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "probe-test", Version: "v1"}, nil)
	for _, t := range tools {
		s.AddTool(&mcp.Tool{Name: t, InputSchema: map[string]any{"type": "object"}},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
	}
	return s
}

// TestTools probes real go-sdk servers over both transports, one of them
// behind a bearer token.
func TestTools(t *testing.T) {
	srv := newServer("zeta", "alpha")
	streamable := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	sse := mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		streamable.ServeHTTP(w, r)
	})
	for _, tc := range []struct {
		name      string
		handler   http.Handler
		headers   http.Header
		transport string
		wantErr   string
	}{
		{"streamable", streamable, nil, "streamable", ""},
		{"legacy sse", sse, nil, "sse", ""},
		{"bearer accepted", guarded, http.Header{"Authorization": {"Bearer s3cret"}}, "streamable", ""},
		{"bearer missing", guarded, nil, "", "Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			res, err := Tools(context.Background(), Server{URL: hs.URL, Headers: tc.headers}, 5*time.Second, "test")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Tools(%s): got %v, %v; want an error containing %q", tc.name, res, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Tools(%s): %v", tc.name, err)
			}
			if diff := cmp.Diff([]string{"alpha", "zeta"}, res.Tools); diff != "" || res.Transport != tc.transport || res.Name != "probe-test" {
				t.Errorf("Tools(%s): got %+v, want sorted tools alpha, zeta over %s from probe-test (%s)", tc.name, res, tc.transport, diff)
			}
		})
	}
}

// TestToolsTimeout probes a server that never answers.
func TestToolsTimeout(t *testing.T) {
	block := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer hs.Close()
	defer close(block)
	start := time.Now()
	_, err := Tools(context.Background(), Server{URL: hs.URL}, 300*time.Millisecond, "test")
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Errorf("Tools(silent server): got %v, want a timeout error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Tools(silent server) took %s, want about 300ms", d)
	}
}

// TestToolAnnotations probes a real go-sdk server whose tools carry MCP
// annotations, and one that sends none: the hints come through, with the
// spec's defaults where absent.
func TestToolAnnotations(t *testing.T) {
	no, yes := false, true
	srv := mcp.NewServer(&mcp.Implementation{Name: "annotated", Version: "v1"}, nil)
	for _, tool := range []*mcp.Tool{
		{Name: "read", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no}},
		{Name: "delete", Annotations: &mcp.ToolAnnotations{DestructiveHint: &yes, OpenWorldHint: &yes}},
		{Name: "append", Annotations: &mcp.ToolAnnotations{DestructiveHint: &no, OpenWorldHint: &no}},
		{Name: "plain"},
	} {
		tool.InputSchema = map[string]any{"type": "object"}
		srv.AddTool(tool, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
	}
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	defer hs.Close()
	res, err := Tools(context.Background(), Server{URL: hs.URL}, 5*time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	want := []Tool{
		{Name: "append", Destructive: false, OpenWorld: false, Annotated: true},
		{Name: "delete", Destructive: true, OpenWorld: true, Annotated: true},
		{Name: "plain", Destructive: true, OpenWorld: true},
		{Name: "read", ReadOnly: true, Destructive: true, OpenWorld: false, Annotated: true},
	}
	if diff := cmp.Diff(want, res.Details); diff != "" {
		t.Errorf("tool details (-want +got):\n%s", diff)
	}
	effects := map[string]string{}
	for _, d := range res.Details {
		effects[d.Name] = d.Effects()
	}
	for name, want := range map[string]string{
		"read": "read-only", "delete": "destructive, open world", "append": "writes, not destructive, closed world",
		"plain": "no annotations: destructive, open world (the MCP defaults)",
	} {
		if effects[name] != want {
			t.Errorf("Effects of %s: got %q, want %q", name, effects[name], want)
		}
	}
}
