package httpfront

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The states of a connection, for Shutdown: it closes idle ones.
const (
	stateIdle   int32 = iota // waiting for a request's first byte
	stateActive              // reading a request or serving it
	stateClosed              // closed by Shutdown
)

// What a read of the connection waits for, and so which deadline bounds it.
const (
	readIdle   = iota // a request's first byte: IdleTimeout
	readHeader        // the rest of its header block: ReadHeaderTimeout
	readBody          // its body: ReadTimeout
)

const (
	// readBufSize is the connection's read buffer: a header block that
	// does not fit goes to net/http.
	readBufSize = 8 << 10
	// maxBuffered is how much of an answer is held to be sent with its
	// Content-Length; beyond it the answer is streamed.
	maxBuffered = 64 << 10
	// maxKeptBody is the largest answer buffer a connection keeps
	// between requests.
	maxKeptBody = 16 << 10
	// maxPostHandlerReadBytes is how much of a body the handler left
	// unread is read to keep the connection (as net/http does).
	maxPostHandlerReadBytes = 256 << 10
)

// conn is one connection served here, until it closes or is handed off.
type conn struct {
	s      *Server
	rwc    net.Conn
	wb     buffersWriter // rwc, when it writes many buffers at once
	ctx    context.Context
	remote string
	state  atomic.Int32

	br   *bufio.Reader // reads through cr
	cr   connReader
	hdr  []byte // the current request's header block, to replay on a handoff
	head []byte // an answer's status line and header
	body []byte // an answer's body, not sent yet
	line [32]byte
	bufs [4][]byte // what one write sends

	lastPOST bool

	// rset, wset: the deadlines set on rwc (zero: none).
	rset, wset time.Time
	// rexplicit, wexplicit: the handler set a deadline itself.
	rexplicit, wexplicit bool
	wbase                time.Time // the current request's WriteTimeout counts from here

	// The watcher's (under its mutex).
	prev, next *conn
	wgen       uint64
	wcancel    context.CancelFunc
}

// buffersWriter writes bufs with one system call where it can (a
// rawconn.Conn does).
type buffersWriter interface {
	WriteBuffers(bufs ...[]byte) (int64, error)
}

func newConn(s *Server, ctx context.Context, rwc net.Conn) *conn {
	c := &conn{s: s, rwc: rwc, ctx: ctx, remote: rwc.RemoteAddr().String()}
	c.wb, _ = rwc.(buffersWriter)
	c.cr.c = c
	c.br = bufio.NewReaderSize(&c.cr, readBufSize)
	return c
}

// connReader reads the connection for its buffer, with the deadline of
// what it waits for.
type connReader struct {
	c         *conn
	mode      int
	t0        time.Time // when the wait for a request, or its first byte, began
	handedOff bool      // net/http sets the deadlines now
}

func (r *connReader) Read(p []byte) (int, error) {
	if !r.handedOff {
		r.c.armRead()
	}
	return r.c.rwc.Read(p)
}

// tolerance is how far a deadline may be early before it is moved: a
// sixteenth of d, at most a second.
func tolerance(d time.Duration) time.Duration { return min(d/16, time.Second) }

// stale reports whether the deadline set must move to want: it is later,
// none where one is wanted (or the reverse), passed, or early by more than
// tol.
func stale(set, want, now time.Time, tol time.Duration) bool {
	switch {
	case want.IsZero() || set.IsZero():
		return !want.Equal(set)
	case set.After(want), !now.Before(set):
		return true
	}
	return want.Sub(set) > tol
}

// armRead sets the read deadline of what the next read waits for (c.cr's
// mode, counted from its t0), unless the one set is close enough.
func (c *conn) armRead() {
	if c.rexplicit {
		return
	}
	hs := c.s.hs
	d := hs.ReadTimeout
	switch c.cr.mode {
	case readIdle:
		if hs.IdleTimeout > 0 {
			d = hs.IdleTimeout
		}
	case readHeader:
		if hs.ReadHeaderTimeout > 0 {
			d = hs.ReadHeaderTimeout
		}
	}
	if want, ok := moveDeadline(c.rset, c.cr.t0, d); ok {
		c.rset = want
		c.rwc.SetReadDeadline(want)
	}
}

// armWrite sets the write deadline WriteTimeout after the request was
// read, unless the one set is close enough.
func (c *conn) armWrite() {
	if c.wexplicit {
		return
	}
	if want, ok := moveDeadline(c.wset, c.wbase, c.s.hs.WriteTimeout); ok {
		c.wset = want
		c.rwc.SetWriteDeadline(want)
	}
}

