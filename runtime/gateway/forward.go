package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Upstream reaches MCP servers. The plugin host (NewAdapterUpstream) is the
// production implementation; httpUpstream is an in-process Streamable HTTP
// one for http servers only.
//
// Calls return MCP results as the JSON the specification defines. A JSON-RPC
// error answered by the upstream server comes back as an *Error wrapping a
// *plugins.RPCError, so the MCP endpoint can hand it on unchanged.
type Upstream interface {
	// CallTool calls tool on srv with args and returns the MCP
	// CallToolResult as JSON. The request's _meta and retry answers, and
	// the hooks for progress and log messages, come from the
	// upstreamRequest set on ctx with withUpstreamRequest, if any.
	CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error)
	// ListTools returns every tool of srv (all pages).
	ListTools(ctx context.Context, srv bundle.Server) ([]*mcp.Tool, error)
	// ListResources returns every resource of srv (all pages).
	ListResources(ctx context.Context, srv bundle.Server) ([]*mcp.Resource, error)
	// ReadResource returns srv's ReadResourceResult for uri as JSON (with
	// the extras of the upstreamRequest on ctx, as CallTool).
	ReadResource(ctx context.Context, srv bundle.Server, uri string) (json.RawMessage, error)
	// ListPrompts returns every prompt of srv (all pages).
	ListPrompts(ctx context.Context, srv bundle.Server) ([]*mcp.Prompt, error)
	// GetPrompt returns srv's GetPromptResult as JSON (with the extras of
	// the upstreamRequest on ctx, as CallTool).
	GetPrompt(ctx context.Context, srv bundle.Server, name string, args map[string]string) (json.RawMessage, error)
	// Status reports each configured server's condition, by server id.
	Status() []UpstreamStatus
	// Sync is told the server catalogue of each newly activated bundle.
	Sync(ctx context.Context, servers []bundle.Server) error
	Close() error
}

// UpstreamStatus is one upstream server's condition, for the bundle status
// and the metrics.
type UpstreamStatus struct {
	ID        string
	Transport string
	State     string // starting, up, down, failed
	LastError string
	Restarts  int
	PID       int // of the adapter process, when there is one
	Contract  int // the adapter contract version it speaks while up (0: no adapter)
	// RawCalls and SDKCalls count tools/calls by the path they took in the
	// adapter: forwarded as bytes (contract 3), or through its MCP client.
	RawCalls, SDKCalls int64
}

// upstreamRequest is what an MCP client's request carries to the upstream
// besides its name and arguments (its _meta, a multi-round-trip retry's
// answers), and the hooks that receive what the upstream sends during a
// tool call. The MCP endpoint puts it on the context of the Upstream call;
// the adapter upstream passes it on under contract versions 2 and 3.
type upstreamRequest struct {
	// meta is a tools/call's _meta as the client sent it, with the
	// gateway's own keys (dropped on the way); nil for none. It is shared:
	// never modified.
	meta map[string]any
	// extra: for a tools/call its retry's answers and state; for the
	// other requests the _meta too, as the upstream gets it.
	extra plugins.RequestExtra
	// traceparent and tracestate: the call's W3C trace context, which the
	// upstream gets in _meta (and an HTTP one as headers).
	traceparent, tracestate string

	progress func(plugins.Progress)
	log      func(plugins.LogMessage)
	// request relays the upstream's server-to-client requests to the
	// client (nil: refused).
	request func(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)
}

type upstreamRequestKey struct{}

// withUpstreamRequest returns ctx carrying r for the Upstream call made
// with it.
func withUpstreamRequest(ctx context.Context, r *upstreamRequest) context.Context {
	return context.WithValue(ctx, upstreamRequestKey{}, r)
}

