package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The fast path answers every well-formed tools/call without the SDK: the
// gateway decodes the envelope once, runs the same checks (callTool) and
// writes the upstream's result bytes back untouched but for what the SDK's
// path would add (resultType and serverInfo for 2026-07-28, an empty
// content list for none); the call's progress notifications and log
// messages, and an upstream's requests to a legacy client, go out on the
// answer's event stream. It takes a request only when the SDK would take
// it alike, by the SDK's own rules (parseToolCall): what it would refuse (a
// batch, a malformed envelope or _meta, a header the protocol version
// requires that is missing or wrong, Mcp-Param headers that do not match
// the arguments) goes to the SDK, which answers with its exact error.
// TestMCPToolCallPaths sends each kind to both paths and compares. The
// fast path saves the SDK's per-request session and two decode/encode
// rounds of the result.

// mcpCall is a tools/call the fast path takes, as decoded.
type mcpCall struct {
	id             bodyJSON // a string or an integer, as sent
	name           string
	args           bodyJSON // a slice of the body, not a copy
	meta           map[string]any
	progress       any             // the progress token; nil for none
	inputResponses json.RawMessage // a retry's answers, as the SDK re-encodes them
	requestState   string
	modern         bool // a 2026-07-28 request
	rt             route
}

// serverInfoMeta is the gateway's _meta serverInfo (SEP-2575).
var serverInfoMeta = json.RawMessage(`{"name":"armoriq-gateway","title":"armoriq gateway","version":"1"}`)

// supportedVersions is the SDK's mcp.SupportedProtocolVersions(), which
// returns a new copy on every call.
var supportedVersions = mcp.SupportedProtocolVersions()

// maxDepth is how deep the SDK's decoder lets a message nest.
const maxDepth = 1000

// parseToolCall decodes body (trimmed) of request r if it is a tools/call
// the fast path may take: one the SDK would serve, by its rules, with no
// error of its own. Keys are matched exactly, as the SDK's decoder does.
func (ep *mcpEndpoint) parseToolCall(ctx context.Context, r *http.Request, t []byte) (*mcpCall, bool) {
	if len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(`"tools/call"`)) {
		return nil, false
	}
	if mediaType(r.Header.Get("Content-Type")) != "application/json" || !acceptsBoth(r) || tooDeep(t) {
		return nil, false
	}
	// The envelope and the params, as slices of the body: keys compared
	// exactly, the last of duplicates kept, as the SDK's decoder does.
	if !validJSON(t) {
		return nil, false
	}
	var jsonrpc, method, params bodyJSON
	c := &mcpCall{}
	env := objectScanner{b: t}
	for k, v := range env.fields() {
		switch string(k) {
		case "jsonrpc":
			jsonrpc = v
		case "id":
			c.id = v
		case "method":
			method = v
		case "params":
			params = v
		}
	}
	if env.bad || string(jsonrpc) != `"2.0"` || string(method) != `"tools/call"` || !plainID(c.id) {
		return nil, false
	}
	var name, meta, inputResponses, requestState bodyJSON
	ps := objectScanner{b: params}
	for k, v := range ps.fields() {
		switch string(k) {
		case "name":
			name = v
		case "arguments":
			c.args = v
		case "_meta":
			meta = v
		case "inputResponses":
			inputResponses = v
		case "requestState":
			requestState = v
		}
	}
	if ps.bad { // no params, null, or not an object: a JSON-RPC error of the SDK's
		return nil, false
	}
	// A string without escapes, of valid UTF-8, is its bytes (plainString);
	// any other is decoded.
	if len(name) == 0 || name[0] != '"' || !plainString(name, &c.name) && json.Unmarshal(name, &c.name) != nil {
		return nil, false
	}
	if len(meta) > 0 && json.Unmarshal(meta, &c.meta) != nil {
		return nil, false
	}
	if inputResponses != nil {
		// Decoded and encoded as the SDK's path does, so that the
		// upstream gets the same bytes; one the SDK cannot read (or null,
		// which it reads as an empty map) is its to answer.
		var m mcp.InputResponseMap
		if inputResponses[0] != '{' || json.Unmarshal(inputResponses, &m) != nil {
			return nil, false
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, false
		}
		c.inputResponses = b
	}
	if requestState != nil && (requestState[0] != '"' || !plainString(requestState, &c.requestState) && json.Unmarshal(requestState, &c.requestState) != nil) {
		return nil, false
	}
	c.progress = c.meta["progressToken"] // any JSON value but null, relayed as it is

	// The protocol version: the header's, which a _meta version must
	// match, and the 2026-07-28 headers and _meta (SEP-2575, SEP-2243).
	pv := r.Header.Get(headerProtocol)
	metaPV, _ := c.meta["io.modelcontextprotocol/protocolVersion"].(string)
	if pv != "" && !slices.Contains(supportedVersions, pv) {
		return nil, false
	}
	if (pv >= firstStatelessVersion || metaPV != "") && metaPV != pv {
		return nil, false
	}
	c.modern = pv >= firstStatelessVersion
	if c.modern && (r.Header.Get("Mcp-Method") != "tools/call" || r.Header.Get("Mcp-Name") != c.name || !modernMeta(c.meta)) {
		return nil, false
	}
	rt, ok := ep.cat.current(ctx).tools[c.name]
	if !ok || !rt.fast || (c.modern && !paramHeadersMatch(r.Header, c.args, rt.headers)) {
		return nil, false
	}
	c.rt = rt
	return c, true
}

