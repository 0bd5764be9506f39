package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/mcpadapter"
	"github.com/armoriq/controlplane/plugins/stdioserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The test binary doubles as the programs the gateway runs: re-executed
// with ARMORIQ_TEST_ADAPTER set it serves an adapter (as "armoriq adapter"
// does), with ARMORIQ_TEST_STDIO_SERVER set an MCP server on stdio.
func TestMain(m *testing.M) {
	if v := os.Getenv("ARMORIQ_TEST_STDIO_SERVER"); v != "" {
		srv := testMCPServer("stdio-upstream")
		if v == "asker" {
			srv = askerServer()
		}
		if err := srv.Run(context.Background(), stdioserver.Transport()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if addrFile := os.Getenv("ARMORIQ_TEST_HTTP_SERVER"); addrFile != "" {
		serveHTTPUpstream(addrFile)
		os.Exit(0)
	}
	if mode := os.Getenv("ARMORIQ_TEST_ADAPTER"); mode != "" {
		transport := os.Args[len(os.Args)-1]
		var a *mcpadapter.Adapter
		if transport == plugins.TransportStdio {
			a = mcpadapter.NewStdio()
		} else {
			a = mcpadapter.NewHTTP()
		}
		if mode == "crashy" {
			plugins.Serve(crashyAdapter{a})
		} else {
			plugins.Serve(a)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveHTTPUpstream serves testMCPServer over Streamable HTTP (stateless,
// both protocol eras) on a loopback port it writes to addrFile, until its
// stdin closes.
func serveHTTPUpstream(addrFile string) {
	srv := testMCPServer("web")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
	go http.Serve(ln, h)
	if err := os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	io.Copy(io.Discard, os.Stdin)
}

// crashyAdapter is an adapter that dies in the middle of a call to the
// tool "crash", as a buggy custom adapter would.
type crashyAdapter struct{ *mcpadapter.Adapter }

func (c crashyAdapter) CallTool(ctx context.Context, name string, args json.RawMessage, progress func(plugins.Progress)) (json.RawMessage, error) {
	if name == "crash" {
		os.Exit(3)
	}
	return c.Adapter.CallTool(ctx, name, args, progress)
}

// CallToolV2 overrides the embedded adapter's too: the host calls it under
// contract version 2.
func (c crashyAdapter) CallToolV2(ctx context.Context, call *plugins.ToolCall, ev *plugins.CallEvents) (json.RawMessage, error) {
	if call.Name == "crash" {
		os.Exit(3)
	}
	return c.Adapter.CallToolV2(ctx, call, ev)
}

// CallRaw overrides the embedded adapter's as well: the host calls it
// under contract version 3.
func (c crashyAdapter) CallRaw(ctx context.Context, call *plugins.RawCall, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	if call.Name == "crash" {
		os.Exit(3)
	}
	return c.Adapter.CallRaw(ctx, call, ev)
}

// testMCPServer is the upstream MCP server of the adapter tests: echo,
// add, a "crash" tool (harmless upstream, fatal in crashyAdapter), a
// resource and a prompt.
func testMCPServer(name string) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	type echoIn struct {
		Text string `json:"text"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "echo text"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + ": " + in.Text}}}, nil, nil
	})
	type addIn struct {
		A float64 `json:"a"`
		B float64 `json:"b"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "add", Description: "add numbers"}, func(ctx context.Context, req *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint(in.A + in.B)}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "crash", Description: "crashes a crashy adapter"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "survived"}}}, nil, nil
	})
	srv.AddResource(&mcp.Resource{URI: "test://" + name + "/readme", Name: "readme", MIMEType: "text/plain"}, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "hello from " + name}}}, nil
	})
	srv.AddPrompt(&mcp.Prompt{Name: "greet", Description: "a greeting", Arguments: []*mcp.PromptArgument{{Name: "who", Required: true}}}, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello " + req.Params.Arguments["who"]}}}}, nil
	})
	return srv
}
