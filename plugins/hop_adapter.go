package plugins

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	protov2 "github.com/armoriq/controlplane/plugins/proto/v2"
	"github.com/armoriq/controlplane/plugins/rawconn"
)

// The adapter's side of the hop.

// hopHelloTimeout bounds how long a new connection may take to say hello.
const hopHelloTimeout = 10 * time.Second

// hopWorkerIdle is how long a goroutine that ran a call waits for the next
// one before it exits.
const hopWorkerIdle = 10 * time.Second

// hopServer serves an adapter's hop: a unix socket in a directory of its
// own (0700), opened at the host's first Hop.Open, and accepting only
// connections that present the token Open answered with.
type hopServer struct {
	impl AdapterRaw
	// work hands a call to a goroutine that ran one before and waits for
	// another: its stack has grown to what a call needs already, where a
	// new goroutine would grow its own (copying it) at every call.
	work chan func()

	once    sync.Once
	addr    *hopAddress
	openErr error
	token   []byte

	mu     sync.Mutex
	l      net.Listener
	dir    string
	closed bool
	conns  map[net.Conn]struct{}
}

// The hop's socket is hopSocketName in a directory of its own, made in
// the temporary directory with a name starting with hopDirPrefix; the host
// removes both when the adapter was killed (hopMux.removeLeftovers).
const (
	hopDirPrefix  = "armoriq-hop-"
	hopSocketName = "hop.sock"
)

func newHopServer(impl AdapterRaw) *hopServer {
	return &hopServer{impl: impl, work: make(chan func()), conns: map[net.Conn]struct{}{}}
}

// open starts listening, once, and returns the address and token.
func (s *hopServer) open() (*hopAddress, error) {
	s.once.Do(func() { s.addr, s.openErr = s.listen() })
	return s.addr, s.openErr
}

func (s *hopServer) listen() (*hopAddress, error) {
	if !hopSupported {
		return nil, fmt.Errorf("the hop needs unix sockets, which this adapter does not use on %s", runtime.GOOS)
	}
	token := make([]byte, hopTokenSize)
	if _, err := rand.Read(token); err != nil {
		return nil, fmt.Errorf("making the hop's token: %w", err)
	}
	dir, err := os.MkdirTemp("", hopDirPrefix) // 0700
	if err != nil {
		return nil, fmt.Errorf("making the hop's directory: %w", err)
	}
	sock := filepath.Join(dir, hopSocketName)
	l, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("listening on %s: %w", sock, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		_ = os.RemoveAll(dir)
		return nil, errors.New("the adapter is stopping")
	}
	s.l, s.dir, s.token = l, dir, token
	s.mu.Unlock()
	go s.accept(l)
	return &hopAddress{Network: "unix", Address: sock, Token: base64.StdEncoding.EncodeToString(token)}, nil
}

// close stops listening, removes the socket's directory and closes the
// connections.
func (s *hopServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.l != nil {
		s.l.Close()
		_ = os.RemoveAll(s.dir)
	}
	for c := range s.conns {
		c.Close()
	}
}

