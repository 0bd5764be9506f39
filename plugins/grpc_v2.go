package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	protov2 "github.com/armoriq/controlplane/plugins/proto/v2"
)

// AdapterPluginV2 is the go-plugin glue of contract version 2
// (proto/v2/adapter.proto). On the adapter side it serves Impl, using its
// AdapterV2 methods when it has them; on the host side it returns an
// AdapterV2 that calls the service.
type AdapterPluginV2 struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Adapter // adapter side only
}

var _ plugin.GRPCPlugin = (*AdapterPluginV2)(nil)

// GRPCServer registers the adapter's service.
func (p *AdapterPluginV2) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	v2, _ := p.Impl.(AdapterV2)
	protov2.RegisterAdapterServer(s, &grpcServerV2{impl: p.Impl, v2: v2})
	return nil
}

// GRPCClient returns the host's AdapterV2 over conn.
func (p *AdapterPluginV2) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcClientV2{c: protov2.NewAdapterClient(conn)}, nil
}

// grpcServerV2 serves an Adapter as contract version 2. v2 is impl when it
// implements AdapterV2, else nil: the extras are then dropped.
type grpcServerV2 struct {
	protov2.UnimplementedAdapterServer
	impl Adapter
	v2   AdapterV2
}

func (s *grpcServerV2) Configure(ctx context.Context, req *protov2.ServerConfig) (*protov2.Empty, error) {
	cfg := ServerConfig{
		ID:        req.GetId(),
		Transport: req.GetTransport(),
		URL:       req.GetUrl(),
		Command:   req.GetCommand(),
		Args:      req.GetArgs(),
		Env:       req.GetEnv(),
		Headers:   req.GetHeaders(),
		Protocol:  req.GetProtocol(),
	}
	if err := s.impl.Configure(ctx, cfg); err != nil {
		return nil, toStatus(err)
	}
	return &protov2.Empty{}, nil
}

func (s *grpcServerV2) ListTools(ctx context.Context, req *protov2.ListRequest) (*protov2.JSONResult, error) {
	return jsonResultV2(s.impl.ListTools(ctx, req.GetCursor()))
}

func (s *grpcServerV2) ListResources(ctx context.Context, req *protov2.ListRequest) (*protov2.JSONResult, error) {
	return jsonResultV2(s.impl.ListResources(ctx, req.GetCursor()))
}

func (s *grpcServerV2) ReadResource(ctx context.Context, req *protov2.ReadResourceRequest) (*protov2.JSONResult, error) {
	if s.v2 != nil {
		return jsonResultV2(s.v2.ReadResourceV2(ctx, req.GetUri(), extraFromProto(req.GetExtra())))
	}
	return jsonResultV2(s.impl.ReadResource(ctx, req.GetUri()))
}

func (s *grpcServerV2) ListPrompts(ctx context.Context, req *protov2.ListRequest) (*protov2.JSONResult, error) {
	return jsonResultV2(s.impl.ListPrompts(ctx, req.GetCursor()))
}

func (s *grpcServerV2) GetPrompt(ctx context.Context, req *protov2.GetPromptRequest) (*protov2.JSONResult, error) {
	if s.v2 != nil {
		return jsonResultV2(s.v2.GetPromptV2(ctx, req.GetName(), req.GetArguments(), extraFromProto(req.GetExtra())))
	}
	return jsonResultV2(s.impl.GetPrompt(ctx, req.GetName(), req.GetArguments()))
}

func (s *grpcServerV2) Health(ctx context.Context, _ *protov2.Empty) (*protov2.HealthResponse, error) {
	if err := s.impl.Health(ctx); err != nil {
		return &protov2.HealthResponse{Error: err.Error()}, nil
	}
	return &protov2.HealthResponse{Ok: true}, nil
}

