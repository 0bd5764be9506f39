// Package mcpadapter holds the built-in adapters: they reach an upstream MCP
// server with the official Go SDK, over Streamable HTTP (NewHTTP) or by
// spawning a command that speaks MCP on stdin/stdout (NewStdio). The armoriq
// binary serves them with plugins.Serve when the host re-executes it as
// "armoriq adapter http|stdio".
//
// Each adapter keeps one client session to its upstream and reconnects when
// the session breaks. The SDK negotiates the protocol version: it first
// tries the stateless 2026-07-28 protocol (server/discover) and falls back
// to the initialize handshake of 2025-11-25 and earlier, down to 2024-11-05.
// A server's protocol pin (plugins.ServerConfig.Protocol) caps the version
// offered: below 2026-07-28 the session opens with the initialize
// handshake at that version.
package mcpadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/rawconn"
)

// Adapter is a built-in adapter. Create it with NewHTTP or NewStdio, then
// Configure it (the host does, through plugins.Serve).
type Adapter struct {
	transport string

	mu      sync.Mutex // guards the fields below; held while connecting
	cfg     plugins.ServerConfig
	client  *mcp.Client
	session *mcp.ClientSession
	child   *exec.Cmd // the stdio server of the current session
	// legacy is the HTTP upstream's session under the initialize
	// handshake, kept beside a 2026-07-28 session for legacy calls
	// (plugins.RawCall.Legacy); legacyRetry is when to try connecting it
	// again after the upstream refused.
	legacy           *mcp.ClientSession
	legacyRetry      time.Time
	legacyConnecting bool       // a call is opening legacy
	conn             *stdioConn // its connection, which raw calls share (stdio.go)
	closed           bool

	progress  sync.Map // progress token → *progressSink
	nextToken atomic.Int64

	callsMu sync.Mutex
	calls   map[int64]*plugins.CallEvents // tools/calls in flight, for server requests

	// rawClient sends the raw path's requests (raw.go) on a pool of
	// keep-alive connections of its own (conns.go).
	rawClient *http.Client
	maxAnswer int // bounds one raw answer; 0: plugins.MaxMessageSize

	toolsMu     sync.Mutex
	headerTools map[string]bool // tools with x-mcp-header parameters
}

// newHTTPTransport is the adapter's connection pool to its upstream: as
// many idle keep-alive connections as calls may be in flight, so that no
// call dials at the concurrency the host allows (64 by default).
func newHTTPTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// DefaultTransport's dialer, its connections read and written with raw
	// system calls (docs/plugins.md, "Raw reads and writes"); TLS runs on
	// top of them.
	t.DialContext = rawconn.DialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	return t
}

var (
	_ plugins.AdapterRaw = (*Adapter)(nil)
	_ io.Closer          = (*Adapter)(nil)
)

// NewHTTP returns an adapter for a Streamable HTTP server at
// ServerConfig.URL, sending ServerConfig.Headers with every request.
func NewHTTP() *Adapter { return &Adapter{transport: plugins.TransportHTTP} }

// NewStdio returns an adapter that runs ServerConfig.Command with Args and
// Env and speaks MCP over its stdin and stdout. The command runs in a
// process group of its own, which the adapter kills when the session ends
// or the adapter exits; on Linux it also dies with the adapter.
func NewStdio() *Adapter {
	return &Adapter{transport: plugins.TransportStdio}
}

