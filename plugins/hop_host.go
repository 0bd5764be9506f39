package plugins

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	protov2 "github.com/armoriq/controlplane/plugins/proto/v2"
	"github.com/armoriq/controlplane/plugins/rawconn"
)

// The host's side of the hop.

// hopAddress is what Hop.Open answers: where the adapter's hop listens and
// the token a connection must present.
type hopAddress struct {
	Network string `json:"network"`
	Address string `json:"address"`
	Token   string `json:"token"` // base64 (standard encoding)
}

// hopOpenMethod is the full name of Hop.Open on the gRPC connection.
const hopOpenMethod = "/armoriq.plugins.v5.Hop/Open"

// hopDialTimeout bounds dialing the hop and its hello.
const hopDialTimeout = 10 * time.Second

// hopMux sends the raw calls of one adapter connection on the adapter's
// hop, dialed at the first call and dialed anew when it breaks. Where the
// hop cannot be had (the adapter cannot listen on a unix socket, or the
// socket refuses), the calls go on Raw.Session (fallback) from then on.
type hopMux struct {
	conn     *grpc.ClientConn
	fallback *rawMux
	warn     func(msg string, args ...any) // the host's log, at WARN
	logErr   func(msg string, args ...any) // and at ERROR

	mu       sync.Mutex
	addr     *hopAddress
	token    []byte
	cur      *hopConn
	disabled atomic.Bool
}

// call sends call on the hop, or on the session where the hop cannot be
// had.
func (m *hopMux) call(ctx context.Context, call *RawCall, ev *CallEvents) (*RawResult, error) {
	if m.disabled.Load() {
		return m.fallback.call(ctx, call, ev)
	}
	var (
		hc *hopConn
		c  *pendingCall[hopFrame]
		ok bool
	)
	for !ok {
		var err error
		if hc, err = m.connection(ctx); err != nil {
			var cerr *connError
			if errors.As(err, &cerr) || ctx.Err() != nil {
				return nil, err
			}
			// The adapter answered but its hop cannot be reached: nothing
			// of the call was sent, so it goes on the session.
			m.disabled.Store(true)
			m.warn("adapter hop unavailable; raw calls go on its gRPC session", "error", err)
			return m.fallback.call(ctx, call, ev)
		}
		hc.poll()
		c, ok = hc.add()
	}
	return hc.call(ctx, c, call, ev)
}

// connection returns the hop connection to send a call on, dialing one if
// there is none or the last one broke.
func (m *hopMux) connection(ctx context.Context) (*hopConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hc := m.cur; hc != nil {
		select {
		case <-hc.done:
		default:
			return hc, nil
		}
	}
	if m.addr == nil {
		var res protov2.JSONResult
		if err := m.conn.Invoke(ctx, hopOpenMethod, &protov2.Empty{}, &res); err != nil {
			if st, ok := status.FromError(err); ok && st.Code() != codes.Unavailable && st.Code() != codes.Canceled && st.Code() != codes.DeadlineExceeded {
				return nil, fmt.Errorf("Hop.Open: %s", st.Message())
			}
			return nil, fromStatus(err)
		}
		var a hopAddress
		if err := json.Unmarshal(res.GetJson(), &a); err != nil {
			return nil, fmt.Errorf("Hop.Open answered %q: %v", res.GetJson(), err)
		}
		token, err := base64.StdEncoding.DecodeString(a.Token)
		if err != nil || len(token) != hopTokenSize || a.Network != "unix" {
			return nil, fmt.Errorf("Hop.Open answered an address %q on %q with a token of %d bytes; want a unix socket and %d bytes", a.Address, a.Network, len(token), hopTokenSize)
		}
		m.addr, m.token = &a, token
	}
	hc, err := dialHop(ctx, m.addr, m.token)
	if err != nil {
		return nil, err
	}
	hc.log = m.logErr
	m.cur = hc
	return hc, nil
}