func (s *hopServer) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err == nil {
			c = rawconn.Wrap(c)
		}
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			slog.Error("the hop stopped accepting connections; the host's raw calls fail until it reconnects over gRPC", "error", err)
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go func() {
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// hello reads the host's hello on c and answers it, or says why c is
// refused.
func (s *hopServer) hello(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(hopHelloTimeout))
	var hdr [hopHeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("reading its hello: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if hdr[4] != hopHello || n < 1 || n > hopMaxHello {
		return fmt.Errorf("its first frame is of kind %d and %d bytes, not a hello", hdr[4], n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c, p); err != nil {
		return fmt.Errorf("reading its hello: %w", err)
	}
	if p[0] != hopVersion {
		return fmt.Errorf("it speaks hop version %d, this adapter %d", p[0], hopVersion)
	}
	if subtle.ConstantTimeCompare(p[1:], s.token) != 1 {
		return errors.New("it presented the wrong token")
	}
	_ = c.SetReadDeadline(time.Time{})
	ack := appendHeader(nil, hopHello, 0, 1)
	_, err := c.Write(append(ack, hopVersion))
	return err
}

// serveConn serves one connection from the host until it ends.
func (s *hopServer) serveConn(c net.Conn) {
	defer c.Close()
	if err := s.hello(c); err != nil {
		slog.Error("the hop refused a connection", "error", err)
		return
	}
	sc := &hopServerConn{s: s, w: newHopWriter(c), calls: map[uint64]*hopServerCall{}}
	err := sc.read(c)
	var herr *hopError
	if errors.As(err, &herr) {
		slog.Error("closing the hop connection of the host", "error", err)
	}
	c.Close()
	// The calls still running end without a word: the host fails them
	// with the connection's end.
	sc.mu.Lock()
	sc.ended = true
	for _, call := range sc.calls {
		call.cancel()
	}
	sc.mu.Unlock()
	sc.wg.Wait()
}

// run runs f on a goroutine waiting for work, or on a new one.
func (s *hopServer) run(f func()) {
	select {
	case s.work <- f:
	default:
		go s.worker(f)
	}
}

func (s *hopServer) worker(f func()) {
	t := time.NewTimer(hopWorkerIdle)
	defer t.Stop()
	for {
		f()
		f = nil
		t.Reset(hopWorkerIdle)
		select {
		case f = <-s.work:
		case <-t.C:
			return
		}
	}
}

// hopServerConn is one connection from the host.
type hopServerConn struct {
	s  *hopServer
	w  *hopWriter
	wg sync.WaitGroup // the calls running

	mu    sync.Mutex
	ended bool
	calls map[uint64]*hopServerCall
}

// hopServerCall is a call running on a hopServerConn.
type hopServerCall struct {
	cancel context.CancelFunc
	events *adapterEvents // nil when the call wants none
}

// read reads the host's frames until the connection ends, and returns why.
func (sc *hopServerConn) read(c net.Conn) error {
	r := newHopReader(c)
	for {
		f, err := r.next()
		if err != nil {
			return err
		}
		switch f.kind {
		case hopCall:
			if err := sc.start(f); err != nil {
				return err
			}
		case hopCancel:
			if len(f.payload) != 0 {
				return hopErrorf("call %d: a cancel frame with a payload", f.id)
			}
			sc.mu.Lock()
			call := sc.calls[f.id]
			sc.mu.Unlock()
			if call != nil {
				call.cancel()
			}
		case hopAnswer:
			ans, err := decodeAnswer(f)
			if err != nil {
				return err
			}
			sc.mu.Lock()
			call := sc.calls[f.id]
			sc.mu.Unlock()
			if call != nil && call.events != nil {
				call.events.deliver(ans)
			}
		default:
			return hopErrorf("the host sent a frame of kind %d", f.kind)
		}
	}
}

// decodeAnswer decodes the host's answer to a server request.
func decodeAnswer(f hopFrame) (*protov2.ClientResponse, error) {
	d := hopDecoder{b: f.payload}
	r := &protov2.ClientResponse{Id: int64(d.u64("request id")), Result: &protov2.JSONResult{}}
	if d.byte1("answer")&hopFlagError != 0 {
		e := &protov2.RPCError{Code: int64(d.u64("error code")), Message: d.str("error message")}
		e.Data = d.rest()
		r.Result.Error = e
	} else {
		r.Result.Json = d.rest()
	}
	return r, d.err
}

// decodeCall decodes a call frame.
func decodeCall(f hopFrame) (call *RawCall, flags byte, timeout time.Duration, err error) {
	d := hopDecoder{b: f.payload}
	flags = d.byte1("call")
	timeout = time.Duration(d.u64("timeout"))
	call = &RawCall{
		Method:          internMethod(d.bytes("method")),
		Name:            d.str("name"),
		ProtocolVersion: internVersion(d.bytes("protocol version")),
		ProgressToken:   d.str("progress token"),
		Traceparent:     d.str("traceparent"),
		Tracestate:      d.str("tracestate"),
		Legacy:          flags&hopFlagLegacy != 0,
	}
	call.Params = withBody(f.pieces, d.rest())
	if d.err == nil {
		d.err = checkBody(f, call.Params)
	}
	if d.err == nil && timeout < 0 {
		d.err = hopErrorf("call %d: a negative timeout", f.id)
	}
	return call, flags, timeout, d.err
}

func internMethod(b []byte) string {
	if string(b) == "tools/call" {
		return "tools/call"
	}
	return string(b)
}

// start registers call f.id and runs it.
func (sc *hopServerConn) start(f hopFrame) error {
	call, flags, timeout, err := decodeCall(f)
	if err != nil {
		return err
	}
	id := f.id
	// The call's context is its own, not the connection's: the
	// connection's end cancels its calls one by one (serveConn), which
	// spares every call registering with a context all calls share.
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	c := &hopServerCall{cancel: cancel}
	ev := &CallEvents{}
	if call.ProgressToken != "" || flags&(hopFlagLog|hopFlagRequests) != 0 {
		c.events = newAdapterEvents(func(e callEvent) error { return sc.sendEvent(id, e) }, nil)
		ev = &c.events.hooks
		if call.ProgressToken == "" {
			ev.Progress = nil
		}
		if flags&hopFlagLog == 0 {
			ev.Log = nil
		}
		if flags&hopFlagRequests == 0 {
			ev.Request = nil
		}
	}
	sc.mu.Lock()
	if _, dup := sc.calls[id]; dup {
		sc.mu.Unlock()
		cancel()
		return hopErrorf("call %d started twice", id)
	}
	if sc.ended {
		sc.mu.Unlock()
		cancel()
		return nil
	}
	sc.calls[id] = c
	sc.mu.Unlock()
	sc.wg.Add(1)
	sc.s.run(func() {
		defer sc.wg.Done()
		res, err := sc.s.impl.CallRaw(ctx, call, ev)
		if c.events != nil {
			c.events.finish()
		}
		sc.mu.Lock()
		delete(sc.calls, id)
		sc.mu.Unlock()
		cancel()
		sc.sendResult(id, res, err)
	})
	return nil
}

// sendEvent sends an event of call id.
func (sc *hopServerConn) sendEvent(id uint64, e callEvent) error {
	var (
		b    []byte
		body []byte
	)
	switch {
	case e.progress != nil:
		b = appendHeader(nil, hopProgress, id, 0)
		b = appendU64(b, math.Float64bits(e.progress.GetProgress()))
		b = appendU64(b, math.Float64bits(e.progress.GetTotal()))
		body = []byte(e.progress.GetMessage())
	case e.log != nil:
		b = appendHeader(nil, hopLog, id, 0)
		b = appendStr(b, e.log.GetLevel())
		b = appendStr(b, e.log.GetLogger())
		body = e.log.GetData()
	default:
		b = appendHeader(nil, hopRequest, id, 0)
		b = appendU64(b, uint64(e.request.GetId()))
		b = appendStr(b, e.request.GetMethod())
		body = e.request.GetParams()
	}
	if len(b)+len(body) > hopMaxFrame {
		return fmt.Errorf("an event of %d bytes: %w", len(body), errTooLarge)
	}
	setLength(b, len(body))
	return sc.w.write(b, body)
}

// sendResult sends the end of call id: its result, the upstream's JSON-RPC
// error, or a failure.
func (sc *hopServerConn) sendResult(id uint64, res *RawResult, err error) {
	var rpcErr *RPCError
	if err != nil && !errors.As(err, &rpcErr) {
		sc.sendFailure(id, err)
		return
	}
	bp := hopBufPool.Get().(*[]byte)
	defer hopBufPool.Put(bp)
	b := appendHeader((*bp)[:0], hopResult, id, 0)
	var path, pv string
	if res != nil {
		path, pv = res.Path, res.ProtocolVersion
	}
	var body []byte
	if rpcErr != nil {
		b = append(b, hopFlagError)
		b = appendStr(b, path)
		b = appendStr(b, pv)
		b = appendU64(b, uint64(rpcErr.Code))
		b = appendStr(b, rpcErr.Message)
		body = rpcErr.Data
	} else {
		b = append(b, 0)
		b = appendStr(b, path)
		b = appendStr(b, pv)
		if res != nil {
			body = res.Result
		}
	}
	if len(body) > MaxMessageSize || len(b) > hopMaxFrame-MaxMessageSize {
		sc.sendFailure(id, fmt.Errorf("the adapter's result: %w", errTooLarge))
		return
	}
	_ = sc.w.writeBody(id, b, body)
	*bp = b
}

// sendFailure ends call id with err, as Raw.Call ends its stream with a
// status.
func (sc *hopServerConn) sendFailure(id uint64, err error) {
	st := status.Convert(toStatus(err))
	msg := st.Message()
	if len(msg) > 64<<10 {
		msg = msg[:64<<10]
	}
	b := appendHeader(nil, hopFailure, id, 0)
	b = append(b, byte(st.Code()))
	setLength(b, len(msg))
	_ = sc.w.write(b, []byte(msg))
}

// The Hop service, on the gRPC connection: its one method, Open, answers
// where the hop listens. Its messages are contract 2's: Open takes an Empty
// and answers a JSONResult whose json is a hopAddress.

// hopService is what Hop's handler is registered with.
type hopService interface {
	open() (*hopAddress, error)
}

var hopServiceDesc = grpc.ServiceDesc{
	ServiceName: "armoriq.plugins.v5.Hop",
	HandlerType: (*hopService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Open",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(protov2.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return hopOpen(srv)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: hopOpenMethod}, func(context.Context, any) (any, error) {
				return hopOpen(srv)
			})
		},
	}},
	Metadata: "plugins/hop_adapter.go",
}

// hopOpen answers Hop.Open.
func hopOpen(srv any) (any, error) {
	addr, err := srv.(hopService).open()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	b, err := json.Marshal(addr)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &protov2.JSONResult{Json: b}, nil
}