// Configure checks cfg and connects to the upstream server.
func (a *Adapter) Configure(ctx context.Context, cfg plugins.ServerConfig) error {
	switch a.transport {
	case plugins.TransportHTTP:
		u, err := url.Parse(cfg.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("server %q: url %q is not an http(s) URL", cfg.ID, cfg.URL)
		}
	case plugins.TransportStdio:
		if cfg.Command == "" {
			return fmt.Errorf("server %q: transport stdio needs a command", cfg.ID)
		}
	}
	if cfg.Protocol != "" && !plugins.KnownProtocol(cfg.Protocol) {
		return fmt.Errorf("server %q: protocol %q is not an MCP protocol version this adapter speaks (%s)", cfg.ID, cfg.Protocol, strings.Join(plugins.ProtocolVersions(), ", "))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client != nil {
		return errors.New("adapter already configured")
	}
	a.cfg = cfg
	if a.transport == plugins.TransportHTTP {
		a.rawClient = &http.Client{Transport: newRawTransport(cfg.URL)}
	}
	a.client = mcp.NewClient(&mcp.Implementation{Name: "armoriq-adapter", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: a.onProgress,
		Capabilities:                &mcp.ClientCapabilities{},
		Logger:                      slog.Default(),
		// An input_required result (SEP-2322) goes back to the gateway's
		// client, which answers it and retries: the adapter has nothing to
		// answer with.
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
		// Under the initialize handshake an upstream may ask its client to
		// sample or elicit during a call: the adapter relays the request
		// to the client of that call (contract v2), so it declares both.
		CreateMessageHandler: a.onCreateMessage,
		ElicitationHandler:   a.onElicit,
	})
	// The client the request goes to checks it (an elicitation's schema)
	// and its answer: the SDK's own checks, in front of the handlers, would
	// refuse what a newer client accepts.
	a.client.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "elicitation/create":
				res := new(mcp.ElicitResult)
				return res, a.relay(ctx, method, req.GetParams(), res)
			case "sampling/createMessage":
				res := new(mcp.CreateMessageResult)
				return res, a.relay(ctx, method, req.GetParams(), res)
			}
			return next(ctx, method, req)
		}
	})
	_, err := a.connectLocked(ctx)
	return err
}

// connectLocked returns the session, connecting if there is none.
func (a *Adapter) connectLocked(ctx context.Context) (*mcp.ClientSession, error) {
	if a.closed {
		return nil, errors.New("adapter closed")
	}
	if a.client == nil {
		return nil, errors.New("adapter not configured")
	}
	if a.session != nil {
		return a.session, nil
	}
	var (
		t      mcp.Transport
		child  *exec.Cmd
		stderr *lineLogger
		st     *stdioTransport
	)
	switch a.transport {
	case plugins.TransportHTTP:
		t = a.httpTransport()
	case plugins.TransportStdio:
		child, stderr = a.command()
		st = &stdioTransport{cmd: child, server: a.cfg.ID, limit: a.rawLimit(), terminate: 2 * time.Second}
		t = &tapTransport{Transport: st, server: a.cfg.ID}
	default:
		return nil, fmt.Errorf("unknown transport %q", a.transport)
	}
	cs, err := a.client.Connect(ctx, t, a.sessionOptions())
	if err != nil {
		if child != nil && child.Process != nil {
			killGroup(child.Process.Pid)
		}
		if stderr != nil {
			return nil, a.startFailure(child, stderr, err)
		}
		return nil, fmt.Errorf("connecting to %s: %w", a.upstream(), err)
	}
	if err := a.checkPin(cs); err != nil {
		if child != nil && child.Process != nil {
			killGroup(child.Process.Pid)
		}
		return nil, fmt.Errorf("connecting to %s: %w", a.upstream(), err)
	}
	a.session, a.child = cs, child
	if st != nil {
		a.conn = st.conn
	}
	a.started(ctx, cs)
	return cs, nil
}

// sessionOptions are the options of the adapter's session: the protocol
// version it offers first, the pinned one (ServerConfig.Protocol) if any.
// Below 2026-07-28 the SDK skips server/discover and opens the session with
// the initialize handshake at that version.
func (a *Adapter) sessionOptions() *mcp.ClientSessionOptions {
	if a.cfg.Protocol == "" {
		return nil
	}
	return &mcp.ClientSessionOptions{ProtocolVersion: a.cfg.Protocol}
}

// checkPin refuses a session of a newer protocol version than the pin: an
// upstream that does not speak the pinned version answers the handshake
// with one it does, which may be newer. The pin is a cap the operator set,
// so the adapter fails to start, saying why, rather than run above it.
// cs is closed on error.
func (a *Adapter) checkPin(cs *mcp.ClientSession) error {
	pin := a.cfg.Protocol
	if pv := protocolVersion(cs); pin != "" && pv > pin {
		_ = cs.Close()
		return fmt.Errorf("the upstream answered the initialize handshake with protocol %s, newer than the server's protocol pin %s: pin a version it speaks", pv, pin)
	}
	return nil
}

