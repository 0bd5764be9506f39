package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The trace exporters.
const (
	TraceOff      = "off"
	TraceOTLPGRPC = "otlp-grpc"
	TraceOTLPHTTP = "otlp-http"
)

// TracingConfig says whether and where the gateway sends its spans.
type TracingConfig struct {
	// Exporter is TraceOff (or ""), TraceOTLPGRPC or TraceOTLPHTTP.
	Exporter string
	// Endpoint overrides OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT: a URL
	// (http://collector:4318/v1/traces for HTTP, http://collector:4317
	// for gRPC; http:// means no TLS).
	Endpoint string
	// ServiceVersion is the service.version resource attribute.
	ServiceVersion string
}

// TracingFromEnv applies the standard variables to cfg when cfg names no
// exporter: OTEL_TRACES_EXPORTER=otlp turns tracing on, over
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
// (grpc, or http/protobuf: the default); "none" or unset leaves it off.
func TracingFromEnv(cfg TracingConfig, getenv func(string) string) (TracingConfig, error) {
	if cfg.Exporter != "" {
		return cfg, nil
	}
	switch exp := getenv("OTEL_TRACES_EXPORTER"); exp {
	case "", "none":
		cfg.Exporter = TraceOff
		return cfg, nil
	case "otlp":
	default:
		return cfg, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp or none are supported", exp)
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		cfg.Exporter = TraceOTLPHTTP
	case "grpc":
		cfg.Exporter = TraceOTLPGRPC
	default:
		return cfg, fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", proto)
	}
	return cfg, nil
}

// Tracing is the gateway's tracer and the propagator of trace context.
type Tracing struct {
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	provider   *sdktrace.TracerProvider // nil when off
}

// NewTracing sets tracing up. Off, the tracer is a no-op (spans cost a
// context lookup, and an incoming traceparent still reaches the audit
// record and the upstream); on, spans are batched to the OTLP exporter,
// sampled by OTEL_TRACES_SAMPLER (default: parent-based, always on), with
// the resource of OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// (service.name defaults to armoriq-gateway).
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	t := &Tracing{Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	var exp sdktrace.SpanExporter
	var err error
	switch cfg.Exporter {
	case "", TraceOff:
		t.Tracer = offTracer{noop.NewTracerProvider().Tracer("")}
		return t, nil
	case TraceOTLPGRPC:
		var opts []otlptracegrpc.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case TraceOTLPHTTP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(cfg.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("trace exporter %q: want %s, %s or %s", cfg.Exporter, TraceOTLPGRPC, TraceOTLPHTTP, TraceOff)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %v", err)
	}
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName("armoriq-gateway")), resource.WithFromEnv(), resource.WithTelemetrySDK()}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(cfg.ServiceVersion)))
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %v", err)
	}
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t.Tracer = t.provider.Tracer("github.com/armoriq/controlplane/runtime/gateway")
	return t, nil
}

// offTracer is the tracer while tracing is off: the no-op tracer, except
// that a span started under a context without a recording span (the only
// kind there is with tracing off) leaves the context as it is, where the
// no-op tracer wraps it in a new one holding a no-op span. The span is as
// inert either way, and a caller's trace context (traceparent) stays on the
// context for the audit record and the upstream; the gateway starts
// several spans per call, and this spares it a context, an allocation and
// a longer chain of contexts to search for each.
type offTracer struct{ trace.Tracer }

func (t offTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if sp := trace.SpanFromContext(ctx); !sp.IsRecording() {
		return ctx, sp
	}
	return t.Tracer.Start(ctx, name, opts...)
}

// NewTracingWith returns tracing through an SDK provider the caller made
// (tests and benchmarks use it with their own exporter).
func NewTracingWith(tp *sdktrace.TracerProvider) *Tracing {
	return &Tracing{
		Tracer:     tp.Tracer("github.com/armoriq/controlplane/runtime/gateway"),
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		provider:   tp,
	}
}

// On reports whether spans are recorded and exported.
func (t *Tracing) On() bool { return t != nil && t.provider != nil }

// Shutdown exports the spans still batched and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// CheckTraceExporter reports whether name is a trace exporter NewTracing knows.
func CheckTraceExporter(name string) error {
	switch strings.TrimSpace(name) {
	case "", TraceOff, TraceOTLPGRPC, TraceOTLPHTTP:
		return nil
	}
	return fmt.Errorf("--trace %q: want %s, %s or %s", name, TraceOTLPGRPC, TraceOTLPHTTP, TraceOff)
}
