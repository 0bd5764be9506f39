package mcpadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

// A callTap watches the answer to one request of an adapter as the go-sdk
// client reads it: the upstream's log messages for that request, and the
// result exactly as the upstream wrote it, which the adapter hands on
// instead of re-encoding the SDK's decoded copy. Over HTTP it reads the
// POST's body (an event stream ties log messages to their request); over
// stdio, the connection's messages (tapConn).
//
// It sees each message before the SDK does, so a log message sent before
// the result reaches the gateway before it.
type callTap struct {
	log  func(plugins.LogMessage) // nil: log messages are not wanted
	done atomic.Bool              // the call has returned (tapConn forgets it)
	// progress, if set, is the call's progress under token: delivered from
	// here, in order with the result, not from the SDK's notification
	// handler, which may run after the call has returned (the SDK hands a
	// response to its caller at once and notifications to a queue).
	progress *progressSink

	mu     sync.Mutex
	result json.RawMessage
}

type tapKey struct{}

func withTap(ctx context.Context, t *callTap) context.Context {
	return context.WithValue(ctx, tapKey{}, t)
}

// take returns the result seen, if any, and forgets it.
func (t *callTap) take() json.RawMessage {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.result
	t.result = nil
	return r
}

// progressSink is where one call's progress goes, by its token.
type progressSink struct {
	token string
	f     func(plugins.Progress)
	// tapped: a tap delivered the call's progress; the SDK's handler then
	// leaves it alone (it sees the same notifications, later).
	tapped atomic.Bool
}

// deliver hands params of a notifications/progress to the sink if they
// carry its token.
func (p *progressSink) deliver(params json.RawMessage) {
	var n struct {
		ProgressToken any     `json:"progressToken"`
		Progress      float64 `json:"progress"`
		Total         float64 `json:"total"`
		Message       string  `json:"message"`
	}
	if p == nil || json.Unmarshal(params, &n) != nil {
		return
	}
	if tok, ok := n.ProgressToken.(string); !ok || tok != p.token {
		return
	}
	p.tapped.Store(true)
	p.f(plugins.Progress{Progress: n.Progress, Total: n.Total, Message: n.Message})
}

// message looks at one JSON-RPC message of the answer.
func (t *callTap) message(data []byte) {
	switch {
	case t.progress != nil && bytes.Contains(data, []byte(`"notifications/progress"`)):
		var n struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if json.Unmarshal(data, &n) == nil && n.Method == "notifications/progress" {
			t.progress.deliver(n.Params)
		}
	case bytes.Contains(data, []byte(`"notifications/message"`)):
		if t.log == nil {
			return
		}
		var n struct {
			Method string `json:"method"`
			Params struct {
				Level  string          `json:"level"`
				Logger string          `json:"logger"`
				Data   json.RawMessage `json:"data"`
			} `json:"params"`
		}
		if json.Unmarshal(data, &n) == nil && n.Method == "notifications/message" {
			t.log(plugins.LogMessage{Level: n.Params.Level, Logger: n.Params.Logger, Data: n.Params.Data})
		}
	case bytes.Contains(data, []byte(`"result"`)):
		var r struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(data, &r) == nil && len(r.ID) > 0 && len(r.Result) > 0 {
			t.mu.Lock()
			t.result = r.Result
			t.mu.Unlock()
		}
	}
}

// tapResponse makes resp's body feed t as the SDK reads it.
func tapResponse(t *callTap, resp *http.Response) {
	if resp.StatusCode != http.StatusOK || resp.Body == nil {
		return
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "text/event-stream":
		resp.Body = &tapBody{rc: resp.Body, tap: t, sse: true}
	case "application/json":
		resp.Body = &tapBody{rc: resp.Body, tap: t}
	}
}

// tapBody passes a body through unchanged, feeding its messages to a tap:
// each event of an event stream, or the whole JSON body at its end.
type tapBody struct {
	rc   io.ReadCloser
	tap  *callTap
	sse  bool
	buf  []byte // JSON: the body so far; SSE: the current line
	data []byte // SSE: the current event's data
	done bool
}

func (b *tapBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.feed(p[:n])
	}
	if err == io.EOF {
		b.end()
	}
	return n, err
}

func (b *tapBody) Close() error {
	b.end()
	return b.rc.Close()
}

func (b *tapBody) end() {
	if b.done {
		return
	}
	b.done = true
	if !b.sse {
		if len(bytes.TrimSpace(b.buf)) > 0 {
			b.tap.message(b.buf)
		}
		b.buf = nil
	}
}

