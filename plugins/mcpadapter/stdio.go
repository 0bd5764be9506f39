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
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/rawconn"
)

// The stdio raw path. The adapter runs the stdio server under a transport
// of its own (stdioTransport) beneath the SDK client: it owns the child's
// stdin and stdout, so that a raw tools/call can be written as one line
// with an id of the adapter's ("armoriq-r<n>"; the SDK's ids are
// integers) and its answer read without the SDK decoding it. One reader
// takes each line the child writes and looks at its envelope only:
//
//   - a response whose id is a raw call's goes to that call;
//   - notifications/progress whose token is a raw call's goes to it;
//   - notifications/message goes to the one raw call in flight when it is
//     the only call in flight (raw or SDK), as on the SDK path;
//   - an error with a null id (the child could not read a request) goes to
//     the request it can only be the answer of (see unread below);
//   - everything else (the SDK's responses, server requests, other
//     notifications) is decoded for the SDK's connection.
//
// Server requests (sampling, elicitation, roots, ping) thus go to the SDK
// client even during a raw call, which answers them as on the SDK path:
// sampling and elicitation are relayed to the client of the one call in
// flight (raw calls count), refused when there are several.
//
// A line that is not JSON is logged and ignored; a line longer than the
// limit is skipped (a raw call it answers fails, an SDK request gets an
// error response). When the child's stdout ends or the child exits, every
// raw call in flight fails at once, and the SDK's connection ends.

// stdioTransport runs cmd and speaks MCP over its stdin and stdout.
type stdioTransport struct {
	cmd       *exec.Cmd
	server    string // the server's id, for logs
	limit     int    // bounds one line
	terminate time.Duration

	conn *stdioConn // set by Connect
}

// errNotSent wraps the failure of a raw call the child cannot have seen.
var errNotSent = errors.New("the request was not sent")

// Connect starts the command.
func (t *stdioTransport) Connect(context.Context) (mcp.Connection, error) {
	// Pipes of the adapter's own rather than StdinPipe and StdoutPipe:
	// Wait must not close stdout's read end before the reader has seen
	// what the child wrote last, and the adapter's ends are read and
	// written with raw system calls (rawconn.WrapFile; docs/plugins.md).
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	t.cmd.Stdin, t.cmd.Stdout = inR, pw
	err = t.cmd.Start()
	inR.Close()
	pw.Close()
	if err != nil {
		inW.Close()
		pr.Close()
		return nil, err
	}
	c := newStdioConn(t.server, t.cmd.Path, t.limit)
	c.cmd, c.stdin, c.stdout, c.terminate = t.cmd, rawconn.WrapFile(inW), pr, t.terminate
	t.conn = c
	go c.readLoop(rawconn.WrapFile(pr))
	go c.waitLoop()
	return c, nil
}

// stdioConn is the connection to a stdio server: the SDK's mcp.Connection,
// and the raw calls' (call).
type stdioConn struct {
	server, command string
	limit           int
	terminate       time.Duration

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File

	writeMu sync.Mutex

	incoming   chan jsonrpc.Message // to the SDK
	eof        chan struct{}        // the reader is done: no more messages
	closed     chan struct{}
	closeOnce  sync.Once
	closeErr   error
	exited     chan struct{} // the child was waited for
	dead       chan struct{} // raw calls cannot be answered any more
	deadOnce   sync.Once
	deadErr    error
	readerDone chan struct{}

	mu     sync.Mutex
	raw    map[string]*stdioCall // raw calls in flight, by id
	tokens map[string]*stdioCall // by progress token
	sdk    sdkRequests           // the SDK's requests in flight (tapConn)
	grace  time.Duration         // see unread; 0: unreadGrace
	unread *unread               // null-id errors not given to a request yet
	// abandoned are the raw calls that gave up unanswered lately, by id:
	// when they gave up (see unread).
	abandoned map[string]time.Time
	pruned    time.Time // when abandoned was last pruned
	// unreadOn is unread != nil, for the reader to look at without the
	// lock on every answer.
	unreadOn atomic.Bool
}

// sdkRequests tells the connection about the SDK's requests in flight,
// which share the child's stdin and stdout with the raw calls.
type sdkRequests interface {
	live() int
	liveIDs() []jsonrpc.ID
}