// objectScanner reads the members of a JSON object, as slices of it,
// without decoding their values. The text must be valid JSON (json.Valid);
// bad is set when it is not an object, or when a key has an escape, which
// the scanner does not undo (the request then goes to the SDK).
type objectScanner struct {
	b   []byte
	bad bool
}

// fields yields each member's key and value, in order.
func (s *objectScanner) fields() func(yield func(key, val []byte) bool) {
	return func(yield func(key, val []byte) bool) {
		b := s.b
		i := skipSpace(b, 0)
		if i >= len(b) || b[i] != '{' {
			s.bad = true
			return
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return
		}
		for i < len(b) && b[i] == '"' {
			j := i + 1
			for j < len(b) && b[j] != '"' && b[j] != '\\' {
				j++
			}
			if j >= len(b) || b[j] != '"' {
				break // an escape in the key
			}
			key := b[i+1 : j]
			i = skipSpace(b, j+1)
			if i >= len(b) || b[i] != ':' {
				break
			}
			i = skipSpace(b, i+1)
			end := skipValue(b, i)
			if end <= i || !yield(key, b[i:end]) {
				if end <= i {
					break
				}
				return
			}
			i = skipSpace(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				return
			}
			break
		}
		s.bad = true
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value (valid JSON) starting at i.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// skipString returns the end of the JSON string (valid JSON) starting at
// b[i] == '"': after the first quote not escaped, found with IndexByte
// (strings are most of a body's bytes).
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		n := 0 // the backslashes before the quote: an odd number escapes it
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
	return len(b)
}

// plainID reports whether a request id is one the SDK echoes as it was
// sent: a string, or an integer written plainly that a float64 holds
// exactly (the SDK reads ids as float64 and writes them as int64).
func plainID(id bodyJSON) bool {
	if len(id) == 0 {
		return false
	}
	if id[0] == '"' {
		return true
	}
	digits := id
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 || string(id) == "-0" {
		return false
	}
	for _, b := range digits {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}

// tooDeep reports whether t nests objects and arrays deeper than the SDK
// reads (its decoder refuses the whole message).
func tooDeep(t []byte) bool {
	if bytes.Count(t, []byte("{"))+bytes.Count(t, []byte("[")) <= maxDepth {
		return false
	}
	depth, inString, escaped := 0, false, false
	for _, b := range t {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > maxDepth {
				return true
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		}
	}
	return false
}

// clientCapabilities is what the SDK decodes a 2026-07-28 request's
// _meta client capabilities into (its clientCapabilitiesV2).
type clientCapabilities struct {
	mcp.ClientCapabilities
	Roots *mcp.RootCapabilities `json:"roots,omitempty"`
}

// modernMeta reports whether a 2026-07-28 request's _meta has what the
// SDK requires: client capabilities, and client info if any, each of the
// SDK's types.
func modernMeta(meta map[string]any) bool {
	caps := meta["io.modelcontextprotocol/clientCapabilities"]
	if caps == nil || !(emptyObjects(caps) || remarshals(caps, new(clientCapabilities))) {
		return false
	}
	if ci, present := meta[metaClientInfo]; present && (ci == nil || !(plainClientInfo(ci) || remarshals(ci, new(mcp.Implementation)))) {
		return false
	}
	return true
}

// emptyObjects reports whether v is an object whose values are all empty
// objects: client capabilities as clients send them, which every field of
// the SDK's type takes (maps and structs), and which it ignores otherwise.
func emptyObjects(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, x := range m {
		if o, ok := x.(map[string]any); !ok || len(o) != 0 {
			return false
		}
	}
	return true
}

// implementationStrings are the string fields of the SDK's Implementation.
var implementationStrings = map[string]bool{"name": true, "title": true, "description": true, "version": true, "websiteUrl": true}

// plainClientInfo reports whether v decodes into the SDK's Implementation
// for sure: an object of its string fields, by their exact names, with
// string values (a client's name and version).
func plainClientInfo(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for k, x := range m {
		if _, isString := x.(string); !isString || !implementationStrings[k] {
			return false
		}
	}
	return true
}

// remarshals reports whether v, as decoded from JSON, decodes into to.
// Go's decoder matches keys in any case and the SDK's only exactly, so it
// may refuse what the SDK takes (the request then goes to the SDK), never
// the other way round.
func remarshals(v, to any) bool {
	b, err := json.Marshal(v)
	return err == nil && json.Unmarshal(b, to) == nil
}

// fastToolCall serves body, of request r, if it is a tools/call the fast
// path may take, and reports whether it did. ctx is the request's context
// with the caller on it (r's is not).
func (ep *mcpEndpoint) fastToolCall(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte) bool {
	if ep.s.mcpFastOff.Load() {
		return false
	}
	p, ok := ep.parseToolCall(ctx, r, bytes.TrimSpace(body))
	if !ok {
		return false
	}
	modern := p.modern

	ep.metrics.fast.Add(1)
	// An upstream's log messages turn the answer into an event stream.
	mc := mcpCallFrom(ctx)
	sw := &sseWriter{w: w, level: "info", ep: ep, keyID: mc.caller.KeyID, asks: mc.asks}
	if modern {
		sw.level, _ = p.meta["io.modelcontextprotocol/logLevel"].(string)
	}
	tc := &toolCall{rt: p.rt, args: json.RawMessage(p.args), meta: p.meta, inputResponses: p.inputResponses, requestState: p.requestState}
	if sw.level != "" {
		tc.log = sw.log
	}
	if p.progress != nil {
		tc.progress = sw.progress(p.progress)
	}
	if !modern {
		// A legacy client may be asked to sample or elicit during the
		// call; a 2026-07-28 one gets input_required results instead.
		tc.request = sw.request
	}
	raw, err := ep.callTool(ctx, tc)
	if err == nil {
		var ok bool
		if raw, ok = answerResult(raw, modern); !ok {
			err = &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q answered with a malformed result", p.rt.server.ID)}
		}
	}
	out := answerBuffer(len(raw) + 128)
	defer putAnswerBuffer(out)
	out.WriteString(`{"jsonrpc":"2.0","id":`)
	out.Write(p.id)
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

// answerBuffers holds the buffers answers are written into before they go
// out, which a ResponseWriter copies (io.Writer's contract): one per call
// in flight rather than one allocated per call.
var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// answerBuffer returns an empty buffer of answerBuffers with room for size
// bytes; putAnswerBuffer gives it back once written.
func answerBuffer(size int) *bytes.Buffer {
	b := answerBuffers.Get().(*bytes.Buffer)
	b.Reset()
	b.Grow(size)
	return b
}

// putAnswerBuffer puts b back in answerBuffers, unless a large answer grew
// it past 64 KiB: the pool does not keep large buffers for small answers.
func putAnswerBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		answerBuffers.Put(b)
	}
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

// logLevels orders MCP's log levels (RFC 5424's, least severe first). A
// level not among them counts as debug, as the SDK counts it, for the
// client's level and a message's alike.
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
	if s.done || logLevels[m.Level] < logLevels[s.level] {
		return
	}
	s.event(b)
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
// elicitation), or asks an input request of its input_required result
// (mcp_input.go), to the client on the call's event stream, and waits for
// the answer, which the client POSTs as a JSON-RPC response (answered).
// The wait is in this replica's memory: an answer POSTed to another
// replica is not seen, and the call ends at its timeout.
func (s *sseWriter) request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if !clientAnswers(s.asks, method) {
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

// answerResult is the result the fast path writes for raw, an upstream's
// CallToolResult, as the SDK's path would write it: the SDK decodes it
// into its CallToolResult, which fails for a result that is not an object
// (or whose _meta is not one), and writes an empty content list for none;
// for a 2026-07-28 client annotateModern adds more. ok is false for a
// result the SDK's path refuses as malformed. Only what the SDK would add
// is added: the rest is copied as the upstream wrote it.
func answerResult(raw json.RawMessage, modern bool) (json.RawMessage, bool) {
	if !modern && hasContentFirst(raw) {
		return raw, true // what SDKs write: nothing to add
	}
	if modern {
		if out, ok := annotatePlain(raw); ok {
			return out, true
		}
	}
	return answerDecoded(raw, modern)
}

// answerDecoded is answerResult for any result, decoded into a map.
func answerDecoded(raw json.RawMessage, modern bool) (json.RawMessage, bool) {
	var m map[string]bodyJSON // slices of raw, not copies
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	if c := m["content"]; len(c) == 0 || string(c) == "null" {
		m["content"] = bodyJSON("[]")
	}
	if !modern {
		return encodeObject(m, len(raw)+4), true
	}
	return annotateModern(m, len(raw))
}

// hasContentFirst reports whether raw is an object whose first key is
// "content" with a list: the common result, which needs nothing added.
func hasContentFirst(raw []byte) bool {
	b := bytes.TrimLeft(raw, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	b, ok := bytes.CutPrefix(bytes.TrimLeft(b[1:], " \t\r\n"), []byte(`"content"`))
	if !ok {
		return false
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	return len(b) > 0 && b[0] == '['
}

// annotateModern adds what a 2026-07-28 result carries and an older
// upstream did not set: resultType, and the gateway's serverInfo in _meta.
// The result's values are copied once, as they are, into an output sized
// for them (a large tool answer is not decoded and re-encoded).
func annotateModern(m map[string]bodyJSON, size int) (json.RawMessage, bool) {
	if _, ok := m["resultType"]; !ok {
		m["resultType"] = bodyJSON(`"complete"`)
	}
	var meta map[string]json.RawMessage
	if mr, ok := m["_meta"]; ok && json.Unmarshal(mr, &meta) != nil {
		return nil, false
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	if _, ok := meta["io.modelcontextprotocol/serverInfo"]; !ok {
		meta["io.modelcontextprotocol/serverInfo"] = serverInfoMeta
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, false
	}
	m["_meta"] = mb
	return encodeObject(m, size+len(mb)+64), true
}

// serverInfoOnly is the _meta annotateModern writes for a result without
// one: json.Marshal's encoding of the map holding serverInfo alone.
var serverInfoOnly = func() []byte {
	b, err := json.Marshal(map[string]json.RawMessage{"io.modelcontextprotocol/serverInfo": serverInfoMeta})
	if err != nil {
		panic(err) // a constant that does not encode: a bug
	}
	return b
}()

// annotatePlain is annotateModern for the common result, without decoding
// it into a map: an object with no _meta, each key of printable ASCII
// without escapes (or characters JSON writers escape) and once. It writes
// what annotateModern writes, and reports whether raw was such a result;
// if not, annotateModern must answer.
func annotatePlain(raw json.RawMessage) (json.RawMessage, bool) {
	if !validJSON(raw) {
		return nil, false
	}
	type member struct{ key, val []byte }
	var buf [8]member
	members := buf[:0]
	size := len(raw) + len(serverInfoOnly) + 64
	hasContent, hasType := false, false
	s := objectScanner{b: raw}
	for k, v := range s.fields() {
		for _, c := range k {
			if c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' {
				return nil, false
			}
		}
		for _, m := range members {
			if string(m.key) == string(k) {
				return nil, false // a duplicate: the last one counts
			}
		}
		switch string(k) {
		case "_meta":
			return nil, false
		case "content":
			hasContent = true
			if string(v) == "null" {
				v = []byte("[]")
			}
		case "resultType":
			hasType = true
		}
		members = append(members, member{k, v})
	}
	if s.bad {
		return nil, false
	}
	if !hasContent {
		members = append(members, member{[]byte("content"), []byte("[]")})
	}
	if !hasType {
		members = append(members, member{[]byte("resultType"), []byte(`"complete"`)})
	}
	members = append(members, member{[]byte("_meta"), serverInfoOnly})
	slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, m.key...)
		out = append(out, '"', ':')
		out = append(out, m.val...)
	}
	return append(out, '}'), true
}

// encodeObject writes m as a JSON object, keys sorted, values as they are.
func encodeObject(m map[string]bodyJSON, size int) json.RawMessage {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = store.AppendJSONString(out, k)
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
