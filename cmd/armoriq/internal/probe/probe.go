// Package probe asks an MCP server which tools it offers: initialize, then
// tools/list, over Streamable HTTP with a fallback to the legacy HTTP+SSE
// transport. `armoriq validate --online` and `armoriq init` use it.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Server is what the probe needs to reach one MCP server.
type Server struct {
	URL     string
	Headers http.Header // credentials, already resolved
}

// Result is what a server answered.
type Result struct {
	Name      string   // the server's self-reported name
	Transport string   // "streamable" or "sse"
	Tools     []string // tool names, sorted
	// Details are the tools with what their MCP annotations say, in the
	// order of Tools.
	Details []Tool
}

// Tool is one tool and its MCP annotations: hints the server gives about
// what a call may do, with the spec's defaults where it gives none (a tool
// may write, may destroy, and reaches an open world unless it says
// otherwise). They are the server's claims, not guarantees.
type Tool struct {
	Name        string
	ReadOnly    bool // readOnlyHint: the tool does not modify its environment
	Destructive bool // destructiveHint (default true): it may delete or overwrite; meaningful when not read-only
	OpenWorld   bool // openWorldHint (default true): it reaches beyond the server (the web, other systems)
	Annotated   bool // the server sent annotations at all
}

// Effects describes t in a few words for a comment: "read-only", or what
// it may do ("destructive, open world").
func (t Tool) Effects() string {
	if t.ReadOnly {
		return "read-only"
	}
	var parts []string
	if t.Destructive {
		parts = append(parts, "destructive")
	} else {
		parts = append(parts, "writes, not destructive")
	}
	if t.OpenWorld {
		parts = append(parts, "open world")
	} else {
		parts = append(parts, "closed world")
	}
	s := strings.Join(parts, ", ")
	if !t.Annotated {
		s = "no annotations: " + s + " (the MCP defaults)"
	}
	return s
}

// Tools connects to s, lists its tools and disconnects. The whole exchange
// is bounded by timeout. The error says what failed with each transport.
func Tools(ctx context.Context, s Server, timeout time.Duration, version string) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The SDK may take its time to tear a failed session down after the
	// context ends; the caller is answered at the deadline regardless.
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := tools(ctx, s, timeout, version)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		return nil, fmt.Errorf("no answer within %s", timeout)
	}
}

func tools(ctx context.Context, s Server, timeout time.Duration, version string) (*Result, error) {
	hc := &http.Client{Transport: headerTransport{h: s.Headers, base: http.DefaultTransport}}
	client := mcp.NewClient(&mcp.Implementation{Name: "armoriq", Version: version}, nil)

	res, err := list(ctx, client, &mcp.StreamableClientTransport{Endpoint: s.URL, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true})
	if err == nil {
		res.Transport = "streamable"
		return res, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("no answer within %s", timeout)
	}
	res, sseErr := list(ctx, client, &mcp.SSEClientTransport{Endpoint: s.URL, HTTPClient: hc})
	if sseErr == nil {
		res.Transport = "sse"
		return res, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("no answer within %s", timeout)
	}
	return nil, errors.New(shorten(err))
}

func list(ctx context.Context, client *mcp.Client, t mcp.Transport) (*Result, error) {
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	res := &Result{}
	if ir := cs.InitializeResult(); ir != nil && ir.ServerInfo != nil {
		res.Name = ir.ServerInfo.Name
	}
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		res.Details = append(res.Details, toolOf(tool))
	}
	sort.Slice(res.Details, func(i, j int) bool { return res.Details[i].Name < res.Details[j].Name })
	for _, t := range res.Details {
		res.Tools = append(res.Tools, t.Name)
	}
	return res, nil
}

func toolOf(t *mcp.Tool) Tool {
	out := Tool{Name: t.Name, Destructive: true, OpenWorld: true}
	if a := t.Annotations; a != nil {
		out.Annotated = true
		out.ReadOnly = a.ReadOnlyHint
		if a.DestructiveHint != nil {
			out.Destructive = *a.DestructiveHint
		}
		if a.OpenWorldHint != nil {
			out.OpenWorld = *a.OpenWorldHint
		}
	}
	return out
}

// shorten keeps an error readable on one line, without the SDK's layers.
func shorten(err error) string {
	s := err.Error()
	for _, p := range []string{`calling "initialize": `, `sending "initialize": `, "rejected by transport: "} {
		s = strings.Replace(s, p, "", 1)
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// headerTransport adds fixed headers (credentials) to every request.
type headerTransport struct {
	h    http.Header
	base http.RoundTripper
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(t.h) == 0 {
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	for k, vs := range t.h {
		r.Header[k] = vs
	}
	return t.base.RoundTrip(r)
}
