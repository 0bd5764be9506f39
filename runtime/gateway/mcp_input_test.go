package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
)

// askerServer is v2Server with the tools that exercise the gateway's
// rounds of input for legacy clients: confirm says which action the answer
// to its question had; pair asks two questions at once; nag asks again
// whatever the answer; sample asks for a sampling.
func askerServer() *mcp.Server {
	srv := v2Server()
	question := func(msg string) *mcp.ElicitParams {
		return &mcp.ElicitParams{Message: msg, RequestedSchema: &jsonschema.Schema{
			Type: "object", Properties: map[string]*jsonschema.Schema{"answer": {Type: "string"}}}}
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "confirm", Description: "asks for a confirmation"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if r, ok := req.Params.InputResponses["ok"].(*mcp.ElicitResult); ok {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "action: " + r.Action}}}, nil, nil
		}
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"ok": question("Go ahead?")}, RequestState: "c1"}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "pair", Description: "asks two questions at once"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		a, ok1 := req.Params.InputResponses["first"].(*mcp.ElicitResult)
		b, ok2 := req.Params.InputResponses["second"].(*mcp.ElicitResult)
		if ok1 && ok2 {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%v %v", a.Content["answer"], b.Content["answer"])}}}, nil, nil
		}
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"first": question("first?"), "second": question("second?")}, RequestState: "p1"}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "nag", Description: "asks again and again"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"again": question("Again?")}, RequestState: "n" + req.Params.RequestState}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "sample", Description: "asks for a sampling"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{"s": &mcp.CreateMessageParams{MaxTokens: 10,
			Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}}}, nil, nil
	})
	return srv
}