func (s *grpcServerV2) CallTool(stream protov2.Adapter_CallToolServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetCall()
	if req == nil {
		return toStatus(errors.New("the first message of CallTool must be the call"))
	}
	ctx := stream.Context()
	a := newAdapterEvents(func(e callEvent) error {
		out := &protov2.CallToolEvent{}
		switch {
		case e.progress != nil:
			out.Event = &protov2.CallToolEvent_Progress{Progress: e.progress}
		case e.log != nil:
			out.Event = &protov2.CallToolEvent_Log{Log: e.log}
		default:
			out.Event = &protov2.CallToolEvent_Request{Request: e.request}
		}
		return stream.Send(out)
	}, nil)
	a.firstRequest = a.streamAnswers(func() (*protov2.ClientResponse, error) {
		in, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return in.GetResponse(), nil
	})
	ev := &a.hooks
	var res json.RawMessage
	if s.v2 != nil {
		call := &ToolCall{Name: req.GetName(), Arguments: req.GetArguments()}
		if x := extraFromProto(req.GetExtra()); x != nil {
			call.RequestExtra = *x
		}
		res, err = s.v2.CallToolV2(ctx, call, ev)
	} else {
		res, err = s.impl.CallTool(ctx, req.GetName(), req.GetArguments(), ev.Progress)
	}
	a.finish()
	r, err := jsonResultV2(res, err)
	if err != nil {
		return err
	}
	return stream.Send(&protov2.CallToolEvent{Event: &protov2.CallToolEvent_Result{Result: r}})
}

// callEvent is one event of a call's stream, in either contract version:
// exactly one field is set.
type callEvent struct {
	progress *protov2.Progress
	log      *protov2.LogMessage
	request  *protov2.ServerRequest
}

// adapterEvents is the adapter's side of a call's events: the hooks an
// adapter calls during the call (hooks), which send events with send, and
// relay server requests, whose answers the stream's reader hands to
// deliver. firstRequest, when not nil, is called once, at the call's first
// server request (most calls make none): a call with a stream of its own
// starts reading the answers there. finish must be called when the call
// returns, before its result is sent.
type adapterEvents struct {
	send         func(callEvent) error
	firstRequest func()
	hooks        CallEvents

	mu       sync.Mutex // a gRPC stream is not safe for concurrent Send
	done     bool
	sendErr  error
	nextID   int64
	waiting  map[int64]chan *protov2.JSONResult
	readOnce sync.Once
}

func newAdapterEvents(send func(callEvent) error, firstRequest func()) *adapterEvents {
	a := &adapterEvents{send: send, firstRequest: firstRequest}
	a.hooks = CallEvents{
		Progress: func(p Progress) {
			_ = a.emit(callEvent{progress: &protov2.Progress{Progress: p.Progress, Total: p.Total, Message: p.Message}})
		},
		Log: func(m LogMessage) {
			_ = a.emit(callEvent{log: &protov2.LogMessage{Level: m.Level, Logger: m.Logger, Data: m.Data}})
		},
		Request: a.request,
	}
	return a
}

func (a *adapterEvents) emit(e callEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done || a.sendErr != nil {
		return errors.New("call finished")
	}
	a.sendErr = a.send(e)
	return a.sendErr
}

