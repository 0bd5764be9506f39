package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// adapterUpstream reaches every server through an adapter process run by
// a plugins.Host: the built-in http and stdio adapters, or a pinned custom
// one. The host restarts crashed adapters and bounds each call.
type adapterUpstream struct {
	host *plugins.Host
}

var _ Upstream = (*adapterUpstream)(nil)

// NewAdapterUpstream returns an Upstream over host. It owns host: Close
// closes it, killing every adapter process.
func NewAdapterUpstream(host *plugins.Host) Upstream {
	return &adapterUpstream{host: host}
}

// Sync starts, restarts or stops adapters to match servers. Credentials
// are passed as $VAR templates (Authorization: Bearer $GITHUB_TOKEN) that
// the host resolves from the gateway's environment each time it starts an
// adapter, so resolved secrets live only in the adapter process, never in
// a bundle, the host's state or a log line.
func (u *adapterUpstream) Sync(ctx context.Context, servers []bundle.Server) error {
	cfgs := make([]plugins.ServerConfig, 0, len(servers))
	for _, sv := range servers {
		cfgs = append(cfgs, serverConfig(sv))
	}
	return u.host.Sync(ctx, cfgs)
}

// serverConfig maps a bundle server to the adapter contract's form.
func serverConfig(sv bundle.Server) plugins.ServerConfig {
	cfg := plugins.ServerConfig{
		ID:        sv.ID,
		Transport: sv.Transport,
		URL:       sv.URL,
		Command:   sv.Command,
		Args:      sv.Args,
		Path:      sv.Path,
		SHA256:    sv.SHA256,
		Protocol:  sv.Protocol,
	}
	if cfg.Transport == "" {
		cfg.Transport = plugins.TransportHTTP
	}
	if len(sv.Env) > 0 {
		cfg.Env = make(map[string]string, len(sv.Env))
		for k, v := range sv.Env {
			cfg.Env[k] = v
		}
	}
	if a := sv.Auth; a != nil {
		ref := varRef(a.ValueRef)
		switch a.Type {
		case "bearer":
			cfg.Headers = map[string]string{"Authorization": "Bearer " + ref}
		case "api_key":
			h := a.HeaderName
			if h == "" {
				h = "X-API-Key"
			}
			cfg.Headers = map[string]string{h: ref}
		}
	}
	return cfg
}

// varRef normalizes a credential reference to the ${VAR} form the host
// expands: "$VAR", "${VAR}" and a bare "VAR" are accepted.
func varRef(ref string) string {
	name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(ref, "$"), "{"), "}")
	return "${" + name + "}"
}

// adapter returns srv's adapter. The host's adapters implement
// plugins.AdapterV2 whatever contract version their process speaks (under
// version 1 the extras are dropped).
func (u *adapterUpstream) adapter(srv bundle.Server) (plugins.AdapterV2, error) {
	a, err := u.host.Get(srv.ID)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Message: fmt.Sprintf("no adapter runs for server %q", srv.ID), Err: err}
	}
	v2, ok := a.(plugins.AdapterV2)
	if !ok {
		return nil, internal(fmt.Errorf("adapter %q is a %T, not a plugins.AdapterV2", srv.ID, a), "reaching the adapter")
	}
	return v2, nil
}

// adapterError translates the host's errors into the gateway's kinds.
func adapterError(id string, err error) error {
	var rpcErr *plugins.RPCError
	switch {
	case errors.As(err, &rpcErr):
		return upstreamRPCError(id, rpcErr)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, plugins.ErrTimeout):
		return &Error{Kind: KindUpstreamTimeout, Message: fmt.Sprintf("MCP server %q did not answer in time", id), Err: err}
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, plugins.ErrUnavailable), errors.Is(err, plugins.ErrUnknownServer), errors.Is(err, plugins.ErrBusy):
		return &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q is unavailable", id), Err: err}
	default:
		return &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q failed", id), Err: err}
	}
}