func (b *tapBody) feed(p []byte) {
	if !b.sse {
		b.buf = append(b.buf, p...)
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			b.buf = append(b.buf, p...)
			return
		}
		line := p[:i]
		if len(b.buf) > 0 {
			b.buf = append(b.buf, line...)
			line = b.buf
		}
		b.line(bytes.TrimSuffix(line, []byte("\r")))
		b.buf = b.buf[:0]
		p = p[i+1:]
	}
}

// line handles one line of an event stream: data lines accumulate, an
// empty line ends the event.
func (b *tapBody) line(l []byte) {
	if len(l) == 0 {
		if len(b.data) > 0 {
			b.tap.message(b.data)
			b.data = b.data[:0]
		}
		return
	}
	if v, ok := bytes.CutPrefix(l, []byte("data:")); ok {
		v = bytes.TrimPrefix(v, []byte(" "))
		if len(b.data) > 0 {
			b.data = append(b.data, '\n')
		}
		b.data = append(b.data, v...)
	}
}

// tapTransport is a stdio transport whose connection feeds call taps: a
// response's result to the tap of the call it answers, and a log message
// to the one call in flight, if there is exactly one (over stdio nothing
// ties a log message to a request, and one session carries every call of
// the adapter: with several in flight a message could reach the wrong
// client, so it goes to the adapter's own log instead).
type tapTransport struct {
	mcp.Transport
	server string
}

func (t *tapTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	c, err := t.Transport.Connect(ctx)
	if err != nil {
		return nil, err
	}
	tc := &tapConn{Connection: c, server: t.server, calls: map[jsonrpc.ID]*callTap{}}
	if sc, ok := c.(*stdioConn); ok {
		// Raw calls share the connection: a log message goes to the one
		// call in flight of either kind, and an error with a null id is
		// weighed against requests of both kinds (stdio.go).
		tc.raw = sc
		sc.setSDK(tc)
	}
	return tc, nil
}

type tapConn struct {
	mcp.Connection
	server string

	raw *stdioConn // nil: no raw calls on this connection

	mu    sync.Mutex
	calls map[jsonrpc.ID]*callTap // by request id: requests in flight
}

// live is the number of the SDK's requests in flight.
func (c *tapConn) live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, t := range c.calls {
		if t.done.Load() {
			delete(c.calls, id)
			continue
		}
		n++
	}
	return n
}

// liveIDs are the ids of the SDK's requests in flight.
func (c *tapConn) liveIDs() []jsonrpc.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []jsonrpc.ID
	for id, t := range c.calls {
		if t.done.Load() {
			delete(c.calls, id)
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

func (c *tapConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if req, ok := msg.(*jsonrpc.Request); ok && req.IsCall() {
		tap, _ := ctx.Value(tapKey{}).(*callTap)
		if tap == nil {
			tap = &callTap{} // counts as in flight all the same
		}
		id := req.ID
		c.mu.Lock()
		c.calls[id] = tap
		c.mu.Unlock()
		err := c.Connection.Write(ctx, msg)
		if err != nil {
			c.mu.Lock()
			delete(c.calls, id)
			c.mu.Unlock()
		}
		return err
	}
	return c.Connection.Write(ctx, msg)
}

func (c *tapConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	msg, err := c.Connection.Read(ctx)
	switch m := msg.(type) {
	case *jsonrpc.Response:
		c.mu.Lock()
		tap := c.calls[m.ID]
		delete(c.calls, m.ID)
		c.mu.Unlock()
		if tap != nil && m.Error == nil && len(m.Result) > 0 {
			tap.mu.Lock()
			tap.result = m.Result
			tap.mu.Unlock()
		}
	case *jsonrpc.Request:
		if m.Method == "notifications/progress" {
			// To the SDK call whose progress token it carries.
			c.mu.Lock()
			var sinks []*progressSink
			for _, t := range c.calls {
				if t.progress != nil && !t.done.Load() {
					sinks = append(sinks, t.progress)
				}
			}
			c.mu.Unlock()
			for _, p := range sinks {
				p.deliver(m.Params)
			}
			break
		}
		if m.Method != "notifications/message" {
			break
		}
		var target *callTap
		n := 0
		c.mu.Lock()
		for id, t := range c.calls {
			if t.done.Load() { // cancelled, its answer never came
				delete(c.calls, id)
				continue
			}
			target = t
			n++
		}
		c.mu.Unlock()
		if n != 1 || (c.raw != nil && c.raw.rawInFlight() > 0) {
			target = nil
		}
		if target != nil && target.log != nil {
			target.message([]byte(`{"method":"notifications/message","params":` + string(m.Params) + `}`))
		} else {
			slog.Debug("upstream log message", "server", c.server, "params", string(m.Params))
		}
	}
	return msg, err
}
