package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins/rawconn"
	"github.com/armoriq/controlplane/runtime/httpfront"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// upstreamServer starts a real MCP server (the official Go SDK, Streamable
// HTTP) with a few tools, and returns its URL. Every tool execution adds
// one to execs: what "no audit, no action" is checked against.
func upstreamServer(t testing.TB, execs *atomic.Int64) (url string, release chan struct{}) {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "test-upstream", Version: "1"}, nil)
	srv.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method == "tools/call" {
				execs.Add(1)
			}
			return next(ctx, method, req)
		}
	})
	type echoIn struct {
		Text string `json:"text"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "echo text"}, func(ctx context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Text}}}, nil, nil
	})
	type addIn struct {
		A float64 `json:"a"`
		B float64 `json:"b"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "add", Description: "add numbers"}, func(ctx context.Context, req *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint(in.A + in.B)}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "pay", Description: "pays an amount"}, func(ctx context.Context, req *mcp.CallToolRequest, in map[string]any) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint("paid ", in["amount"])}}}, nil, nil
	})
	release = make(chan struct{})
	mcp.AddTool(srv, &mcp.Tool{Name: "slow", Description: "waits until released"}, func(ctx context.Context, req *mcp.CallToolRequest, in struct{}) (*mcp.CallToolResult, any, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL, release
}

// testGateway is a real gateway on a real SQLite file behind httptest.
type testGateway struct {
	t        testing.TB
	srv      *Server
	http     *httptest.Server // its listener served by front, as armoriq gateway serves
	front    *httpfront.Server
	store    store.Store
	signKey  ed25519.PrivateKey
	signID   string
	adminKey string
	agentKey string
	clock    *fakeClock
	upstream string
	release  chan struct{}
	dbPath   string       // the SQLite file, when the harness opened the store
	execs    atomic.Int64 // tool executions the upstream saw
}

type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type gatewayOpt func(*Config)

func newTestGateway(t testing.TB, st store.Store, opts ...gatewayOpt) *testGateway {
	t.Helper()
	ctx := context.Background()
	var dbPath string
	if st == nil {
		var err error
		dbPath = filepath.Join(t.TempDir(), "armoriq.db")
		st, err = store.OpenSQLite(ctx, dbPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	id := bundle.KeyID(pub)
	g := &testGateway{t: t, store: st, signKey: priv, signID: id, clock: &fakeClock{}, dbPath: dbPath}
	g.upstream, g.release = upstreamServer(t, &g.execs)
	cfg := Config{
		Store:       st,
		TrustedKeys: map[string]ed25519.PublicKey{id: pub},
		Upstream:    NewHTTPUpstream(func(string) string { return "" }),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:         g.clock.now,
		CallTimeout: 5 * time.Second,
		BundlePoll:  -1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := NewServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	// The gateway's own front (runtime/httpfront) over raw sockets, as
	// armoriq gateway serves: every test of the package, the official
	// SDKs' and the browser's included, goes through it.
	g.http = httptest.NewUnstartedServer(srv.Handler())
	g.http.URL = "http://" + g.http.Listener.Addr().String()
	g.front = httpfront.New(g.http.Config)
	go g.front.Serve(rawconn.Listen(g.http.Listener))
	t.Cleanup(func() {
		close(g.release)
		g.front.Close()
		g.http.Close()
		srv.Close()
		cfg.Upstream.Close()
	})
	admin, created, err := srv.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		g.adminKey = admin
	} else {
		// A second gateway on a shared store: mint its own admin key.
		full, kid, hash := store.GenerateAPIKey()
		if err := st.CreateAPIKey(ctx, store.APIKey{ID: kid, Name: "admin2", Role: store.RoleAdmin, SecretHash: hash, Last4: store.APIKeyLast4(full), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		g.adminKey = full
	}
	// The tests' agent key acts for many users on /mcp: it may assert
	// them in X-Armoriq-User.
	g.agentKey = g.createKeyWith(map[string]any{"name": "agent", "role": "agent", "assert_users": true})
	return g
}

func (g *testGateway) createKey(name, role string) string {
	g.t.Helper()
	return g.createKeyWith(map[string]any{"name": name, "role": role})
}

// createKeyWith creates a key with the admin API's body req.
func (g *testGateway) createKeyWith(req map[string]any) string {
	g.t.Helper()
	var out struct {
		Key string `json:"key"`
	}
	g.do("POST", "/v1/keys", g.adminKey, req, 201, &out)
	return out.Key
}

// testPolicy is the policy most tests run under.
func testPolicy() bundle.Policy {
	return bundle.Policy{
		Groups: []bundle.Group{{Name: "eng", Members: []string{"*@example.com"}}},
		Rules: []bundle.Rule{
			{ID: "policy.allow[0]", Effect: bundle.Allow, Tools: []string{"tools/echo"}},
			{ID: "policy.allow[1]", Effect: bundle.Allow, Tools: []string{"tools/add", "tools/slow", "other/*"}},
			{ID: "no-big-sums", Effect: bundle.Deny, Tools: []string{"tools/add"}, When: "args.a > 1000", Reason: "sums over 1000 need review", Pos: bundle.Pos{File: "armoriq.yaml", Line: 20, Col: 5}},
			{ID: "hold-eve", Effect: bundle.Hold, Tools: []string{"tools/echo"}, Users: []string{"eve@example.com"}, Reason: "eve's calls need approval"},
			{ID: "policy.deny[0]", Effect: bundle.Deny, Tools: []string{"tools/delete_*"}},
		},
	}
}

// pushBundle signs a bundle with the policy and servers and activates it.
func (g *testGateway) pushBundle(rev string, seq int64, pol bundle.Policy) {
	g.t.Helper()
	g.do("PUT", "/v1/bundle", g.adminKey, g.bundleBytes(rev, seq, pol, g.signKey, g.signID), 200, nil)
}

func (g *testGateway) bundleBytes(rev string, seq int64, pol bundle.Policy, key ed25519.PrivateKey, kid string) []byte {
	g.t.Helper()
	b := &bundle.Bundle{
		Manifest: bundle.Manifest{FormatVersion: bundle.FormatVersion, Revision: rev, Sequence: seq, Compiler: "test", CreatedAt: time.Unix(seq, 0).UTC()},
		Policy:   pol,
		Servers: []bundle.Server{
			{ID: "tools", Transport: "http", URL: g.upstream + "/", ToolPrefix: "conditional"},
			{ID: "other", Transport: "http", URL: g.upstream + "/", ToolPrefix: "conditional"},
		},
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b, key, kid); err != nil {
		g.t.Fatal(err)
	}
	return buf.Bytes()
}

// do sends a request and checks the status; body may be []byte, a value to
// encode as JSON, or nil. out, if non-nil, receives the decoded answer.
func (g *testGateway) do(method, path, key string, body any, wantStatus int, out any) http.Header {
	g.t.Helper()
	resp, data := g.send(method, path, key, body, nil)
	if resp.StatusCode != wantStatus {
		g.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			g.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
	return resp.Header
}

func (g *testGateway) send(method, path, key string, body any, hdr map[string]string) (*http.Response, []byte) {
	g.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			g.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, g.http.URL+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// sdkToken asks for a token like the SDK does and returns the raw answer.
func (g *testGateway) sdkToken(key, user string, steps ...map[string]any) (int, map[string]any) {
	g.t.Helper()
	return g.sdkTokenTTL(key, user, 60, steps...)
}

// sdkTokenTTL is sdkToken with expires_in ttl.
func (g *testGateway) sdkTokenTTL(key, user string, ttl float64, steps ...map[string]any) (int, map[string]any) {
	g.t.Helper()
	anySteps := make([]any, len(steps))
	for i, s := range steps {
		anySteps[i] = s
	}
	resp, data := g.send("POST", "/iap/sdk/token", key, map[string]any{
		"user_id": user, "agent_id": "agent-1", "context_id": "default",
		"plan": map[string]any{"goal": "test", "steps": anySteps}, "policy": nil, "expires_in": ttl,
	}, nil)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		g.t.Fatalf("token answer %s: %v", data, err)
	}
	return resp.StatusCode, out
}

// sdkInvoke calls /invoke exactly as @armoriq/sdk 0.2.6 builds the request.
func (g *testGateway) sdkInvoke(key string, tok map[string]any, mcpName, action string, params map[string]any, extra map[string]any) (*http.Response, map[string]any) {
	g.t.Helper()
	return g.sdkInvokeWith(map[string]string{"X-API-Key": key}, tok, mcpName, action, params, extra)
}

// sdkInvokeWith is sdkInvoke with the credentials in auth (headers).
func (g *testGateway) sdkInvokeWith(auth map[string]string, tok map[string]any, mcpName, action string, params map[string]any, extra map[string]any) (*http.Response, map[string]any) {
	g.t.Helper()
	body, hdr := sdkInvokeRequest(auth, tok, mcpName, action, params, extra)
	resp, data := g.send("POST", "/invoke", "", body, hdr)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		g.t.Fatalf("invoke answer %s: %v", data, err)
	}
	return resp, out
}

// sdkInvokeRequest is the body and headers of the SDK's POST /invoke.
func sdkInvokeRequest(auth map[string]string, tok map[string]any, mcpName, action string, params map[string]any, extra map[string]any) (map[string]any, map[string]string) {
	plan := tok["plan_echo"]
	raw := map[string]any{
		"plan": plan, "token": tok["token"], "plan_hash": tok["plan_hash"], "merkle_root": tok["merkle_root"],
		"intent_reference": tok["intent_reference"], "composite_identity": tok["composite_identity"], "step_proofs": tok["step_proofs"],
	}
	steps := plan.(map[string]any)["steps"].([]any)
	idx := -1
	for i, s := range steps {
		if s.(map[string]any)["action"] == action {
			idx = i
			break
		}
	}
	invokeParams := map[string]any{"_iam_context": map[string]any{"user_id": "u", "agent_id": "agent-1"}}
	for k, v := range params {
		invokeParams[k] = v
	}
	body := map[string]any{
		"mcp": mcpName, "action": action, "tool": action, "params": invokeParams, "arguments": invokeParams,
		"intent_token": raw, "plan": plan, "token": tok["token"], "csrg_token": tok["token"],
	}
	for k, v := range extra {
		body[k] = v
	}
	hdr := map[string]string{"Accept": "application/json, text/event-stream"}
	if idx >= 0 {
		proofs := tok["step_proofs"].([]any)
		p, _ := json.Marshal(proofs[idx])
		hdr["X-CSRG-Proof"] = string(p)
		hdr["X-CSRG-Path"] = fmt.Sprintf("/steps/[%d]/action", idx)
	}
	for k, v := range auth {
		hdr[k] = v
	}
	return body, hdr
}

// issue gets a token for steps and remembers the plan, as the SDK does.
func (g *testGateway) issue(user string, steps ...map[string]any) map[string]any {
	g.t.Helper()
	return g.issueTTL(user, 60, steps...)
}

// issueTTL is issue with a validity of ttl seconds.
func (g *testGateway) issueTTL(user string, ttl float64, steps ...map[string]any) map[string]any {
	g.t.Helper()
	status, tok := g.sdkTokenTTL(g.agentKey, user, ttl, steps...)
	if status != 200 {
		g.t.Fatalf("token: status %d: %v", status, tok)
	}
	anySteps := make([]any, len(steps))
	for i, s := range steps {
		anySteps[i] = s
	}
	// Round-trip through JSON so numbers look as the SDK would send them.
	var plan map[string]any
	j, _ := json.Marshal(map[string]any{"goal": "test", "steps": anySteps})
	json.Unmarshal(j, &plan)
	tok["plan_echo"] = plan
	return tok
}

func step(mcpName, action string, params map[string]any) map[string]any {
	s := map[string]any{"action": action, "mcp": mcpName}
	if params != nil {
		s["params"] = params
	}
	return s
}