// httpTransport is the SDK client's transport to the HTTP upstream.
func (a *Adapter) httpTransport() mcp.Transport {
	return &mcp.StreamableClientTransport{
		Endpoint:   a.cfg.URL,
		HTTPClient: &http.Client{Transport: &headerTransport{base: http.DefaultTransport, headers: a.cfg.Headers}},
		// The adapter answers requests; it does not relay
		// server-initiated messages, so it keeps no GET stream open.
		DisableStandaloneSSE: true,
	}
}

// started finishes setting up a new session: the log level an upstream
// under the initialize handshake needs, and forgetting the session when
// it ends.
func (a *Adapter) started(ctx context.Context, cs *mcp.ClientSession) {
	if !modern(cs) {
		if res := cs.InitializeResult(); res != nil && res.Capabilities != nil && res.Capabilities.Logging != nil {
			// Under the initialize handshake a server logs nothing until its
			// client sets a level. Ask for everything: the gateway filters by
			// the level its own client wants.
			if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
				slog.Debug("upstream refused logging/setLevel", "server", a.cfg.ID, "error", err)
			}
		}
	}
	go func() {
		// The session ends when the server closes it or the child exits:
		// forget it, so the next call reconnects.
		_ = cs.Wait()
		a.drop(cs)
	}()
}

// legacyRetryAfter is how long an adapter serves legacy calls on its
// 2026-07-28 session after the upstream refused the initialize handshake.
const legacyRetryAfter = time.Minute

// sessionForCall returns the session a raw HTTP call goes on: for a legacy
// call (plugins.RawCall.Legacy) to an upstream whose session speaks
// 2026-07-28, a second session under the initialize handshake, so that the
// upstream asks the call's client for input the way that client
// understands (server requests, not input_required results) and serves
// the call the way a direct client of that era would be served. An
// upstream that refuses the handshake serves legacy calls on its one
// session, as before, and is asked again after legacyRetryAfter.
func (a *Adapter) sessionForCall(ctx context.Context, legacy bool) (*mcp.ClientSession, error) {
	a.mu.Lock()
	cs, err := a.connectLocked(ctx)
	switch {
	case err != nil || !legacy || !modern(cs) || a.transport != plugins.TransportHTTP:
		a.mu.Unlock()
		return cs, err
	case a.legacy != nil:
		lcs := a.legacy
		a.mu.Unlock()
		return lcs, nil
	case a.legacyConnecting || time.Now().Before(a.legacyRetry):
		// Another call is opening it, or the upstream refused it lately.
		a.mu.Unlock()
		return cs, nil
	}
	// Opened outside the lock: an upstream slow to answer the handshake
	// holds up this call only, not the adapter's others.
	a.legacyConnecting = true
	a.mu.Unlock()
	lcs, err := a.client.Connect(ctx, a.httpTransport(), &mcp.ClientSessionOptions{ProtocolVersion: plugins.LegacyVersion})
	if err == nil && modern(lcs) {
		_ = lcs.Close()
		err = errors.New("it answered the initialize handshake with a 2026-07-28 session")
	}
	a.mu.Lock()
	a.legacyConnecting = false
	switch {
	case err != nil && ctx.Err() != nil:
		a.mu.Unlock()
		return nil, ctx.Err()
	case err != nil:
		a.legacyRetry = time.Now().Add(legacyRetryAfter)
		a.mu.Unlock()
		slog.Info("upstream refused a session under the initialize handshake: legacy calls share its 2026-07-28 session", "server", a.cfg.ID, "retry_in", legacyRetryAfter, "error", err)
		return cs, nil
	case a.closed:
		a.mu.Unlock()
		_ = lcs.Close()
		return nil, errors.New("adapter closed")
	}
	a.legacy = lcs
	a.mu.Unlock()
	a.started(ctx, lcs)
	return lcs, nil
}

func (a *Adapter) upstream() string {
	if a.transport == plugins.TransportHTTP {
		return a.cfg.URL
	}
	return a.cfg.Command
}

