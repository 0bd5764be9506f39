package loadbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Protocol versions the bench's MCP client speaks.
const (
	// LegacyVersion initializes a session (initialize, then
	// notifications/initialized) and sends Mcp-Session-Id when given one.
	LegacyVersion = "2025-11-25"
	// StatelessVersion sends its version, client info and capabilities
	// with every request, in _meta and headers; no session.
	StatelessVersion = "2026-07-28"
)

// caller makes one tool call; a worker has one and uses it in a loop.
type caller interface {
	call(ctx context.Context) error
	// closeIdle closes the caller's idle connections: its target's round
	// is over, and the server is not to hold them through the others'.
	closeIdle()
}

// callText is the text every call sends and expects back.
const callText = "hello from armoriq bench"

// rpcAnswer is the part of a JSON-RPC answer the bench checks.
type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result *struct {
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// check says whether an answer is a successful echo of callText.
func (a *rpcAnswer) check() error {
	switch {
	case a.Error != nil:
		return fmt.Errorf("JSON-RPC error %d: %s", a.Error.Code, a.Error.Message)
	case a.Result == nil:
		return errors.New("an answer with neither result nor error")
	case a.Result.IsError:
		msg := ""
		if len(a.Result.Content) > 0 {
			msg = a.Result.Content[0].Text
		}
		return fmt.Errorf("the tool answered an error: %s", msg)
	case len(a.Result.Content) == 0 || a.Result.Content[0].Text != callText:
		return errors.New("the tool's answer is not the text sent")
	}
	return nil
}

// mcpHTTP is an MCP client over Streamable HTTP, one per worker: JSON-RPC
// POSTs with the headers the transport requires, answers in JSON or as an
// event stream.
type mcpHTTP struct {
	hc       *http.Client
	url      string
	bearer   string // API key, if the endpoint needs one
	version  string
	tool     string
	session  string
	nextID   atomic.Int64
	callBody []byte
}

func newMCPHTTP(ctx context.Context, hc *http.Client, url, bearer, version, tool string) (*mcpHTTP, error) {
	c := &mcpHTTP{hc: hc, url: url, bearer: bearer, version: version, tool: tool}
	params := map[string]any{"name": tool, "arguments": map[string]any{"text": callText}}
	if version >= StatelessVersion {
		params["_meta"] = map[string]any{
			"io.modelcontextprotocol/protocolVersion":    version,
			"io.modelcontextprotocol/clientCapabilities": map[string]any{},
			"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "armoriq-bench", "version": "1"},
		}
	}
	var err error
	if c.callBody, err = json.Marshal(params); err != nil {
		return nil, err
	}
	if version < StatelessVersion {
		if err := c.initialize(ctx); err != nil {
			return nil, fmt.Errorf("initializing a session with %s: %v", url, err)
		}
	}
	return c, nil
}

// initialize opens a legacy session.
func (c *mcpHTTP) initialize(ctx context.Context) error {
	init, _ := json.Marshal(map[string]any{
		"protocolVersion": c.version,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "armoriq-bench", "version": "1"},
	})
	resp, body, err := c.post(ctx, "initialize", "", c.envelope("initialize", init))
	if err != nil {
		return err
	}
	var a struct {
		Result *struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Result == nil {
		msg := "no result"
		if a.Error != nil {
			msg = a.Error.Message
		}
		return fmt.Errorf("initialize: %s", msg)
	}
	c.session = resp.Header.Get("Mcp-Session-Id")
	c.version = a.Result.ProtocolVersion
	_, _, err = c.post(ctx, "notifications/initialized", "", []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	return err
}

// envelope is a JSON-RPC request with the next id.
func (c *mcpHTTP) envelope(method string, params []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(params) + 64)
	b.WriteString(`{"jsonrpc":"2.0","id":`)
	b.WriteString(strconv.FormatInt(c.nextID.Add(1), 10))
	b.WriteString(`,"method":"`)
	b.WriteString(method)
	b.WriteString(`","params":`)
	b.Write(params)
	b.WriteString("}")
	return b.Bytes()
}

func (c *mcpHTTP) closeIdle() { c.hc.CloseIdleConnections() }

func (c *mcpHTTP) call(ctx context.Context) error {
	_, body, err := c.post(ctx, "tools/call", c.tool, c.envelope("tools/call", c.callBody))
	if err != nil {
		return err
	}
	var a rpcAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("decoding the answer: %v", err)
	}
	return a.check()
}

// post sends one JSON-RPC message and returns the JSON of its answer (nil
// for a notification's 202).
func (c *mcpHTTP) post(ctx context.Context, method, name string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	if c.bearer != "" {
		h.Set("Authorization", "Bearer "+c.bearer)
	}
	if method != "initialize" {
		h.Set("Mcp-Protocol-Version", c.version)
	}
	if c.session != "" {
		h.Set("Mcp-Session-Id", c.session)
	}
	if c.version >= StatelessVersion {
		h.Set("Mcp-Method", method)
		if name != "" {
			h.Set("Mcp-Name", name)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		// Read what is left (an event stream's end) so that the
		// connection is reused, as an SDK client's would be.
		io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
	}()
	if resp.StatusCode == http.StatusAccepted {
		io.Copy(io.Discard, resp.Body)
		return resp, nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, nil, fmt.Errorf("%s: status %d: %s", method, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "text/event-stream" {
		b, err := readEventAnswer(resp.Body)
		return resp, b, err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// readEventAnswer reads an event stream until the data of an event that is
// a JSON-RPC answer (a result or an error, not a notification).
func readEventAnswer(r io.Reader) ([]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) > 0 && isAnswer(data) {
				return data, nil
			}
			data = data[:0]
		case bytes.HasPrefix(line, []byte("data:")):
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		}
	}
	if len(data) > 0 && isAnswer(data) {
		return data, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("the event stream ended without an answer")
}

// isAnswer says whether a JSON-RPC message is a result or an error.
func isAnswer(msg []byte) bool {
	var m struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	return json.Unmarshal(msg, &m) == nil && (m.Result != nil || m.Error != nil)
}

// invokeClient calls the gateway's POST /invoke as the ArmorIQ SDKs do,
// with an intent token issued once and checked by the gateway on every
// call.
type invokeClient struct {
	hc   *http.Client
	url  string
	key  string
	body []byte
	hdr  map[string]string
}

func (c *invokeClient) closeIdle() { c.hc.CloseIdleConnections() }

func (c *invokeClient) call(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return err
	}
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-API-Key", c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/invoke: status %d: %s", resp.StatusCode, truncate(b, 300))
	}
	var a rpcAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("decoding the answer: %v", err)
	}
	return a.check()
}

