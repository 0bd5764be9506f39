package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/armoriq/controlplane/plugins"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The fast path answers the common tools/call, a single request with no
// multi-round-trip state, without the SDK: the gateway decodes the
// envelope once, runs the same checks (callTool) and writes the upstream's
// result bytes back untouched but for the fields the 2026-07-28 protocol
// requires; the call's progress notifications and log messages, and an
// upstream's requests to a legacy client, go out on the answer's event
// stream. Anything unusual (a batch, a header the protocol version requires
// and that is missing or wrong, x-mcp-header parameters, a progress token
// that is neither a string nor an integer) goes to the SDK, which answers
// with the exact error. The fast path saves the SDK's per-request session
// and two decode/encode rounds of the result.

// fastRequest is the envelope of a tools/call.
type fastRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  *struct {
		Name           string          `json:"name"`
		Arguments      bodyJSON        `json:"arguments"` // a slice of the body, not a copy
		Meta           map[string]any  `json:"_meta"`
		InputResponses json.RawMessage `json:"inputResponses"`
		RequestState   json.RawMessage `json:"requestState"`
	} `json:"params"`
}

// serverInfoMeta is the gateway's _meta serverInfo (SEP-2575).
var serverInfoMeta = json.RawMessage(`{"name":"armoriq-gateway","title":"armoriq gateway","version":"1"}`)

// fastToolCall serves body, of request r, if it is a tools/call the fast
// path may take, and reports whether it did. ctx is the request's context
// with the caller on it (r's is not).
func (ep *mcpEndpoint) fastToolCall(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte) bool {
	t := bytes.TrimSpace(body)
	if len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(`"tools/call"`)) {
		return false
	}
	if mediaType(r.Header.Get("Content-Type")) != "application/json" || !acceptsBoth(r) {
		return false
	}
	var req fastRequest
	if json.Unmarshal(t, &req) != nil || req.JSONRPC != "2.0" || req.Method != "tools/call" || req.Params == nil ||
		len(req.ID) == 0 || string(req.ID) == "null" || len(req.Params.InputResponses) > 0 || len(req.Params.RequestState) > 0 {
		return false
	}
	p := req.Params
	token, hasToken := p.Meta["progressToken"]
	if hasToken && !validProgressToken(token) {
		return false // the SDK refuses it with its own error
	}
	pv := r.Header.Get(headerProtocol)
	metaPV, _ := p.Meta["io.modelcontextprotocol/protocolVersion"].(string)
	modern := pv >= firstStatelessVersion
	switch {
	case modern:
		caps, ok := p.Meta["io.modelcontextprotocol/clientCapabilities"].(map[string]any)
		if metaPV != pv || !ok || caps == nil || r.Header.Get("Mcp-Method") != "tools/call" || r.Header.Get("Mcp-Name") != p.Name {
			return false
		}
		if ci, present := p.Meta[metaClientInfo]; present {
			if m, ok := ci.(map[string]any); !ok || m == nil {
				return false
			}
		}
	case metaPV >= firstStatelessVersion:
		return false // the SDK reconciles a _meta version without the header
	case pv != "" && !slices.Contains(mcp.SupportedProtocolVersions(), pv):
		return false
	}
	c := ep.cat.current(ctx)
	rt, ok := c.tools[p.Name]
	if !ok || !rt.fast {
		return false
	}

	ep.metrics.fast.Add(1)
	// An upstream's log messages turn the answer into an event stream.
	mc := mcpCallFrom(ctx)
	sw := &sseWriter{w: w, level: "info", ep: ep, keyID: mc.caller.KeyID, asks: mc.asks}
	if modern {
		sw.level, _ = p.Meta["io.modelcontextprotocol/logLevel"].(string)
	}
	tc := &toolCall{rt: rt, args: json.RawMessage(p.Arguments), meta: p.Meta}
	if sw.level != "" {
		tc.log = sw.log
	}
	if hasToken {
		tc.progress = sw.progress(token)
	}
	if !modern {
		// A legacy client may be asked to sample or elicit during the
		// call; a 2026-07-28 one gets input_required results instead.
		tc.request = sw.request
	}
	raw, err := ep.callTool(ctx, tc)
	if err == nil && modern {
		raw = annotateModern(raw)
	}
	var out bytes.Buffer
	out.Grow(len(raw) + 128)
	out.WriteString(`{"jsonrpc":"2.0","id":`)
	out.Write(req.ID)
	status := http.StatusOK
	if err != nil {
		jerr := rpcError(err)
		e, _ := json.Marshal(jerr)
		out.WriteString(`,"error":`)
		out.Write(e)
		if modern {
			status = errorStatus(jerr.Code)
		}
	} else {
		out.WriteString(`,"result":`)
		out.Write(raw)
	}
	out.WriteString("}\n")
	if sw.finish(out.Bytes()) {
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(out.Bytes())
	return true
}

