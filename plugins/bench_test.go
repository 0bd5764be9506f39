package plugins_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
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

// BenchmarkAdapterRoundTrip measures the hop between the host and an
// adapter process on its own: a tool call as the gateway makes it
// (CallToolV2, contract version 2) through the real go-plugin gRPC
// connection (a unix socket) to an adapter that answers at once, with no
// upstream behind it. It is the floor of what the adapter hop adds to
// every forwarded call; "parallel" runs 4×GOMAXPROCS callers at once.
func BenchmarkAdapterRoundTrip(b *testing.B) {
	h := newHost(b, plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter-echo"))
	a, ok := startAdapter(b, h, plugins.ServerConfig{ID: "echo", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1/unused"}).(plugins.AdapterV2)
	if !ok {
		b.Fatal("the host's adapter does not implement AdapterV2")
	}
	ctx := context.Background()
	call := func() error {
		_, err := a.CallToolV2(ctx, &plugins.ToolCall{Name: "echo", Arguments: json.RawMessage(`{"text":"hello"}`)}, &plugins.CallEvents{})
		return err
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := call(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// echoAdapter answers every tool call at once with a small fixed result:
// the adapter of BenchmarkAdapterRoundTrip, which measures the hop alone.
type echoAdapter struct{}

var echoResult = json.RawMessage(`{"content":[{"type":"text","text":"hello"}]}`)

func (echoAdapter) Configure(context.Context, plugins.ServerConfig) error { return nil }
func (echoAdapter) ListTools(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}`), nil
}
func (echoAdapter) CallTool(context.Context, string, json.RawMessage, func(plugins.Progress)) (json.RawMessage, error) {
	return echoResult, nil
}
func (echoAdapter) ListResources(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"resources":[]}`), nil
}
func (echoAdapter) ReadResource(context.Context, string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: -32002, Message: "not found"}
}
func (echoAdapter) ListPrompts(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"prompts":[]}`), nil
}
func (echoAdapter) GetPrompt(context.Context, string, map[string]string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: -32602, Message: "no prompts"}
}
func (echoAdapter) Health(context.Context) error { return nil }
func (echoAdapter) CallToolV2(context.Context, *plugins.ToolCall, *plugins.CallEvents) (json.RawMessage, error) {
	return echoResult, nil
}
func (e echoAdapter) GetPromptV2(ctx context.Context, name string, args map[string]string, _ *plugins.RequestExtra) (json.RawMessage, error) {
	return e.GetPrompt(ctx, name, args)
}
func (e echoAdapter) ReadResourceV2(ctx context.Context, uri string, _ *plugins.RequestExtra) (json.RawMessage, error) {
	return e.ReadResource(ctx, uri)
}
