package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Upstream reaches MCP servers. The plugin host implements it in production;
// httpUpstream is the in-process Streamable HTTP implementation.
type Upstream interface {
	// CallTool calls tool on srv with args and returns the MCP
	// CallToolResult as JSON.
	CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error)
	// Sync is told the server catalogue of each newly activated bundle.
	Sync(ctx context.Context, servers []bundle.Server) error
	Close() error
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

func (u *httpUpstream) CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error) {
	for attempt := 0; ; attempt++ {
		cs, err := u.sessionFor(ctx, srv)
		if err != nil {
			return nil, err
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var rpcErr interface{ Error() string }
			if errors.As(err, &rpcErr) && isProtocolError(err) {
				return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q refused the call: %v", srv.ID, err)}
			}
			// A broken session (server restarted, connection lost): drop it
			// and retry once with a fresh one.
			u.drop(srv.ID, cs)
			if attempt == 0 {
				continue
			}
			return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q failed", srv.ID), Err: err}
		}
		return json.Marshal(res)
	}
}

// isProtocolError reports whether err is a JSON-RPC error answered by the
// server (the session is fine), rather than a transport failure.
func isProtocolError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "calling \"tools/call\"") && !strings.Contains(s, "connection") && !strings.Contains(s, "EOF") && !strings.Contains(s, "session")
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
