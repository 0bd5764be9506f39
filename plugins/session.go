package plugins

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	protov2 "github.com/armoriq/controlplane/plugins/proto/v2"
	protov3 "github.com/armoriq/controlplane/plugins/proto/v3"
)

// AdapterPluginV4 is the go-plugin glue of contract version 4: version 3
// plus Raw.Session, one long-lived stream per adapter connection that
// carries every raw call (proto/v3/adapter.proto). On the adapter side Impl
// must implement AdapterRaw; on the host side it returns an AdapterRaw
// whose CallRaw goes through the session.
type AdapterPluginV4 struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Adapter // adapter side only
}

var _ plugin.GRPCPlugin = (*AdapterPluginV4)(nil)

// GRPCServer registers the adapter's services: those of version 3, whose
// Raw service serves Session too.
func (p *AdapterPluginV4) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	return (&AdapterPluginV3{Impl: p.Impl}).GRPCServer(b, s)
}

// GRPCClient returns the host's AdapterRaw over conn.
func (p *AdapterPluginV4) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	r := protov3.NewRawClient(conn)
	return &grpcClientV3{grpcClientV2: grpcClientV2{c: protov2.NewAdapterClient(conn)}, r: r, mux: &rawMux{r: r}}, nil
}

// rawChunkSize is the largest piece of a call's params or result sent in
// one frame of a session while other calls are in flight on it: a larger
// one goes in pieces, between which the other calls send theirs, so that a
// large message does not hold them behind it for longer than one piece
// takes. Alone on the session, a call sends its message whole: joining the
// pieces costs the receiver a copy, which for a 1 MiB result took half as
// much CPU again as receiving it (BenchmarkAdapterRoundTrip/raw-1MiB).
const rawChunkSize = 256 << 10

// errTooLarge fails a session call whose params or result, joined from its
// pieces, would exceed MaxMessageSize.
var errTooLarge = fmt.Errorf("message larger than %d bytes", MaxMessageSize)

// The adapter's side of Raw.Session.

// Session serves Raw.Session: it reads the host's frames, runs each call on
// a goroutine of its own, and cancels every call still running when the
// stream ends. It returns when they all have.
func (s *grpcServerV3) Session(stream protov3.Raw_SessionServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	as := &adapterSession{
		impl: s.impl, stream: stream, ctx: ctx,
		calls: map[uint64]*adapterSessionCall{}, pending: map[uint64][]byte{}, refused: map[uint64]bool{},
	}
	err := as.read()
	// The calls still running end without a word: the host fails them
	// with the session's end, not with the cancellation that follows it.
	as.sendMu.Lock()
	as.ended = true
	as.sendMu.Unlock()
	cancel()
	as.wg.Wait()
	if err == io.EOF {
		return nil
	}
	return err
}

// read reads the host's frames until the stream ends, and returns why. It
// runs each call on a goroutine of its own. (Running the call itself and
// handing the reading on to a new goroutine was no faster.)
func (as *adapterSession) read() error {
	for {
		f, err := as.stream.Recv()
		if err != nil {
			return err
		}
		id := f.GetId()
		switch x := f.GetFrame().(type) {
		case *protov3.RawFrame_Chunk:
			if as.refused[id] {
				continue
			}
			p := as.pending[id]
			if len(p)+len(x.Chunk) > MaxMessageSize {
				// Refused at the piece that overflows; the call's other
				// frames are dropped.
				delete(as.pending, id)
				as.refused[id] = true
				as.sendFailure(id, errTooLarge)
				continue
			}
			as.pending[id] = append(p, x.Chunk...)
		case *protov3.RawFrame_Call:
			req := x.Call
			if as.refused[id] {
				delete(as.refused, id)
				continue
			}
			if p, ok := as.pending[id]; ok {
				delete(as.pending, id)
				if len(p)+len(req.GetParams()) > MaxMessageSize {
					as.sendFailure(id, errTooLarge)
					continue
				}
				req.Params = append(p, req.GetParams()...)
			}
			go as.start(id, req)()
		case *protov3.RawFrame_Cancel:
			as.mu.Lock()
			c := as.calls[id]
			as.mu.Unlock()
			if c != nil {
				c.cancel()
			}
		case *protov3.RawFrame_Response:
			as.mu.Lock()
			c := as.calls[id]
			as.mu.Unlock()
			if c != nil {
				c.events.deliver(x.Response)
			}
		}
	}
}

// adapterSession is one Raw.Session on the adapter's side.
type adapterSession struct {
	impl   AdapterRaw
	stream protov3.Raw_SessionServer
	ctx    context.Context // the session's: cancelled when it ends
	wg     sync.WaitGroup  // the calls running

	// Pieces of params by call, and the calls refused as too large: only
	// read uses them.
	pending map[uint64][]byte
	refused map[uint64]bool

	sendMu sync.Mutex // a gRPC stream is not safe for concurrent Send
	ended  bool       // under sendMu: the stream has ended, send nothing more

	mu    sync.Mutex
	calls map[uint64]*adapterSessionCall
}