// startFailure explains why a stdio server did not complete the MCP
// handshake: the SDK only sees its stdout close ("connection closed: EOF"),
// the reason is in what the server wrote on stderr. Its last lines are
// logged at WARN with the server id, and the last one ends the error.
func (a *Adapter) startFailure(child *exec.Cmd, stderr *lineLogger, err error) error {
	if child.Process == nil { // it never ran: exec's error says why (not found, not executable)
		return fmt.Errorf("stdio server %q: %w", a.cfg.Command, err)
	}
	why := err.Error()
	if st := child.ProcessState; st != nil {
		why = "it exited (" + st.String() + ") during the MCP handshake"
	} else if errors.Is(err, mcp.ErrConnectionClosed) || errors.Is(err, io.EOF) {
		why = "it closed its stdout during the MCP handshake"
	}
	lines := stderr.tail()
	for _, line := range lines {
		slog.Warn("stdio server stderr", "server", a.cfg.ID, "line", line)
	}
	if len(lines) == 0 {
		return fmt.Errorf("stdio server %q did not start: %s, writing nothing on stderr", a.cfg.Command, why)
	}
	return fmt.Errorf("stdio server %q did not start: %s; its stderr ends with: %s", a.cfg.Command, why, lines[len(lines)-1])
}

// command builds the stdio server's command: the adapter's environment plus
// the configured one, its own process group, output to the adapter's log
// (also kept, the last lines, to explain a failed start).
func (a *Adapter) command() (*exec.Cmd, *lineLogger) {
	cmd := exec.Command(a.cfg.Command, a.cfg.Args...)
	for _, kv := range os.Environ() {
		// go-plugin's variables, and the host's for the adapter's runtime,
		// are the adapter's business, not the server's.
		if !strings.HasPrefix(kv, "PLUGIN_") && !strings.HasPrefix(kv, plugins.MagicCookieKey+"=") && !strings.HasPrefix(kv, plugins.ProcsEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range a.cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// The server's stderr is logged line by line (plugins.Serve sends the
	// log to the gateway). It gets a pipe of its own, not the adapter's
	// stderr, so a server that outlives the adapter cannot hold the host's
	// end open; WaitDelay bounds a grandchild holding the pipe.
	id := a.cfg.ID
	stderr := &lineLogger{log: func(line string) {
		slog.Info("stdio server stderr", "server", id, "line", line)
	}}
	cmd.Stderr = stderr
	cmd.WaitDelay = 2 * time.Second
	setChildProcAttr(cmd)
	return cmd, stderr
}

// session returns the current session, connecting if needed.
func (a *Adapter) sessionFor(ctx context.Context) (*mcp.ClientSession, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connectLocked(ctx)
}

// drop closes cs if it is still the current session.
func (a *Adapter) drop(cs *mcp.ClientSession) {
	a.mu.Lock()
	if a.legacy == cs && cs != nil {
		a.legacy = nil
		a.mu.Unlock()
		_ = cs.Close()
		return
	}
	if a.session != cs {
		a.mu.Unlock()
		return
	}
	child := a.child
	a.session, a.child, a.conn = nil, nil, nil
	a.mu.Unlock()
	_ = cs.Close()
	if child != nil && child.Process != nil {
		killGroup(child.Process.Pid)
	}
}

// Close ends the session and kills the stdio server's process group.
func (a *Adapter) Close() error {
	a.mu.Lock()
	a.closed = true
	if a.rawClient != nil {
		if t, ok := a.rawClient.Transport.(*connTransport); ok {
			t.close()
		}
	}
	cs, child := a.session, a.child
	legacy := a.legacy
	a.session, a.child, a.conn, a.legacy = nil, nil, nil, nil
	a.mu.Unlock()
	if legacy != nil {
		_ = legacy.Close()
	}
	if child != nil && child.Process != nil {
		// The server gets stdin closed first and a moment to exit, then
		// the whole group is killed, grandchildren included.
		done := make(chan struct{})
		go func() {
			if cs != nil {
				_ = cs.Close()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		killGroup(child.Process.Pid)
		return nil
	}
	if cs != nil {
		return cs.Close()
	}
	return nil
}

// do runs f on the session. If the session turns out to be gone it is
// dropped, and f is retried once on a new session when the upstream
// cannot have seen the request.
//
// The result is the upstream's own JSON, seen by a callTap; log is where
// the tap sends the request's log messages (nil: nowhere).
func (a *Adapter) do(ctx context.Context, log func(plugins.LogMessage), f func(context.Context, *mcp.ClientSession) (any, error)) (json.RawMessage, error) {
	return a.doTap(ctx, log, nil, f)
}

// doTap is do with the call's progress delivered by its tap (progress may
// be nil).
func (a *Adapter) doTap(ctx context.Context, log func(plugins.LogMessage), progress *progressSink, f func(context.Context, *mcp.ClientSession) (any, error)) (json.RawMessage, error) {
	for attempt := 0; ; attempt++ {
		cs, err := a.sessionFor(ctx)
		if err != nil {
			return nil, err
		}
		tap := &callTap{log: log, progress: progress}
		res, err := f(withTap(ctx, tap), cs)
		tap.done.Store(true)
		if err == nil {
			if raw := tap.take(); raw != nil {
				return raw, nil
			}
			return json.Marshal(res)
		}
		var werr *jsonrpc.Error
		if errors.As(err, &werr) {
			return nil, &plugins.RPCError{Code: werr.Code, Message: werr.Message, Data: werr.Data}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Both errors mean the upstream never saw the request: a missing
		// session is an HTTP 404 (the upstream restarted or expired it),
		// and a closed connection refuses calls before writing them. So
		// any call, tools/call included, may be retried on a new session.
		if errors.Is(err, mcp.ErrSessionMissing) || errors.Is(err, mcp.ErrConnectionClosed) {
			a.drop(cs)
			if attempt == 0 {
				continue
			}
		}
		return nil, err
	}
}

// ListTools implements plugins.Adapter.
func (a *Adapter) ListTools(ctx context.Context, cursor string) (json.RawMessage, error) {
	res, err := a.do(ctx, nil, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		return cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
	})
	if err == nil {
		a.noteHeaderTools(res, cursor == "")
	}
	return res, err
}

// CallTool implements plugins.Adapter. A call is retried only when the
// upstream cannot have seen it (see do); one lost in flight is not.
func (a *Adapter) CallTool(ctx context.Context, name string, args json.RawMessage, progress func(plugins.Progress)) (json.RawMessage, error) {
	return a.CallToolV2(ctx, &plugins.ToolCall{Name: name, Arguments: args}, &plugins.CallEvents{Progress: progress})
}

// CallToolV2 implements plugins.AdapterV2: the call goes with the client's
// _meta (see requestMeta) and its multi-round-trip answers, and the
// upstream's progress and log messages come back through ev.
func (a *Adapter) CallToolV2(ctx context.Context, call *plugins.ToolCall, ev *plugins.CallEvents) (json.RawMessage, error) {
	if ev == nil {
		ev = &plugins.CallEvents{}
	}
	params := &mcp.CallToolParams{Name: call.Name, RequestState: call.RequestState}
	if args := call.Arguments; len(args) > 0 && string(args) != "null" {
		params.Arguments = args
	}
	if err := inputResponses(&params.InputResponses, call.InputResponses); err != nil {
		return nil, err
	}
	var token string
	var sink *progressSink
	defer a.inFlight(ev)()
	if ev.Progress != nil {
		token = "armoriq-" + strconv.FormatInt(a.nextToken.Add(1), 10)
		sink = &progressSink{token: token, f: ev.Progress}
		a.progress.Store(token, sink)
		defer a.progress.Delete(token)
	}
	return a.doTap(ctx, ev.Log, sink, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		p := *params
		p.Meta = requestMeta(cs, call.Meta)
		if token != "" {
			p.SetProgressToken(token)
		}
		return cs.CallTool(withTraceContext(ctx, p.Meta), &p)
	})
}

// inFlight registers a tools/call in flight; the returned func removes it.
func (a *Adapter) inFlight(ev *plugins.CallEvents) func() {
	id := a.nextToken.Add(1)
	a.callsMu.Lock()
	if a.calls == nil {
		a.calls = map[int64]*plugins.CallEvents{}
	}
	a.calls[id] = ev
	a.callsMu.Unlock()
	return func() {
		a.callsMu.Lock()
		delete(a.calls, id)
		a.callsMu.Unlock()
	}
}

// relay sends a server-to-client request of the upstream to the client of
// the call it belongs to, and decodes the answer into out. MCP does not
// say which call a server request is about, and one session carries every
// call of the adapter: the request goes to the call in flight when there
// is exactly one, and is refused otherwise rather than risk asking the
// wrong client.
func (a *Adapter) relay(ctx context.Context, method string, params, out any) error {
	var ev *plugins.CallEvents
	a.callsMu.Lock()
	if len(a.calls) == 1 {
		for _, e := range a.calls {
			ev = e
		}
	}
	a.callsMu.Unlock()
	if ev == nil || ev.Request == nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: a.cannotRelay(method)}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	res, err := ev.Request(ctx, method, raw)
	var rpcErr *plugins.RPCError
	switch {
	case errors.As(err, &rpcErr):
		return &jsonrpc.Error{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data}
	case err != nil:
		return err
	}
	return json.Unmarshal(res, out)
}

// cannotRelay is the message of the error the upstream gets for a server
// request the adapter cannot relay. Under a protocol pin below 2026-07-28
// it says why the upstream had to ask that way: its client may well be a
// 2026-07-28 one, which answers input_required results instead, and the
// tool's error reaches that client.
func (a *Adapter) cannotRelay(method string) string {
	msg := method + ": the gateway cannot relay this request to a client now"
	if pin := a.cfg.Protocol; pin != "" && pin < plugins.FirstStatelessVersion {
		msg += " (the server is pinned to MCP protocol " + pin + ": only a client of the initialize handshake that declared the capability, and whose call is the only one in flight over stdio, can be asked)"
	}
	return msg
}

// onCreateMessage and onElicit declare the capabilities; the receiving
// middleware set in Configure answers the requests before they run.
func (a *Adapter) onCreateMessage(ctx context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	res := new(mcp.CreateMessageResult)
	if err := a.relay(ctx, "sampling/createMessage", req.Params, res); err != nil {
		return nil, err
	}
	return res, nil
}

func (a *Adapter) onElicit(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
	res := new(mcp.ElicitResult)
	if err := a.relay(ctx, "elicitation/create", req.Params, res); err != nil {
		return nil, err
	}
	return res, nil
}

// modern reports whether cs speaks the stateless 2026-07-28 protocol.
func modern(cs *mcp.ClientSession) bool {
	res := cs.InitializeResult()
	return res != nil && res.ProtocolVersion >= "2026-07-28"
}

// requestMeta is the _meta the adapter sends upstream for a request whose
// client sent raw: plugins.UpstreamMeta for this session's protocol
// version, as the gateway builds it for the raw path.
func requestMeta(cs *mcp.ClientSession, raw json.RawMessage) mcp.Meta {
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			m = nil
		}
	}
	return plugins.UpstreamMeta(m, protocolVersion(cs))
}