// sseWriter relays a fast-path call's log messages as server-sent events,
// switching the answer from JSON to an event stream at the first one, as
// the Streamable HTTP transport lets a server do.
type sseWriter struct {
	w     http.ResponseWriter
	level string // the lowest level the client wants; "" for none
	ep    *mcpEndpoint
	keyID string // the caller's, who alone may answer its requests
	asks  string // what the client declared it answers (sessionState.Asks)

	mu      sync.Mutex
	started bool
	done    bool // the answer was written (or is being written as JSON)
}

// logLevels orders MCP's log levels (RFC 5424's, least severe first).
var logLevels = map[string]int{"debug": 0, "info": 1, "notice": 2, "warning": 3, "error": 4, "critical": 5, "alert": 6, "emergency": 7}

func (s *sseWriter) log(m plugins.LogMessage) {
	params := struct {
		Level  string          `json:"level"`
		Logger string          `json:"logger,omitempty"`
		Data   json.RawMessage `json:"data"`
	}{m.Level, m.Logger, m.Data}
	if len(params.Data) == 0 {
		params.Data = json.RawMessage("null")
	}
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/message", "params": params})
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lv, ok := logLevels[m.Level]
	if min, known := logLevels[s.level]; s.done || !ok || !known || lv < min {
		return
	}
	s.event(b)
}

// validProgressToken reports whether a _meta.progressToken, as decoded
// into an any, is what MCP allows: a string or an integer.
func validProgressToken(v any) bool {
	switch t := v.(type) {
	case string:
		return true
	case float64:
		return t == math.Trunc(t) && math.Abs(t) <= 1<<53
	}
	return false
}

// progress returns the relay of a call's progress notifications to the
// client, under the client's own token, as the SDK's session sends them.
func (s *sseWriter) progress(token any) func(plugins.Progress) {
	return func(p plugins.Progress) {
		b, err := json.Marshal(struct {
			JSONRPC string                          `json:"jsonrpc"`
			Method  string                          `json:"method"`
			Params  *mcp.ProgressNotificationParams `json:"params"`
		}{"2.0", "notifications/progress", &mcp.ProgressNotificationParams{ProgressToken: token, Progress: p.Progress, Total: p.Total, Message: p.Message}})
		if err != nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.done {
			return
		}
		s.event(b)
	}
}

// event writes one message event, starting the stream if needed; mu held.
func (s *sseWriter) event(b []byte) {
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache, no-transform")
		s.w.WriteHeader(http.StatusOK)
	}
	s.w.Write([]byte("event: message\ndata: "))
	s.w.Write(bytes.TrimRight(b, "\n"))
	s.w.Write([]byte("\n\n"))
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// pendingRequest is a request relayed to a client, waiting for its answer.
type pendingRequest struct {
	keyID  string
	answer chan serverAnswer
}