// adapterSessionCall is a call running in an adapterSession.
type adapterSessionCall struct {
	cancel context.CancelFunc
	events *adapterEvents
}

func (as *adapterSession) send(f *protov3.RawFrame) error {
	as.sendMu.Lock()
	defer as.sendMu.Unlock()
	if as.ended {
		return io.EOF
	}
	return as.stream.Send(f)
}

// sendFailure ends call id with err, as Raw.Call ends its stream with a
// status.
func (as *adapterSession) sendFailure(id uint64, err error) {
	st := status.Convert(toStatus(err))
	_ = as.send(&protov3.RawFrame{Id: id, Frame: &protov3.RawFrame_Failure{Failure: &protov3.RawFailure{Code: int32(st.Code()), Message: st.Message()}}})
}

// start registers call id, under the session's context and the call's
// timeout, and returns the function that runs it.
func (as *adapterSession) start(id uint64, req *protov3.RawCall) func() {
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if t := req.GetTimeoutNanos(); t > 0 {
		ctx, cancel = context.WithTimeout(as.ctx, time.Duration(t))
	} else {
		ctx, cancel = context.WithCancel(as.ctx)
	}
	events := newAdapterEvents(func(e callEvent) error {
		f := &protov3.RawFrame{Id: id}
		switch {
		case e.progress != nil:
			f.Frame = &protov3.RawFrame_Progress{Progress: e.progress}
		case e.log != nil:
			f.Frame = &protov3.RawFrame_Log{Log: e.log}
		default:
			f.Frame = &protov3.RawFrame_Request{Request: e.request}
		}
		return as.send(f)
	}, nil)
	c := &adapterSessionCall{cancel: cancel, events: events}
	as.mu.Lock()
	as.calls[id] = c
	as.mu.Unlock()
	as.wg.Add(1)
	return func() {
		defer as.wg.Done()
		defer cancel()
		res, err := as.impl.CallRaw(ctx, rawCallOf(req), events.callHooks(req))
		events.finish()
		as.mu.Lock()
		delete(as.calls, id)
		others := len(as.calls) > 0
		as.mu.Unlock()
		out, err := rawResultOf(res, err)
		if err != nil {
			as.sendFailure(id, err)
			return
		}
		// A large result goes in pieces, each sent on its own, so that
		// the other calls' frames pass between them.
		for others && len(out.Result) > rawChunkSize {
			if as.send(&protov3.RawFrame{Id: id, Frame: &protov3.RawFrame_Chunk{Chunk: out.Result[:rawChunkSize]}}) != nil {
				return
			}
			out.Result = out.Result[rawChunkSize:]
		}
		_ = as.send(&protov3.RawFrame{Id: id, Frame: &protov3.RawFrame_Result{Result: out}})
	}
}

// The host's side of Raw.Session.

// rawMux sends the raw calls of one adapter connection on a Raw.Session,
// opened at the first call and opened anew when it breaks.
type rawMux struct {
	r protov3.RawClient

	mu  sync.Mutex
	cur *rawSession
}

// rawSession is one Raw.Session on the host's side.
type rawSession struct {
	stream protov3.Raw_SessionClient
	cancel context.CancelFunc
	sendMu sync.Mutex // a gRPC stream is not safe for concurrent Send

	pendingCalls[*protov3.RawFrame] // the calls in flight; err and done say why and when it broke
}

// callFramePool recycles the frame that starts a call.
var callFramePool = sync.Pool{New: func() any {
	return &protov3.RawFrame{Frame: &protov3.RawFrame_Call{Call: &protov3.RawCall{}}}
}}

// sessionCallPool recycles the calls of sessions, with their channel.
var sessionCallPool = newPendingCallPool[*protov3.RawFrame]()

// session returns the session to send a call on, opening one if there is
// none or the last one broke. Opening it waits for the connection for as
// long as callerCtx, the context of the call that opens it, allows.
func (m *rawMux) session(callerCtx context.Context) (*rawSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.cur; s != nil {
		select {
		case <-s.done:
		default:
			return s, nil
		}
	}
	// The session outlives the call that opens it: its context is its own,
	// ended early only if that call gives up while it opens.
	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(callerCtx, cancel)
	stream, err := m.r.Session(ctx)
	if !stop() {
		cancel()
		return nil, callerCtx.Err()
	}
	if err != nil {
		cancel()
		return nil, fromStatus(err)
	}
	s := &rawSession{stream: stream, cancel: cancel, pendingCalls: newPendingCalls[*protov3.RawFrame](sessionCallPool)}
	go s.read()
	m.cur = s
	return s, nil
}

// read hands every frame the adapter sends to its call, until the stream
// breaks; then it fails every call in flight. It never waits for a caller:
// events are small, and a result is the last frame of its call.
func (s *rawSession) read() {
	for {
		f, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		s.deliver(f.GetId(), f)
	}
}