func (u *adapterUpstream) CallTool(ctx context.Context, srv bundle.Server, tool string, args map[string]any) (json.RawMessage, error) {
	a, err := u.adapter(srv)
	if err != nil {
		return nil, err
	}
	// The arguments the upstream gets are the ones the checks decided on,
	// encoded from the decoded object: duplicate keys or invalid UTF-8 in
	// what the client sent cannot make it read something else.
	var raw json.RawMessage
	if args != nil {
		if raw, err = json.Marshal(args); err != nil {
			return nil, errorf(KindInvalid, "arguments do not encode as JSON: %v", err)
		}
	}
	r := upstreamRequestFrom(ctx)
	ev := &plugins.CallEvents{Progress: r.progress, Log: r.log, Request: r.request}
	if ra, ok := a.(rawAdapter); ok {
		legacy := legacyCall(ctx, r)
		if pv, ok := ra.UpstreamProtocolFor(legacy); ok {
			res, err := u.callRaw(ctx, ra, pv, legacy, tool, raw, r, ev)
			if err != nil {
				return nil, adapterError(srv.ID, err)
			}
			return res, nil
		}
	}
	res, err := a.CallToolV2(ctx, &plugins.ToolCall{Name: tool, Arguments: raw, RequestExtra: r.requestExtra()}, ev)
	if err != nil {
		return nil, adapterError(srv.ID, err)
	}
	return res, nil
}

// legacyCall reports whether a call goes to its upstream as a legacy call
// (plugins.RawCall.Legacy), on a session of the initialize handshake where
// the upstream has one: a call of a legacy client (or of POST /invoke)
// that could not be asked for input anyway, having declared neither
// elicitation nor sampling. A legacy client that declared one is better
// served on the upstream's 2026-07-28 session: there an upstream asks with
// an input_required result, which the gateway relays to it as server
// requests (mcp_input.go), where a stateless server under the handshake
// cannot ask it at all.
func legacyCall(ctx context.Context, r *upstreamRequest) bool {
	if !r.legacyClient() {
		return false
	}
	mc := mcpCallFrom(ctx)
	return mc == nil || mc.asks == ""
}

// rawAdapter is what Host.Get returns: an adapter that forwards a
// tools/call as bytes when its process speaks contract version 3.
type rawAdapter interface {
	plugins.AdapterRaw
	UpstreamProtocolFor(legacy bool) (version string, raw bool)
}

// progressTokens numbers the progress tokens the gateway sets in a raw
// call's _meta ("armoriq-g<n>": the adapters' own are "armoriq-<n>").
var progressTokens atomic.Int64

// callRaw forwards a tools/call as bytes: the params object built here,
// once, with the _meta the upstream session of protocol version pv must
// see (plugins.UpstreamMeta; "" when not known yet: the client's, which
// the adapter adjusts). A legacy client's call asks for an upstream
// session of its own era (plugins.RawCall.Legacy): the upstream then asks
// that client for input with server requests, which it can answer, where
// under 2026-07-28 it would answer input_required, which it cannot read;
// and the upstream serves it as it serves a direct client of that era. pv
// is then the version the adapter's last legacy call was served at, or,
// before the first, the handshake's, which an adapter with one session
// (stdio) corrects once.
func (u *adapterUpstream) callRaw(ctx context.Context, a rawAdapter, pv string, legacy bool, tool string, args json.RawMessage, r *upstreamRequest, ev *plugins.CallEvents) (json.RawMessage, error) {
	if legacy && pv == "" {
		pv = plugins.LegacyVersion
	}
	meta := r.metaMap()
	if pv != "" {
		meta = plugins.UpstreamMeta(meta, pv)
	}
	call := &plugins.RawCall{Method: "tools/call", Name: tool, ProtocolVersion: pv, Traceparent: r.traceparent, Tracestate: r.tracestate, Legacy: legacy}
	if ev.Progress != nil {
		if meta == nil {
			meta = map[string]any{}
		}
		call.ProgressToken = "armoriq-g" + strconv.FormatInt(progressTokens.Add(1), 10)
		meta["progressToken"] = call.ProgressToken
	}
	buf := paramsPool.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 64<<10 {
			paramsPool.Put(buf)
		}
	}()
	params, err := plugins.AppendToolCallParams((*buf)[:0], tool, args, meta, r.extra.InputResponses, r.extra.RequestState)
	if err != nil {
		return nil, errorf(KindInvalid, "the call's _meta does not encode as JSON: %v", err)
	}
	*buf = params
	call.Params = params
	res, err := a.CallRaw(ctx, call, ev)
	if err != nil {
		return nil, err
	}
	return res.Result, nil
}

