package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins/stdioserver"
)

// upstream is a real MCP server the tests put behind the adapters.
type upstream struct {
	server      *mcp.Server
	inFlight    atomic.Int32
	maxInFlight atomic.Int32
	cancelled   atomic.Int32 // slow calls whose context ended early
	// version is the Mcp-Protocol-Version header of the last HTTP request:
	// the version the client negotiated.
	version atomic.Value
}

type echoIn struct {
	Text string `json:"text"`
}
type addIn struct {
	A int `json:"a"`
	B int `json:"b"`
}
type slowIn struct {
	MS    int `json:"ms"`
	Steps int `json:"steps,omitempty"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func newUpstream(opts *mcp.ServerOptions) *upstream {
	u := &upstream{server: mcp.NewServer(&mcp.Implementation{Name: "test-upstream", Version: "1"}, opts)}
	mcp.AddTool(u.server, &mcp.Tool{Name: "echo", Description: "echo text"},
		func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return text(in.Text), nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "add", Description: "add two numbers"},
		func(ctx context.Context, req *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, any, error) {
			return text(fmt.Sprint(in.A + in.B)), nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "slow", Description: "take ms milliseconds, reporting progress in steps"},
		func(ctx context.Context, req *mcp.CallToolRequest, in slowIn) (*mcp.CallToolResult, any, error) {
			n := u.inFlight.Add(1)
			defer u.inFlight.Add(-1)
			for {
				m := u.maxInFlight.Load()
				if n <= m || u.maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			steps := max(in.Steps, 1)
			for i := range steps {
				if tok := req.Params.GetProgressToken(); tok != nil && in.Steps > 0 {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: tok, Progress: float64(i + 1), Total: float64(steps), Message: fmt.Sprintf("step %d", i+1),
					})
				}
				select {
				case <-time.After(time.Duration(in.MS) * time.Millisecond / time.Duration(steps)):
				case <-ctx.Done():
					u.cancelled.Add(1)
					return nil, nil, ctx.Err()
				}
			}
			return text("done"), nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "meta", Description: "the request's _meta and client capabilities, as JSON"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			b, _ := json.Marshal(map[string]any{"meta": req.Params.Meta, "caps": req.ClientCapabilities()})
			return text(string(b)), nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "logs", Description: "log three messages, then answer"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			for i := range 3 {
				_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "test", Data: fmt.Sprintf("message %d", i+1)})
			}
			return text("logged"), nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "ask", Description: "ask the client's name (SEP-2322), then greet"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			if r, ok := req.Params.InputResponses["name"].(*mcp.ElicitResult); ok && r.Action == "accept" {
				return text(fmt.Sprintf("Hello, %v (state %s)", r.Content["name"], req.Params.RequestState)), nil, nil
			}
			return &mcp.CallToolResult{
				InputRequests: mcp.InputRequestMap{"name": &mcp.ElicitParams{Message: "Your name?", RequestedSchema: &jsonschema.Schema{
					Type: "object", Properties: map[string]*jsonschema.Schema{"name": {Type: "string"}}}}},
				RequestState: "s1",
			}, nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "elicit", Description: "ask the client's name with elicitation/create, then greet"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Your name?", RequestedSchema: &jsonschema.Schema{
				Type: "object", Properties: map[string]*jsonschema.Schema{"name": {Type: "string"}}}})
			if err != nil {
				return nil, nil, err
			}
			return text(fmt.Sprintf("Hello, %v", res.Content["name"])), nil, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "pid", Description: "the server's process id"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return text(fmt.Sprint(os.Getpid())), nil, nil
		})
	u.server.AddResource(&mcp.Resource{URI: "test://greeting", Name: "greeting", MIMEType: "text/plain"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "hello"}}}, nil
		})
	u.server.AddResource(&mcp.Resource{URI: "test://big", Name: "big", MIMEType: "text/plain"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: strings.Repeat("x", bigSize)}}}, nil
		})
	u.server.AddPrompt(&mcp.Prompt{Name: "greet", Arguments: []*mcp.PromptArgument{{Name: "name", Required: true}}},
		func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "Hello, " + req.Params.Arguments["name"]}}}}, nil
		})
	return u
}

// bigSize is the size of test://big: more than gRPC's default 4 MiB limit.
const bigSize = 6 << 20

const upstreamToken = "s3cret-upstream-token"

// serveHTTP serves u over Streamable HTTP on 127.0.0.1, requiring
// "Authorization: Bearer upstreamToken".
func (u *upstream) serveHTTP(t testing.TB, stateless bool) string {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server },
		&mcp.StreamableHTTPOptions{Stateless: stateless})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+upstreamToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if v := r.Header.Get("Mcp-Protocol-Version"); v != "" {
			u.version.Store(v)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// serveStdio serves the test upstream on stdin/stdout: the test binary's
// role as a stdio MCP server.
func serveStdio() error {
	u := newUpstream(nil)
	// Only the stdio server, a process of its own, can crash on demand.
	mcp.AddTool(u.server, &mcp.Tool{Name: "exit", Description: "exit the server process"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			os.Exit(3)
			return nil, nil, nil
		})
	return u.server.Run(context.Background(), stdioserver.Transport())
}