// fail records why the session broke and releases its calls.
func (s *rawSession) fail(err error) {
	msg := "the adapter ended it"
	if err != io.EOF {
		msg = status.Convert(err).Message()
	}
	s.breakWith(&connError{fmt.Errorf("the raw session with the adapter broke (%s); the call is not retried: the upstream may have received it", msg)})
	s.cancel()
}

// cancelCall tells the adapter to cancel call id, which the host no
// longer waits for.
func (s *rawSession) cancelCall(id uint64) {
	_ = s.send(&protov3.RawFrame{Id: id, Frame: &protov3.RawFrame_Cancel{Cancel: true}})
}

// busy says whether calls other than one are in flight on the session.
func (s *rawSession) busy() bool {
	return s.inFlight() > 1
}

func (s *rawSession) send(f *protov3.RawFrame) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(f)
}

// brokenErr is why the session broke, after a Send failed: Send reports
// io.EOF, the reader learns the status.
func (s *rawSession) brokenErr() error {
	<-s.done
	return s.err
}

// call sends call on the session and waits for its result, handing its
// events to ev meanwhile.
func (m *rawMux) call(ctx context.Context, call *RawCall, ev *CallEvents) (*RawResult, error) {
	var (
		s  *rawSession
		c  *pendingCall[*protov3.RawFrame]
		ok bool
	)
	for !ok {
		var err error
		if s, err = m.session(ctx); err != nil {
			return nil, err
		}
		c, ok = s.add()
	}
	defer s.remove(c)
	id := c.id // c is recycled when the call returns: what outlives it uses id

	// gRPC encodes a message before Send returns: the call's frame is
	// reused.
	f := callFramePool.Get().(*protov3.RawFrame)
	defer callFramePool.Put(f)
	rc := f.Frame.(*protov3.RawFrame_Call).Call
	*rc = protov3.RawCall{
		Method: call.Method, Name: call.Name, Params: call.Params, ProtocolVersion: call.ProtocolVersion,
		ProgressToken: call.ProgressToken, Log: ev.Log != nil, Requests: ev.Request != nil,
		Traceparent: call.Traceparent, Tracestate: call.Tracestate,
	}
	defer func() { *rc = protov3.RawCall{} }()
	if ev.Progress == nil {
		rc.ProgressToken = ""
	}
	if d, ok := ctx.Deadline(); ok {
		t := time.Until(d)
		if t <= 0 {
			return nil, context.DeadlineExceeded
		}
		rc.TimeoutNanos = int64(t)
	}
	for len(rc.Params) > rawChunkSize && s.busy() {
		if err := s.send(&protov3.RawFrame{Id: id, Frame: &protov3.RawFrame_Chunk{Chunk: rc.Params[:rawChunkSize]}}); err != nil {
			return nil, s.brokenErr()
		}
		rc.Params = rc.Params[rawChunkSize:]
	}
	f.Id = id
	if err := s.send(f); err != nil {
		return nil, s.brokenErr()
	}

	// The events' handler, made at the first event (most calls have
	// none). Server requests are answered under a context that ends with
	// the call; only a call that relays them needs one.
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
				return s.send(&protov3.RawFrame{Id: id, Frame: &protov3.RawFrame_Response{Response: r}})
			}}
			if ev.Request != nil {
				h.ctx, h.cancel = context.WithCancel(ctx)
			}
		}
		h.handle(e)
	}
	var (
		pieces [][]byte // of the result, received so far
		size   int      // their length
	)
	for {
		frames, broken, err := s.next(ctx, c)
		if err != nil {
			// The adapter cancels the call; the caller does not wait.
			go s.cancelCall(id)
			return nil, err
		}
		for _, f := range frames {
			switch x := f.GetFrame().(type) {
			case *protov3.RawFrame_Progress:
				handle(callEvent{progress: x.Progress})
			case *protov3.RawFrame_Log:
				handle(callEvent{log: x.Log})
			case *protov3.RawFrame_Request:
				handle(callEvent{request: x.Request})
			case *protov3.RawFrame_Chunk:
				if size += len(x.Chunk); size > MaxMessageSize {
					go s.cancelCall(id)
					return nil, fmt.Errorf("the adapter's result: %w", errTooLarge)
				}
				pieces = append(pieces, x.Chunk)
			case *protov3.RawFrame_Result:
				r := x.Result
				if pieces != nil {
					if size += len(r.GetResult()); size > MaxMessageSize {
						return nil, fmt.Errorf("the adapter's result: %w", errTooLarge)
					}
					r.Result = joinPieces(size, append(pieces, r.GetResult()))
				}
				return resultOfRaw(r)
			case *protov3.RawFrame_Failure:
				return nil, fromStatus(status.Error(codes.Code(x.Failure.GetCode()), x.Failure.GetMessage()))
			}
		}
		if broken {
			return nil, s.err
		}
	}
}

// joinPieces returns the pieces of a message, size bytes in all, joined.
func joinPieces(size int, pieces [][]byte) []byte {
	b := make([]byte, 0, size)
	for _, p := range pieces {
		b = append(b, p...)
	}
	return b
}