// removeLeftovers removes the socket and directory of the hop of an
// adapter process that is gone: one killed (SIGKILL, the OOM killer)
// could not remove them itself. Only what the adapter's hop makes is
// removed, a socket named hop.sock in an armoriq-hop-* directory of the
// temporary directory, and the directory only if nothing else is in it;
// an address elsewhere (a custom adapter's) is left alone. The connection
// to the hop is closed first: between calls nobody reads it to see its end.
func (m *hopMux) removeLeftovers() {
	m.mu.Lock()
	addr, hc := m.addr, m.cur
	m.mu.Unlock()
	if hc != nil {
		hc.fail(io.EOF)
	}
	if addr == nil {
		return // the hop was never opened
	}
	sock := filepath.Clean(addr.Address)
	dir := filepath.Dir(sock)
	if filepath.Base(sock) != hopSocketName || !strings.HasPrefix(filepath.Base(dir), hopDirPrefix) || filepath.Dir(dir) != filepath.Clean(os.TempDir()) {
		return
	}
	removeHopDir(dir)
}

// removeHopDir removes the hop directory dir of an adapter that is gone:
// its socket (only if hopSocketName is a socket), then dir, only if nothing
// else is in it. It reports whether dir is removed.
func removeHopDir(dir string) bool {
	sock := filepath.Join(dir, hopSocketName)
	if fi, err := os.Lstat(sock); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return false
		}
		_ = os.Remove(sock)
	}
	return os.Remove(dir) == nil
}

// dialHop connects to the adapter's hop and says hello.
func dialHop(ctx context.Context, addr *hopAddress, token []byte) (*hopConn, error) {
	if err := checkPrivateDir(filepath.Dir(addr.Address)); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, hopDialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, addr.Network, addr.Address)
	if err != nil {
		return nil, fmt.Errorf("dialing the adapter's hop: %w", err)
	}
	conn = rawconn.Wrap(conn)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	hello := appendHeader(nil, hopHello, 0, 1+len(token))
	hello = append(append(hello, hopVersion), token...)
	var ack [hopHeaderSize + 1]byte
	if _, err = conn.Write(hello); err == nil {
		_, err = io.ReadFull(conn, ack[:])
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("saying hello on the adapter's hop: %w", err)
	}
	if ack[4] != hopHello || ack[3] != 1 || ack[hopHeaderSize] != hopVersion {
		conn.Close()
		return nil, fmt.Errorf("the adapter's hop answered hello with %x", ack)
	}
	_ = conn.SetDeadline(time.Time{})
	hc := &hopConn{conn: conn, w: newHopWriter(conn), tok: make(chan struct{}, 1), pendingCalls: newPendingCalls[hopFrame](hopCallPool)}
	hc.src = newHopSource(conn)
	hc.r = newHopReader(hc.src)
	hc.r.validID = hc.issued
	hc.tok <- struct{}{}
	return hc, nil
}

// checkPrivateDir refuses a hop socket whose directory others could enter:
// the token would travel where another user might have put a socket of
// their own.
func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("the adapter's hop directory: %w", err)
	}
	if !fi.IsDir() || !filepath.IsAbs(dir) || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("the adapter's hop directory %s has mode %v; want a directory only its owner can enter", dir, fi.Mode())
	}
	return nil
}

// hopConn is one connection to an adapter's hop.
//
// Its calls read it themselves, one at a time: a call waiting for its
// frames takes the read token (tok) when no other call holds it, reads
// frames, hands the other calls theirs (pendingCalls.deliver) and stops at
// its own, and puts the token back for the next waiting call. So a call
// whose result comes next reads it on its own goroutine, without waking
// another on the way. A call whose context ends while it reads is
// interrupted by a read deadline in the past (interrupt), and the frame it
// was reading is continued by the next reader (hopReader). When no call
// waits nobody reads: a call first reads, without waiting, what came
// meanwhile (poll), so that one is not sent on a connection the adapter
// closed.
type hopConn struct {
	conn net.Conn
	w    *hopWriter
	log  func(msg string, args ...any) // logs a protocol error

	tok chan struct{} // the read token, in the channel when no call reads
	src *hopSource
	r   *hopReader // read by the token's holder

	// The read a cancelled call interrupts: readGen is the generation of
	// the read that may be (0: none), interrupted says the deadline was set.
	dmu         sync.Mutex
	readGen     uint64
	lastGen     uint64
	interrupted bool

	pendingCalls[hopFrame] // the calls in flight; err and done say why and when it broke
}

