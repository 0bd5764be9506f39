package httpfront

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// response is the ResponseWriter of a request served here.
type response struct {
	c       *conn
	req     *http.Request
	cancel  func()
	header  http.Header
	reqBody body

	status      int
	wroteHeader bool // WriteHeader called (the header is snapshot in c.head)
	committed   bool // the header was sent: the body streams
	chunking    bool // ... in chunks
	done        bool // the handler returned

	clen     int64 // the handler's valid Content-Length, or -1
	written  int64
	haveType bool // Content-Type set (even to nil: no sniffing)
	haveDate bool
	hasCE    bool
	te       string // the handler's Transfer-Encoding (not sent as such)
	connHdr  string // the handler's Connection (sent by commit)

	closeAfter bool
	werr       error
}

// The pieces of chunked framing.
var (
	crlf          = []byte("\r\n")
	lastChunk     = []byte("0\r\n\r\n")
	crlfLastChunk = []byte("\r\n0\r\n\r\n")
)

var errAfterHandler = errors.New("httpfront: write after the handler returned")

func (w *response) Header() http.Header { return w.header }

// bodyAllowed reports whether the status may carry a body.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

// The handler's headers not sent as they are: Connection and
// Transfer-Encoding are decided by commit, and a status without a body
// sends no Content-Length (nor Content-Type, for 304), as in net/http.
var (
	excludeBase = map[string]bool{"Connection": true, "Transfer-Encoding": true}
	excludeCL   = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Content-Length": true}
	excludeCLCT = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Content-Length": true, "Content-Type": true}
)

func (w *response) WriteHeader(code int) {
	if w.done {
		return
	}
	if w.wroteHeader {
		w.c.s.logf("http: superfluous response.WriteHeader call (status %d after %d)", code, w.status)
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	c := w.c
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational answer goes now, and the handler answers on.
		c.head = appendStatusLine(c.head[:0], code, c.line[:0])
		w.header.WriteSubset(appender{&c.head}, excludeCL)
		c.head = append(c.head, "\r\n"...)
		w.send(c.head)
		c.head = c.head[:0]
		return
	}
	w.wroteHeader, w.status = true, code

	h := w.header
	exclude := excludeBase
	if cl := h.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.clen = v
		} else {
			c.s.logf("http: invalid Content-Length of %q", cl)
			exclude = excludeCL
		}
	}
	switch {
	case code == http.StatusNotModified:
		exclude = excludeCLCT
		w.clen = -1
	case !bodyAllowed(code):
		exclude = excludeCL
		w.clen = -1
	}
	_, w.haveType = h["Content-Type"]
	_, w.haveDate = h["Date"]
	w.hasCE = h.Get("Content-Encoding") != ""
	w.te = h.Get("Transfer-Encoding")
	w.connHdr = h.Get("Connection")
	if w.connHdr == "close" {
		w.closeAfter = true
	}
	c.head = appendStatusLine(c.head[:0], code, c.line[:0])
	h.WriteSubset(appender{&c.head}, exclude)
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.clen != -1 && w.written > w.clen {
		return 0, http.ErrContentLength
	}
	if w.werr != nil {
		return 0, w.werr
	}
	c := w.c
	c.body = append(c.body, p...)
	switch {
	case !w.committed && len(c.body) > maxBuffered:
		w.commit(false)
		w.sendBody(false)
	case w.committed && len(c.body) >= maxBuffered:
		w.sendBody(false)
	}
	if w.werr != nil {
		return 0, w.werr
	}
	return len(p), nil
}

// Flush sends the header, if it was not sent, and what was written.
func (w *response) Flush() { w.FlushError() }

