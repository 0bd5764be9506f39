package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// route names an upstream item behind an exposed name.
type route struct {
	server bundle.Server
	name   string // the upstream's own tool or prompt name
	// fast: a tool the fast path may call, one whose x-mcp-header
	// parameters (headers) it reads as the SDK does (mcp_headers.go).
	fast    bool
	headers []paramHeader
}

// catalog is the aggregated view of the active bundle's servers, and the
// SDK server that serves it.
type catalog struct {
	ab        *activeBundle
	sig       string // the upstreams' status when it was built
	built     time.Time
	partial   bool // some server could not be listed
	server    *mcp.Server
	tools     map[string]route
	prompts   map[string]route
	promptSeq []*mcp.Prompt
	resources []*mcp.Resource
	resByURI  map[string]bundle.Server
	listErr   map[string]string // by server id
}

// catalogs holds the current catalogue and rebuilds it: at once when the
// active bundle changed, in the background when an upstream's state did
// (or, after a partial listing, every refreshPartial).
type catalogs struct {
	ep         *mcpEndpoint
	cur        atomic.Pointer[catalog]
	mu         sync.Mutex // serializes synchronous builds
	rebuilding atomic.Bool
	checked    atomic.Int64 // unix nanos of the last status check
}

const (
	listTimeout    = 5 * time.Second
	statusEvery    = time.Second
	refreshPartial = 10 * time.Second
)

func (cs *catalogs) current(ctx context.Context) *catalog {
	ab := cs.ep.s.active.Load()
	c := cs.cur.Load()
	if c == nil || c.ab != ab {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if c = cs.cur.Load(); c == nil || c.ab != ab {
			c = cs.ep.build(context.WithoutCancel(ctx), ab)
			cs.cur.Store(c)
		}
		return c
	}
	now := time.Now()
	if last := cs.checked.Load(); now.UnixNano()-last > int64(statusEvery) && cs.checked.CompareAndSwap(last, now.UnixNano()) {
		stale := c.partial && now.Sub(c.built) > refreshPartial
		if stale || statusSig(cs.ep.s.cfg.Upstream.Status()) != c.sig {
			if cs.rebuilding.CompareAndSwap(false, true) {
				go func() {
					defer cs.rebuilding.Store(false)
					n := cs.ep.build(context.Background(), ab)
					cs.mu.Lock()
					if cur := cs.cur.Load(); cur == nil || cur.ab == ab {
						cs.cur.Store(n)
					}
					cs.mu.Unlock()
				}()
			}
		}
	}
	return c
}

// statusSig summarizes the upstreams' states: a change means the catalogue
// may have changed (a server came up, an adapter restarted).
func statusSig(sts []UpstreamStatus) string {
	var b strings.Builder
	for _, st := range sts {
		fmt.Fprintf(&b, "%s:%s:%d;", st.ID, st.State, st.Restarts)
	}
	return b.String()
}

// listing is what one server listed.
type listing struct {
	tools     []*mcp.Tool
	resources []*mcp.Resource
	prompts   []*mcp.Prompt
	err       error
}

