package telemetry

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TestTracingOffKeepsContext starts spans with tracing off: under a
// context without a trace the context comes back as it was, and a
// caller's trace context (a traceparent header) stays the span's.
func TestTracingOffKeepsContext(t *testing.T) {
	tr, err := NewTracing(context.Background(), TracingConfig{Exporter: TraceOff})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), struct{}{}, "request")
	got, span := tr.Tracer.Start(ctx, "armoriq.authenticate")
	if got != ctx || span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("no trace: got a new context %v, span recording %v, span context %v; want the same context and an inert span", got != ctx, span.IsRecording(), span.SpanContext())
	}
	span.End()

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := http.Header{"Traceparent": {parent}}
	ctx = tr.Propagator.Extract(context.Background(), propagation.HeaderCarrier(h))
	ctx, span = tr.Tracer.Start(ctx, "POST /mcp", trace.WithSpanKind(trace.SpanKindServer))
	sc := trace.SpanContextFromContext(ctx)
	if span.IsRecording() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || span.SpanContext().TraceID() != sc.TraceID() {
		t.Errorf("traceparent %s: span recording %v, trace id on the context %s, of the span %s; want the caller's", parent, span.IsRecording(), sc.TraceID(), span.SpanContext().TraceID())
	}
}