func (a *adapterEvents) request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if a.firstRequest != nil {
		a.readOnce.Do(a.firstRequest)
	}
	ch := make(chan *protov2.JSONResult, 1)
	a.mu.Lock()
	a.nextID++
	id := a.nextID
	if a.waiting == nil {
		a.waiting = map[int64]chan *protov2.JSONResult{}
	}
	a.waiting[id] = ch
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.waiting, id)
		a.mu.Unlock()
	}()
	if err := a.emit(callEvent{request: &protov2.ServerRequest{Id: id, Method: method, Params: params}}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return fromResultV2(r, nil)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// deliver hands the host's answer r to the server request waiting for it,
// if any; it never blocks.
func (a *adapterEvents) deliver(r *protov2.ClientResponse) {
	if r == nil {
		return
	}
	a.mu.Lock()
	ch := a.waiting[r.GetId()]
	delete(a.waiting, r.GetId())
	a.mu.Unlock()
	if ch != nil {
		ch <- r.GetResult()
	}
}

// finish ends the call's events: later ones are dropped.
func (a *adapterEvents) finish() {
	a.mu.Lock()
	a.done = true
	a.mu.Unlock()
}

// streamAnswers is the firstRequest of a call with a stream of its own:
// it reads the host's answers from recv until the stream ends.
func (a *adapterEvents) streamAnswers(recv func() (*protov2.ClientResponse, error)) func() {
	return func() {
		go func() {
			for {
				r, err := recv()
				if err != nil {
					return
				}
				a.deliver(r)
			}
		}()
	}
}

func extraFromProto(x *protov2.RequestExtra) *RequestExtra {
	if x == nil {
		return nil
	}
	return &RequestExtra{Meta: x.GetMeta(), InputResponses: x.GetInputResponses(), RequestState: x.GetRequestState()}
}

func extraToProto(x *RequestExtra) *protov2.RequestExtra {
	if x == nil || (len(x.Meta) == 0 && len(x.InputResponses) == 0 && x.RequestState == "") {
		return nil
	}
	return &protov2.RequestExtra{Meta: x.Meta, InputResponses: x.InputResponses, RequestState: x.RequestState}
}

// jsonResultV2 is jsonResult for contract version 2.
func jsonResultV2(b json.RawMessage, err error) (*protov2.JSONResult, error) {
	var rpcErr *RPCError
	switch {
	case errors.As(err, &rpcErr):
		return &protov2.JSONResult{Error: &protov2.RPCError{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data}}, nil
	case err != nil:
		return nil, toStatus(err)
	}
	return &protov2.JSONResult{Json: b}, nil
}

func fromResultV2(r *protov2.JSONResult, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, fromStatus(err)
	}
	if e := r.GetError(); e != nil {
		return nil, &RPCError{Code: e.GetCode(), Message: e.GetMessage(), Data: e.GetData()}
	}
	return r.GetJson(), nil
}

// grpcClientV2 is the host's side of contract version 2.
type grpcClientV2 struct {
	c protov2.AdapterClient
}

var _ AdapterV2 = (*grpcClientV2)(nil)

func (c *grpcClientV2) Configure(ctx context.Context, cfg ServerConfig) error {
	_, err := c.c.Configure(ctx, &protov2.ServerConfig{
		Id:        cfg.ID,
		Transport: cfg.Transport,
		Url:       cfg.URL,
		Command:   cfg.Command,
		Args:      cfg.Args,
		Env:       cfg.Env,
		Headers:   cfg.Headers,
		Protocol:  cfg.Protocol,
	})
	return fromStatus(err)
}

func (c *grpcClientV2) ListTools(ctx context.Context, cursor string) (json.RawMessage, error) {
	return fromResultV2(c.c.ListTools(ctx, &protov2.ListRequest{Cursor: cursor}))
}

func (c *grpcClientV2) ListResources(ctx context.Context, cursor string) (json.RawMessage, error) {
	return fromResultV2(c.c.ListResources(ctx, &protov2.ListRequest{Cursor: cursor}))
}

func (c *grpcClientV2) ReadResource(ctx context.Context, uri string) (json.RawMessage, error) {
	return c.ReadResourceV2(ctx, uri, nil)
}

func (c *grpcClientV2) ReadResourceV2(ctx context.Context, uri string, x *RequestExtra) (json.RawMessage, error) {
	return fromResultV2(c.c.ReadResource(ctx, &protov2.ReadResourceRequest{Uri: uri, Extra: extraToProto(x)}))
}

func (c *grpcClientV2) ListPrompts(ctx context.Context, cursor string) (json.RawMessage, error) {
	return fromResultV2(c.c.ListPrompts(ctx, &protov2.ListRequest{Cursor: cursor}))
}

func (c *grpcClientV2) GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return c.GetPromptV2(ctx, name, args, nil)
}

func (c *grpcClientV2) GetPromptV2(ctx context.Context, name string, args map[string]string, x *RequestExtra) (json.RawMessage, error) {
	return fromResultV2(c.c.GetPrompt(ctx, &protov2.GetPromptRequest{Name: name, Arguments: args, Extra: extraToProto(x)}))
}