// build lists every server of ab, in parallel, and assembles the
// catalogue. A server that cannot be listed contributes nothing; the
// others' tools are served all the same.
func (ep *mcpEndpoint) build(ctx context.Context, ab *activeBundle) *catalog {
	up := ep.s.cfg.Upstream
	sts := up.Status()
	c := &catalog{ab: ab, sig: statusSig(sts), built: time.Now(), tools: map[string]route{},
		prompts: map[string]route{}, resByURI: map[string]bundle.Server{}, listErr: map[string]string{}}
	var servers []bundle.Server
	if ab != nil {
		servers = ab.b.Servers
	}
	lists := make([]listing, len(servers))
	down := map[string]UpstreamStatus{}
	for _, st := range sts {
		if st.State == "down" || st.State == "failed" {
			down[st.ID] = st
		}
	}
	var wg sync.WaitGroup
	for i, sv := range servers {
		if st, ok := down[sv.ID]; ok {
			// Its adapter is not running: do not wait for it. The
			// catalogue is rebuilt when its state changes.
			lists[i].err = fmt.Errorf("adapter is %s: %s", st.State, st.LastError)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx, cancel := context.WithTimeout(ctx, listTimeout)
			defer cancel()
			l := &lists[i]
			if l.tools, l.err = up.ListTools(lctx, sv); l.err != nil {
				return
			}
			// Resources and prompts are optional capabilities: a server
			// without them answers "method not found".
			l.resources, _ = up.ListResources(lctx, sv)
			l.prompts, _ = up.ListPrompts(lctx, sv)
		}()
	}
	wg.Wait()

	// Names that more than one server uses, for tool_prefix conditional.
	toolCount, promptCount := map[string]int{}, map[string]int{}
	for i := range servers {
		for _, t := range lists[i].tools {
			toolCount[t.Name]++
		}
		for _, p := range lists[i].prompts {
			promptCount[p.Name]++
		}
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "armoriq-gateway", Title: "armoriq gateway", Version: "1"}, &mcp.ServerOptions{
		Capabilities: &mcp.ServerCapabilities{
			Tools:       &mcp.ToolCapabilities{},
			Resources:   &mcp.ResourceCapabilities{Subscribe: true},
			Prompts:     &mcp.PromptCapabilities{},
			Logging:     &mcp.LoggingCapabilities{},
			Completions: &mcp.CompletionCapabilities{},
		},
		// Lists are decided per caller: no shared cache may keep them.
		SetCacheable: func(_ context.Context, _ mcp.Request, c *mcp.Cacheable) { c.CacheScope = "private" },
		// Subscriptions are accepted, but no update is relayed: the
		// adapter contract carries upstream notifications only during a call.
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
		CompletionHandler: func(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}, nil
		},
	})
	for i, sv := range servers {
		l := lists[i]
		if l.err != nil {
			c.partial = true
			c.listErr[sv.ID] = l.err.Error()
			ep.s.log.Warn("MCP server not listed", "server", sv.ID, "error", l.err)
			continue
		}
		for _, t := range l.tools {
			name := exposedName(sv, t.Name, toolCount)
			if _, dup := c.tools[name]; dup {
				continue // the first server in bundle order keeps the name
			}
			tool := *t
			tool.Name = name
			if tool.InputSchema == nil {
				tool.InputSchema = map[string]any{"type": "object"}
			}
			rt := route{server: sv, name: t.Name}
			rt.headers, rt.fast = paramHeaders(tool.InputSchema)
			c.tools[name] = rt
			if !addTool(srv, &tool, ep.toolHandler(rt)) {
				delete(c.tools, name)
			}
		}
		for _, p := range l.prompts {
			name := exposedName(sv, p.Name, promptCount)
			if _, dup := c.prompts[name]; dup {
				continue
			}
			c.prompts[name] = route{server: sv, name: p.Name}
			cp := *p
			cp.Name = name
			c.promptSeq = append(c.promptSeq, &cp)
		}
		for _, r := range l.resources {
			if _, dup := c.resByURI[r.URI]; dup {
				continue
			}
			c.resByURI[r.URI] = sv
			cp := *r
			cp.Name = exposedName(sv, r.Name, nil)
			c.resources = append(c.resources, &cp)
		}
	}
	c.server = srv
	srv.AddReceivingMiddleware(ep.middleware(c))
	return c
}

// addTool registers a tool, refusing (and logging) one the SDK finds
// malformed rather than failing the whole catalogue.
func addTool(srv *mcp.Server, t *mcp.Tool, h mcp.ToolHandler) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	srv.AddTool(t, h)
	return true
}

// exposedName applies the server's tool_prefix to an upstream name. count
// says how many servers use the name (nil: prefix unless "never").
func exposedName(sv bundle.Server, name string, count map[string]int) string {
	switch sv.ToolPrefix {
	case "never":
		return name
	case "conditional":
		if count != nil && count[name] <= 1 {
			return name
		}
	case "always", "":
	}
	if count == nil && sv.ToolPrefix == "conditional" {
		return name
	}
	return sv.ID + "_" + name
}

// middleware serves what the gateway answers itself: the per-caller
// tools/list, and resources and prompts routed to their servers.
func (ep *mcpEndpoint) middleware(c *catalog) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "tools/list":
				res, err := next(ctx, method, req)
				if err != nil {
					return res, err
				}
				lr := res.(*mcp.ListToolsResult)
				lr.Tools = ep.visibleTools(ctx, c, lr.Tools)
				return lr, nil
			case "resources/list":
				return &mcp.ListResourcesResult{Cacheable: private, Resources: nonNil(c.resources)}, nil
			case "resources/templates/list":
				return &mcp.ListResourceTemplatesResult{Cacheable: private, ResourceTemplates: []*mcp.ResourceTemplate{}}, nil
			case "resources/read":
				return ep.readResource(ctx, c, req.(*mcp.ReadResourceRequest))
			case "prompts/list":
				return &mcp.ListPromptsResult{Cacheable: private, Prompts: nonNil(c.promptSeq)}, nil
			case "prompts/get":
				return ep.getPrompt(ctx, c, req.(*mcp.GetPromptRequest))
			}
			return next(ctx, method, req)
		}
	}
}

