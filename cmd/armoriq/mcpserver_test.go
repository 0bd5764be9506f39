package main

import (
	"context"
	"net"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdMCPServer runs a real MCP server (the go-sdk's) inside the test
// process for the length of a script:
//
//	mcpserver [-sse] VAR [tool[:hint,...]...]
//
// It listens on 127.0.0.1 on a free port, serves the given tools (default:
// echo and add) over Streamable HTTP (or the legacy HTTP+SSE transport with
// -sse), and sets $VAR to its URL. It stops when the script ends. A tool's
// hints are its MCP annotations: ro (readOnlyHint), destructive or safe
// (destructiveHint true or false), open or closed (openWorldHint); a tool
// without hints has no annotations.
func cmdMCPServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! mcpserver")
	}
	sse := len(args) > 0 && args[0] == "-sse"
	if sse {
		args = args[1:]
	}
	if len(args) < 1 {
		ts.Fatalf("usage: mcpserver [-sse] VAR [tool...]")
	}
	name, tools := args[0], args[1:]
	if len(tools) == 0 {
		tools = []string{"echo", "add"}
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "script-server", Version: "v0.0.1"}, nil)
	for _, spec := range tools {
		t, hints, annotated := strings.Cut(spec, ":")
		tool := &mcp.Tool{Name: t, Description: "test tool " + t, InputSchema: map[string]any{"type": "object"}}
		if annotated {
			a := &mcp.ToolAnnotations{}
			yes, no := true, false
			for _, h := range strings.Split(hints, ",") {
				switch h {
				case "ro":
					a.ReadOnlyHint = true
				case "destructive":
					a.DestructiveHint = &yes
				case "safe":
					a.DestructiveHint = &no
				case "open":
					a.OpenWorldHint = &yes
				case "closed":
					a.OpenWorldHint = &no
				default:
					ts.Fatalf("mcpserver: tool %s: unknown hint %q (want ro, destructive, safe, open, closed)", t, h)
				}
			}
			tool.Annotations = a
		}
		srv.AddTool(tool,
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
			})
	}
	var h http.Handler
	if sse {
		h = mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	} else {
		h = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	hs := &http.Server{Handler: h}
	go hs.Serve(l)
	ts.Defer(func() { hs.Close() })
	ts.Setenv(name, "http://"+l.Addr().String()+"/mcp")
	ts.Logf("mcpserver %s at %s serving %s", name, l.Addr(), strings.Join(tools, ", "))
}

// cmdDeadURL sets VAR to a URL on 127.0.0.1 where nothing listens.
//
//	deadurl VAR
func cmdDeadURL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: deadurl VAR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	addr := l.Addr().String()
	l.Close()
	ts.Setenv(args[0], "http://"+addr+"/mcp")
}
