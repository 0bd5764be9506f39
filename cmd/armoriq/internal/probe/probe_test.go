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