// inputResponses decodes a retry's inputResponses into dst.
func inputResponses(dst *mcp.InputResponseMap, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &plugins.RPCError{Code: jsonrpc.CodeInvalidParams, Message: "invalid inputResponses: " + err.Error()}
	}
	return nil
}

func (a *Adapter) onProgress(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	token, ok := req.Params.ProgressToken.(string)
	if !ok {
		return
	}
	if v, ok := a.progress.Load(token); ok {
		p := v.(*progressSink)
		if p.tapped.Load() {
			return // the call's tap delivers its progress, in order
		}
		p.f(plugins.Progress{
			Progress: req.Params.Progress,
			Total:    req.Params.Total,
			Message:  req.Params.Message,
		})
	}
}

// ListResources implements plugins.Adapter.
func (a *Adapter) ListResources(ctx context.Context, cursor string) (json.RawMessage, error) {
	return a.do(ctx, nil, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		return cs.ListResources(ctx, &mcp.ListResourcesParams{Cursor: cursor})
	})
}

// ReadResource implements plugins.Adapter.
func (a *Adapter) ReadResource(ctx context.Context, uri string) (json.RawMessage, error) {
	return a.ReadResourceV2(ctx, uri, nil)
}

// ReadResourceV2 implements plugins.AdapterV2.
func (a *Adapter) ReadResourceV2(ctx context.Context, uri string, x *plugins.RequestExtra) (json.RawMessage, error) {
	if x == nil {
		x = &plugins.RequestExtra{}
	}
	params := &mcp.ReadResourceParams{URI: uri, RequestState: x.RequestState}
	if err := inputResponses(&params.InputResponses, x.InputResponses); err != nil {
		return nil, err
	}
	return a.do(ctx, nil, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		p := *params
		p.Meta = requestMeta(cs, x.Meta)
		return cs.ReadResource(ctx, &p)
	})
}