var hopCallPool = newPendingCallPool[hopFrame]()

// hopBufPool recycles the buffers calls encode their frame in.
var hopBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// aLongTimeAgo is a read deadline that interrupts a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// readFrame reads the next frame the adapter sends; the token's holder
// calls it.
func (hc *hopConn) readFrame() (hopFrame, error) {
	f, err := hc.r.next()
	if err == nil {
		switch f.kind {
		case hopProgress, hopLog, hopRequest, hopResult, hopFailure:
		default:
			err = hopErrorf("the adapter sent a frame of kind %d", f.kind)
		}
	}
	return f, err
}

// wait waits for frames for c, reading the connection itself when no
// other call does, and returns those received since it last did. broken
// says the connection broke (frames may come with it: the result may have
// come before the break); err is ctx's error if it ended first.
func (hc *hopConn) wait(ctx context.Context, c *pendingCall[hopFrame]) (frames []hopFrame, broken bool, err error) {
	select {
	case <-c.ready:
	case <-hc.tok:
		return hc.lead(ctx, c)
	case <-hc.done:
		broken = true
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	return hc.take(c), broken, nil
}

// lead reads the connection for c, which holds the token, until a frame of
// c's comes or ctx ends, and puts the token back (unless the connection
// broke: then nobody reads it again).
func (hc *hopConn) lead(ctx context.Context, c *pendingCall[hopFrame]) (frames []hopFrame, broken bool, err error) {
	hc.mu.Lock()
	if len(c.frames) > 0 { // the previous reader handed them
		frames, c.frames = c.frames, nil
	}
	hc.mu.Unlock()
	if frames != nil {
		hc.tok <- struct{}{}
		return frames, false, nil
	}
	var stop func() bool
	if ctx.Done() != nil {
		hc.dmu.Lock()
		hc.lastGen++
		gen := hc.lastGen
		hc.readGen = gen
		hc.dmu.Unlock()
		stop = context.AfterFunc(ctx, func() { hc.interrupt(gen) })
	}
	for {
		f, rerr := hc.readFrame()
		switch {
		case rerr == nil && f.id != c.id:
			hc.deliver(f.id, f)
			continue
		case rerr == nil:
			frames = append(hc.take(c), f)
		case isTimeout(rerr) && ctx.Err() != nil:
			err = ctx.Err()
		default:
			// The connection's end, a protocol error, or (never) a
			// deadline nobody set.
			hc.fail(rerr)
			if stop != nil {
				stop()
			}
			return hc.take(c), true, nil
		}
		break
	}
	if stop != nil && !stop() {
		// ctx ended: its interrupt ran or runs now. A deadline it set is
		// cleared before the next reader reads; one it has yet to set it
		// will not, its read being over.
		hc.dmu.Lock()
		hc.readGen = 0
		if hc.interrupted {
			hc.interrupted = false
			_ = hc.conn.SetReadDeadline(time.Time{})
		}
		hc.dmu.Unlock()
	}
	hc.tok <- struct{}{}
	return frames, false, err
}

// interrupt ends the read of generation gen, if it is still going on, with
// a read deadline in the past.
func (hc *hopConn) interrupt(gen uint64) {
	hc.dmu.Lock()
	defer hc.dmu.Unlock()
	if hc.readGen == gen {
		hc.interrupted = true
		_ = hc.conn.SetReadDeadline(aLongTimeAgo)
	}
}

// poll reads, without waiting, what the adapter sent while no call was
// reading: frames of calls that ended (dropped), or the connection's end,
// which fails it, so that the next call dials anew. When a call holds the
// token it reads, and sees the end as soon as it comes.
func (hc *hopConn) poll() {
	select {
	case <-hc.tok:
	default:
		return
	}
	hc.src.now = true
	for {
		f, err := hc.readFrame()
		if err != nil {
			hc.src.now = false
			if !isTimeout(err) {
				hc.fail(err)
				return
			}
			hc.tok <- struct{}{}
			return
		}
		hc.deliver(f.id, f)
	}
}

// hopSource is what a hopConn's reader reads: the connection, or when now
// is set (by the token's holder) only what it holds already, a read that
// would wait failing with os.ErrDeadlineExceeded.
type hopSource struct {
	conn net.Conn
	now  bool
	rn   nowConn    // the connection, where it reads without waiting itself
	nr   *nowReader // nil where the connection has no file descriptor
}

// nowConn is a connection that reads what it holds without waiting
// (rawconn.Conn).
type nowConn interface {
	ReadNow(p []byte) (int, error)
}

func newHopSource(conn net.Conn) *hopSource {
	s := &hopSource{conn: conn}
	if rn, ok := conn.(nowConn); ok {
		s.rn = rn
	} else if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.nr = newNowReader(raw)
		}
	}
	return s
}

