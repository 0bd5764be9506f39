package telemetry_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// appendRecords commits n audit records to st from 4 concurrent writers,
// as calls through a gateway would.
func appendRecords(t *testing.T, st store.Store, n int) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				rec := store.AuditRecord{RequestID: fmt.Sprintf("req-%d", i), User: "alice@example.com", Server: "tools", Tool: "echo",
					Arguments: json.RawMessage(`{"text":"hi"}`), Decision: store.Allowed, Outcome: "ok"}
				if _, err := st.AppendAudit(context.Background(), rec); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}(w)
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.OpenSQLiteSync(context.Background(), filepath.Join(t.TempDir(), "armoriq.db"), store.SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startStream runs a stream until the returned stop is called.
func startStream(t *testing.T, cfg telemetry.StreamConfig) (*telemetry.AuditStream, func()) {
	t.Helper()
	cfg.Batch, cfg.Poll, cfg.BackoffMin, cfg.BackoffMax = 25, 5*time.Millisecond, 5*time.Millisecond, 40*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := telemetry.NewAuditStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return s, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkDelivery checks that got, the sequence numbers in delivery order,
// holds every record 1..n in order, any repeat being a re-delivery of a
// batch (at most one batch per failure) after a failure.
func checkDelivery(t *testing.T, got []int64, n int, failures int) {
	t.Helper()
	seen := map[int64]bool{}
	var next int64 = 1
	dups := 0
	for i, s := range got {
		if seen[s] {
			dups++
			continue
		}
		if s != next {
			t.Fatalf("record %d delivered at position %d where %d was due: out of order or lost", s, i, next)
		}
		seen[s] = true
		next++
	}
	if int(next-1) != n {
		t.Fatalf("delivered records 1..%d, want 1..%d: records lost", next-1, n)
	}
	if dups > 25*failures {
		t.Fatalf("%d duplicates after %d failures: more than a batch per failure", dups, failures)
	}
	t.Logf("%d records delivered, %d duplicates after %d failures", n, dups, failures)
}

func readSeqs(t *testing.T, paths ...string) []int64 {
	t.Helper()
	var out []int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec store.AuditRecord
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("%s: line %q: %v", p, sc.Text(), err)
			}
			out = append(out, rec.Seq)
		}
		f.Close()
	}
	return out
}

// TestAuditStreamFileSinkFails streams to a file while calls commit
// records; mid-stream the file's writes fail (it becomes /dev/full: no
// space left), then the stream is killed and restarted from its position
// file. Nothing is lost, order holds, repeats stay within a batch.
func TestAuditStreamFileSinkFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("needs /dev/full to make the file sink's writes fail")
	}
	const n = 600
	st := openStore(t)
	dir := t.TempDir()
	path, pos := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.pos")
	m := telemetry.NewMetrics()
	cfg := telemetry.StreamConfig{Source: gateway.AuditSource(st), Sink: telemetry.NewFileSink(path, telemetry.FileSinkOptions{}), PositionFile: pos, Metrics: m}
	written := appendRecords(t, st, n)
	s, stop := startStream(t, cfg)
	waitFor(t, "100 records acknowledged", func() bool { return s.Acked() >= 100 })

	// The sink's writes fail: ENOSPC.
	if err := os.Rename(path, path+".part1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	errs := func() float64 { return gaugeValue(t, m, "armoriq_audit_stream_errors_total") }
	waitFor(t, "3 failed deliveries", func() bool { return errs() >= 3 })
	stuck := s.Acked()
	time.Sleep(30 * time.Millisecond)
	if s.Acked() != stuck {
		t.Fatalf("the stream acknowledged records its sink failed to write")
	}
	os.Remove(path) // the disk has room again
	waitFor(t, "250 records acknowledged", func() bool { return s.Acked() >= 250 })

	// The stream dies mid-stream and starts again from its position file.
	stop()
	s2, _ := startStream(t, cfg)
	<-written
	waitFor(t, "every record acknowledged", func() bool { return s2.Acked() == n })
	if lag := gaugeValue(t, m, "armoriq_audit_stream_lag_records"); lag != 0 {
		t.Errorf("lag = %v once caught up, want 0", lag)
	}
	checkDelivery(t, readSeqs(t, path+".part1", path), n, int(errs())+1)
}