// private is the cache hint of every list the gateway answers.
var private = mcp.Cacheable{CacheScope: "private"}

func nonNil[T any](s []*T) []*T {
	if s == nil {
		return []*T{}
	}
	return s
}

// visibleTools keeps the tools the policy may let this caller call.
func (ep *mcpEndpoint) visibleTools(ctx context.Context, c *catalog, tools []*mcp.Tool) []*mcp.Tool {
	ab := ep.s.active.Load()
	mc := mcpCallFrom(ctx)
	if ab == nil || mc == nil {
		return []*mcp.Tool{}
	}
	out := make([]*mcp.Tool, 0, len(tools))
	for _, t := range tools {
		rt, ok := c.tools[t.Name]
		if !ok {
			continue
		}
		if _, ok := ab.servers[rt.server.ID]; !ok {
			continue
		}
		if ab.engine.Visible(&policy.Request{User: mc.user, Groups: mc.caller.groupsFor(mc.user), Agent: mc.caller.Agent, Server: rt.server.ID, Tool: rt.name}) {
			out = append(out, t)
		}
	}
	return out
}

// resourceServer picks the server of uri: the one that listed it, else the
// only server whose listed URIs share its scheme, else the only server.
func (c *catalog) resourceServer(uri string) (bundle.Server, bool) {
	if sv, ok := c.resByURI[uri]; ok {
		return sv, true
	}
	scheme, _, _ := strings.Cut(uri, ":")
	var found []string
	var pick bundle.Server
	for u, sv := range c.resByURI {
		if s, _, _ := strings.Cut(u, ":"); s == scheme && !containsStr(found, sv.ID) {
			found = append(found, sv.ID)
			pick = sv
		}
	}
	if len(found) == 1 {
		return pick, true
	}
	if c.ab != nil && len(c.ab.b.Servers) == 1 {
		return c.ab.b.Servers[0], true
	}
	return bundle.Server{}, false
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (ep *mcpEndpoint) readResource(ctx context.Context, c *catalog, req *mcp.ReadResourceRequest) (mcp.Result, error) {
	sv, ok := c.resourceServer(req.Params.URI)
	if !ok {
		return nil, &jsonrpc.Error{Code: mcp.CodeResourceNotFound, Message: "resource not found", Data: mustJSON(map[string]string{"uri": req.Params.URI})}
	}
	raw, err := ep.audited(ctx, c, sv.ID, "resources/read", map[string]any{"uri": req.Params.URI}, func() (json.RawMessage, error) {
		cctx, cancel := context.WithTimeout(ctx, ep.s.callTimeout())
		defer cancel()
		cctx = withUpstreamRequest(cctx, &upstreamRequest{extra: requestExtra(req.Params.Meta, req.Params.InputResponses, req.Params.RequestState)})
		raw, err := ep.s.cfg.Upstream.ReadResource(cctx, sv, req.Params.URI)
		if err == nil {
			err = inputForLegacy(req.Params.Meta, sv.ID, "resources/read", raw)
		}
		return raw, err
	})
	if err != nil {
		return nil, rpcError(err)
	}
	res := new(mcp.ReadResourceResult)
	if err := json.Unmarshal(withResultType(req, raw), res); err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "malformed answer from MCP server " + sv.ID}
	}
	return res, nil
}

func (ep *mcpEndpoint) getPrompt(ctx context.Context, c *catalog, req *mcp.GetPromptRequest) (mcp.Result, error) {
	rt, ok := c.prompts[req.Params.Name]
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown prompt %q", req.Params.Name)}
	}
	pargs := make(map[string]any, len(req.Params.Arguments))
	for k, v := range req.Params.Arguments {
		pargs[k] = v
	}
	raw, err := ep.audited(ctx, c, rt.server.ID, "prompts/get", map[string]any{"name": rt.name, "arguments": pargs}, func() (json.RawMessage, error) {
		cctx, cancel := context.WithTimeout(ctx, ep.s.callTimeout())
		defer cancel()
		cctx = withUpstreamRequest(cctx, &upstreamRequest{extra: requestExtra(req.Params.Meta, req.Params.InputResponses, req.Params.RequestState)})
		raw, err := ep.s.cfg.Upstream.GetPrompt(cctx, rt.server, rt.name, req.Params.Arguments)
		if err == nil {
			err = inputForLegacy(req.Params.Meta, rt.server.ID, "prompts/get", raw)
		}
		return raw, err
	})
	if err != nil {
		return nil, rpcError(err)
	}
	res := new(mcp.GetPromptResult)
	if err := json.Unmarshal(withResultType(req, raw), res); err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "malformed answer from MCP server " + rt.server.ID}
	}
	return res, nil
}