// paramsPool recycles the buffers raw calls' params are built in (the
// host's gRPC client encodes them before CallRaw returns).
var paramsPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// listAll pages through one list method.
func listAll[T any](ctx context.Context, id string, list func(context.Context, string) (json.RawMessage, error), items func(*T) ([]json.RawMessage, string)) ([]json.RawMessage, error) {
	var out []json.RawMessage
	cursor := ""
	for range 100 {
		raw, err := list(ctx, cursor)
		if err != nil {
			return nil, adapterError(id, err)
		}
		var page T
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q answered a list with malformed JSON", id), Err: err}
		}
		its, next := items(&page)
		out = append(out, its...)
		if next == "" || next == cursor {
			return out, nil
		}
		cursor = next
	}
	return out, nil
}

// rawPage is any MCP list result, its items kept as JSON.
type rawPage struct {
	Tools      []json.RawMessage `json:"tools"`
	Resources  []json.RawMessage `json:"resources"`
	Prompts    []json.RawMessage `json:"prompts"`
	NextCursor string            `json:"nextCursor"`
}

func decodeItems[T any](id string, raws []json.RawMessage) ([]*T, error) {
	out := make([]*T, 0, len(raws))
	for _, r := range raws {
		v := new(T)
		if err := json.Unmarshal(r, v); err != nil {
			return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q listed a malformed item", id), Err: err}
		}
		out = append(out, v)
	}
	return out, nil
}

func (u *adapterUpstream) ListTools(ctx context.Context, srv bundle.Server) ([]*mcp.Tool, error) {
	a, err := u.adapter(srv)
	if err != nil {
		return nil, err
	}
	raws, err := listAll(ctx, srv.ID, a.ListTools, func(p *rawPage) ([]json.RawMessage, string) { return p.Tools, p.NextCursor })
	if err != nil {
		return nil, err
	}
	return decodeItems[mcp.Tool](srv.ID, raws)
}

func (u *adapterUpstream) ListResources(ctx context.Context, srv bundle.Server) ([]*mcp.Resource, error) {
	a, err := u.adapter(srv)
	if err != nil {
		return nil, err
	}
	raws, err := listAll(ctx, srv.ID, a.ListResources, func(p *rawPage) ([]json.RawMessage, string) { return p.Resources, p.NextCursor })
	if err != nil {
		return nil, err
	}
	return decodeItems[mcp.Resource](srv.ID, raws)
}

func (u *adapterUpstream) ReadResource(ctx context.Context, srv bundle.Server, uri string) (json.RawMessage, error) {
	a, err := u.adapter(srv)
	if err != nil {
		return nil, err
	}
	res, err := a.ReadResourceV2(ctx, uri, &upstreamRequestFrom(ctx).extra)
	if err != nil {
		return nil, adapterError(srv.ID, err)
	}
	return res, nil
}

func (u *adapterUpstream) ListPrompts(ctx context.Context, srv bundle.Server) ([]*mcp.Prompt, error) {
	a, err := u.adapter(srv)
	if err != nil {
		return nil, err
	}
	raws, err := listAll(ctx, srv.ID, a.ListPrompts, func(p *rawPage) ([]json.RawMessage, string) { return p.Prompts, p.NextCursor })
	if err != nil {
		return nil, err
	}
	return decodeItems[mcp.Prompt](srv.ID, raws)
}

func (u *adapterUpstream) GetPrompt(ctx context.Context, srv bundle.Server, name string, args map[string]string) (json.RawMessage, error) {
	a, err := u.adapter(srv)
	if err != nil {
		return nil, err
	}
	res, err := a.GetPromptV2(ctx, name, args, &upstreamRequestFrom(ctx).extra)
	if err != nil {
		return nil, adapterError(srv.ID, err)
	}
	return res, nil
}

func (u *adapterUpstream) Status() []UpstreamStatus {
	st := u.host.Status()
	out := make([]UpstreamStatus, len(st))
	for i, s := range st {
		out[i] = UpstreamStatus{ID: s.ID, Transport: s.Transport, State: string(s.State), LastError: s.LastError, Restarts: s.Restarts, PID: s.PID, Contract: s.Contract,
			RawCalls: s.RawCalls, SDKCalls: s.SDKCalls}
	}
	return out
}

// Close stops every adapter and waits for their processes to exit.
func (u *adapterUpstream) Close() error {
	done := make(chan error, 1)
	go func() { done <- u.host.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("gateway: adapters did not stop within 30s")
	}
}
