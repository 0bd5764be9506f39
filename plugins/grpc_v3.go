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
	protov3 "github.com/armoriq/controlplane/plugins/proto/v3"
)

// AdapterPluginV3 is the go-plugin glue of contract version 3
// (proto/v3/adapter.proto): version 2's service plus Raw. On the adapter
// side Impl must implement AdapterRaw; on the host side it returns an
// AdapterRaw that calls the services.
type AdapterPluginV3 struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Adapter // adapter side only
}

var _ plugin.GRPCPlugin = (*AdapterPluginV3)(nil)

// GRPCServer registers the adapter's services.
func (p *AdapterPluginV3) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	raw, ok := p.Impl.(AdapterRaw)
	if !ok {
		return errors.New("contract version 3 needs an adapter implementing plugins.AdapterRaw")
	}
	if err := (&AdapterPluginV2{Impl: p.Impl}).GRPCServer(b, s); err != nil {
		return err
	}
	protov3.RegisterRawServer(s, &grpcServerV3{impl: raw})
	return nil
}

// GRPCClient returns the host's AdapterRaw over conn.
func (p *AdapterPluginV3) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcClientV3{grpcClientV2: grpcClientV2{c: protov2.NewAdapterClient(conn)}, r: protov3.NewRawClient(conn)}, nil
}

// grpcServerV3 serves the Raw service of an AdapterRaw.
type grpcServerV3 struct {
	protov3.UnimplementedRawServer
	impl AdapterRaw
}

