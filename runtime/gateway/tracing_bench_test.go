package gateway

import (
	"net/http/httptest"

	"context"
	"github.com/armoriq/controlplane/compiler/bundle"
	"path/filepath"
	"testing"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// discardExporter drops spans: the benchmark measures what tracing costs
// the gateway (spans, attributes, the batch processor), not a network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkInvokeTracing is one /invoke call through the gateway (SQLite
// with synchronous=normal, so the fsync does not drown the difference),
// with tracing off (the default no-op tracer) and on (the SDK, every call
// sampled, spans batched to an exporter that drops them).
func BenchmarkInvokeTracing(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("tracing="+mode, func(b *testing.B) {
			st, err := store.OpenSQLiteSync(context.Background(), filepath.Join(b.TempDir(), "armoriq.db"), store.SyncNormal)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var opts []gatewayOpt
			if mode == "on" {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
				defer tp.Shutdown(context.Background())
				opts = append(opts, func(c *Config) { c.Tracing = telemetry.NewTracingWith(tp) })
			}
			g := newTestGateway(b, st, opts...)
			g.pushBundle("rev1", 100, testPolicy())
			tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
			body, hdr := invokeRequestFor(tok, "tools", "echo", map[string]any{"text": "hi"})
			hdr["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			hc := benchClient()
			for i := 0; i < 50; i++ {
				benchPost(b, hc, g.http.URL+"/invoke", g.agentKey, body, hdr)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				benchPost(b, hc, g.http.URL+"/invoke", g.agentKey, body, hdr)
			}
		})
	}
}

// BenchmarkCallSpans is the tracing work of one allowed call alone, without
// the HTTP, policy or store work around it: the server span continuing a
// traceparent, the authentication, policy and two audit commit spans, the
// upstream span with its trace context put into _meta, and the call's
// attributes. Off is the default no-op tracer, with and without a
// traceparent from the client (which is carried on even when off).
func BenchmarkCallSpans(b *testing.B) {
	for _, mode := range []string{"off/no-traceparent", "off", "on"} {
		b.Run("tracing="+mode, func(b *testing.B) {
			tr, _ := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{})
			if mode == "on" {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
				defer tp.Shutdown(context.Background())
				tr = telemetry.NewTracingWith(tp)
			}
			s := &Server{tracing: tr, cfg: Config{}}
			req := httptest.NewRequest("POST", "/mcp", nil)
			if mode != "off/no-traceparent" {
				req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			}
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
			req = req.WithContext(context.WithValue(req.Context(), reqTimingKey{}, &reqTiming{route: routeMCP}))
			rec := &store.AuditRecord{Server: "tools", Tool: "echo", Rule: "allow", BundleRevision: "rev1"}
			srv := bundle.Server{ID: "tools"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx, span := s.startServerSpan(req.Context(), req, routeMCP)
				for _, name := range []string{"armoriq.authenticate", "armoriq.policy.decide", "armoriq.audit.commit"} {
					_, c := s.tracing.Tracer.Start(ctx, name)
					c.End()
				}
				uctx, us := s.startUpstreamSpan(ctx, srv, "echo")
				_ = traceIDOf(uctx)
				us.End()
				_, c := s.tracing.Tracer.Start(ctx, "armoriq.audit.commit")
				c.End()
				s.traceCall(ctx, rec, store.Allowed)
				endServerSpan(span, 200)
			}
		})
	}
}