// ListPrompts implements plugins.Adapter.
func (a *Adapter) ListPrompts(ctx context.Context, cursor string) (json.RawMessage, error) {
	return a.do(ctx, nil, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		return cs.ListPrompts(ctx, &mcp.ListPromptsParams{Cursor: cursor})
	})
}

// GetPrompt implements plugins.Adapter.
func (a *Adapter) GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return a.GetPromptV2(ctx, name, args, nil)
}

// GetPromptV2 implements plugins.AdapterV2.
func (a *Adapter) GetPromptV2(ctx context.Context, name string, args map[string]string, x *plugins.RequestExtra) (json.RawMessage, error) {
	if x == nil {
		x = &plugins.RequestExtra{}
	}
	params := &mcp.GetPromptParams{Name: name, Arguments: args, RequestState: x.RequestState}
	if err := inputResponses(&params.InputResponses, x.InputResponses); err != nil {
		return nil, err
	}
	return a.do(ctx, nil, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		p := *params
		p.Meta = requestMeta(cs, x.Meta)
		return cs.GetPrompt(ctx, &p)
	})
}

// Health pings the upstream server, reconnecting if needed. A server that
// answers ping with a JSON-RPC error is alive.
func (a *Adapter) Health(ctx context.Context) error {
	_, err := a.do(ctx, nil, func(ctx context.Context, cs *mcp.ClientSession) (any, error) {
		return struct{}{}, cs.Ping(ctx, nil)
	})
	var rpcErr *plugins.RPCError
	if errors.As(err, &rpcErr) {
		return nil
	}
	return err
}