func newStdioConn(server, command string, limit int) *stdioConn {
	if limit <= 0 {
		limit = plugins.MaxMessageSize
	}
	return &stdioConn{
		server: server, command: command, limit: limit,
		incoming:   make(chan jsonrpc.Message),
		eof:        make(chan struct{}),
		closed:     make(chan struct{}),
		exited:     make(chan struct{}),
		dead:       make(chan struct{}),
		readerDone: make(chan struct{}),
		raw:        map[string]*stdioCall{},
		tokens:     map[string]*stdioCall{},
		abandoned:  map[string]time.Time{},
	}
}

// SessionID implements mcp.Connection: stdio has no session id.
func (c *stdioConn) SessionID() string { return "" }

// Read implements mcp.Connection: the next message for the SDK.
func (c *stdioConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case m := <-c.incoming:
		return m, nil
	case <-c.eof:
		return nil, io.EOF
	case <-c.closed:
		return nil, io.EOF
	}
}

// Write implements mcp.Connection: one message of the SDK, as one line.
func (c *stdioConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("encoding a message for stdio server %q: %w", c.command, err)
	}
	return c.writeLine(append(data, '\n'))
}

// writeLine writes one whole line to the child's stdin.
func (c *stdioConn) writeLine(line []byte) error {
	select {
	case <-c.closed:
		return mcp.ErrConnectionClosed
	default:
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_, err := c.stdin.Write(line)
	return err
}

// Close implements mcp.Connection: stdin is closed and the child given
// the terminate duration to exit, then SIGTERM, then SIGKILL.
func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.fail(mcp.ErrConnectionClosed)
		if c.stdin != nil {
			_ = c.stdin.Close()
		}
		if c.cmd == nil {
			return
		}
		c.closeErr = c.stop()
		// A grandchild may hold the other end of stdout: the reader
		// stops all the same.
		_ = c.stdout.Close()
	})
	return c.closeErr
}

func (c *stdioConn) stop() error {
	td := c.terminate
	if td <= 0 {
		td = 5 * time.Second
	}
	wait := func() bool {
		t := time.NewTimer(td)
		defer t.Stop()
		select {
		case <-c.exited:
			return true
		case <-t.C:
			return false
		}
	}
	if wait() {
		return nil
	}
	if c.cmd.Process.Signal(syscall.SIGTERM) == nil && wait() {
		return nil
	}
	if err := c.cmd.Process.Kill(); err != nil {
		return err
	}
	if wait() {
		return nil
	}
	return errors.New("unresponsive subprocess")
}

// waitLoop waits for the child; once it has exited and the reader has had
// a moment to read what it wrote last, raw calls still waiting fail.
func (c *stdioConn) waitLoop() {
	err := c.cmd.Wait()
	// As Wait closes a StdinPipe: a write to a child that is gone fails
	// at once, even when a grandchild holds the pipe's other end.
	_ = c.stdin.Close()
	close(c.exited)
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-c.readerDone:
	case <-t.C:
	}
	why := "exited"
	if err != nil {
		why = "exited (" + err.Error() + ")"
	} else if st := c.cmd.ProcessState; st != nil {
		why = "exited (" + st.String() + ")"
	}
	c.fail(fmt.Errorf("stdio server %q %s with the call in flight", c.command, why))
}

// readLoop reads the child's stdout line by line and routes every line.
func (c *stdioConn) readLoop(r io.Reader) {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, line...)
			if len(long) > c.limit {
				c.oversize(long, br)
				long = long[:0]
			}
			continue
		}
		if len(long) > 0 {
			line = append(long, line...)
			long = long[:0]
		}
		if len(line) > c.limit {
			c.oversize(line, nil)
		} else if len(line) > 0 {
			c.route(line)
		}
		if err != nil {
			break
		}
	}
	why := "closed its stdout"
	t := time.NewTimer(100 * time.Millisecond)
	select {
	case <-c.exited:
		if st := c.cmd.ProcessState; st != nil {
			why = "exited (" + st.String() + ")"
		}
	case <-c.closed:
	case <-t.C:
	}
	t.Stop()
	c.fail(fmt.Errorf("stdio server %q %s with the call in flight", c.command, why))
	close(c.eof)
}

