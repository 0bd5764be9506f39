package mcpadapter

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
)

// connTransport is the raw path's HTTP/1.1 client to a plain-http upstream:
// keep-alive connections of its own, on which the calling goroutine writes
// the request in one write and reads the answer itself. net/http's
// Transport runs two goroutines per connection (one writes, one reads) and
// hands each request and answer between them and the caller: at one call
// in flight those hand-offs were a sixth of the adapter's CPU. What it does
// that this does not (TLS, proxies, HTTP/2) is why an https upstream, or
// one reached through a proxy, keeps net/http's (newRawTransport).
//
// Its Response.Body gives the connection back when read to its end, and
// closes it when closed before that, as net/http's does: the raw path
// drains a body (bounded) to keep its connection.
type connTransport struct {
	addr string // host:port to dial
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	idle    []*upConn // most recently used last
	closed  bool
	maxIdle int
	// idleTimeout closes a connection idle that long (net/http's
	// transport keeps them 90 s too); sweeping is the timer that does.
	idleTimeout time.Duration
	sweeping    *time.Timer
}

// upConn is one connection to the upstream.
type upConn struct {
	c     net.Conn
	lr    limitedConn // what br reads from: c, bounded while headers are read
	br    *bufio.Reader
	since time.Time // idle since
}

// maxAnswerHeader bounds what an upstream's answer may send before its
// body (status line and headers, 1xx answers included), as net/http's
// transport bounds it (MaxResponseHeaderBytes): an upstream sending
// headers without end must not grow the adapter without bound.
const maxAnswerHeader = 1 << 20

// limitedConn reads from a connection, at most n bytes while n >= 0.
type limitedConn struct {
	c net.Conn
	n int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.c.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= int64(n)
	return n, err
}

var errHeaderTooLarge = fmt.Errorf("the upstream's answer sent more than %d bytes of headers", maxAnswerHeader)

// newRawTransport returns the transport of the raw path's requests to the
// upstream at rawURL: a connTransport for a plain-http upstream reached
// directly, net/http's otherwise.
func newRawTransport(rawURL string) http.RoundTripper {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return newHTTPTransport()
	}
	if p, err := proxyFor(&http.Request{URL: u}); err != nil || p != nil {
		return newHTTPTransport()
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &connTransport{addr: addr, dial: rawconn.DialContext(d), maxIdle: 256, idleTimeout: 90 * time.Second}
}

// proxyFor is how net/http's transport picks a proxy (read once per
// process from HTTP_PROXY, NO_PROXY and the like).
var proxyFor = http.ProxyFromEnvironment

// CloseIdleConnections closes the connections not in use; http.Client
// calls it.
func (t *connTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// close closes the idle connections and the others as they come back.
func (t *connTransport) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// get returns an idle connection that is still open, or nil.
func (t *connTransport) get() *upConn {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			return nil
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if c.alive() {
			return c
		}
		c.c.Close()
	}
}

// put gives c back for the next request.
func (t *connTransport) put(c *upConn) {
	t.mu.Lock()
	if t.closed || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		c.c.Close()
		return
	}
	if t.idleTimeout > 0 {
		c.since = time.Now()
		if t.sweeping == nil {
			t.sweeping = time.AfterFunc(t.idleTimeout, t.sweep)
		}
	}
	t.idle = append(t.idle, c)
	t.mu.Unlock()
}

// sweep closes the connections idle for idleTimeout or longer (the
// oldest are first in idle), and comes back while some are left.
func (t *connTransport) sweep() {
	t.mu.Lock()
	now := time.Now()
	n := 0
	for n < len(t.idle) && now.Sub(t.idle[n].since) >= t.idleTimeout {
		n++
	}
	old := make([]*upConn, n)
	copy(old, t.idle[:n])
	t.idle = append(t.idle[:0], t.idle[n:]...)
	switch {
	case t.closed || len(t.idle) == 0:
		t.sweeping = nil
	default:
		t.sweeping.Reset(t.idleTimeout - now.Sub(t.idle[0].since))
	}
	t.mu.Unlock()
	for _, c := range old {
		c.c.Close()
	}
}

// alive reports whether an idle connection can carry a request: the
// upstream has not closed it, nor sent anything unasked (which makes it
// unusable too). It looks without waiting, one system call where the
// platform allows (peekConn). A server that closes it after this check
// loses the request as it would with net/http, which does not resend a
// POST either.
func (c *upConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	return peekConn(c.c)
}

var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip implements http.RoundTripper for the raw path's requests: a
// body read whole from req.Body (a bytes.Reader), no redirects, no
// Expect: 100-continue.
func (t *connTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	bp := requestPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			requestPool.Put(bp)
		}
	}()
	wb, err := buildRequest((*bp)[:0], req)
	*bp = wb
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, reused := t.get(), true
	for {
		if c == nil {
			if c, err = t.connect(ctx); err != nil {
				return nil, t.failed(ctx, "connecting", err)
			}
			reused = false
		}
		// The call's end unblocks the connection's reads and writes; the
		// connection is then closed, not reused.
		nc := c.c
		stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
		n, err := c.c.Write(wb)
		if err != nil {
			stop()
			c.c.Close()
			if n == 0 && reused && ctx.Err() == nil {
				// The upstream closed the connection since it was
				// checked: it saw nothing of the request. Once more, on
				// a new connection.
				c = nil
				continue
			}
			return nil, t.failed(ctx, "writing the request", err)
		}
		resp, err := c.readResponse(req)
		if err != nil {
			stop()
			c.c.Close()
			return nil, t.failed(ctx, "reading the answer", err)
		}
		resp.Body = &upBody{t: t, c: c, body: resp.Body, stop: stop, keep: !resp.Close}
		return resp, nil
	}
}

var requestPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// failed is the error of a request that broke: the call's own when it
// ended first.
func (t *connTransport) failed(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("%s: %w", what, err)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// connect dials a new connection.
func (t *connTransport) connect(ctx context.Context) (*upConn, error) {
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	c := &upConn{c: nc, lr: limitedConn{c: nc, n: -1}}
	c.br = bufio.NewReaderSize(&c.lr, 16<<10)
	return c, nil
}

// buildRequest appends req to b: the request line, the headers and the
// body, for one write. A header that would let a value end its line (a
// control character in a name or value) fails the request, as net/http
// refuses it.
func buildRequest(b []byte, req *http.Request) ([]byte, error) {
	defer closeBody(req)
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHeaderValue(host) {
		return b, fmt.Errorf("invalid Host %q", host)
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if _, ok := req.Header["User-Agent"]; !ok {
		b = append(b, "User-Agent: armoriq-adapter\r\n"...)
	}
	for k, vs := range req.Header {
		if !validHeaderName(k) {
			return b, fmt.Errorf("invalid header field name %q", k)
		}
		switch http.CanonicalHeaderKey(k) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue // set here, or hop-by-hop
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return b, fmt.Errorf("invalid header field value for %q", k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Content-Length: "...)
	at := len(b) // the body's length goes here once known
	b = append(b, "\r\n\r\n"...)
	head := len(b)
	if req.Body != nil {
		w := appendWriter{b: b}
		if _, err := io.Copy(&w, req.Body); err != nil {
			return w.b, fmt.Errorf("reading the request body: %w", err)
		}
		b = w.b
	}
	var n [20]byte
	num := strconv.AppendInt(n[:0], int64(len(b)-head), 10)
	b = append(b, num...) // room for the digits
	copy(b[at+len(num):], b[at:len(b)-len(num)])
	copy(b[at:], num)
	return b, nil
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// validHeaderName reports whether k is an HTTP token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if ch <= ' ' || ch >= 0x7f || ch == ':' || ch == '(' || ch == ')' || ch == ',' || ch == '/' || ch == ';' || ch == '<' || ch == '=' || ch == '>' || ch == '?' || ch == '@' || ch == '[' || ch == '\\' || ch == ']' || ch == '{' || ch == '}' || ch == '"' {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control character but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if ch := v[i]; (ch < ' ' && ch != '\t') || ch == 0x7f {
			return false
		}
	}
	return true
}

// readResponse reads the answer's status and headers, past any 1xx.
func (c *upConn) readResponse(req *http.Request) (*http.Response, error) {
	// What br holds already was read under no bound: at most its size.
	c.lr.n = maxAnswerHeader
	defer func() { c.lr.n = -1 }()
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.lr.n == 0 {
				return nil, errHeaderTooLarge
			}
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				resp.Close = true
			}
			return resp, nil
		}
		// 100 Continue, 103 Early Hints: informational, no body.
	}
}

// upBody is an answer's body: the connection goes back to the pool when
// it is read to its end, and is closed when the body is closed first.
type upBody struct {
	t    *connTransport
	c    *upConn
	body io.ReadCloser
	stop func() bool
	keep bool // the upstream did not ask to close the connection

	mu       sync.Mutex
	done     bool
	deadline bool // drainWithin set a read deadline
}

// drainWithin reads the rest of the answer through r (a reader of this
// body) for at most d and limit bytes: read to its end, the connection is
// back in the pool; else Close closes it.
func (b *upBody) drainWithin(r io.Reader, d time.Duration, limit int64) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.deadline = true
	b.mu.Unlock()
	if b.c.c.SetReadDeadline(time.Now().Add(d)) != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r, limit))
}

func (b *upBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

func (b *upBody) Close() error {
	b.finish(false)
	return nil
}

// finish releases the connection once: to the pool when the body was read
// to its end, the upstream keeps it open and the call's end did not touch
// its deadlines; closed otherwise.
func (b *upBody) finish(eof bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	if b.stop() && eof && b.keep && (!b.deadline || b.c.c.SetReadDeadline(time.Time{}) == nil) {
		b.t.put(b.c)
		return
	}
	b.c.c.Close()
}

// peekConn reports whether an idle connection may be reused: open with
// nothing to read, or on a system where that cannot be seen without
// reading (a request on one the upstream closed then fails, as with
// net/http).
func peekConn(c net.Conn) bool {
	switch rawconn.Peek(c) {
	case rawconn.PeekEmpty, rawconn.PeekUnknown:
		return true
	}
	return false
}
