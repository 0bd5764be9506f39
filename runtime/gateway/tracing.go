package gateway

import (
	"context"
	"net/http"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span and attribute names. The MCP and GenAI ones follow the OpenTelemetry
// semantic conventions for MCP (mcp.method.name, mcp.session.id,
// mcp.protocol.version) and GenAI tool execution (gen_ai.operation.name
// execute_tool, gen_ai.tool.name); the armoriq.* ones are ours.
const (
	attrMCPMethod        = attribute.Key("mcp.method.name")
	attrMCPSession       = attribute.Key("mcp.session.id")
	attrMCPProtocol      = attribute.Key("mcp.protocol.version")
	attrNetTransport     = attribute.Key("network.transport")
	attrGenAIOperation   = attribute.Key("gen_ai.operation.name")
	attrGenAITool        = attribute.Key("gen_ai.tool.name")
	attrHTTPMethod       = attribute.Key("http.request.method")
	attrHTTPRoute        = attribute.Key("http.route")
	attrHTTPStatus       = attribute.Key("http.response.status_code")
	attrEndUser          = attribute.Key("enduser.id")
	attrDecision         = attribute.Key("armoriq.decision")
	attrRule             = attribute.Key("armoriq.rule")
	attrBundleRevision   = attribute.Key("armoriq.bundle.revision")
	attrServer           = attribute.Key("armoriq.server")
	attrAuditPhase       = attribute.Key("armoriq.audit.phase")
	attrAuditSeq         = attribute.Key("armoriq.audit.seq")
	attrPolicyEffect     = attribute.Key("armoriq.policy.effect")
	attrAPIKeyID         = attribute.Key("armoriq.api_key.id")
	methodToolsCall      = "tools/call"
	operationExecuteTool = "execute_tool"
)

// The options of the gateway's server and client spans, made once: a
// variadic argument to the Tracer interface escapes, and would be
// allocated per span.
var (
	serverSpanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientSpanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// headerCarrier is propagation.HeaderCarrier with the keys the
// propagators ask for (traceparent, tracestate, baggage: in lower case)
// looked up in their canonical form directly, where http.Header would
// allocate the canonical form of each on every request.
type headerCarrier http.Header

func (c headerCarrier) Get(key string) string {
	if v := c[canonicalTraceKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Values(key string) []string { return c[canonicalTraceKey(key)] }

func (c headerCarrier) Set(key, value string) { http.Header(c).Set(key, value) }

func (c headerCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }

func canonicalTraceKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

// serverSpanName names the span of a request on a traced route.
func serverSpanName(route string, r *http.Request) string {
	switch route {
	case routeInvoke:
		return "POST /invoke"
	case routeToken:
		return "POST " + r.URL.Path
	}
	switch r.Method { // the methods /mcp serves, without a string built per request
	case http.MethodPost:
		return "POST /mcp"
	case http.MethodGet:
		return "GET /mcp"
	case http.MethodDelete:
		return "DELETE /mcp"
	}
	return r.Method + " /mcp"
}

// startServerSpan continues the caller's trace (traceparent) or starts one,
// with a server span for request r, under ctx (r's context and more).
// Tracing off, the span records nothing, but the caller's trace id still
// reaches the audit record and the upstream.
func (s *Server) startServerSpan(ctx context.Context, r *http.Request, route string) (context.Context, trace.Span) {
	ctx = s.tracing.Propagator.Extract(ctx, headerCarrier(r.Header))
	ctx, span := s.tracing.Tracer.Start(ctx, serverSpanName(route, r), serverSpanOpts...)
	if span.IsRecording() {
		span.SetAttributes(attrHTTPMethod.String(r.Method), attrHTTPRoute.String(r.URL.Path))
		if route == routeMCP {
			span.SetAttributes(attrNetTransport.String("tcp"))
			if id := r.Header.Get("Mcp-Session-Id"); id != "" {
				span.SetAttributes(attrMCPSession.String(id))
			}
			if v := r.Header.Get("Mcp-Protocol-Version"); v != "" {
				span.SetAttributes(attrMCPProtocol.String(v))
			}
		}
	}
	return ctx, span
}

// endServerSpan ends the request's span with its status code.
func endServerSpan(span trace.Span, code int) {
	if span.IsRecording() {
		span.SetAttributes(attrHTTPStatus.Int(code))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
	}
	span.End()
}

// traceCall puts a call's decision on its request's span: the tool (as
// GenAI's execute_tool, and MCP's tools/call), the decision, its rule, the
// bundle revision, and the end user when Config.TraceEndUser allows it.
// The /mcp span is renamed "tools/call {tool}" as the MCP conventions name
// a server span.
func (s *Server) traceCall(ctx context.Context, rec *store.AuditRecord, decision store.Decision) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if t := timingFrom(ctx); t != nil && t.route == routeMCP {
		span.SetName(methodToolsCall + " " + rec.Tool)
	}
	span.SetAttributes(attrMCPMethod.String(methodToolsCall), attrGenAIOperation.String(operationExecuteTool), attrGenAITool.String(rec.Tool),
		attrServer.String(rec.Server), attrDecision.String(string(decision)), attrRule.String(rec.Rule), attrBundleRevision.String(rec.BundleRevision))
	if s.cfg.TraceEndUser && rec.User != "" {
		span.SetAttributes(attrEndUser.String(rec.User))
	}
	if decision == store.Failed {
		span.SetStatus(codes.Error, "the call failed")
	}
}

// traceIDOf returns the trace id of ctx's span, "" with none.
func traceIDOf(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// authenticate checks the request's API key, in a span of its own.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (caller, error) {
	ctx, span := s.tracing.Tracer.Start(ctx, "armoriq.authenticate")
	var c caller
	var err error
	if raw := bearerJWT(r); raw != "" {
		c, err = s.authenticateAccessToken(ctx, raw)
	} else {
		c, err = s.authenticateKey(ctx, r)
	}
	if span.IsRecording() {
		if err != nil {
			span.SetStatus(codes.Error, "not authenticated")
		} else {
			span.SetAttributes(attrAPIKeyID.String(c.KeyID))
		}
	}
	span.End()
	return c, err
}

// startUpstreamSpan starts the client span of a call to an upstream through
// its adapter and carries its trace context on: in the request's _meta
// (traceparent, tracestate), as the MCP conventions say, which the adapter
// passes to an MCP upstream and also sends to an HTTP upstream as the
// traceparent header.
func (s *Server) startUpstreamSpan(ctx context.Context, srv bundle.Server, tool string) (context.Context, trace.Span) {
	name := methodToolsCall
	if s.tracing.On() || trace.SpanFromContext(ctx).IsRecording() {
		name += " " + tool // a span that records: the name is kept
	}
	ctx, span := s.tracing.Tracer.Start(ctx, name, clientSpanOpts...)
	if span.IsRecording() {
		span.SetAttributes(attrMCPMethod.String(methodToolsCall), attrGenAIOperation.String(operationExecuteTool), attrGenAITool.String(tool), attrServer.String(srv.ID))
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, span
	}
	carrier := propagation.MapCarrier{}
	s.tracing.Propagator.Inject(ctx, carrier)
	r := *upstreamRequestFrom(ctx)
	r.traceparent, r.tracestate = carrier["traceparent"], carrier["tracestate"]
	return withUpstreamRequest(ctx, &r), span
}