// oversize handles a line longer than the limit: the first part read is
// head; the rest is read from br (nil: none) and dropped, keeping its
// last bytes. A raw call whose id is at either end fails; an SDK request
// whose id is there gets an error response; anything else is logged.
func (c *stdioConn) oversize(head []byte, br *bufio.Reader) {
	const keep = 512
	tail := head
	if len(head) > keep {
		head, tail = head[:keep:keep], append([]byte(nil), head[len(head)-keep:]...)
	}
	for br != nil {
		frag, err := br.ReadSlice('\n')
		if len(frag) >= keep {
			tail = append(tail[:0], frag[len(frag)-keep:]...)
		} else if len(frag) > 0 {
			tail = append(tail, frag...)
			if len(tail) > keep {
				tail = tail[len(tail)-keep:]
			}
		}
		if err != bufio.ErrBufferFull {
			break
		}
	}
	msg := fmt.Sprintf("stdio server %q wrote a message larger than %d bytes", c.command, c.limit)
	for _, part := range [][]byte{head, tail} {
		id, ok := findID(part)
		if !ok {
			continue
		}
		c.answered(id)
		if call := c.rawCall(id); call != nil {
			call.finish(nil, nil, errors.New(msg))
			return
		}
		if n, err := strconv.ParseInt(string(id), 10, 64); err == nil {
			rid, _ := jsonrpc.MakeID(float64(n))
			c.toSDK(&jsonrpc.Response{ID: rid, Error: &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: msg}})
			return
		}
	}
	slog.Warn("stdio server message too large; dropped", "server", c.server, "limit", c.limit)
}

// findID finds the id of a message in part of it: `"id":` followed by a
// string or a number.
func findID(part []byte) (json.RawMessage, bool) {
	for {
		i := bytes.Index(part, []byte(`"id"`))
		if i < 0 {
			return nil, false
		}
		rest := bytes.TrimLeft(part[i+4:], " \t\r\n")
		part = part[i+4:]
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		if len(rest) > 0 && rest[0] == '"' {
			if j := bytes.IndexByte(rest[1:], '"'); j >= 0 {
				return json.RawMessage(rest[:j+2]), true
			}
			continue
		}
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j > 0 && j < len(rest) {
			return json.RawMessage(rest[:j]), true
		}
	}
}

// envelope is what the reader decodes of a line.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *rawError       `json:"error"`
}

// route hands one line to the raw call it concerns or to the SDK.
func (c *stdioConn) route(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	if line[0] == '[' { // a batch: each message on its own
		var batch []json.RawMessage
		if err := json.Unmarshal(line, &batch); err != nil {
			c.ignore(line, err)
			return
		}
		for _, m := range batch {
			if len(bytes.TrimSpace(m)) > 0 && bytes.TrimSpace(m)[0] != '[' {
				c.route(m)
			}
		}
		return
	}
	var m envelope
	if err := json.Unmarshal(line, &m); err != nil {
		var idOnly struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(line, &idOnly) == nil {
			c.answered(idOnly.ID)
			if call := c.rawCall(idOnly.ID); call != nil {
				call.finish(nil, nil, fmt.Errorf("stdio server %q answered with a malformed message: %v", c.command, err))
				return
			}
		}
		c.ignore(line, err)
		return
	}
	switch {
	case m.Method == "" && isNull(m.ID) && m.Error != nil:
		c.nullIDError(m.Error)
		return
	case m.Method == "":
		c.answered(m.ID)
		if call := c.rawCall(m.ID); call != nil {
			if m.Error != nil {
				call.finish(nil, m.Error.rpcError(), nil)
			} else if m.Result == nil {
				call.finish(nil, nil, fmt.Errorf("stdio server %q answered tools/call with neither a result nor an error", c.command))
			} else {
				call.finish(m.Result, nil, nil)
			}
			return
		}
		if bytes.HasPrefix(m.ID, []byte(`"`+rawIDPrefix)) {
			slog.Debug("stdio server answered a raw call no longer waiting", "server", c.server, "id", string(m.ID))
			c.answeredLate(m.ID)
			return
		}
	case m.Method == "notifications/progress" && isNull(m.ID):
		var p struct {
			ProgressToken any     `json:"progressToken"`
			Progress      float64 `json:"progress"`
			Total         float64 `json:"total"`
			Message       string  `json:"message"`
		}
		if json.Unmarshal(m.Params, &p) == nil {
			if tok, ok := p.ProgressToken.(string); ok {
				c.mu.Lock()
				call := c.tokens[tok]
				c.mu.Unlock()
				if call != nil {
					call.event(stdioEvent{progress: &plugins.Progress{Progress: p.Progress, Total: p.Total, Message: p.Message}})
					return
				}
			}
		}
	case m.Method == "notifications/message" && isNull(m.ID):
		if call := c.logTarget(); call != nil {
			var p struct {
				Level  string          `json:"level"`
				Logger string          `json:"logger"`
				Data   json.RawMessage `json:"data"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				call.event(stdioEvent{log: &plugins.LogMessage{Level: p.Level, Logger: p.Logger, Data: p.Data}})
				return
			}
		}
	}
	msg, err := jsonrpc.DecodeMessage(line)
	if err != nil {
		c.ignore(line, err)
		return
	}
	c.toSDK(msg)
}

// ignore logs a line that is not a JSON-RPC message.
func (c *stdioConn) ignore(line []byte, err error) {
	if len(line) > 200 {
		line = line[:200]
	}
	slog.Warn("stdio server wrote a line that is not a JSON-RPC message; ignored", "server", c.server, "line", string(line), "error", err)
}

func (c *stdioConn) toSDK(msg jsonrpc.Message) {
	select {
	case c.incoming <- msg:
	case <-c.closed:
	case <-c.eof: // the SDK reads no more (from the grace timer only)
	}
}

// rawCall returns the raw call in flight with this id, if any.
func (c *stdioConn) rawCall(id json.RawMessage) *stdioCall {
	if !bytes.HasPrefix(id, []byte(`"`+rawIDPrefix)) {
		return nil
	}
	var s string
	if json.Unmarshal(id, &s) != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw[s]
}

// logTarget is the raw call a log message goes to: the only call in
// flight, when it is a raw one that wants log messages.
func (c *stdioConn) logTarget() *stdioCall {
	c.mu.Lock()
	var call *stdioCall
	if len(c.raw) == 1 {
		for _, rc := range c.raw {
			call = rc
		}
	}
	sdk := c.sdk
	c.mu.Unlock()
	if call == nil || !call.wantsLog || (sdk != nil && sdk.live() > 0) {
		return nil
	}
	return call
}

// rawInFlight is the number of raw calls in flight (tapConn counts them
// when it looks for the one call in flight).
func (c *stdioConn) rawInFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.raw)
}