func (s *hopSource) Read(p []byte) (int, error) {
	if !s.now {
		return s.conn.Read(p)
	}
	if s.rn != nil {
		return s.rn.ReadNow(p)
	}
	if s.nr == nil {
		return 0, os.ErrDeadlineExceeded
	}
	return s.nr.read(p)
}

// fail records why the connection broke, closes it and releases its calls.
func (hc *hopConn) fail(err error) {
	msg := "the adapter closed it"
	var herr *hopError
	switch {
	case errors.As(err, &herr):
		msg = err.Error()
	case err != io.EOF:
		msg = err.Error()
	}
	// The first failure is the one the calls report: it is recorded
	// before the connection is closed, which fails a call's read too.
	if !hc.breakWith(&connError{fmt.Errorf("the hop connection to the adapter broke (%s); the call is not retried: the upstream may have received it", msg)}) {
		return // failed already: the reader, or a caller that found a malformed frame
	}
	if herr != nil {
		hc.log("closing the hop to the adapter", "error", err)
	}
	_ = hc.conn.Close()
}

// brokenErr is why the connection broke, after a write failed with err.
func (hc *hopConn) brokenErr(err error) error {
	hc.fail(err) // unless a reader saw the break first
	<-hc.done
	return hc.err
}

// sendCancel tells the adapter to cancel call id.
func (hc *hopConn) sendCancel(id uint64) {
	var b [hopHeaderSize]byte
	_ = hc.w.write(appendHeader(b[:0], hopCancel, id, 0), nil)
}

// call sends call as c and waits for its result, handing its events to ev
// meanwhile.
func (hc *hopConn) call(ctx context.Context, c *pendingCall[hopFrame], call *RawCall, ev *CallEvents) (*RawResult, error) {
	defer hc.remove(c)
	id := c.id // c is recycled when the call returns
	if ev == nil {
		ev = &CallEvents{}
	}
	if len(call.Params) > MaxMessageSize {
		return nil, fmt.Errorf("the call's params: %w", errTooLarge)
	}
	var timeout int64
	if d, ok := ctx.Deadline(); ok {
		t := time.Until(d)
		if t <= 0 {
			return nil, context.DeadlineExceeded
		}
		timeout = int64(t)
	}
	var flags byte
	if ev.Log != nil {
		flags |= hopFlagLog
	}
	if ev.Request != nil {
		flags |= hopFlagRequests
	}
	if call.Legacy {
		flags |= hopFlagLegacy
	}
	progressToken := call.ProgressToken
	if ev.Progress == nil {
		progressToken = ""
	}
	bp := hopBufPool.Get().(*[]byte)
	b := appendHeader((*bp)[:0], hopCall, id, 0)
	b = append(b, flags)
	b = appendU64(b, uint64(timeout))
	b = appendStr(b, call.Method)
	b = appendStr(b, call.Name)
	b = appendStr(b, call.ProtocolVersion)
	b = appendStr(b, progressToken)
	b = appendStr(b, call.Traceparent)
	b = appendStr(b, call.Tracestate)
	err := hc.w.writeBody(id, b, call.Params)
	*bp = b
	hopBufPool.Put(bp)
	if err != nil {
		return nil, hc.brokenErr(err)
	}

	// The events' handler, made at the first event (most calls have none).
	var h *hostEvents
	defer func() {
		if h != nil {
			h.cancel()
			h.wg.Wait()
		}
	}()
	handle := func(e callEvent) {
		if h == nil {
			h = &hostEvents{ctx: ctx, cancel: func() {}, ev: ev, send: func(r *protov2.ClientResponse) error {
				return hc.sendAnswer(id, r)
			}}
			if ev.Request != nil {
				h.ctx, h.cancel = context.WithCancel(ctx)
			}
		}
		h.handle(e)
	}
	for {
		frames, broken, err := hc.wait(ctx, c)
		if err != nil {
			go hc.sendCancel(id)
			return nil, err
		}
		for _, f := range frames {
			e, res, err, end := decodeAdapterFrame(f)
			switch {
			case end:
				return res, err
			case err != nil:
				// A malformed frame: the connection goes, as for any other
				// protocol error, and the call fails with it.
				hc.fail(err)
				return nil, hc.err
			default:
				handle(e)
			}
		}
		if broken {
			return nil, hc.err
		}
	}
}

