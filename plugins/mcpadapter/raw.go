package mcpadapter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

// The raw path (contract version 3) forwards a tools/call as bytes: the
// gateway built its params once, the adapter wraps them in a JSON-RPC
// request with an id of its own, POSTs it on a pooled keep-alive
// connection with the session's headers, and reads the answer (JSON, or an
// event stream) for the response with that id, relaying the call's
// progress and log notifications and its server requests on the way. The
// SDK client keeps the session (initialize, reconnecting) and serves what
// the raw path does not: the other methods, tools whose x-mcp-header
// parameters need headers, and the stdio transport.

// rawIDPrefix starts the JSON-RPC id of every raw request, so it can never
// be one of the SDK client's (integers).
const rawIDPrefix = "armoriq-r"

// drainLimit bounds what is read of an answer after its response, to keep
// the connection for the next call; drainWait bounds how long.
// drainPause is how long a call waits for its answer's end before
// leaving the drain to the background.
const (
	drainLimit = 1 << 20
	drainWait  = 5 * time.Second
	drainPause = 10 * time.Millisecond
)

// CallRaw implements plugins.AdapterRaw.
func (a *Adapter) CallRaw(ctx context.Context, call *plugins.RawCall, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	if ev == nil {
		ev = &plugins.CallEvents{}
	}
	if call.Method != "tools/call" {
		return nil, &plugins.RPCError{Code: jsonrpc.CodeMethodNotFound, Message: fmt.Sprintf("the raw path forwards tools/call, not %q", call.Method)}
	}
	if a.transport == plugins.TransportStdio {
		return a.callRawStdio(ctx, call, ev)
	}
	if a.transport != plugins.TransportHTTP || a.headerTool(call.Name) {
		return a.callRawSDK(ctx, call, ev)
	}
	defer a.inFlight(ev)()
	for attempt := 0; ; attempt++ {
		cs, err := a.sessionForCall(ctx, call.Legacy)
		if err != nil {
			return nil, err
		}
		pv := protocolVersion(cs)
		params := call.Params
		if !plugins.SameEnvelope(call.ProtocolVersion, pv) {
			// Built for another era of the protocol (the first call, or the
			// upstream changed): the _meta is rebuilt for this session's.
			if params, err = rebuildParams(call, pv); err != nil {
				return nil, err
			}
		}
		res, err := a.postRaw(ctx, cs, pv, call, params, ev)
		var rpcErr *plugins.RPCError
		if errors.As(err, &rpcErr) {
			return &plugins.RawResult{Path: plugins.PathRaw, ProtocolVersion: pv}, err
		}
		if errors.Is(err, mcp.ErrSessionMissing) {
			// HTTP 404 for the session: the upstream restarted or expired
			// it and did not see the call. A new session, and one retry.
			a.drop(cs)
			if attempt == 0 {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		res.ProtocolVersion = pv
		return res, nil
	}
}

// callRawSDK forwards a raw call through the SDK client.
func (a *Adapter) callRawSDK(ctx context.Context, call *plugins.RawCall, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	tc, err := plugins.ToolCallOf(call)
	if err != nil {
		return nil, err
	}
	if call.ProgressToken == "" {
		ev.Progress = nil
	}
	res, err := a.CallToolV2(ctx, tc, ev)
	out := &plugins.RawResult{Result: res, Path: plugins.PathSDK}
	if cs := a.currentSession(); cs != nil {
		out.ProtocolVersion = protocolVersion(cs)
	}
	var rpcErr *plugins.RPCError
	if err != nil && !errors.As(err, &rpcErr) {
		return nil, err
	}
	return out, err
}

func (a *Adapter) currentSession() *mcp.ClientSession {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

func protocolVersion(cs *mcp.ClientSession) string {
	if res := cs.InitializeResult(); res != nil {
		return res.ProtocolVersion
	}
	return ""
}

// rebuildParams returns call's params with the _meta rebuilt for protocol
// version pv (plugins.UpstreamMeta), keeping the call's progress token.
func rebuildParams(call *plugins.RawCall, pv string) (json.RawMessage, error) {
	var p struct {
		Name           string          `json:"name"`
		Arguments      json.RawMessage `json:"arguments"`
		Meta           map[string]any  `json:"_meta"`
		InputResponses json.RawMessage `json:"inputResponses"`
		RequestState   string          `json:"requestState"`
	}
	if err := json.Unmarshal(call.Params, &p); err != nil {
		return nil, &plugins.RPCError{Code: jsonrpc.CodeInvalidParams, Message: "invalid tools/call params: " + err.Error()}
	}
	meta := plugins.UpstreamMeta(p.Meta, pv)
	if call.ProgressToken != "" {
		if meta == nil {
			meta = map[string]any{}
		}
		meta["progressToken"] = call.ProgressToken
	}
	return plugins.AppendToolCallParams(nil, p.Name, p.Arguments, meta, p.InputResponses, p.RequestState)
}

// headerTool reports whether the upstream listed tool name with x-mcp-header
// parameters, whose values the SDK client sends as headers too.
func (a *Adapter) headerTool(name string) bool {
	a.toolsMu.Lock()
	defer a.toolsMu.Unlock()
	return a.headerTools[name]
}

// noteHeaderTools records the tools of a tools/list page (the first page
// when first) that have x-mcp-header parameters.
func (a *Adapter) noteHeaderTools(page json.RawMessage, first bool) {
	a.toolsMu.Lock()
	defer a.toolsMu.Unlock()
	if first {
		a.headerTools = nil
	}
	if !bytes.Contains(page, []byte("x-mcp-header")) {
		return
	}
	var p struct {
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if json.Unmarshal(page, &p) != nil {
		return
	}
	for _, t := range p.Tools {
		if bytes.Contains(t.InputSchema, []byte("x-mcp-header")) {
			if a.headerTools == nil {
				a.headerTools = map[string]bool{}
			}
			a.headerTools[t.Name] = true
		}
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// postRaw sends one raw call and reads its answer.
func (a *Adapter) postRaw(ctx context.Context, cs *mcp.ClientSession, pv string, call *plugins.RawCall, params json.RawMessage, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	id := rawIDPrefix + strconv.FormatInt(a.nextToken.Add(1), 10)
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	buf.WriteString(`{"jsonrpc":"2.0","id":"`)
	buf.WriteString(id)
	buf.WriteString(`","method":"tools/call","params":`)
	buf.Write(params)
	buf.WriteByte('}')

	// The request runs under a context of its own, ended with the call's
	// only until the answer is in: then the rest of the body is drained so
	// the connection serves the next call instead of being reset.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, rcancel)
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, a.cfg.URL, bytes.NewReader(buf.Bytes()))
	if err != nil {
		stop()
		rcancel()
		bufPool.Put(buf)
		return nil, fmt.Errorf("building the request to %s: %w", a.cfg.URL, err)
	}
	sid := cs.ID()
	a.setHeaders(req.Header, pv, sid)
	if pv >= plugins.FirstStatelessVersion {
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", call.Name)
	}
	if validTraceparent(call.Traceparent) {
		req.Header.Set("traceparent", call.Traceparent)
		if s := call.Tracestate; s != "" && len(s) <= 512 && !bytes.ContainsAny([]byte(s), "\r\n") {
			req.Header.Set("tracestate", s)
		}
	}
	resp, err := a.rawClient.Do(req)
	if err != nil {
		stop()
		rcancel()
		bufPool.Put(buf)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("calling %s: %w", a.upstream(), err)
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	rr := &rawReader{a: a, ctx: ctx, id: id, call: call, ev: ev, pv: pv, sid: sid, limit: a.rawLimit()}
	done := func(drain bool) {
		// Called once the answer is in (or the call failed): the rest of
		// the body is read, bounded, then everything goes back to its
		// pool. A server ends the stream right after the response: the
		// call waits a moment for that, so that its connection is back in
		// the pool for the next call; a stream kept open is drained in the
		// background (net/http's transport) or its connection closed (the
		// raw path's own, conns.go).
		stop()
		end := func() {
			if drain {
				t := time.AfterFunc(drainWait, rcancel)
				_, _ = io.Copy(io.Discard, io.LimitReader(br, drainLimit))
				t.Stop()
			}
			resp.Body.Close()
			rcancel()
			br.Reset(nil)
			readerPool.Put(br)
			bufPool.Put(buf)
		}
		if rr.eof {
			drain = false // read to its end already
		}
		if !drain {
			end()
			return
		}
		if ub, ok := resp.Body.(*upBody); ok {
			// The raw path's own connection: the end is read here, with
			// no goroutine or timer of its own; a stream still open after
			// drainPause loses its connection.
			ub.drainWithin(br, drainPause, drainLimit)
			drain = false
			end()
			return
		}
		ended := make(chan struct{})
		go func() {
			end()
			close(ended)
		}()
		t := time.NewTimer(drainPause)
		select {
		case <-ended:
		case <-t.C:
		}
		t.Stop()
	}
	res, err := rr.read(resp, br)
	rr.wait()
	var rpcErr *plugins.RPCError
	done(err == nil || errors.As(err, &rpcErr)) // answered: keep the connection
	if err != nil && ctx.Err() != nil {
		a.cancelUpstream(pv, sid, id)
		return nil, ctx.Err()
	}
	return res, err
}

// setHeaders sets the headers of every raw POST: the configured ones (the
// upstream credential), the content negotiation, and the session's.
func (a *Adapter) setHeaders(h http.Header, pv, sid string) {
	for k, v := range a.cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	if pv != "" {
		h.Set("Mcp-Protocol-Version", pv)
	}
	if sid != "" {
		h.Set("Mcp-Session-Id", sid)
	}
}

// rawLimit bounds one answer (a JSON body, or one event of a stream).
func (a *Adapter) rawLimit() int {
	if a.maxAnswer > 0 {
		return a.maxAnswer
	}
	return plugins.MaxMessageSize
}

// cancelUpstream tells the upstream a call was abandoned, as the SDK
// client does (notifications/cancelled), without holding up the caller.
func (a *Adapter) cancelUpstream(pv, sid, id string) {
	body := []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"` + id + `","reason":"the call was cancelled or timed out"}}`)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.postMessage(ctx, pv, sid, body)
	}()
}

// postMessage POSTs a notification or a response to the upstream and
// expects no answer but a status.
func (a *Adapter) postMessage(ctx context.Context, pv, sid string, body []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return
	}
	a.setHeaders(req.Header, pv, sid)
	resp, err := a.rawClient.Do(req)
	if err != nil {
		slog.Debug("posting to the upstream failed", "server", a.cfg.ID, "error", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// rawReader reads the answer to one raw call.
type rawReader struct {
	a     *Adapter
	ctx   context.Context
	id    string
	call  *plugins.RawCall
	ev    *plugins.CallEvents
	pv    string
	sid   string
	limit int
	eof   bool // the body was read to its end

	wg sync.WaitGroup // server requests being answered
}

// wait waits for the server requests still being answered.
func (r *rawReader) wait() { r.wg.Wait() }

// read finds the response in resp: its JSON body, or the events of its
// stream.
func (r *rawReader) read(resp *http.Response, br *bufio.Reader) (*plugins.RawResult, error) {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The SDK's reading: a JSON-RPC error in the body is the answer;
		// a 404 for a session is a session gone.
		body, _ := io.ReadAll(io.LimitReader(br, 64<<10))
		var m rawMessage
		if json.Unmarshal(body, &m) == nil && m.Error != nil {
			return nil, m.Error.rpcError()
		}
		if resp.StatusCode == http.StatusNotFound && r.sid != "" {
			return nil, fmt.Errorf("%s answered 404 for session %s: %w", r.a.upstream(), r.sid, mcp.ErrSessionMissing)
		}
		return nil, fmt.Errorf("%s answered tools/call with HTTP %s", r.a.upstream(), resp.Status)
	}
	switch ct {
	case "application/json":
		body, err := readLimited(br, r.limit)
		if err != nil {
			return nil, fmt.Errorf("reading the answer of %s: %w", r.a.upstream(), err)
		}
		r.eof = true
		res, ok, err := r.message(body)
		if err != nil || ok {
			return res, err
		}
		return nil, fmt.Errorf("%s answered tools/call with no response to it", r.a.upstream())
	case "text/event-stream":
		sc := sseScanner{r: br, limit: r.limit}
		for {
			data, err := sc.next()
			if err != nil {
				if r.ctx.Err() != nil {
					return nil, r.ctx.Err()
				}
				if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
					return nil, fmt.Errorf("%s closed the event stream of tools/call before answering it", r.a.upstream())
				}
				return nil, fmt.Errorf("reading the event stream of %s: %w", r.a.upstream(), err)
			}
			res, ok, err := r.message(data)
			if err != nil || ok {
				return res, err
			}
		}
	default:
		return nil, fmt.Errorf("%s answered tools/call with HTTP %d and content type %q", r.a.upstream(), resp.StatusCode, ct)
	}
}

// readLimited reads r to its end, failing past limit bytes.
func readLimited(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("the answer is larger than %d bytes", limit)
	}
	return b, nil
}

// rawMessage is any JSON-RPC message of an answer.
type rawMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *rawError       `json:"error"`
}

type rawError struct {
	Code    int64           `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (e *rawError) rpcError() *plugins.RPCError {
	return &plugins.RPCError{Code: e.Code, Message: e.Message, Data: e.Data}
}

// message handles one message of the answer and reports whether it was
// the response, with the result or the error it carries.
func (r *rawReader) message(data []byte) (*plugins.RawResult, bool, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, false, nil
	}
	var m rawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, false, fmt.Errorf("%s sent a malformed message: %w", r.a.upstream(), err)
	}
	switch {
	case m.Method == "" && (m.Result != nil || m.Error != nil):
		if !r.isOurs(m.ID, m.Error != nil) {
			slog.Debug("upstream response for another request on a call's stream", "server", r.a.cfg.ID, "id", string(m.ID))
			return nil, false, nil
		}
		if m.Error != nil {
			return nil, true, m.Error.rpcError()
		}
		return &plugins.RawResult{Result: m.Result, Path: plugins.PathRaw}, true, nil
	case m.Method != "" && isNull(m.ID):
		r.notification(m.Method, m.Params)
	case m.Method != "":
		r.serverRequest(m.ID, m.Method, m.Params)
	}
	return nil, false, nil
}

// isOurs reports whether a response's id is this call's. An error with a
// null id (the upstream could not read the request) answers it too.
func (r *rawReader) isOurs(id json.RawMessage, isErr bool) bool {
	if isNull(id) {
		return isErr
	}
	var s string
	return json.Unmarshal(id, &s) == nil && s == r.id
}

func isNull(id json.RawMessage) bool {
	id = bytes.TrimSpace(id)
	return len(id) == 0 || string(id) == "null"
}

// notification relays the call's progress and log messages.
func (r *rawReader) notification(method string, params json.RawMessage) {
	switch method {
	case "notifications/progress":
		if r.ev.Progress == nil || r.call.ProgressToken == "" {
			return
		}
		var p struct {
			ProgressToken any     `json:"progressToken"`
			Progress      float64 `json:"progress"`
			Total         float64 `json:"total"`
			Message       string  `json:"message"`
		}
		if json.Unmarshal(params, &p) != nil || p.ProgressToken != r.call.ProgressToken {
			return
		}
		r.ev.Progress(plugins.Progress{Progress: p.Progress, Total: p.Total, Message: p.Message})
	case "notifications/message":
		if r.ev.Log == nil {
			return
		}
		var p struct {
			Level  string          `json:"level"`
			Logger string          `json:"logger"`
			Data   json.RawMessage `json:"data"`
		}
		if json.Unmarshal(params, &p) == nil {
			r.ev.Log(plugins.LogMessage{Level: p.Level, Logger: p.Logger, Data: p.Data})
		}
	}
}

// serverRequest answers a request the upstream sent on the call's stream:
// sampling and elicitation go to the call's client (CallEvents.Request),
// as the SDK path relays them; ping and roots/list are answered as the SDK
// client answers them. The answer is POSTed to the session.
func (r *rawReader) serverRequest(id json.RawMessage, method string, params json.RawMessage) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		var (
			res json.RawMessage
			err error
		)
		switch method {
		case "ping":
			res = json.RawMessage(`{}`)
		case "roots/list":
			res = json.RawMessage(`{"roots":[]}`)
		case "sampling/createMessage", "elicitation/create":
			if r.ev.Request == nil {
				err = &plugins.RPCError{Code: jsonrpc.CodeInvalidParams, Message: r.a.cannotRelay(method)}
				break
			}
			if len(params) == 0 {
				params = json.RawMessage(`{}`)
			}
			res, err = r.ev.Request(r.ctx, method, params)
		default:
			err = &plugins.RPCError{Code: jsonrpc.CodeMethodNotFound, Message: "method not found: " + method}
		}
		var b bytes.Buffer
		b.WriteString(`{"jsonrpc":"2.0","id":`)
		b.Write(id)
		var rpcErr *plugins.RPCError
		switch {
		case errors.As(err, &rpcErr):
			e, _ := json.Marshal(rawError{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data})
			b.WriteString(`,"error":`)
			b.Write(e)
		case err != nil:
			e, _ := json.Marshal(rawError{Code: jsonrpc.CodeInternalError, Message: err.Error()})
			b.WriteString(`,"error":`)
			b.Write(e)
		default:
			if !json.Valid(res) {
				res = json.RawMessage(`{}`)
			}
			b.WriteString(`,"result":`)
			b.Write(res)
		}
		b.WriteByte('}')
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 10*time.Second)
		defer cancel()
		r.a.postMessage(ctx, r.pv, r.sid, b.Bytes())
	}()
}