// inputForLegacy is the error a legacy client's resources/read or
// prompts/get gets when its upstream answers input_required: this path
// (the SDK's) has no event stream to ask the client on, and the client
// would read the result as empty. A 2026-07-28 client (its _meta names its
// version) gets the result, and answers it.
func inputForLegacy(meta mcp.Meta, server, method string, raw json.RawMessage) error {
	if !legacyMeta(meta) {
		return nil
	}
	ir, err := parseInputRequired(raw)
	if err != nil || ir == nil {
		return nil // a malformed one is the decoding's to refuse
	}
	return errorf(KindInputRequired, "MCP server %q needs input for %s (%s), which the gateway cannot ask a client of protocol 2025-11-25 or earlier for on this method: use a 2026-07-28 client", server, method, ir.methodsOf())
}

// audited runs a resource or prompt read, call, under the audit rule of
// tool calls: its request record (method as the tool, what it reads as the
// arguments) is durable before call runs, and its outcome follows. A
// caller that may call no tool of the server is refused (mayUseServer).
func (ep *mcpEndpoint) audited(ctx context.Context, c *catalog, server, method string, args map[string]any, call func() (json.RawMessage, error)) (json.RawMessage, error) {
	s := ep.s
	mc := mcpCallFrom(ctx)
	if mc == nil {
		return nil, errorf(KindUnavailable, "request context lost")
	}
	inv := s.newInvocation(mc.reqID, mc.caller)
	rec := &inv.rec
	rec.User, rec.UserSource, rec.Client, rec.Server, rec.Tool, rec.Arguments = mc.user, mc.source, mc.client, server, method, auditArgs(args)
	if ab := s.active.Load(); ab != nil {
		rec.BundleRevision = ab.b.Manifest.Revision
	}
	var raw json.RawMessage
	var err error
	if !ep.mayUseServer(c, mc, server) {
		reason := fmt.Sprintf("the policy lets %s (agent %s) call no tool of server %q, so its resources and prompts are refused too", mc.user, mc.caller.Agent, server)
		inv.decision = policy.Decision{Effect: policy.Deny, Reason: reason}
		err = &Error{Kind: KindPolicyBlocked, Message: reason}
	}
	if err == nil {
		err = s.commitRequest(ctx, inv)
	}
	if err == nil {
		raw, err = call()
	}
	if aerr := s.finish(ctx, inv, err); aerr != nil {
		return nil, aerr
	}
	return raw, err
}

// mayUseServer reports whether the caller may call some tool of server:
// resources and prompts have no rules of their own, and a caller the
// policy shuts out of every tool of a server (a suspended agent, a denied
// user) must not read them either. Conditions are not evaluated, as for
// tools/list: a conditional allow counts.
func (ep *mcpEndpoint) mayUseServer(c *catalog, mc *mcpCallCtx, server string) bool {
	ab := ep.s.active.Load()
	if ab == nil {
		return false
	}
	req := policy.Request{User: mc.user, Groups: mc.caller.groupsFor(mc.user), Agent: mc.caller.Agent, Server: server, Tool: "*"}
	if ab.engine.Visible(&req) {
		return true
	}
	for _, rt := range c.tools {
		if rt.server.ID == server {
			req.Tool = rt.name
			if ab.engine.Visible(&req) {
				return true
			}
		}
	}
	return false
}

// requestExtra is what a prompts/get or resources/read passes on to its
// upstream besides its own parameters.
func requestExtra(meta mcp.Meta, responses mcp.InputResponseMap, state string) plugins.RequestExtra {
	x := plugins.RequestExtra{Meta: forwardMeta(meta), RequestState: state}
	if responses != nil {
		x.InputResponses, _ = json.Marshal(responses)
	}
	return x
}

// withResultType marks an upstream result "complete" when the client speaks
// the 2026-07-28 protocol, which requires resultType, and the upstream (an
// older server) did not set it. The SDK sets it on results of its own
// handlers only.
func withResultType(req mcp.Request, raw json.RawMessage) json.RawMessage {
	ex := req.GetExtra()
	if ex == nil || ex.Header.Get(headerProtocol) < firstStatelessVersion {
		return raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return raw
	}
	if _, ok := m["resultType"]; ok {
		return raw
	}
	m["resultType"] = json.RawMessage(`"complete"`)
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