// moveDeadline returns the deadline d after base (none for d <= 0), and
// whether the one set must move to it (stale).
func moveDeadline(set, base time.Time, d time.Duration) (time.Time, bool) {
	var want time.Time
	if d > 0 {
		want = base.Add(d)
	}
	return want, stale(set, want, time.Now(), tolerance(d))
}

// serve serves the connection's requests until it closes or is handed
// off.
func (c *conn) serve() {
	handedOff := false
	defer func() {
		if !handedOff {
			c.rwc.Close()
		}
		c.s.forget(c)
	}()
	for first := true; ; first = false {
		// IdleTimeout counts from here, however the bytes come.
		c.cr.mode, c.cr.t0 = readIdle, time.Now()
		// Between requests, as net/http, wait for four bytes: a
		// connection that ends with fewer closes without an answer.
		wait := 4
		if first {
			wait = 1
		}
		if _, err := c.br.Peek(wait); err != nil {
			if first && c.br.Buffered() > 0 && !quietReadError(err) {
				handedOff = c.handOff(0, 0)
			}
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		if c.lastPOST && !c.skipCRLF() {
			return
		}
		c.cr.t0, c.cr.mode = time.Now(), readHeader

		h, err := c.headerEnd()
		switch {
		case err != nil:
			// A header cut by the client's end is net/http's to answer
			// (400); one cut by a deadline ends quietly, as there.
			if c.br.Buffered() > 0 && (err == io.EOF || !quietReadError(err)) {
				handedOff = c.handOff(0, 0)
			}
			return
		case h < 0 || h > c.maxHeaderBytes():
			handedOff = c.handOff(0, 0)
			return
		}
		c.hdr = append(c.hdr[:0], c.peek(h)...)
		before := c.br.Buffered()
		req, err := http.ReadRequest(c.br)
		consumed := before - c.br.Buffered()
		if consumed > h {
			// Unreachable: the parser read past the blank line it
			// ends at. Nothing can be replayed; fail closed.
			c.s.logf("httpfront: request from %s parsed past its header block (%d > %d bytes); closing", c.remote, consumed, h)
			c.rwc.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"))
			return
		}
		if err != nil || consumed != h || !plain(req, c.hdr) {
			handedOff = c.handOff(h, consumed)
			return
		}
		c.lastPOST = req.Method == http.MethodPost
		keep, unread := c.serveRequest(req)
		if unread {
			c.closeWriteAndWait()
		}
		if !keep {
			return
		}
		if !c.state.CompareAndSwap(stateActive, stateIdle) || c.s.closing.Load() {
			return
		}
	}
}

// quietReadError reports whether err ends a connection without an answer
// (as net/http's isCommonNetReadError): the client left, or a deadline
// passed.
func quietReadError(err error) bool {
	if err == io.EOF {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// skipCRLF drops up to four CR or LF bytes before a request, which old
// clients send after a POST's body (as net/http does). It reports false
// when the connection ended.
func (c *conn) skipCRLF() bool {
	for range 4 {
		b, err := c.br.Peek(1)
		if err != nil {
			return false
		}
		if b[0] != '\r' && b[0] != '\n' {
			return true
		}
		c.br.Discard(1)
	}
	_, err := c.br.Peek(1)
	return err == nil
}

func (c *conn) maxHeaderBytes() int {
	if n := c.s.hs.MaxHeaderBytes; n > 0 {
		return n
	}
	return http.DefaultMaxHeaderBytes
}

// peek returns the first n buffered bytes without consuming them.
func (c *conn) peek(n int) []byte {
	b, _ := c.br.Peek(n)
	return b
}

// headerEnd reads until the buffer holds the blank line ending the header
// block and returns the block's length, or -1 when the buffer fills first.
func (c *conn) headerEnd() (int, error) {
	for {
		if h := endOfHeader(c.peek(c.br.Buffered())); h >= 0 {
			return h, nil
		}
		n := c.br.Buffered()
		if n >= c.br.Size() {
			return -1, nil
		}
		if _, err := c.br.Peek(n + 1); err != nil {
			return 0, err
		}
	}
}

// endOfHeader returns the length of the header block at the start of b,
// through the first empty line (LF LF or LF CR LF, as net/textproto reads
// lines), or -1 when b holds none.
func endOfHeader(b []byte) int {
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// plain reports whether req, parsed from the header block hdr, is served
// here: the package comment lists what is not.
func plain(req *http.Request, hdr []byte) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || len(req.TransferEncoding) != 0 || req.ContentLength < 0 || req.RequestURI == "*" {
		return false
	}
	switch req.Method {
	case http.MethodHead, http.MethodConnect, "PRI":
		return false
	}
	// http.ReadRequest drops the Host header, keeping its value in
	// req.Host unless the target is an absolute URI (left to net/http).
	if req.URL.Host != "" || hostLines(hdr) != 1 || !httpguts.ValidHostHeader(req.Host) {
		return false
	}
	for k, vv := range req.Header {
		switch k {
		case "Expect", "Upgrade":
			return false
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// hostLines counts the Host header lines of the header block hdr (net/http
// answers 400 to an HTTP/1.1 request with none).
func hostLines(hdr []byte) int {
	n := 0
	for {
		i := bytes.IndexByte(hdr, '\n')
		if i < 0 {
			return n
		}
		hdr = hdr[i+1:]
		if len(hdr) >= 5 && hdr[4] == ':' && (hdr[0]|0x20) == 'h' && (hdr[1]|0x20) == 'o' && (hdr[2]|0x20) == 's' && (hdr[3]|0x20) == 't' {
			n++
		}
	}
}

// handOff gives the connection to the net/http Server: the first h bytes
// of the buffer were the current header block (c.hdr), of which the
// parser consumed consumed; what follows in the buffer and on the socket
// is read after them. It reports whether the connection was handed off.
func (c *conn) handOff(h, consumed int) bool {
	if h > consumed {
		c.br.Discard(h - consumed)
	}
	c.s.handedOff.Add(1)
	c.cr.handedOff = true
	c.rwc.SetReadDeadline(time.Time{})
	c.rwc.SetWriteDeadline(time.Time{})
	var r io.Reader = c.br
	if h > 0 {
		r = io.MultiReader(bytes.NewReader(c.hdr[:h]), c.br)
	}
	c.s.handoff.give(&replayConn{Conn: c.rwc, r: r})
	return true
}

// replayConn is a handed-off connection: its reads return the bytes read
// from it already, then the rest.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite shuts the writing side, where the connection can (net/http
// does before closing, so that the client reads the answer).
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// rstAvoidanceDelay is how long a connection closing with a body left
// unread waits after its FIN (net/http's): closing at once would reset
// it, and a client still sending would lose the answer with the reset.
const rstAvoidanceDelay = 500 * time.Millisecond

// closeWriteAndWait ends the writing side and waits rstAvoidanceDelay, so
// that the client reads the answer before the connection closes.
func (c *conn) closeWriteAndWait() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	time.Sleep(rstAvoidanceDelay)
}

// serveRequest runs the handler on req and sends its answer. It reports
// whether the connection may serve another request, and whether it closes
// with some of the request's body unread.
func (c *conn) serveRequest(req *http.Request) (keep, unread bool) {
	s := c.s
	s.lean.Add(1)
	delete(req.Header, "Host")
	req.RemoteAddr = c.remote
	ctx, cancel := context.WithCancel(c.ctx)
	req = req.WithContext(ctx)
	c.wbase = time.Now()
	c.rexplicit, c.wexplicit = false, false

	w := &response{c: c, req: req, cancel: cancel, header: make(http.Header), clen: -1, closeAfter: req.Close || s.closing.Load()}
	if req.ContentLength > 0 {
		w.reqBody = body{c: c, left: req.ContentLength}
		req.Body = &w.reqBody
		c.cr.mode = readBody
	} else {
		req.Body = http.NoBody
	}

	h := s.hs.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	s.watch.add(c, cancel)
	panicked := true
	defer func() {
		if panicked {
			s.watch.remove(c)
			keep, unread = false, false
			cancel()
			if err := recover(); err != nil && err != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				s.logf("http: panic serving %v: %v\n%s", c.remote, err, buf)
			}
		}
	}()
	h.ServeHTTP(w, req)
	panicked = false
	s.watch.remove(c)
	keep = w.finish()
	cancel()
	if cap(c.body) > maxKeptBody {
		c.body = nil
	}
	return keep, !keep && w.reqBody.left > 0
}

// body is a request's body: Content-Length bytes of the connection.
type body struct {
	c      *conn
	left   int64
	closed bool
	err    error // the read error that ended it early
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	switch {
	case b.left == 0:
		return n, io.EOF
	case err == io.EOF:
		b.err = io.ErrUnexpectedEOF
		return n, b.err
	case err != nil:
		b.err = err
	}
	return n, err
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

// drain reads what the handler left of the body, up to
// maxPostHandlerReadBytes, and reports whether the connection can read
// the next request.
func (b *body) drain() bool {
	if b.left <= 0 {
		return b.err == nil
	}
	if b.err != nil || b.left > maxPostHandlerReadBytes {
		return false
	}
	n, err := b.c.br.Discard(int(b.left))
	b.left -= int64(n)
	return err == nil && b.left == 0
}