// metaMap is the _meta a tools/call passes on: the client's, less the
// gateway's own keys (forwardMeta), plus the trace context; a new map, nil
// for none.
func (r *upstreamRequest) metaMap() map[string]any {
	m := make(map[string]any, len(r.meta)+2)
	for k, v := range r.meta {
		if k != metaIntent && k != "progressToken" {
			m[k] = v
		}
	}
	if r.traceparent != "" {
		m["traceparent"] = r.traceparent
		if r.tracestate != "" {
			m["tracestate"] = r.tracestate
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// legacyClient reports whether the call's client speaks the initialize
// handshake, or is no MCP client at all (POST /invoke): see legacyMeta.
func (r *upstreamRequest) legacyClient() bool { return legacyMeta(r.meta) }

// legacyMeta reports whether a request whose _meta is meta comes from a
// client of the initialize handshake (protocol 2025-11-25 or earlier), or
// from none (POST /invoke): its _meta names no protocol version of
// 2026-07-28 or later, which every request of that era carries (SEP-2575).
func legacyMeta(meta map[string]any) bool {
	v, _ := meta[plugins.MetaProtocolVersion].(string)
	return v < plugins.FirstStatelessVersion
}

// requestExtra is the extras of the request for contract version 2: its
// _meta as JSON (a tools/call's built by metaMap).
func (r *upstreamRequest) requestExtra() plugins.RequestExtra {
	x := r.extra
	if x.Meta == nil {
		if m := r.metaMap(); m != nil {
			x.Meta, _ = json.Marshal(m)
		}
	}
	return x
}

// upstreamRequestFrom returns the request set on ctx, or an empty one.
func upstreamRequestFrom(ctx context.Context) *upstreamRequest {
	if r, ok := ctx.Value(upstreamRequestKey{}).(*upstreamRequest); ok && r != nil {
		return r
	}
	return &upstreamRequest{}
}

// httpUpstream forwards over MCP Streamable HTTP, keeping one client session
// per server and reconnecting when a session fails.
type httpUpstream struct {
	client  *mcp.Client
	http    *http.Client
	getenv  func(string) string
	mu      sync.Mutex
	session map[string]*mcp.ClientSession // by server id
	config  map[string]bundle.Server
	lastErr map[string]string // the last transport failure, by server id
}

// NewHTTPUpstream returns an Upstream that speaks Streamable HTTP to each
// server's URL, resolving credentials from getenv (nil: os.Getenv) when it
// connects.
func NewHTTPUpstream(getenv func(string) string) Upstream {
	if getenv == nil {
		getenv = os.Getenv
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &httpUpstream{
		client:  mcp.NewClient(&mcp.Implementation{Name: "armoriq-gateway", Version: "1"}, nil),
		http:    &http.Client{Transport: tr},
		getenv:  getenv,
		session: make(map[string]*mcp.ClientSession),
		config:  make(map[string]bundle.Server),
		lastErr: make(map[string]string),
	}
}

func (u *httpUpstream) Sync(ctx context.Context, servers []bundle.Server) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	want := make(map[string]bundle.Server, len(servers))
	for _, s := range servers {
		want[s.ID] = s
	}
	for id, cs := range u.session {
		if s, ok := want[id]; !ok || !sameServer(s, u.config[id]) {
			cs.Close()
			delete(u.session, id)
		}
	}
	for id := range u.lastErr {
		if s, ok := want[id]; !ok || !sameServer(s, u.config[id]) {
			delete(u.lastErr, id)
		}
	}
	u.config = want
	return nil
}

func sameServer(a, b bundle.Server) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func (u *httpUpstream) sessionFor(ctx context.Context, srv bundle.Server) (*mcp.ClientSession, error) {
	u.mu.Lock()
	cs := u.session[srv.ID]
	u.mu.Unlock()
	if cs != nil {
		return cs, nil
	}
	if srv.Transport != "" && srv.Transport != "http" {
		return nil, errorf(KindUnavailable, "server %q uses transport %q, which needs the adapter host", srv.ID, srv.Transport)
	}
	hc := u.http
	if srv.Auth != nil {
		header, value, err := authHeader(srv.Auth, u.getenv)
		if err != nil {
			return nil, &Error{Kind: KindUnavailable, Message: fmt.Sprintf("server %q: %v", srv.ID, err)}
		}
		hc = &http.Client{Transport: headerTransport{base: u.http.Transport, name: header, value: value}}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cs, err := u.client.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: srv.URL, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("cannot connect to MCP server %q", srv.ID), Err: err}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if old := u.session[srv.ID]; old != nil {
		cs.Close()
		return old, nil
	}
	u.session[srv.ID] = cs
	return cs, nil
}

func (u *httpUpstream) drop(id string, cs *mcp.ClientSession) {
	u.mu.Lock()
	if u.session[id] == cs {
		delete(u.session, id)
	}
	u.mu.Unlock()
	cs.Close()
}

// do runs f on srv's session. A JSON-RPC error is the server's answer and
// is returned as such; a broken session is dropped and, for an idempotent
// f, retried once on a fresh one.
func (u *httpUpstream) do(ctx context.Context, srv bundle.Server, idempotent bool, f func(*mcp.ClientSession) (any, error)) (any, error) {
	for attempt := 0; ; attempt++ {
		cs, err := u.sessionFor(ctx, srv)
		if err != nil {
			u.setErr(srv.ID, err)
			return nil, err
		}
		res, err := f(cs)
		if err == nil {
			u.setErr(srv.ID, nil)
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var werr *jsonrpc.Error
		if errors.As(err, &werr) {
			return nil, upstreamRPCError(srv.ID, &plugins.RPCError{Code: werr.Code, Message: werr.Message, Data: werr.Data})
		}
		// A broken session (server restarted, connection lost): drop it
		// and retry once with a fresh one.
		u.drop(srv.ID, cs)
		u.setErr(srv.ID, err)
		if idempotent && attempt == 0 {
			continue
		}
		return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q failed", srv.ID), Err: err}
	}
}

func (u *httpUpstream) setErr(id string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err == nil {
		delete(u.lastErr, id)
		return
	}
	u.lastErr[id] = err.Error()
}

func (u *httpUpstream) CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error) {
	params := &mcp.CallToolParams{Name: tool, Arguments: args}
	res, err := u.do(ctx, srv, false, func(cs *mcp.ClientSession) (any, error) { return cs.CallTool(ctx, params) })
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

func (u *httpUpstream) ListTools(ctx context.Context, srv bundle.Server) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	cursor := ""
	for {
		res, err := u.do(ctx, srv, true, func(cs *mcp.ClientSession) (any, error) {
			return cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		})
		if err != nil {
			return nil, err
		}
		page := res.(*mcp.ListToolsResult)
		out = append(out, page.Tools...)
		if cursor = page.NextCursor; cursor == "" {
			return out, nil
		}
	}
}

func (u *httpUpstream) ListResources(ctx context.Context, srv bundle.Server) ([]*mcp.Resource, error) {
	var out []*mcp.Resource
	cursor := ""
	for {
		res, err := u.do(ctx, srv, true, func(cs *mcp.ClientSession) (any, error) {
			return cs.ListResources(ctx, &mcp.ListResourcesParams{Cursor: cursor})
		})
		if err != nil {
			return nil, err
		}
		page := res.(*mcp.ListResourcesResult)
		out = append(out, page.Resources...)
		if cursor = page.NextCursor; cursor == "" {
			return out, nil
		}
	}
}

func (u *httpUpstream) ReadResource(ctx context.Context, srv bundle.Server, uri string) (json.RawMessage, error) {
	res, err := u.do(ctx, srv, true, func(cs *mcp.ClientSession) (any, error) {
		return cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

func (u *httpUpstream) ListPrompts(ctx context.Context, srv bundle.Server) ([]*mcp.Prompt, error) {
	var out []*mcp.Prompt
	cursor := ""
	for {
		res, err := u.do(ctx, srv, true, func(cs *mcp.ClientSession) (any, error) {
			return cs.ListPrompts(ctx, &mcp.ListPromptsParams{Cursor: cursor})
		})
		if err != nil {
			return nil, err
		}
		page := res.(*mcp.ListPromptsResult)
		out = append(out, page.Prompts...)
		if cursor = page.NextCursor; cursor == "" {
			return out, nil
		}
	}
}

func (u *httpUpstream) GetPrompt(ctx context.Context, srv bundle.Server, name string, args map[string]string) (json.RawMessage, error) {
	res, err := u.do(ctx, srv, true, func(cs *mcp.ClientSession) (any, error) {
		return cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: name, Arguments: args})
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// Status reports an http server as up unless its last call failed to reach
// it: there is no process to watch.
func (u *httpUpstream) Status() []UpstreamStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]UpstreamStatus, 0, len(u.config))
	for id, sv := range u.config {
		st := UpstreamStatus{ID: id, Transport: sv.Transport, State: "up"}
		if e, ok := u.lastErr[id]; ok {
			st.State, st.LastError = "down", e
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// upstreamRPCError is the gateway's error for a JSON-RPC error the upstream
// answered with; it unwraps to the *plugins.RPCError.
func upstreamRPCError(id string, e *plugins.RPCError) *Error {
	return &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q refused the call: %s", id, e.Message), Err: e}
}

func (u *httpUpstream) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, cs := range u.session {
		cs.Close()
		delete(u.session, id)
	}
	return nil
}

// authHeader resolves a server's credential from its $VAR reference.
func authHeader(a *bundle.Auth, getenv func(string) string) (name, value string, err error) {
	ref := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(a.ValueRef, "$"), "{"), "}")
	v := getenv(ref)
	if v == "" {
		return "", "", fmt.Errorf("credential variable %s is not set", ref)
	}
	switch a.Type {
	case "bearer":
		return "Authorization", "Bearer " + v, nil
	case "api_key":
		h := a.HeaderName
		if h == "" {
			h = "X-API-Key"
		}
		return h, v, nil
	default:
		return "", "", fmt.Errorf("unknown auth type %q", a.Type)
	}
}

type headerTransport struct {
	base        http.RoundTripper
	name, value string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(t.name, t.value)
	return t.base.RoundTrip(r)
}