func gaugeValue(t *testing.T, m *telemetry.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, x := range mf.GetMetric() {
				if x.Gauge != nil {
					return x.Gauge.GetValue()
				}
				return x.Counter.GetValue()
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// otlpReceiver is an OTLP/HTTP logs receiver that can be stopped and
// started again on the same address.
type otlpReceiver struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	seqs []int64
	srv  *http.Server
}

func (r *otlpReceiver) start() {
	r.t.Helper()
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port may linger a moment after a stop
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ex collogs.ExportLogsServiceRequest
		if req.URL.Path != "/v1/logs" || proto.Unmarshal(body, &ex) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		r.mu.Lock()
		for _, rl := range ex.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					var rec store.AuditRecord
					if err := json.Unmarshal([]byte(lr.Body.GetStringValue()), &rec); err != nil || lr.EventName != "armoriq.audit" {
						r.t.Errorf("log record %v: not an audit record: %v", lr, err)
					}
					r.seqs = append(r.seqs, rec.Seq)
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collogs.ExportLogsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})}
	go r.srv.Serve(ln)
}

func (r *otlpReceiver) stop() { r.srv.Close() }

func (r *otlpReceiver) received() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.seqs...)
}

// TestAuditStreamOTLPReceiverStops streams to an OTLP/HTTP receiver that
// stops mid-stream and comes back: every record arrives, in order.
func TestAuditStreamOTLPReceiverStops(t *testing.T) {
	const n = 300
	st := openStore(t)
	rcv := &otlpReceiver{t: t}
	rcv.start()
	t.Cleanup(rcv.stop)
	sink, err := telemetry.ParseSink(context.Background(), "otlp:http://"+rcv.addr+"/v1/logs", nil, telemetry.FileSinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := telemetry.NewMetrics()
	written := appendRecords(t, st, n)
	s, _ := startStream(t, telemetry.StreamConfig{Source: gateway.AuditSource(st), Sink: sink, PositionFile: filepath.Join(t.TempDir(), "pos"), Metrics: m})
	waitFor(t, "50 records acknowledged", func() bool { return s.Acked() >= 50 })
	rcv.stop()
	errs := func() float64 { return gaugeValue(t, m, "armoriq_audit_stream_errors_total") }
	waitFor(t, "2 failed exports", func() bool { return errs() >= 2 })
	rcv.start()
	<-written
	waitFor(t, "every record acknowledged", func() bool { return s.Acked() == n })
	checkDelivery(t, rcv.received(), n, int(errs()))
}

func TestFileSinkRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink := telemetry.NewFileSink(path, telemetry.FileSinkOptions{MaxBytes: 100, Keep: 2})
	line := strings.Repeat("x", 38) // 40 bytes with quotes and newline
	for i := 1; i <= 7; i++ {
		if err := sink.Write(context.Background(), []telemetry.AuditEntry{{Seq: int64(i), JSON: []byte(`"` + line + `"`)}}); err != nil {
			t.Fatal(err)
		}
	}
	// 2 lines per file: lines 7 | 5,6 | 3,4; lines 1,2 rotated out.
	for _, tt := range []struct {
		name  string
		lines int
	}{{path, 1}, {path + ".1", 2}, {path + ".2", 2}} {
		data, err := os.ReadFile(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(data), "\n"); got != tt.lines {
			t.Errorf("%s has %d lines, want %d", filepath.Base(tt.name), got, tt.lines)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists: Keep is 2", path)
	}
}

func TestParseSink(t *testing.T) {
	for _, spec := range []string{"", "file:", "kafka:x", "stdout:x"} {
		if _, err := telemetry.ParseSink(context.Background(), spec, io.Discard, telemetry.FileSinkOptions{}); err == nil || !strings.Contains(err.Error(), "want stdout, file:PATH, otlp or otlp:URL") {
			t.Errorf("ParseSink(%q) = %v, want a usage error", spec, err)
		}
	}
}

func TestPositionFileRefusesGarbage(t *testing.T) {
	pos := filepath.Join(t.TempDir(), "pos")
	os.WriteFile(pos, []byte("not json"), 0o600)
	_, err := telemetry.NewAuditStream(telemetry.StreamConfig{Source: gateway.AuditSource(nil), Sink: telemetry.NewWriterSink(io.Discard), PositionFile: pos})
	if err == nil || !strings.Contains(err.Error(), "is not a position file") {
		t.Fatalf("NewAuditStream with a garbage position file = %v, want refused", err)
	}
}