// FlushError is Flush, with the error of the write (for
// http.ResponseController).
func (w *response) FlushError() error {
	if w.done {
		return errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	w.sendBody(false)
	return w.werr
}

// SetReadDeadline sets the connection's read deadline for the rest of
// this request (http.ResponseController).
func (w *response) SetReadDeadline(t time.Time) error {
	c := w.c
	c.rexplicit, c.rset = true, t
	return c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline for the rest of
// this request (http.ResponseController).
func (w *response) SetWriteDeadline(t time.Time) error {
	c := w.c
	c.wexplicit, c.wset = true, t
	return c.rwc.SetWriteDeadline(t)
}

// commit completes the header in c.head: with final (the handler
// returned), what is in c.body is the whole answer. It decides the
// answer's framing and whether the connection closes after it.
func (w *response) commit(final bool) {
	w.committed = true
	c := w.c
	allowed := bodyAllowed(w.status)

	if c.s.closing.Load() {
		w.closeAfter = true
	}
	if final && allowed && w.clen == -1 && w.te == "" {
		w.clen = int64(len(c.body))
		c.head = append(c.head, "Content-Length: "...)
		c.head = strconv.AppendInt(c.head, w.clen, 10)
		c.head = append(c.head, "\r\n"...)
	}
	if !w.haveDate {
		c.head = append(c.head, "Date: "...)
		c.head = appendDate(c.head, time.Now())
		c.head = append(c.head, "\r\n"...)
	}
	if allowed && !w.haveType && !w.hasCE && len(c.body) > 0 {
		c.head = append(c.head, "Content-Type: "...)
		c.head = append(c.head, http.DetectContentType(c.body)...)
		c.head = append(c.head, "\r\n"...)
	}
	if allowed && w.clen == -1 {
		if w.te == "identity" {
			w.closeAfter = true // the body ends when the connection does
		} else {
			w.chunking = true
		}
	}
	switch {
	case w.closeAfter:
		c.head = append(c.head, "Connection: close\r\n"...)
	case w.connHdr != "":
		c.head = append(c.head, "Connection: "...)
		c.head = append(c.head, w.connHdr...)
		c.head = append(c.head, "\r\n"...)
	}
	if w.chunking {
		c.head = append(c.head, "Transfer-Encoding: chunked\r\n"...)
	}
	c.head = append(c.head, "\r\n"...)
	if !final {
		// Stream: the header goes with the first piece of the body.
		return
	}
	w.sendBody(true)
}

// sendBody sends what is in c.body (after the header, when it was not
// sent yet); with last, it ends the answer.
func (w *response) sendBody(last bool) {
	c := w.c
	bufs := &c.bufs
	n := 0
	if len(c.head) > 0 {
		bufs[n], n = c.head, n+1
	}
	switch {
	case w.chunking && len(c.body) > 0:
		size := append(strconv.AppendInt(c.line[:0], int64(len(c.body)), 16), "\r\n"...)
		bufs[n], bufs[n+1], n = size, c.body, n+2
		if last {
			bufs[n], n = crlfLastChunk, n+1
		} else {
			bufs[n], n = crlf, n+1
		}
	case w.chunking && last:
		bufs[n], n = lastChunk, n+1
	case len(c.body) > 0:
		bufs[n], n = c.body, n+1
	}
	if n > 0 {
		w.send(bufs[:n]...)
	}
	clear(bufs[:n])
	c.head, c.body = c.head[:0], c.body[:0]
}

// send writes bufs in order, with one system call where the connection
// can. A failed write ends the request: its context is cancelled and the
// connection closes after it.
func (w *response) send(bufs ...[]byte) {
	if w.werr != nil {
		return
	}
	c := w.c
	c.armWrite()
	var err error
	if c.wb != nil {
		_, err = c.wb.WriteBuffers(bufs...)
	} else {
		nb := net.Buffers(bufs)
		_, err = nb.WriteTo(c.rwc)
	}
	if err != nil {
		w.werr, w.closeAfter = err, true
		w.cancel()
	}
}

// finish sends what the handler left unsent and reports whether the
// connection may serve another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.done = true
	// What the handler left of the body is read before the last of the
	// answer goes, so that a header not sent yet can say Connection: close.
	if w.reqBody.c != nil && !w.reqBody.drain() {
		w.closeAfter = true
	}
	if !w.committed {
		w.commit(true)
	} else {
		w.sendBody(true)
	}
	w.reqBody.closed = true
	if w.clen != -1 && w.written != w.clen && bodyAllowed(w.status) {
		w.closeAfter = true // the client waits for bytes that will not come
	}
	return !w.closeAfter && w.werr == nil
}

// appendStatusLine appends "HTTP/1.1 code text\r\n" (as net/http writes
// it, for codes it has no text for too).
func appendStatusLine(b []byte, code int, scratch []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = append(b, strconv.AppendInt(scratch, int64(code), 10)...)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appender makes a byte slice an io.Writer and io.StringWriter (for
// Header.WriteSubset, which sanitizes what it writes).
type appender struct{ b *[]byte }

func (a appender) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

func (a appender) WriteString(s string) (int, error) {
	*a.b = append(*a.b, s...)
	return len(s), nil
}

// date is the Date header of one second.
type date struct {
	sec int64
	b   []byte
}

var lastDate atomic.Pointer[date]

// appendDate appends now in http.TimeFormat, formatted once a second.
func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	d := lastDate.Load()
	if d == nil || d.sec != sec {
		d = &date{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		lastDate.Store(d)
	}
	return append(b, d.b...)
}
