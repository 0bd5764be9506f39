package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/armoriq/controlplane/plugins/proto"
)

// grpcServer serves an Adapter implementation as the gRPC service.
type grpcServer struct {
	proto.UnimplementedAdapterServer
	impl Adapter
}

func (s *grpcServer) Configure(ctx context.Context, req *proto.ServerConfig) (*proto.Empty, error) {
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
	return &proto.Empty{}, nil
}

func (s *grpcServer) ListTools(ctx context.Context, req *proto.ListRequest) (*proto.JSONResult, error) {
	return jsonResult(s.impl.ListTools(ctx, req.GetCursor()))
}

func (s *grpcServer) ListResources(ctx context.Context, req *proto.ListRequest) (*proto.JSONResult, error) {
	return jsonResult(s.impl.ListResources(ctx, req.GetCursor()))
}

func (s *grpcServer) ReadResource(ctx context.Context, req *proto.ReadResourceRequest) (*proto.JSONResult, error) {
	return jsonResult(s.impl.ReadResource(ctx, req.GetUri()))
}

func (s *grpcServer) ListPrompts(ctx context.Context, req *proto.ListRequest) (*proto.JSONResult, error) {
	return jsonResult(s.impl.ListPrompts(ctx, req.GetCursor()))
}

func (s *grpcServer) GetPrompt(ctx context.Context, req *proto.GetPromptRequest) (*proto.JSONResult, error) {
	return jsonResult(s.impl.GetPrompt(ctx, req.GetName(), req.GetArguments()))
}

func (s *grpcServer) Health(ctx context.Context, _ *proto.Empty) (*proto.HealthResponse, error) {
	if err := s.impl.Health(ctx); err != nil {
		return &proto.HealthResponse{Error: err.Error()}, nil
	}
	return &proto.HealthResponse{Ok: true}, nil
}

func (s *grpcServer) CallTool(req *proto.CallToolRequest, stream proto.Adapter_CallToolServer) error {
	var (
		mu      sync.Mutex // a gRPC stream is not safe for concurrent Send
		done    bool
		sendErr error
	)
	progress := func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if done || sendErr != nil {
			return
		}
		sendErr = stream.Send(&proto.CallToolEvent{Event: &proto.CallToolEvent_Progress{Progress: &proto.Progress{
			Progress: p.Progress, Total: p.Total, Message: p.Message,
		}}})
	}
	res, err := s.impl.CallTool(stream.Context(), req.GetName(), req.GetArguments(), progress)
	mu.Lock()
	done = true
	mu.Unlock()
	r, err := jsonResult(res, err)
	if err != nil {
		return err
	}
	return stream.Send(&proto.CallToolEvent{Event: &proto.CallToolEvent_Result{Result: r}})
}

// jsonResult turns an adapter method's outcome into the wire result: the
// upstream's JSON-RPC error travels as data, any other error as a status.
func jsonResult(b json.RawMessage, err error) (*proto.JSONResult, error) {
	var rpcErr *RPCError
	switch {
	case errors.As(err, &rpcErr):
		return &proto.JSONResult{Error: &proto.RPCError{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data}}, nil
	case err != nil:
		return nil, toStatus(err)
	}
	return &proto.JSONResult{Json: b}, nil
}

func toStatus(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// grpcClient is the host's side of the service.
type grpcClient struct {
	c proto.AdapterClient
}

var _ Adapter = (*grpcClient)(nil)

func (c *grpcClient) Configure(ctx context.Context, cfg ServerConfig) error {
	_, err := c.c.Configure(ctx, &proto.ServerConfig{
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

func (c *grpcClient) ListTools(ctx context.Context, cursor string) (json.RawMessage, error) {
	return fromResult(c.c.ListTools(ctx, &proto.ListRequest{Cursor: cursor}))
}

func (c *grpcClient) ListResources(ctx context.Context, cursor string) (json.RawMessage, error) {
	return fromResult(c.c.ListResources(ctx, &proto.ListRequest{Cursor: cursor}))
}

func (c *grpcClient) ReadResource(ctx context.Context, uri string) (json.RawMessage, error) {
	return fromResult(c.c.ReadResource(ctx, &proto.ReadResourceRequest{Uri: uri}))
}

func (c *grpcClient) ListPrompts(ctx context.Context, cursor string) (json.RawMessage, error) {
	return fromResult(c.c.ListPrompts(ctx, &proto.ListRequest{Cursor: cursor}))
}

func (c *grpcClient) GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return fromResult(c.c.GetPrompt(ctx, &proto.GetPromptRequest{Name: name, Arguments: args}))
}

func (c *grpcClient) Health(ctx context.Context) error {
	res, err := c.c.Health(ctx, &proto.Empty{})
	if err != nil {
		return fromStatus(err)
	}
	if !res.GetOk() {
		return errors.New(res.GetError())
	}
	return nil
}

func (c *grpcClient) CallTool(ctx context.Context, name string, args json.RawMessage, progress func(Progress)) (json.RawMessage, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.CallTool(ctx, &proto.CallToolRequest{Name: name, Arguments: args})
	if err != nil {
		return nil, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, errors.New("adapter ended the call without a result")
		}
		if err != nil {
			return nil, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *proto.CallToolEvent_Progress:
			if progress != nil {
				progress(Progress{Progress: e.Progress.GetProgress(), Total: e.Progress.GetTotal(), Message: e.Progress.GetMessage()})
			}
		case *proto.CallToolEvent_Result:
			return fromResult(e.Result, nil)
		}
	}
}

func fromResult(r *proto.JSONResult, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, fromStatus(err)
	}
	if e := r.GetError(); e != nil {
		return nil, &RPCError{Code: e.GetCode(), Message: e.GetMessage(), Data: e.GetData()}
	}
	return r.GetJson(), nil
}

// connError marks a failure of the connection to the adapter process
// itself, as opposed to an error the adapter reported.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// fromStatus turns a gRPC status back into an error: deadlines and
// cancellations into the context errors, a lost connection into a
// *connError, anything else into the adapter's message.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	case codes.Unavailable:
		return &connError{errors.New(st.Message())}
	}
	return errors.New(st.Message())
}
