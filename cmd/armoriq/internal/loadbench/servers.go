package loadbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// EchoTool is the bench server's tool: it answers its "text" argument,
// a small fixed answer that costs the server next to nothing.
const EchoTool = "echo"

// NewEchoServer is the MCP server the bench measures against ("armoriq
// demo-server bench"): one tool, echo, that answers its text.
func NewEchoServer(version string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "bench-mcp", Title: "Echo (armoriq bench)", Version: version}, nil)
	s.AddTool(&mcp.Tool{
		Name:        EchoTool,
		Description: "Answers its text (the load benchmark's tool).",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`),
	}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var in struct {
			Text string `json:"text"`
		}
		if len(req.Params.Arguments) > 0 {
			if err := json.Unmarshal(req.Params.Arguments, &in); err != nil {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "arguments: " + err.Error()}}}, nil
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil
	})
	return s
}

// ServeHTTP serves h on addr until ctx is done, writing its URL (with
// path) to readyFile, if set, once it listens.
func ServeHTTP(ctx context.Context, addr, path, readyFile string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if readyFile != "" {
		if err := writeReady(readyFile, "http://"+ln.Addr().String()+path); err != nil {
			srv.Close()
			return err
		}
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		srv.Close()
		return nil
	}
}

// EchoHandler serves NewEchoServer over Streamable HTTP, stateless, as
// most remote MCP servers run.
func EchoHandler(version string) http.Handler {
	srv := NewEchoServer(version)
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
}

// ProxyHandler is a plain reverse proxy to target: the floor of one extra
// hop, with nothing checked or recorded.
func ProxyHandler(target string) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("proxy target %q is not an http(s) URL", target)
	}
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	p.Transport = tr
	p.FlushInterval = -1 // event streams are passed on as they come
	return p, nil
}

// writeReady writes line to path atomically: a reader sees nothing or the
// whole line.
func writeReady(path, line string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(tmp, line)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %v", path, err)
	}
	return nil
}

// errNotReady says a child did not write its ready file in time.
var errNotReady = errors.New("did not get ready")
