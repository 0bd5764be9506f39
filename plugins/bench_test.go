package plugins_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type bearer struct{ base http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+upstreamToken)
	return b.base.RoundTrip(r)
}

// BenchmarkCallTool compares one echo call through the host and the http
// adapter with the same call from a go-sdk client straight to the upstream:
// the difference is the cost of the adapter hop.
func BenchmarkCallTool(b *testing.B) {
	url := newUpstream(nil).serveHTTP(b, false)
	ctx := context.Background()
	args := json.RawMessage(`{"text":"hello"}`)

	b.Run("direct", func(b *testing.B) {
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{
			Endpoint: url, HTTPClient: &http.Client{Transport: bearer{http.DefaultTransport}}, DisableStandaloneSSE: true,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		b.ReportAllocs()
		for b.Loop() {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(res); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("host/http", func(b *testing.B) {
		a := startAdapter(b, newHost(b), httpServer("up", url))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.CallTool(ctx, "echo", args, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