func (c *stdioConn) setSDK(sdk sdkRequests) {
	c.mu.Lock()
	c.sdk = sdk
	c.mu.Unlock()
}

// fail ends the connection for raw calls: those in flight fail with err,
// and new ones are refused.
func (c *stdioConn) fail(err error) {
	c.deadOnce.Do(func() {
		c.mu.Lock()
		c.deadErr = err
		close(c.dead)
		calls := make([]*stdioCall, 0, len(c.raw))
		for _, rc := range c.raw {
			calls = append(calls, rc)
		}
		if u := c.unread; u != nil {
			// The raw calls fail below, the SDK's when its reader ends.
			if u.timer != nil {
				u.timer.Stop()
			}
			c.unread = nil
			c.unreadOn.Store(false)
		}
		c.mu.Unlock()
		for _, rc := range calls {
			rc.finish(nil, nil, err)
		}
	})
}

// maxEvents bounds the notifications queued for one raw call that its
// caller has not taken yet; more are dropped.
const maxEvents = 4096

type stdioEvent struct {
	progress *plugins.Progress
	log      *plugins.LogMessage
}

// stdioCall is a raw call in flight on a stdioConn.
type stdioCall struct {
	id, token string
	wantsLog  bool
	signal    chan struct{} // capacity 1: something to take

	mu      sync.Mutex
	events  []stdioEvent
	done    bool
	result  json.RawMessage
	rpcErr  *plugins.RPCError
	err     error
	dropped int
}

func (rc *stdioCall) notify() {
	select {
	case rc.signal <- struct{}{}:
	default:
	}
}

func (rc *stdioCall) event(e stdioEvent) {
	rc.mu.Lock()
	if rc.done {
		rc.mu.Unlock()
		return
	}
	if len(rc.events) >= maxEvents {
		rc.dropped++
		rc.mu.Unlock()
		return
	}
	rc.events = append(rc.events, e)
	rc.mu.Unlock()
	rc.notify()
}

// finished reports whether the call has its outcome.
func (rc *stdioCall) finished() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.done
}

// finish records the call's outcome; the first one counts.
func (rc *stdioCall) finish(result json.RawMessage, rpcErr *plugins.RPCError, err error) {
	rc.mu.Lock()
	if rc.done {
		rc.mu.Unlock()
		return
	}
	rc.done, rc.result, rc.rpcErr, rc.err = true, result, rpcErr, err
	rc.mu.Unlock()
	rc.notify()
}

