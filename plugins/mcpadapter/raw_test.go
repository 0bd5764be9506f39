package mcpadapter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

// scripted is an upstream whose session setup is a real go-sdk server
// (stateful, 2025-11-25) and whose tools/call answers are written by hand,
// to put the raw path in front of what real servers send: JSON or an event
// stream, notifications, errors, an expired session, a stream cut short, an
// answer too large, a response for another id, a server request.
type scripted struct {
	t       *testing.T
	sdk     http.Handler
	srv     *httptest.Server
	conns   atomic.Int64 // connections opened by the adapter
	expired atomic.Bool  // "expire" answered 404 once
	calls   atomic.Int64 // tools/call requests seen
	answers chan string  // bodies of the client's answers to server requests
	lastSID atomic.Value // the Mcp-Session-Id of the last tools/call
	// lingered: "linger" saw its client leave the stream it kept open
	lingered chan struct{}
}

func newScripted(t *testing.T) *scripted {
	s := &scripted{t: t, answers: make(chan string, 4), lingered: make(chan struct{}, 4)}
	server := mcp.NewServer(&mcp.Implementation{Name: "scripted", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "sdk", Description: "answered by the SDK server"},
		func(ctx context.Context, req *mcp.CallToolRequest, in struct {
			A int `json:"a"`
		}) (*mcp.CallToolResult, any, error) {
			return text("from the sdk"), nil, nil
		})
	s.sdk = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
		Params struct {
			Name string         `json:"name"`
			Meta map[string]any `json:"_meta"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &m)
	if m.Method == "" && (m.Result != nil || m.Error != nil) && string(m.ID) == "99" {
		s.answers <- string(body) // the answer to our server request
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if m.Method != "tools/call" || m.Params.Name == "sdk" {
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.sdk.ServeHTTP(w, r)
		return
	}
	s.calls.Add(1)
	s.lastSID.Store(r.Header.Get("Mcp-Session-Id"))
	if r.Header.Get("Mcp-Protocol-Version") == "" || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		http.Error(w, "missing headers", http.StatusBadRequest)
		return
	}
	id := string(m.ID)
	result := func(txt string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"` + txt + `"}]}}`
	}
	sse := func(events ...string) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, e := range events {
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", e)
			w.(http.Flusher).Flush()
		}
	}
	jsonBody := func(status int, b string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, b)
	}
	switch m.Params.Name {
	case "json":
		jsonBody(200, result("json"))
	case "sse":
		tok, _ := json.Marshal(m.Params.Meta["progressToken"])
		sse(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":`+string(tok)+`,"progress":1,"total":2,"message":"half"}}`,
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"someone-else","progress":9}}`,
			`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"l","data":"hello"}}`,
			`{"jsonrpc":"2.0","id":"armoriq-r0","result":{"content":[]}}`, // another request's: ignored
			result("sse"))
	case "linger":
		// The response, then the stream kept open until the client goes.
		sse(result("linger"))
		<-r.Context().Done()
		s.lingered <- struct{}{}
		return
	case "multiline":
		// One event's data over two lines, CRLF line ends.
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\r\ndata: \"result\":{\"content\":[]}}\r\n\r\n")
	case "rpcerr":
		jsonBody(200, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32602,"message":"unknown tool: rpcerr","data":{"x":1}}}`)
	case "status400":
		jsonBody(400, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32602,"message":"bad arguments"}}`)
	case "status500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "expire":
		if !s.expired.Swap(true) {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		jsonBody(200, result("renewed"))
	case "cut":
		sse(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"going"}}`)
		// The handler returns: the stream ends without the response.
	case "big":
		jsonBody(200, `{"jsonrpc":"2.0","id":`+id+`,"result":{"content":[{"type":"text","text":"`+strings.Repeat("x", 4096)+`"}]}}`)
	case "bigevent":
		sse(`{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 4096) + `"}]}}`)
	case "mismatch":
		jsonBody(200, `{"jsonrpc":"2.0","id":"not-yours","result":{"content":[]}}`)
	case "elicit":
		sse(`{"jsonrpc":"2.0","id":99,"method":"elicitation/create","params":{"message":"Your name?","requestedSchema":{"type":"object"}}}`)
		select {
		case a := <-s.answers:
			var ans struct {
				Result struct {
					Content map[string]string `json:"content"`
				} `json:"result"`
				Error *struct{ Code int } `json:"error"`
			}
			_ = json.Unmarshal([]byte(a), &ans)
			txt := "Hello, " + ans.Result.Content["name"]
			if ans.Error != nil {
				txt = fmt.Sprintf("refused %d", ans.Error.Code)
			}
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", result(txt))
		case <-time.After(5 * time.Second):
		}
	default:
		jsonBody(200, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32602,"message":"unknown tool"}}`)
	}
}

// rawCall builds the RawCall the host would send for tool.
func rawCall(t testing.TB, tool, pv, progress string) *plugins.RawCall {
	t.Helper()
	meta := plugins.UpstreamMeta(map[string]any{"x-trace": "t1"}, pv)
	if progress != "" {
		meta["progressToken"] = progress
	}
	params, err := plugins.AppendToolCallParams(nil, tool, json.RawMessage(`{"a":1}`), meta, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return &plugins.RawCall{Method: "tools/call", Name: tool, Params: params, ProtocolVersion: pv, ProgressToken: progress}
}

func configured(t *testing.T, url string) *Adapter {
	t.Helper()
	a := NewHTTP()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Configure(ctx, plugins.ServerConfig{ID: "s", Transport: plugins.TransportHTTP, URL: url, Headers: map[string]string{"X-Cred": "c"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestRawHTTP(t *testing.T) {
	up := newScripted(t)
	a := configured(t, up.srv.URL)
	a.maxAnswer = 2048
	pv := protocolVersion(a.currentSession())
	if pv != "2025-11-25" {
		t.Fatalf("negotiated %q, want 2025-11-25", pv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	type outcome struct {
		text   string // the result's text, or the error's message
		events string
	}
	call := func(tool, progress string, ev *plugins.CallEvents) (outcome, *plugins.RawResult, error) {
		var events []string
		if ev == nil {
			ev = &plugins.CallEvents{}
		}
		ev.Progress = func(p plugins.Progress) {
			events = append(events, fmt.Sprintf("progress %v/%v %s", p.Progress, p.Total, p.Message))
		}
		ev.Log = func(m plugins.LogMessage) { events = append(events, fmt.Sprintf("log %s %s", m.Level, m.Data)) }
		res, err := a.CallRaw(ctx, rawCall(t, tool, pv, progress), ev)
		o := outcome{events: strings.Join(events, "; ")}
		if err == nil {
			var r mcp.CallToolResult
			if uerr := json.Unmarshal(res.Result, &r); uerr != nil {
				t.Fatalf("%s: result %s: %v", tool, res.Result, uerr)
			}
			if len(r.Content) > 0 {
				o.text = r.Content[0].(*mcp.TextContent).Text
			}
		}
		return o, res, err
	}

	for _, tc := range []struct {
		tool, progress string
		want           outcome
		wantErr        string // in the error; "" for none
		rpcCode        int64  // an upstream JSON-RPC error
	}{
		{tool: "json", want: outcome{text: "json"}},
		{tool: "sse", progress: "tok-1", want: outcome{text: "sse", events: "progress 1/2 half; log info \"hello\""}},
		{tool: "sse", want: outcome{text: "sse", events: "log info \"hello\""}}, // no progress asked: none relayed
		{tool: "multiline"},
		{tool: "rpcerr", rpcCode: -32602, wantErr: "unknown tool: rpcerr"},
		{tool: "status400", rpcCode: -32602, wantErr: "bad arguments"},
		{tool: "status500", wantErr: "HTTP 500"},
		{tool: "cut", wantErr: "closed the event stream", want: outcome{events: "log info \"going\""}},
		{tool: "big", wantErr: "larger than 2048 bytes"},
		{tool: "bigevent", wantErr: "larger than 2048 bytes"},
		{tool: "mismatch", wantErr: "no response to it"},
	} {
		got, res, err := call(tc.tool, tc.progress, nil)
		var rpcErr *plugins.RPCError
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.tool, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", tc.tool, err, tc.wantErr)
		case tc.rpcCode != 0 && (!errors.As(err, &rpcErr) || rpcErr.Code != tc.rpcCode):
			t.Errorf("%s: error %#v, want an upstream JSON-RPC error %d", tc.tool, err, tc.rpcCode)
		case tc.rpcCode == 0 && errors.As(err, &rpcErr):
			t.Errorf("%s: error %v is the upstream's answer, want an adapter failure", tc.tool, err)
		}
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.tool, got, tc.want)
		}
		if err == nil && (res.Path != plugins.PathRaw || res.ProtocolVersion != pv) {
			t.Errorf("%s: path %q version %q, want raw %s", tc.tool, res.Path, res.ProtocolVersion, pv)
		}
	}

	// A session the upstream forgot (404): a new session, the call once more.
	before := up.calls.Load()
	oldSID := a.currentSession().ID()
	if got, _, err := call("expire", "", nil); err != nil || got.text != "renewed" {
		t.Errorf("expire: %+v, %v; want renewed on a new session", got, err)
	}
	if n := up.calls.Load() - before; n != 2 {
		t.Errorf("expire: the upstream saw %d calls, want 2 (the refused one, the retry)", n)
	}
	if sid := up.lastSID.Load().(string); sid == oldSID || sid == "" {
		t.Errorf("expire: the retry went with session %q, the old one was %q", sid, oldSID)
	}

	// A server request on the call's stream goes to the call's hook, its
	// answer back to the upstream; without a hook it is refused.
	got, _, err := call("elicit", "", &plugins.CallEvents{Request: func(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
		if method != "elicitation/create" || !strings.Contains(string(params), "Your name?") {
			return nil, &plugins.RPCError{Code: -32602, Message: "unexpected " + method}
		}
		return json.RawMessage(`{"action":"accept","content":{"name":"Ada"}}`), nil
	}})
	if err != nil || got.text != "Hello, Ada" {
		t.Errorf("elicit: %+v, %v; want Hello, Ada", got, err)
	}
	if got, _, err := call("elicit", "", nil); err != nil || got.text != "refused -32602" {
		t.Errorf("elicit without a hook: %+v, %v; want the upstream refused -32602", got, err)
	}

	// A tool with x-mcp-header parameters goes through the SDK client.
	a.noteHeaderTools(json.RawMessage(`{"tools":[{"name":"sdk","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}}}]}`), true)
	res, err := a.CallRaw(ctx, rawCall(t, "sdk", pv, ""), nil)
	if err != nil || res.Path != plugins.PathSDK || !strings.Contains(string(res.Result), "from the sdk") {
		t.Errorf("x-mcp-header tool: %+v, %v; want the SDK path's answer", res, err)
	}
}

// TestRawHTTPKeepsConnections: answers are read to their end, so calls,
// sequential or 16 at a time, reuse keep-alive connections rather than
// dialing (the SDK client's cancelled reads used to reset them).
func TestRawHTTPKeepsConnections(t *testing.T) {
	up := newScripted(t)
	a := configured(t, up.srv.URL)
	pv := protocolVersion(a.currentSession())
	ctx := context.Background()
	for range 3 { // warm: the pool holds the SDK's connection(s) too
		if _, err := a.CallRaw(ctx, rawCall(t, "sse", pv, ""), nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // the drains finish
	base := up.conns.Load()
	for range 50 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := a.CallRaw(cctx, rawCall(t, "sse", pv, ""), nil)
		cancel() // the call's context ends as soon as it returns, as under gRPC
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	// A call's connection goes back to the pool once its answer is
	// drained, a moment after the call returns: on a loaded machine the
	// next call may dial before that, rarely.
	if n := up.conns.Load() - base; n > 3 {
		t.Errorf("50 sequential calls opened %d connections, want at most 3 (one each would be 50)", n)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := a.CallRaw(ctx, rawCall(t, "json", pv, ""), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// 16 at a time need 16; a few more when a worker's next call races
	// its last connection's return to the pool (21 seen under load 17).
	if n := up.conns.Load() - base; n > 32 {
		t.Errorf("160 calls 16 at a time opened %d connections, want at most 32 (one each would be 160)", n)
	}
}

// TestRawStreamKeptOpen: an upstream that keeps a call's event stream open
// after the response: the call is answered, and the connection, which
// cannot serve another request while the stream lasts, is closed rather
// than drained for long (the raw path's own transport); the next call
// goes on another.
func TestRawStreamKeptOpen(t *testing.T) {
	up := newScripted(t)
	a := configured(t, up.srv.URL)
	if _, ok := a.rawClient.Transport.(*connTransport); !ok {
		t.Fatalf("transport %T, want the raw path's own", a.rawClient.Transport)
	}
	pv := protocolVersion(a.currentSession())
	ctx := context.Background()
	if _, err := a.CallRaw(ctx, rawCall(t, "json", pv, ""), nil); err != nil {
		t.Fatal(err)
	}
	base := up.conns.Load()
	res, err := a.CallRaw(ctx, rawCall(t, "linger", pv, ""), nil)
	if err != nil || !strings.Contains(string(res.Result), "linger") {
		t.Fatalf("linger: %v, %v", res, err)
	}
	select {
	case <-up.lingered:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection of the stream kept open was not closed")
	}
	if _, err := a.CallRaw(ctx, rawCall(t, "json", pv, ""), nil); err != nil {
		t.Fatal(err)
	}
	if n := up.conns.Load() - base; n != 1 {
		t.Errorf("%d connections opened after the stream kept open, want 1 (its own was closed)", n)
	}
}

// TestRawRebuildsMeta: a call built for another protocol version (the
// first call, or an upstream that changed) has its _meta rebuilt for the
// session's.
func TestRawRebuildsMeta(t *testing.T) {
	call := rawCall(t, "json", plugins.FirstStatelessVersion, "tok")
	params, err := rebuildParams(call, "2025-11-25")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
		Meta      map[string]any  `json:"_meta"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		t.Fatal(err)
	}
	if p.Name != "json" || string(p.Arguments) != `{"a":1}` || p.Meta["x-trace"] != "t1" || p.Meta["progressToken"] != "tok" {
		t.Errorf("rebuilt params %s lost the call's name, arguments, _meta or progress token", params)
	}
	if _, ok := p.Meta[plugins.MetaProtocolVersion]; ok {
		t.Errorf("rebuilt params %s keep the 2026-07-28 envelope under 2025-11-25", params)
	}
}

// FuzzSSEScanner: any event stream is read without panicking, every event
// returned within the bound, and a stream of well-formed events gives
// back their data.
func FuzzSSEScanner(f *testing.F) {
	f.Add([]byte("event: message\ndata: {\"id\":1}\n\n"), 64)
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n: comment\nid: 3\ndata: c"), 8)
	f.Add([]byte("data:"+strings.Repeat("x", 100)+"\n\n"), 16)
	f.Add([]byte("\n\n\ndata\ndata:\n\n"), 4)
	f.Fuzz(func(t *testing.T, stream []byte, limit int) {
		if limit <= 0 || limit > 1<<16 {
			return
		}
		sc := sseScanner{r: bufio.NewReaderSize(bytes.NewReader(stream), 16), limit: limit}
		for range len(stream) + 2 {
			data, err := sc.next()
			if err != nil {
				return
			}
			if len(data) > limit {
				t.Fatalf("event of %d bytes past the limit %d", len(data), limit)
			}
		}
		t.Fatalf("the scanner did not end on a %d-byte stream", len(stream))
	})
}

// FuzzRawMessage: any message on a call's stream is handled without
// panicking, and only a response with the call's id (or an error with a
// null id) ends the call.
func FuzzRawMessage(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":"armoriq-r1","result":{}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":[1]}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":7,"method":"ping"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		a := NewHTTP()
		a.cfg.URL = "http://127.0.0.1:1" // a server request's answer goes nowhere
		a.rawClient = &http.Client{Timeout: time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := &rawReader{a: a, ctx: ctx, id: "armoriq-r1", call: &plugins.RawCall{ProgressToken: "t"}, limit: 1 << 20,
			ev: &plugins.CallEvents{Progress: func(plugins.Progress) {}, Log: func(plugins.LogMessage) {}}}
		res, done, err := r.message(msg)
		r.wait()
		if done && err == nil && res == nil {
			t.Fatal("the call ended with neither a result nor an error")
		}
		var m struct{ ID string }
		if done && err == nil && (json.Unmarshal(msg, &m) != nil || m.ID != "armoriq-r1") {
			t.Fatalf("a result ended the call without its id: %s", msg)
		}
	})
}