// statelessOnly wraps an MCP handler so that it refuses the initialize
// handshake with a JSON-RPC error, as a server of 2026-07-28 only does (the
// adapter then serves legacy clients on its 2026-07-28 session), and calls
// seen with the name of each tools/call before serving it.
func statelessOnly(h http.Handler, seen func(tool string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		_ = json.Unmarshal(body, &m)
		switch m.Method {
		case "initialize":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"error":{"code":-32022,"message":"unsupported protocol version","data":{"supported":["2026-07-28"]}}}`))
			return
		case "tools/call":
			seen(m.Params.Name)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

// legacyExchange posts a legacy session's tools/call (under request id
// reqID) and reads its event stream to the end: each server request the
// gateway relays is answered by answer (a result, or nil to leave it
// unanswered), POSTed under key. It returns the server requests relayed
// and the call's final answer.
func legacyExchange(t *testing.T, url, key, sid, reqID string, call map[string]any, answer func(req map[string]any) map[string]any) (asked []map[string]any, final map[string]any) {
	t.Helper()
	post := func(msg map[string]any) *http.Response {
		b, _ := json.Marshal(msg)
		req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set(headerSessionID, sid)
		req.Header.Set(headerProtocol, "2025-11-25")
		req.Header.Set(headerRequestID, reqID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post(call)
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		json.NewDecoder(resp.Body).Decode(&final)
		return nil, final
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		d, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		if m["method"] == nil || m["id"] == nil {
			final = m
			continue
		}
		asked = append(asked, m)
		if res := answer(m); res != nil {
			r := post(map[string]any{"jsonrpc": "2.0", "id": m["id"], "result": res})
			r.Body.Close()
			if r.StatusCode != http.StatusAccepted {
				t.Errorf("the answer to %v: %d, want 202", m["method"], r.StatusCode)
			}
		}
	}
	return asked, final
}

// callRecords is the audit of one request id: its request records and
// its outcome records, each in order.
func callRecords(t *testing.T, g *testGateway, reqID string) (requests, outcomes []store.AuditRecord) {
	t.Helper()
	g.srv.waitOutcomes(5 * time.Second)
	recs, err := g.store.ListAudit(context.Background(), store.AuditFilter{RequestID: reqID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Phase == store.PhaseRequest {
			requests = append(requests, r)
		} else {
			outcomes = append(outcomes, r)
		}
	}
	return requests, outcomes
}

// TestMCPLegacyClientInputRounds: an upstream whose session speaks
// 2026-07-28 (it refuses the initialize handshake) answers a legacy
// client's tools/call with input_required. The gateway asks the client
// with a server request per input request, when the client declared the
// capability, and retries the call with the answers; each upstream call
// is audited, its request record committed before the upstream sees it.
// A client that cannot be asked gets an error saying so, not the empty
// success it would read input_required as; a 2026-07-28 client gets the
// input_required result as it is.
func TestMCPLegacyClientInputRounds(t *testing.T) {
	var g *testGateway
	var mu sync.Mutex
	calls := map[string]int{} // upstream tools/calls by tool
	var unaudited []string    // calls the upstream saw before their request record was committed
	seen := func(tool string) {
		recs, err := g.store.ListAudit(context.Background(), store.AuditFilter{Tool: tool, Phase: store.PhaseRequest, Limit: 1000})
		mu.Lock()
		defer mu.Unlock()
		calls[tool]++
		if err != nil || len(recs) < calls[tool] {
			unaudited = append(unaudited, fmt.Sprintf("%s call %d: %d request records (%v)", tool, calls[tool], len(recs), err))
		}
	}
	up := httptest.NewServer(statelessOnly(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return askerServer() }, &mcp.StreamableHTTPOptions{Stateless: true}), seen))
	t.Cleanup(up.Close)
	g = adapterGateway(t, "1", nil)
	g.pushServers("in1", 1, allowAll(), bundle.Server{ID: "v2", Transport: "http", URL: up.URL + "/", ToolPrefix: "never"})
	url := g.http.URL + "/mcp"
	other := g.createKey("other", "agent")
	upstreamCalls := func(tool string) int {
		mu.Lock()
		defer mu.Unlock()
		return calls[tool]
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if len(unaudited) > 0 {
			t.Errorf("the upstream saw calls before their audit: %v", unaudited)
		}
	})

	eliciting := legacySession(t, url, g.agentKey, map[string]any{"elicitation": map[string]any{}})
	plain := legacySession(t, url, g.agentKey, nil)
	call := func(id any, tool string) map[string]any {
		return map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": map[string]any{}}}
	}
	accept := func(content map[string]any) func(map[string]any) map[string]any {
		return func(map[string]any) map[string]any { return map[string]any{"action": "accept", "content": content} }
	}
	text := func(final map[string]any) string {
		res, _ := final["result"].(map[string]any)
		content, _ := res["content"].([]any)
		if len(content) != 1 {
			b, _ := json.Marshal(final)
			return "no text: " + string(b)
		}
		s, _ := content[0].(map[string]any)["text"].(string)
		return s
	}
	errorOf := func(final map[string]any) (float64, string) {
		e, _ := final["error"].(map[string]any)
		code, _ := e["code"].(float64)
		msg, _ := e["message"].(string)
		return code, msg
	}

	// The client is asked, answers (another key's answer is not taken), and
	// gets the result of the retry; the upstream saw two calls, each
	// after its request record was committed.
	asked, final := legacyExchange(t, url, g.agentKey, eliciting, "in-ask", call(2, "ask"), func(req map[string]any) map[string]any {
		answer := map[string]any{"jsonrpc": "2.0", "id": req["id"], "result": map[string]any{"action": "accept", "content": map[string]any{"name": "Eve"}}}
		b, _ := json.Marshal(answer)
		r, _ := http.NewRequest("POST", url, bytes.NewReader(b))
		r.Header.Set("Authorization", "Bearer "+other)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		// Not delivered (the SDK, which gets what is not an answer for
		// this key, acknowledges a response it has no request for): the
		// result below names Ada, not Eve.
		resp.Body.Close()
		return map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}
	})
	if got := text(final); got != "Hello, Ada (state s1)" {
		t.Fatalf("ask: %s, want Hello, Ada (state s1)", got)
	}
	if len(asked) != 1 || asked[0]["method"] != "elicitation/create" || asked[0]["params"].(map[string]any)["message"] != "Your name?" {
		t.Errorf("the client was asked %v, want one elicitation/create: Your name?", asked)
	}
	if n := upstreamCalls("ask"); n != 2 {
		t.Errorf("the upstream saw %d calls of ask, want 2", n)
	}
	reqs, outs := callRecords(t, g, "in-ask")
	if len(reqs) != 2 || len(outs) != 2 {
		t.Fatalf("audit of ask: %d request and %d outcome records, want 2 of each", len(reqs), len(outs))
	}
	if !strings.HasPrefix(outs[0].Outcome, "input required (elicitation/create): the client was asked and answered") || outs[0].Concludes != reqs[0].Seq || outs[1].Outcome != "ok" || outs[1].Concludes != reqs[1].Seq ||
		outs[0].Decision != store.Allowed || outs[1].Decision != store.Allowed || reqs[1].Seq < outs[0].Seq {
		t.Errorf("audit of ask: outcomes %q (%s, concludes %d) and %q (%s, concludes %d) of requests %d and %d; want input required then ok, in order",
			outs[0].Outcome, outs[0].Decision, outs[0].Concludes, outs[1].Outcome, outs[1].Decision, outs[1].Concludes, reqs[0].Seq, reqs[1].Seq)
	}

	// A client that declines or cancels: its answer goes to the upstream,
	// as the go-sdk passes it.
	for _, action := range []string{"decline", "cancel"} {
		_, final := legacyExchange(t, url, g.agentKey, eliciting, "in-"+action, call(3, "confirm"), func(map[string]any) map[string]any { return map[string]any{"action": action} })
		if got := text(final); got != "action: "+action {
			t.Errorf("confirm answered %s: %s, want action: %s", action, got, action)
		}
	}

	// Two input requests: two server requests, both answered.
	asked, final = legacyExchange(t, url, g.agentKey, eliciting, "in-pair", call(4, "pair"), func(req map[string]any) map[string]any {
		return map[string]any{"action": "accept", "content": map[string]any{"answer": strings.TrimSuffix(req["params"].(map[string]any)["message"].(string), "?")}}
	})
	if got := text(final); got != "first second" || len(asked) != 2 {
		t.Errorf("pair: %s after %d requests, want first second after 2", got, len(asked))
	}

	// An upstream that keeps asking is answered three times, then the
	// client gets an error; each of its four calls is audited.
	asked, final = legacyExchange(t, url, g.agentKey, eliciting, "in-nag", call(5, "nag"), accept(map[string]any{"answer": "yes"}))
	if code, msg := errorOf(final); code != float64(codeInputRequired) || !strings.Contains(msg, "still asks for input after 3 rounds") || len(asked) != 3 {
		t.Errorf("nag: error %v %q after %d requests; want %d, still asks for input after 3 rounds, after 3", code, msg, len(asked), codeInputRequired)
	}
	if n := upstreamCalls("nag"); n != 4 {
		t.Errorf("the upstream saw %d calls of nag, want 4", n)
	}
	if reqs, outs := callRecords(t, g, "in-nag"); len(reqs) != 4 || len(outs) != 4 || outs[3].Decision != store.Failed || !strings.Contains(outs[3].Outcome, "input_required: ") {
		t.Errorf("audit of nag: %d requests, %d outcomes (last %+v), want 4 of each, the last failed with input_required", len(reqs), len(outs), outs[len(outs)-1])
	}

	// A client that did not declare elicitation is not asked: it gets an
	// error saying what it cannot give, not an empty success.
	asked, final = legacyExchange(t, url, g.agentKey, plain, "in-plain", call(6, "ask"), accept(nil))
	if code, msg := errorOf(final); code != float64(codeInputRequired) || !strings.Contains(msg, "needs input the client cannot give") || !strings.Contains(msg, "did not declare elicitation") || len(asked) != 0 {
		t.Errorf("ask without the capability: error %v %q after %d requests, want %d saying the client did not declare elicitation", code, msg, len(asked), codeInputRequired)
	}
	if reqs, outs := callRecords(t, g, "in-plain"); len(reqs) != 1 || len(outs) != 1 || outs[0].Decision != store.Failed {
		t.Errorf("audit of ask without the capability: %d requests, %d outcomes, want one failed call", len(reqs), len(outs))
	}
	// Nor for sampling, which this client did not declare either.
	_, final = legacyExchange(t, url, g.agentKey, eliciting, "in-sample", call(7, "sample"), accept(nil))
	if code, msg := errorOf(final); code != float64(codeInputRequired) || !strings.Contains(msg, "did not declare sampling") {
		t.Errorf("sample: error %v %q, want one saying the client did not declare sampling", code, msg)
	}

	// An answer with a name the gateway refuses in arguments is refused
	// alike, before the upstream sees the retry.
	before := upstreamCalls("ask")
	_, final = legacyExchange(t, url, g.agentKey, eliciting, "in-secret", call(8, "ask"), accept(map[string]any{"password": "hunter2"}))
	if code, msg := errorOf(final); code != -32602 || !strings.Contains(msg, "inputResponses.name.content.password") {
		t.Errorf("an answer with a password: error %v %q, want -32602 naming inputResponses.name.content.password", code, msg)
	}
	if n := upstreamCalls("ask"); n != before+1 {
		t.Errorf("the upstream saw %d calls of ask for the answer with a password, want 1", n-before)
	}
	if reqs, outs := callRecords(t, g, "in-secret"); len(reqs) != 1 || len(outs) != 2 || outs[1].Decision != store.Blocked || strings.Contains(string(outs[1].Arguments), "hunter2") {
		t.Errorf("audit of the answer with a password: %d requests, %d other records (%+v), want the forwarded call and a blocked retry", len(reqs), len(outs), outs)
	}

	// A call the SDK's path serves (an id it rewrites) has no event
	// stream to ask on: an error too.
	_, final = legacyExchange(t, url, g.agentKey, eliciting, "in-sdk", call(1.5, "ask"), accept(nil))
	if code, msg := errorOf(final); code != float64(codeInputRequired) || !strings.Contains(msg, "no event stream to ask on") {
		t.Errorf("ask on the SDK's path: error %v %q, want %d saying there is no event stream to ask on", code, msg, codeInputRequired)
	}

	// A 2026-07-28 client gets the input_required result as it is.
	modern := map[string]any{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": map[string]any{"name": "ask", "arguments": map[string]any{},
		"_meta": map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{"elicitation": map[string]any{}}}}}
	msgs, _ := sseMessages(t, url, g.agentKey, map[string]string{headerProtocol: "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "ask"}, modern)
	if len(msgs) != 1 {
		t.Fatalf("2026-07-28 ask: %v, want one answer", msgs)
	}
	res, _ := msgs[0]["result"].(map[string]any)
	ir, _ := res["inputRequests"].(map[string]any)
	name, _ := ir["name"].(map[string]any)
	if res["resultType"] != "input_required" || res["requestState"] != "s1" || name["method"] != "elicitation/create" {
		t.Errorf("2026-07-28 ask: %v, want the input_required result with its request and state", msgs[0])
	}

	// A client that never answers: the call ends at its time limit.
	asked, final = legacyExchange(t, url, g.agentKey, eliciting, "in-silent", call(10, "ask"), func(map[string]any) map[string]any { return nil })
	if code, msg := errorOf(final); code != float64(codeInputRequired) || !strings.Contains(msg, "did not answer") || len(asked) != 1 {
		t.Errorf("ask never answered: error %v %q after %d requests, want %d saying the client did not answer", code, msg, len(asked), codeInputRequired)
	}
}

// TestMCPLegacyClientInputRoundsStdio: a stdio upstream's one session
// speaks 2026-07-28, so it asks a legacy client for input with
// input_required too; the gateway asks the client and retries as over
// HTTP.
func TestMCPLegacyClientInputRoundsStdio(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	srv := stdioServer("local", "never")
	srv.Env = map[string]string{"ARMORIQ_TEST_STDIO_SERVER": "asker"}
	g.pushServers("in2", 1, allowAll(), srv)
	url := g.http.URL + "/mcp"
	sid := legacySession(t, url, g.agentKey, map[string]any{"elicitation": map[string]any{}})
	call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "ask", "arguments": map[string]any{}}}
	asked, final := legacyExchange(t, url, g.agentKey, sid, "in-stdio", call, func(map[string]any) map[string]any {
		return map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}
	})
	b, _ := json.Marshal(final)
	if len(asked) != 1 || !strings.Contains(string(b), "Hello, Ada (state s1)") {
		t.Fatalf("ask over stdio: %s after %d requests, want Hello, Ada (state s1) after 1", b, len(asked))
	}
	if reqs, outs := callRecords(t, g, "in-stdio"); len(reqs) != 2 || len(outs) != 2 || outs[1].Outcome != "ok" {
		t.Errorf("audit of ask over stdio: %d requests, %d outcomes, want 2 of each, the last ok", len(reqs), len(outs))
	}
}

// TestInvokeInputRequired: POST /invoke to a tool whose upstream answers
// input_required fails with 502 input_required, saying why, and is audited
// as failed: the SDKs can neither answer nor be asked, and would read the
// result as an empty success.
func TestInvokeInputRequired(t *testing.T) {
	up := httptest.NewServer(statelessOnly(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return askerServer() }, &mcp.StreamableHTTPOptions{Stateless: true}), func(string) {}))
	t.Cleanup(up.Close)
	g := adapterGateway(t, "1", nil)
	g.pushServers("inv1", 1, allowAll(), bundle.Server{ID: "v2", Transport: "http", URL: up.URL + "/", ToolPrefix: "never"})
	params := map[string]any{}
	tok := g.issue("alice@example.com", step("v2", "confirm", params))
	body, hdr := invokeRequestFor(tok, "v2", "confirm", params)
	resp, b := g.send("POST", "/invoke", g.agentKey, json.RawMessage(body), hdr)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "input_required") || !strings.Contains(string(b), "elicitation/create") {
		t.Fatalf("/invoke of a tool asking for input: %d %s; want 502 input_required naming elicitation/create", resp.StatusCode, b)
	}
	if rec := lastAudit(t, g); rec.Tool != "confirm" || rec.Decision != store.Failed || !strings.Contains(rec.Outcome, "input_required") {
		t.Fatalf("audit = %+v, want confirm failed with input_required", rec)
	}
}

// TestMCPLegacyReadsNeedingInput: a resource read or a prompt an upstream
// (whose session is 2026-07-28) answers with input_required is an error
// -32036 for a legacy client, which this path cannot ask and which would
// read the result as empty, and audited as failed; a 2026-07-28 client
// gets the result as before.
func TestMCPLegacyReadsNeedingInput(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "asker", Version: "1"}, nil)
	ask := mcp.InputRequestMap{"ok": &mcp.ElicitParams{Message: "Go ahead?", RequestedSchema: &jsonschema.Schema{
		Type: "object", Properties: map[string]*jsonschema.Schema{"answer": {Type: "string"}}}}}
	srv.AddResource(&mcp.Resource{URI: "test://asker/secret", Name: "secret", MIMEType: "text/plain"}, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{InputRequests: ask, RequestState: "r1"}, nil
	})
	srv.AddPrompt(&mcp.Prompt{Name: "careful", Description: "asks first"}, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{InputRequests: ask, RequestState: "p1"}, nil
	})
	up := httptest.NewServer(statelessOnly(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true}), func(string) {}))
	t.Cleanup(up.Close)
	g := adapterGateway(t, "1", nil)
	g.pushServers("rd1", 1, allowAll(), bundle.Server{ID: "asker", Transport: "http", URL: up.URL + "/", ToolPrefix: "never"})
	url := g.http.URL + "/mcp"

	sid := legacySession(t, url, g.agentKey, map[string]any{"elicitation": map[string]any{}})
	legacy := map[string]string{headerSessionID: sid, headerProtocol: "2025-11-25"}
	for _, tc := range []struct {
		method string
		params map[string]any
	}{
		{"resources/read", map[string]any{"uri": "test://asker/secret"}},
		{"prompts/get", map[string]any{"name": "careful"}},
	} {
		msgs, _ := sseMessages(t, url, g.agentKey, legacy, map[string]any{"jsonrpc": "2.0", "id": 2, "method": tc.method, "params": tc.params})
		b, _ := json.Marshal(msgs)
		if len(msgs) != 1 || msgs[0]["error"] == nil || !strings.Contains(string(b), "-32036") || !strings.Contains(string(b), "elicitation/create") {
			t.Errorf("legacy %s of an upstream asking for input: %s, want error -32036 naming elicitation/create", tc.method, b)
		}
		if rec := lastAudit(t, g); rec.Tool != tc.method || rec.Decision != store.Failed || !strings.Contains(rec.Outcome, "input_required") {
			t.Errorf("audit of the legacy %s: %+v, want failed, input_required", tc.method, rec)
		}

		modern := maps.Clone(tc.params)
		modern["_meta"] = map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": map[string]any{"elicitation": map[string]any{}}}
		hdr := map[string]string{headerProtocol: "2026-07-28", "Mcp-Method": tc.method}
		if n, ok := tc.params["name"].(string); ok {
			hdr["Mcp-Name"] = n
		} else {
			hdr["Mcp-Name"] = tc.params["uri"].(string)
		}
		msgs, _ = sseMessages(t, url, g.agentKey, hdr, map[string]any{"jsonrpc": "2.0", "id": 3, "method": tc.method, "params": modern})
		if b, _ := json.Marshal(msgs); len(msgs) != 1 || !strings.Contains(string(b), `"input_required"`) {
			t.Errorf("2026-07-28 %s: %s, want the input_required result", tc.method, b)
		}
	}
}