func (c *grpcClientV2) Health(ctx context.Context) error {
	res, err := c.c.Health(ctx, &protov2.Empty{})
	if err != nil {
		return fromStatus(err)
	}
	if !res.GetOk() {
		return errors.New(res.GetError())
	}
	return nil
}

func (c *grpcClientV2) CallTool(ctx context.Context, name string, args json.RawMessage, progress func(Progress)) (json.RawMessage, error) {
	return c.CallToolV2(ctx, &ToolCall{Name: name, Arguments: args}, &CallEvents{Progress: progress})
}

// errNoClient answers an adapter's server request when the gateway has no
// client that could answer it.
var errNoClient = &RPCError{Code: -32601, Message: "the gateway cannot relay this request to its client"}

func (c *grpcClientV2) CallToolV2(ctx context.Context, call *ToolCall, ev *CallEvents) (json.RawMessage, error) {
	if ev == nil {
		ev = &CallEvents{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.CallTool(ctx)
	if err != nil {
		return nil, fromStatus(err)
	}
	var mu sync.Mutex // serializes Send: the call, then answers from several goroutines
	send := func(in *protov2.CallToolInput) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(in)
	}
	if err := send(&protov2.CallToolInput{Input: &protov2.CallToolInput_Call{Call: &protov2.CallToolRequest{
		Name: call.Name, Arguments: call.Arguments, Extra: extraToProto(&call.RequestExtra),
	}}}); err != nil && err != io.EOF {
		return nil, fromStatus(err)
	}
	h := hostEvents{ctx: ctx, ev: ev, send: func(r *protov2.ClientResponse) error {
		return send(&protov2.CallToolInput{Input: &protov2.CallToolInput_Response{Response: r}})
	}}
	defer h.wg.Wait()
	defer cancel() // before wg.Wait: ends the answers still being computed
	for {
		e, err := stream.Recv()
		if err == io.EOF {
			return nil, errors.New("adapter ended the call without a result")
		}
		if err != nil {
			return nil, fromStatus(err)
		}
		switch e := e.GetEvent().(type) {
		case *protov2.CallToolEvent_Progress:
			h.handle(callEvent{progress: e.Progress})
		case *protov2.CallToolEvent_Log:
			h.handle(callEvent{log: e.Log})
		case *protov2.CallToolEvent_Request:
			h.handle(callEvent{request: e.Request})
		case *protov2.CallToolEvent_Result:
			return fromResultV2(e.Result, nil)
		}
	}
}

// hostEvents is the host's side of a call's stream: it hands the events to
// the caller's hooks and answers server requests with send, each on a
// goroutine of its own (wg), under ctx.
type hostEvents struct {
	ctx    context.Context
	cancel context.CancelFunc // of ctx, where the handler owns it (Raw.Session)
	ev     *CallEvents
	send   func(*protov2.ClientResponse) error
	wg     sync.WaitGroup
}

func (h *hostEvents) handle(e callEvent) {
	ev := h.ev
	switch {
	case e.progress != nil:
		if ev.Progress != nil {
			ev.Progress(Progress{Progress: e.progress.GetProgress(), Total: e.progress.GetTotal(), Message: e.progress.GetMessage()})
		}
	case e.log != nil:
		if ev.Log != nil {
			ev.Log(LogMessage{Level: e.log.GetLevel(), Logger: e.log.GetLogger(), Data: e.log.GetData()})
		}
	case e.request != nil:
		req := e.request
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			var (
				res json.RawMessage
				err error = errNoClient
			)
			if ev.Request != nil {
				res, err = ev.Request(h.ctx, req.GetMethod(), req.GetParams())
			}
			r, serr := jsonResultV2(res, err)
			if serr != nil {
				r = &protov2.JSONResult{Error: &protov2.RPCError{Code: -32603, Message: err.Error()}}
			}
			_ = h.send(&protov2.ClientResponse{Id: req.GetId(), Result: r})
		}()
	}
}
