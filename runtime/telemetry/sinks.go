package telemetry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// ParseSink opens the sink a --audit-sink value names:
//
//	stdout        JSON lines on standard output
//	file:PATH     JSON lines appended to PATH, rotated by size
//	otlp          OTLP/HTTP logs to the OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT
//	otlp:URL      OTLP/HTTP logs to URL (e.g. http://collector:4318/v1/logs)
func ParseSink(ctx context.Context, spec string, stdout io.Writer, file FileSinkOptions) (AuditSink, error) {
	if err := CheckSink(spec); err != nil {
		return nil, err
	}
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case spec == "stdout":
		return NewWriterSink(stdout), nil
	case kind == "file" && arg != "":
		return NewFileSink(arg, file), nil
	case spec == "otlp":
		return NewOTLPSink(ctx)
	case kind == "otlp" && arg != "":
		return NewOTLPSink(ctx, otlploghttp.WithEndpointURL(spec[len("otlp:"):]))
	}
	return nil, fmt.Errorf("audit sink %q: want stdout, file:PATH, otlp or otlp:URL", spec)
}

// CheckSink reports whether spec names a sink ParseSink can open.
func CheckSink(spec string) error {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case spec == "stdout", spec == "otlp", kind == "file" && arg != "":
		return nil
	case kind == "otlp" && arg != "":
		u, err := url.Parse(arg)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("audit sink %q: otlp:URL needs an http(s) URL", spec)
		}
		return nil
	}
	return fmt.Errorf("audit sink %q: want stdout, file:PATH, otlp or otlp:URL", spec)
}

// writerSink writes JSON lines to a stream (standard output).
type writerSink struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriterSink writes each record as one JSON line to w. A record counts
// as delivered once w accepted it.
func NewWriterSink(w io.Writer) AuditSink { return &writerSink{w: w} }

func (s *writerSink) Write(ctx context.Context, entries []AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bw := bufio.NewWriter(s.w)
	for _, e := range entries {
		bw.Write(e.JSON)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

func (s *writerSink) Close() error { return nil }

// FileSinkOptions bound a file sink's files.
type FileSinkOptions struct {
	// MaxBytes is the size past which the file is rotated (default 100 MiB).
	MaxBytes int64
	// Keep is how many rotated files are kept: PATH.1 (newest) to PATH.Keep
	// (default 5).
	Keep int
}

// fileSink appends JSON lines to a file, rotating it by size.
type fileSink struct {
	mu   sync.Mutex
	path string
	opt  FileSinkOptions
}

// NewFileSink appends each record as one JSON line to path (mode 0600).
// Each batch opens the file, appends, syncs and closes it, so a file moved
// away by another tool is simply created again, and a record counts as
// delivered only once it is on disk. Before a batch would take the file
// past MaxBytes, PATH is renamed PATH.1 (PATH.1 to PATH.2, and so on; the
// oldest beyond Keep is removed).
func NewFileSink(path string, opt FileSinkOptions) AuditSink {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 100 << 20
	}
	if opt.Keep <= 0 {
		opt.Keep = 5
	}
	return &fileSink{path: path, opt: opt}
}

func (s *fileSink) Write(ctx context.Context, entries []AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var size int64
	for _, e := range entries {
		size += int64(len(e.JSON)) + 1
	}
	if st, err := os.Stat(s.path); err == nil && st.Mode().IsRegular() && st.Size() > 0 && st.Size()+size > s.opt.MaxBytes {
		if err := s.rotate(); err != nil {
			return fmt.Errorf("rotating %s: %w", s.path, err)
		}
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	for _, e := range entries {
		bw.Write(e.JSON)
		bw.WriteByte('\n')
	}
	err = bw.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *fileSink) rotate() error {
	os.Remove(fmt.Sprintf("%s.%d", s.path, s.opt.Keep))
	for i := s.opt.Keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", s.path, i), fmt.Sprintf("%s.%d", s.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.Rename(s.path, s.path+".1")
}

func (s *fileSink) Close() error { return nil }

// otlpSink sends records as OTLP log records over HTTP.
type otlpSink struct {
	mu     sync.Mutex
	exp    *otlploghttp.Exporter
	lp     *sdklog.LoggerProvider
	logger otellog.Logger
	cap    *captureProcessor
}

// NewOTLPSink sends each record as an OTLP log record (event name
// armoriq.audit, the record's JSON as the body, its sequence number as the
// attribute armoriq.audit.seq) through the OTLP/HTTP exporter, configured
// by opts and the standard OTEL_EXPORTER_OTLP_* variables. A batch counts
// as delivered once the receiver accepted the export; the exporter's own
// retries are off, the stream retries.
func NewOTLPSink(ctx context.Context, opts ...otlploghttp.Option) (AuditSink, error) {
	opts = append([]otlploghttp.Option{otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}), otlploghttp.WithTimeout(10 * time.Second)}, opts...)
	exp, err := otlploghttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP logs exporter: %v", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("armoriq-gateway"))
	cp := &captureProcessor{}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(cp))
	return &otlpSink{exp: exp, lp: lp, cap: cp, logger: lp.Logger("github.com/armoriq/controlplane/runtime/telemetry")}, nil
}

func (s *otlpSink) Write(ctx context.Context, entries []AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cap.recs = s.cap.recs[:0]
	now := time.Now()
	for _, e := range entries {
		var r otellog.Record
		r.SetTimestamp(e.Time)
		r.SetObservedTimestamp(now)
		r.SetSeverity(otellog.SeverityInfo)
		r.SetSeverityText("INFO")
		r.SetEventName("armoriq.audit")
		r.SetBody(attribute.StringValue(string(e.JSON)))
		r.AddAttributes(attribute.Int64("armoriq.audit.seq", e.Seq))
		s.logger.Emit(ctx, r)
	}
	return s.exp.Export(ctx, s.cap.recs)
}

func (s *otlpSink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.lp.Shutdown(ctx)
	return s.exp.Shutdown(ctx)
}

// captureProcessor keeps what the logger emits, for one synchronous
// export whose error the stream sees (the SDK's processors swallow it).
type captureProcessor struct {
	recs []sdklog.Record
}

func (p *captureProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (p *captureProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	p.recs = append(p.recs, r.Clone())
	return nil
}
func (p *captureProcessor) Shutdown(context.Context) error   { return nil }
func (p *captureProcessor) ForceFlush(context.Context) error { return nil }