// sseScanner reads the data of an event stream's events, each bounded.
type sseScanner struct {
	r     *bufio.Reader
	limit int
	data  []byte
}

// next returns the data of the next event that has some (its data lines
// joined by newlines); io.EOF at the end of the stream.
func (s *sseScanner) next() ([]byte, error) {
	s.data = s.data[:0]
	hasData := false
	for {
		line, err := s.line()
		if err != nil {
			if err == io.EOF && hasData {
				return s.data, nil // an event cut at the end: take it
			}
			return nil, err
		}
		if len(line) == 0 {
			if hasData {
				return s.data, nil
			}
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if hasData {
				s.data = append(s.data, '\n')
			}
			if len(s.data)+len(v) > s.limit {
				return nil, fmt.Errorf("an event is larger than %d bytes", s.limit)
			}
			s.data = append(s.data, v...)
			hasData = true
		}
		// event:, id:, retry: and comments carry nothing the call needs.
	}
}

// line returns the next line without its end (LF, CRLF or CR before LF),
// bounded by the limit.
func (s *sseScanner) line() ([]byte, error) {
	var long []byte
	for {
		frag, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(frag) > s.limit+16 {
				return nil, fmt.Errorf("an event is larger than %d bytes", s.limit)
			}
			long = append(long, frag...)
			continue
		}
		if err != nil && (err != io.EOF || len(frag) == 0 && len(long) == 0) {
			return nil, err
		}
		if long != nil {
			frag = append(long, frag...)
		}
		frag = bytes.TrimSuffix(frag, []byte("\n"))
		frag = bytes.TrimSuffix(frag, []byte("\r"))
		return frag, nil
	}
}