// serverAnswer is a client's JSON-RPC answer to a relayed request.
type serverAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64           `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// serverRequestPrefix starts the id of every request the gateway relays.
const serverRequestPrefix = "armoriq-req-"

// request relays an upstream's server-to-client request (sampling,
// elicitation) to the client on the call's event stream, and waits for
// the answer, which the client POSTs as a JSON-RPC response (answered).
// The wait is in this replica's memory: an answer POSTed to another
// replica is not seen, and the call ends at its timeout.
func (s *sseWriter) request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if need := map[string]string{"sampling/createMessage": "s", "elicitation/create": "e"}[method]; need == "" || !strings.Contains(s.asks, need) {
		return nil, &plugins.RPCError{Code: jsonrpc.CodeInvalidParams, Message: method + ": the client did not declare that it answers it"}
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	id := serverRequestPrefix + hex.EncodeToString(rnd[:])
	p := &pendingRequest{keyID: s.keyID, answer: make(chan serverAnswer, 1)}
	s.ep.pending.Store(id, p)
	defer s.ep.pending.Delete(id)
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.event(b)
	s.mu.Unlock()
	select {
	case a := <-p.answer:
		if a.Error != nil {
			return nil, &plugins.RPCError{Code: a.Error.Code, Message: a.Error.Message, Data: a.Error.Data}
		}
		return a.Result, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answered delivers body if it is a client's answer to a request relayed
// by this replica for the same API key, and reports whether it was.
func (ep *mcpEndpoint) answered(keyID string, body []byte) bool {
	if !bytes.Contains(body, []byte(serverRequestPrefix)) {
		return false
	}
	var msg struct {
		serverAnswer
		ID     string `json:"id"`
		Method string `json:"method"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.Method != "" || !strings.HasPrefix(msg.ID, serverRequestPrefix) {
		return false
	}
	v, ok := ep.pending.Load(msg.ID)
	if !ok || v.(*pendingRequest).keyID != keyID {
		return false
	}
	select {
	case v.(*pendingRequest).answer <- msg.serverAnswer:
	default:
	}
	return true
}

// finish writes the answer as the stream's last event and reports whether
// a stream was started; if not, the caller answers with plain JSON.
func (s *sseWriter) finish(answer []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true // a late notification must not follow the answer or start a stream now
	if !s.started {
		return false
	}
	s.event(answer)
	return true
}

// errorStatus is the HTTP status of a JSON-RPC error under the 2026-07-28
// protocol (SEP-2575), as the SDK answers it.
func errorStatus(code int64) int {
	switch code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, mcp.CodeUnsupportedProtocolVersion, mcp.CodeMissingRequiredClientCapabilities:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// annotateModern adds what a 2026-07-28 result carries and an older
// upstream did not set: resultType, and the gateway's serverInfo in _meta.
// The result's values are copied once, as they are, into an output sized
// for them (a large tool answer is not decoded and re-encoded).
func annotateModern(raw json.RawMessage) json.RawMessage {
	var m map[string]bodyJSON // slices of raw, not copies
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return raw
	}
	if _, ok := m["resultType"]; !ok {
		m["resultType"] = bodyJSON(`"complete"`)
	}
	var meta map[string]json.RawMessage
	if mr, ok := m["_meta"]; ok {
		_ = json.Unmarshal(mr, &meta)
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	if _, ok := meta["io.modelcontextprotocol/serverInfo"]; !ok {
		meta["io.modelcontextprotocol/serverInfo"] = serverInfoMeta
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return raw
	}
	m["_meta"] = mb
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]byte, 0, len(raw)+len(mb)+64)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, k)
		out = append(out, ':')
		if v := m[k]; len(v) > 0 {
			out = append(out, v...)
		} else {
			out = append(out, "null"...)
		}
	}
	return append(out, '}')
}

// mediaType is the media type of a Content-Type or Accept value as
// mime.ParseMediaType reads it ("" if it cannot), parameters left out;
// the values MCP clients send are answered without parsing.
func mediaType(v string) string {
	switch v {
	case "application/json", "text/event-stream":
		return v
	}
	mt, _, _ := mime.ParseMediaType(v)
	return mt
}

// acceptsBoth reports whether the client accepts JSON and SSE, as the
// Streamable HTTP transport requires of a POST.
func acceptsBoth(r *http.Request) bool {
	var jsonOK, sseOK bool
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt := mediaType(strings.TrimSpace(part))
			switch mt {
			case "application/json", "application/*", "*/*":
				jsonOK = true
			}
			switch mt {
			case "text/event-stream", "text/*", "*/*":
				sseOK = true
			}
		}
	}
	return jsonOK && sseOK
}