func (s *grpcServerV3) Call(stream protov3.Raw_CallServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetCall()
	if req == nil {
		return toStatus(errors.New("the first message of Raw.Call must be the call"))
	}
	a := newAdapterEvents(func(e callEvent) error {
		out := &protov3.RawEvent{}
		switch {
		case e.progress != nil:
			out.Event = &protov3.RawEvent_Progress{Progress: e.progress}
		case e.log != nil:
			out.Event = &protov3.RawEvent_Log{Log: e.log}
		default:
			out.Event = &protov3.RawEvent_Request{Request: e.request}
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
	ev := a.callHooks(req)
	res, err := s.impl.CallRaw(stream.Context(), rawCallOf(req), ev)
	a.finish()
	out, err := rawResultOf(res, err)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&protov3.RawEvent{Event: &protov3.RawEvent_Result{Result: out}})
}

// callHooks returns the hooks of a raw call that asked for the events req
// says.
func (a *adapterEvents) callHooks(req *protov3.RawCall) *CallEvents {
	ev := &a.hooks
	if req.GetProgressToken() == "" {
		ev.Progress = nil
	}
	if !req.GetLog() {
		ev.Log = nil
	}
	if !req.GetRequests() {
		ev.Request = nil
	}
	return ev
}

// rawCallOf is the RawCall req carries.
func rawCallOf(req *protov3.RawCall) *RawCall {
	return &RawCall{
		Method:          req.GetMethod(),
		Name:            req.GetName(),
		Params:          req.GetParams(),
		ProtocolVersion: req.GetProtocolVersion(),
		ProgressToken:   req.GetProgressToken(),
		Traceparent:     req.GetTraceparent(),
		Tracestate:      req.GetTracestate(),
	}
}

// rawResultOf is the wire result of CallRaw's outcome: the upstream's
// JSON-RPC error travels in it, any other error is returned.
func rawResultOf(res *RawResult, err error) (*protov3.RawResult, error) {
	out := &protov3.RawResult{}
	var rpcErr *RPCError
	switch {
	case errors.As(err, &rpcErr):
		out.Error = &protov2.RPCError{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data}
	case err != nil:
		return nil, err
	}
	if res != nil {
		out.Path, out.ProtocolVersion = res.Path, res.ProtocolVersion
		if out.Error == nil {
			out.Result = res.Result
		}
	}
	return out, nil
}

// resultOfRaw is the host's side of rawResultOf.
func resultOfRaw(r *protov3.RawResult) (*RawResult, error) {
	if er := r.GetError(); er != nil {
		return &RawResult{Path: r.GetPath(), ProtocolVersion: r.GetProtocolVersion()},
			&RPCError{Code: er.GetCode(), Message: er.GetMessage(), Data: er.GetData()}
	}
	return &RawResult{Result: r.GetResult(), Path: r.GetPath(), ProtocolVersion: r.GetProtocolVersion()}, nil
}

// grpcClientV3 is the host's side of contract version 3.
type grpcClientV3 struct {
	grpcClientV2
	r   protov3.RawClient
	mux *rawMux // under contract version 4: raw calls go on Raw.Session
	hop *hopMux // under contract version 5: raw calls go on the hop
}

var _ AdapterRaw = (*grpcClientV3)(nil)

// removeLeftovers removes what the adapter's hop left behind once its
// process is gone (contract 5; nothing before it).
func (c *grpcClientV3) removeLeftovers() {
	if c.hop != nil {
		c.hop.removeLeftovers()
	}
}

// rawInputPool recycles the first message of a raw call (the call itself).
var rawInputPool = sync.Pool{New: func() any {
	c := &protov3.RawCall{}
	return &protov3.RawInput{Input: &protov3.RawInput_Call{Call: c}}
}}

func (c *grpcClientV3) CallRaw(ctx context.Context, call *RawCall, ev *CallEvents) (*RawResult, error) {
	if ev == nil {
		ev = &CallEvents{}
	}
	if c.hop != nil {
		return c.hop.call(ctx, call, ev)
	}
	if c.mux != nil {
		return c.mux.call(ctx, call, ev)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.r.Call(ctx)
	if err != nil {
		return nil, fromStatus(err)
	}
	var mu sync.Mutex // serializes Send: the call, then answers from several goroutines
	send := func(in *protov3.RawInput) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(in)
	}
	// gRPC encodes a message before Send returns: the first one is reused.
	in := rawInputPool.Get().(*protov3.RawInput)
	rc := in.Input.(*protov3.RawInput_Call).Call
	*rc = protov3.RawCall{
		Method: call.Method, Name: call.Name, Params: call.Params, ProtocolVersion: call.ProtocolVersion,
		ProgressToken: call.ProgressToken, Log: ev.Log != nil, Requests: ev.Request != nil,
		Traceparent: call.Traceparent, Tracestate: call.Tracestate,
	}
	if ev.Progress == nil {
		rc.ProgressToken = ""
	}
	err = send(in)
	*rc = protov3.RawCall{}
	rawInputPool.Put(in)
	if err != nil && err != io.EOF {
		return nil, fromStatus(err)
	}
	h := hostEvents{ctx: ctx, ev: ev, send: func(r *protov2.ClientResponse) error {
		return send(&protov3.RawInput{Input: &protov3.RawInput_Response{Response: r}})
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
		case *protov3.RawEvent_Progress:
			h.handle(callEvent{progress: e.Progress})
		case *protov3.RawEvent_Log:
			h.handle(callEvent{log: e.Log})
		case *protov3.RawEvent_Request:
			h.handle(callEvent{request: e.Request})
		case *protov3.RawEvent_Result:
			return resultOfRaw(e.Result)
		}
	}
}

// rawParams is the params object of a tools/call as a RawCall carries it,
// for an adapter that forwards it through its MCP client instead.
type rawParams struct {
	Name           string          `json:"name"`
	Arguments      json.RawMessage `json:"arguments"`
	Meta           json.RawMessage `json:"_meta"`
	InputResponses json.RawMessage `json:"inputResponses"`
	RequestState   string          `json:"requestState"`
}

// ToolCallOf decodes the params of a raw tools/call into a ToolCall, for
// an adapter that forwards it through its MCP client (contract version 2
// or a fallback). The _meta passes as sent, less the progressToken (the
// client sets its own).
func ToolCallOf(call *RawCall) (*ToolCall, error) {
	var p rawParams
	if err := json.Unmarshal(call.Params, &p); err != nil {
		return nil, &RPCError{Code: -32602, Message: "invalid tools/call params: " + err.Error()}
	}
	tc := &ToolCall{Name: p.Name, Arguments: p.Arguments, RequestExtra: RequestExtra{InputResponses: p.InputResponses, RequestState: p.RequestState}}
	if len(p.Meta) > 0 && string(p.Meta) != "null" {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(p.Meta, &m); err != nil {
			return nil, &RPCError{Code: -32602, Message: "invalid tools/call _meta: " + err.Error()}
		}
		delete(m, "progressToken")
		if len(m) > 0 {
			b, err := json.Marshal(m)
			if err != nil {
				return nil, err
			}
			tc.Meta = b
		}
	}
	return tc, nil
}