// tailLines is how many of a stdio server's last stderr lines are kept.
const tailLines = 20

// lineLogger logs what is written to it, one call per line, and keeps the
// last tailLines lines.
type lineLogger struct {
	mu   sync.Mutex
	buf  []byte
	log  func(string)
	last []string
}

// tail returns the last lines written, oldest first, with a partial last
// line if there is one.
func (w *lineLogger) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string(nil), w.last...)
	if rest := strings.TrimSpace(string(w.buf)); rest != "" {
		out = append(out, rest)
	}
	return out
}

func (w *lineLogger) emit(line string) {
	if len(line) > 1000 {
		line = line[:1000] + "…"
	}
	w.last = append(w.last, line)
	if len(w.last) > tailLines {
		w.last = w.last[1:]
	}
	w.log(line)
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimRight(string(w.buf[:i]), "\r"); line != "" {
			w.emit(line)
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line: log it in pieces
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// headerTransport adds the configured headers (upstream credentials) to
// every request.
type headerTransport struct {
	base    http.RoundTripper
	headers map[string]string
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tc, _ := req.Context().Value(traceKey{}).(traceContext)
	if len(t.headers) > 0 || tc.parent != "" {
		req = req.Clone(req.Context())
		for k, v := range t.headers {
			req.Header.Set(k, v)
		}
		if tc.parent != "" {
			// W3C trace context of the call, from its _meta: an HTTP
			// upstream continues the gateway's trace.
			req.Header.Set("traceparent", tc.parent)
			if tc.state != "" {
				req.Header.Set("tracestate", tc.state)
			}
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost {
		if tap, ok := req.Context().Value(tapKey{}).(*callTap); ok {
			tapResponse(tap, resp)
		}
	}
	return resp, err
}

// traceContext is the W3C trace context a call's _meta carries
// (traceparent, tracestate), as the MCP semantic conventions place it.
type traceContext struct{ parent, state string }

type traceKey struct{}

// withTraceContext puts the trace context of meta on ctx, for the HTTP
// request that carries the call; a malformed traceparent is left out.
func withTraceContext(ctx context.Context, meta mcp.Meta) context.Context {
	parent, _ := meta["traceparent"].(string)
	if !validTraceparent(parent) {
		return ctx
	}
	state, _ := meta["tracestate"].(string)
	if len(state) > 512 || strings.ContainsAny(state, "\r\n") {
		state = ""
	}
	return context.WithValue(ctx, traceKey{}, traceContext{parent: parent, state: state})
}

// validTraceparent checks the W3C form 00-<32 hex>-<16 hex>-<2 hex>, so a
// client's _meta cannot put arbitrary text in an upstream request header.
func validTraceparent(s string) bool {
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	for i, c := range s {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s[:2] != "ff"
}