// issueToken asks the gateway for an intent token for a one-step plan
// (server/echo) and returns the /invoke body and headers that use it.
func issueToken(ctx context.Context, hc *http.Client, gateway, key, agent, server string) ([]byte, map[string]string, error) {
	params := map[string]any{"text": callText}
	plan := map[string]any{"goal": "armoriq bench", "steps": []any{map[string]any{"action": EchoTool, "mcp": server, "params": params}}}
	reqBody, _ := json.Marshal(map[string]any{
		"user_id": "bench@example.com", "agent_id": agent, "context_id": "bench",
		"plan": plan, "expires_in": 86400,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/iap/sdk/token", bytes.NewReader(reqBody))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing an intent token: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("issuing an intent token: status %d: %s", resp.StatusCode, truncate(b, 300))
	}
	var tok map[string]any
	if err := json.Unmarshal(b, &tok); err != nil {
		return nil, nil, fmt.Errorf("issuing an intent token: %v", err)
	}
	proofs, _ := tok["step_proofs"].([]any)
	if len(proofs) != 1 {
		return nil, nil, fmt.Errorf("issuing an intent token: %d step proofs for a one-step plan", len(proofs))
	}
	raw := map[string]any{"plan": plan, "token": tok["token"], "plan_hash": tok["plan_hash"], "merkle_root": tok["merkle_root"],
		"intent_reference": tok["intent_reference"], "step_proofs": proofs}
	body, _ := json.Marshal(map[string]any{"mcp": server, "action": EchoTool, "tool": EchoTool, "params": params, "intent_token": raw})
	proof, _ := json.Marshal(proofs[0])
	return body, map[string]string{"Content-Type": "application/json", "X-CSRG-Proof": string(proof), "X-CSRG-Path": "/steps/[0]/action"}, nil
}

// stdioConn speaks MCP over a stdio server's pipes: one session, shared by
// every worker, answers matched to calls by id.
type stdioConn struct {
	w       io.Writer
	wmu     sync.Mutex
	nextID  atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan []byte
	readErr error
	body    []byte
}

// newStdioConn starts reading r and initializes the session.
func newStdioConn(ctx context.Context, w io.Writer, r io.Reader) (*stdioConn, error) {
	c := &stdioConn{w: w, pending: map[int64]chan []byte{}}
	c.body, _ = json.Marshal(map[string]any{"name": EchoTool, "arguments": map[string]any{"text": callText}})
	go c.read(r)
	init, _ := json.Marshal(map[string]any{
		"protocolVersion": LegacyVersion, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "armoriq-bench", "version": "1"},
	})
	ans, err := c.roundTrip(ctx, "initialize", init)
	if err != nil {
		return nil, fmt.Errorf("initialize: %v", err)
	}
	if !isAnswer(ans) {
		return nil, fmt.Errorf("initialize: %s", truncate(ans, 200))
	}
	if err := c.send([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *stdioConn) send(line []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.w.Write(append(line, '\n'))
	return err
}

func (c *stdioConn) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var err error
	for {
		var line []byte
		line, err = br.ReadBytes('\n')
		if len(line) > 0 {
			var m struct {
				ID *int64 `json:"id"`
			}
			if json.Unmarshal(line, &m) == nil && m.ID != nil {
				c.mu.Lock()
				ch := c.pending[*m.ID]
				delete(c.pending, *m.ID)
				c.mu.Unlock()
				if ch != nil {
					ch <- line
				}
			}
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	c.readErr = fmt.Errorf("the stdio server closed its output: %v", err)
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

func (c *stdioConn) roundTrip(ctx context.Context, method string, params []byte) ([]byte, error) {
	id := c.nextID.Add(1)
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.readErr != nil {
		c.mu.Unlock()
		return nil, c.readErr
	}
	c.pending[id] = ch
	c.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
	if err := c.send(b.Bytes()); err != nil {
		return nil, err
	}
	select {
	case ans, ok := <-ch:
		if !ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			return nil, c.readErr
		}
		return ans, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// closeIdle does nothing: the stdio server has one pipe, kept open.
func (c *stdioConn) closeIdle() {}

func (c *stdioConn) call(ctx context.Context) error {
	ans, err := c.roundTrip(ctx, "tools/call", c.body)
	if err != nil {
		return err
	}
	var a rpcAnswer
	if err := json.Unmarshal(ans, &a); err != nil {
		return fmt.Errorf("decoding the answer: %v", err)
	}
	return a.check()
}

func truncate(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