// sendAnswer sends the answer to server request r.GetId() of call id.
func (hc *hopConn) sendAnswer(id uint64, r *protov2.ClientResponse) error {
	res := r.GetResult()
	b := appendHeader(nil, hopAnswer, id, 0)
	b = appendU64(b, uint64(r.GetId()))
	var body []byte
	if e := res.GetError(); e != nil {
		b = append(b, hopFlagError)
		b = appendU64(b, uint64(e.GetCode()))
		b = appendStr(b, e.GetMessage())
		body = e.GetData()
	} else {
		b = append(b, 0)
		body = res.GetJson()
	}
	if len(b)+len(body) > hopMaxFrame {
		b = b[:hopHeaderSize+8]
		b = append(b, hopFlagError)
		code := int64(-32603)
		b = appendU64(b, uint64(code))
		b = appendStr(b, "the client's answer is larger than the hop carries")
		body = nil
	}
	setLength(b, len(body))
	return hc.w.write(b, body)
}

// decodeAdapterFrame decodes a frame the adapter sent for a call: an event,
// or the call's end (end) with its result or error. err without end is a
// malformed frame.
func decodeAdapterFrame(f hopFrame) (e callEvent, res *RawResult, err error, end bool) {
	d := hopDecoder{b: f.payload}
	switch f.kind {
	case hopProgress:
		p := &protov2.Progress{Progress: d.f64("progress"), Total: d.f64("progress")}
		p.Message = string(d.rest())
		e.progress = p
	case hopLog:
		m := &protov2.LogMessage{Level: d.str("log level"), Logger: d.str("logger")}
		m.Data = d.rest()
		e.log = m
	case hopRequest:
		r := &protov2.ServerRequest{Id: int64(d.u64("request id")), Method: d.str("request method")}
		r.Params = d.rest()
		e.request = r
	case hopResult:
		flags := d.byte1("result")
		res = &RawResult{Path: internPath(d.bytes("path")), ProtocolVersion: internVersion(d.bytes("protocol version"))}
		if flags&hopFlagError != 0 {
			rpcErr := &RPCError{Code: int64(d.u64("error code")), Message: d.str("error message")}
			rpcErr.Data = withBody(f.pieces, d.rest())
			if d.err == nil {
				d.err = checkBody(f, rpcErr.Data)
			}
			err = rpcErr
		} else {
			res.Result = withBody(f.pieces, d.rest())
			if d.err == nil {
				d.err = checkBody(f, res.Result)
			}
		}
		if d.err != nil {
			return e, nil, d.err, false
		}
		return e, res, err, true
	case hopFailure:
		code := d.byte1("failure")
		if d.err != nil {
			return e, nil, d.err, false
		}
		return e, nil, fromStatus(status.Error(codes.Code(code), string(d.rest()))), true
	}
	return e, nil, d.err, false
}

// internPath and internVersion return the strings a result names most
// often without allocating them.
func internPath(b []byte) string {
	switch string(b) {
	case PathRaw:
		return PathRaw
	case PathSDK:
		return PathSDK
	}
	return string(b)
}

func internVersion(b []byte) string {
	for _, v := range protocolVersions {
		if string(b) == v {
			return v
		}
	}
	return string(b)
}