// call sends a raw tools/call with id and params and waits for its
// answer, relaying the call's notifications to ev in order.
func (c *stdioConn) call(ctx context.Context, id string, call *plugins.RawCall, params json.RawMessage, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	rc := &stdioCall{id: id, wantsLog: ev.Log != nil, signal: make(chan struct{}, 1)}
	if call.ProgressToken != "" && ev.Progress != nil {
		rc.token = call.ProgressToken
	}
	c.mu.Lock()
	select {
	case <-c.dead:
		err := c.deadErr
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", errNotSent, err)
	default:
	}
	c.raw[id] = rc
	if rc.token != "" {
		c.tokens[rc.token] = rc
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.raw, id)
		if rc.token != "" && c.tokens[rc.token] == rc {
			delete(c.tokens, rc.token)
		}
		c.mu.Unlock()
	}()

	// One line: the params are compacted if they hold a line break (JSON
	// whitespace; inside strings it is escaped).
	if bytes.ContainsAny(params, "\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, params); err != nil {
			return nil, &plugins.RPCError{Code: jsonrpc.CodeInvalidParams, Message: "invalid tools/call params: " + err.Error()}
		}
		params = b.Bytes()
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	buf.WriteString(`{"jsonrpc":"2.0","id":"`)
	buf.WriteString(id)
	buf.WriteString(`","method":"tools/call","params":`)
	buf.Write(params)
	buf.WriteString("}\n")
	err := c.writeLine(buf.Bytes())
	bufPool.Put(buf)
	if err != nil {
		return nil, fmt.Errorf("writing tools/call to stdio server %q: %w (%w)", c.command, err, errNotSent)
	}

	for {
		select {
		case <-rc.signal:
		case <-ctx.Done():
			c.cancel(id)
			c.gaveUp(id)
			return nil, ctx.Err()
		}
		// Events queued before the answer are all taken with it: once
		// done, none are added.
		rc.mu.Lock()
		events := rc.events
		rc.events = nil
		done, dropped := rc.done, rc.dropped
		rc.mu.Unlock()
		for _, e := range events {
			switch {
			case e.progress != nil:
				ev.Progress(*e.progress)
			case e.log != nil:
				ev.Log(*e.log)
			}
		}
		if !done {
			continue
		}
		if dropped > 0 {
			slog.Warn("stdio server sent more notifications than a call queues; some dropped", "server", c.server, "dropped", dropped)
		}
		switch {
		case rc.err != nil:
			return nil, rc.err
		case rc.rpcErr != nil:
			return nil, rc.rpcErr
		}
		return &plugins.RawResult{Result: rc.result, Path: plugins.PathRaw}, nil
	}
}

// cancel tells the child a raw call was abandoned, as the SDK client does,
// without holding up the caller.
func (c *stdioConn) cancel(id string) {
	line := []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"` + id + `","reason":"the call was cancelled or timed out"}}` + "\n")
	go func() {
		select {
		case <-c.dead:
			return
		default:
		}
		if err := c.writeLine(line); err != nil {
			slog.Debug("telling the stdio server a call was cancelled failed", "server", c.server, "error", err)
		}
	}()
}

// callRawStdio forwards a raw call on the stdio server's connection. A
// call the child cannot have seen (its connection was already gone) is
// sent once more on a new session; one lost in flight is not, since a
// tools/call may have had effects.
func (a *Adapter) callRawStdio(ctx context.Context, call *plugins.RawCall, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	defer a.inFlight(ev)()
	for attempt := 0; ; attempt++ {
		a.mu.Lock()
		cs, err := a.connectLocked(ctx)
		conn := a.conn
		a.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if conn == nil {
			return nil, fmt.Errorf("stdio server %q: no connection", a.cfg.Command)
		}
		pv := protocolVersion(cs)
		params := call.Params
		if call.ProtocolVersion != pv {
			if params, err = rebuildParams(call, pv); err != nil {
				return nil, err
			}
		}
		id := rawIDPrefix + strconv.FormatInt(a.nextToken.Add(1), 10)
		res, err := conn.call(ctx, id, call, params, ev)
		var rpcErr *plugins.RPCError
		if errors.As(err, &rpcErr) {
			return &plugins.RawResult{Path: plugins.PathRaw, ProtocolVersion: pv}, err
		}
		if errors.Is(err, errNotSent) {
			a.drop(cs)
			if attempt == 0 && ctx.Err() == nil {
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
