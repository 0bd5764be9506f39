package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// AuditEntry is one committed audit record, as the stream hands it on.
type AuditEntry struct {
	Seq  int64
	Time time.Time
	JSON []byte // the record as one JSON object, no newline
}

// AuditSource reads committed audit records in sequence order.
type AuditSource interface {
	// AuditAfter returns up to limit records with a sequence number above
	// seq, in order.
	AuditAfter(ctx context.Context, seq int64, limit int) ([]AuditEntry, error)
}

// AuditSink is where the stream delivers records. Write returns nil only
// once every entry is handed over for good (written and synced, or
// accepted by the receiver): the stream then records them as acknowledged
// and never sends them again. On an error the stream sends the same
// entries again later, so a sink must tolerate a repeat of a batch that
// was partly delivered: delivery is at least once.
type AuditSink interface {
	Write(ctx context.Context, entries []AuditEntry) error
	Close() error
}

// StreamConfig configures an AuditStream.
type StreamConfig struct {
	Source AuditSource
	Sink   AuditSink
	// PositionFile keeps the sequence number of the last acknowledged
	// record across restarts (written atomically). A missing file starts
	// the stream at the first record of the chain.
	PositionFile string
	// Batch is the most records read and delivered at once (default 256).
	Batch int
	// Poll is how long the stream waits for new records once it has
	// delivered everything (default 200ms).
	Poll time.Duration
	// Backoff bounds the wait after a failure: it doubles from Min to Max
	// (default 100ms to 30s).
	BackoffMin, BackoffMax time.Duration
	Metrics                *Metrics // optional
	Logger                 *slog.Logger
}

// AuditStream copies every committed audit record, in sequence order and at
// least once, to a sink. It runs apart from the calls: it reads what the
// store committed, so a slow or failing sink never delays a call or loses a
// record; it resumes after its last acknowledged record, after a sink
// failure as after a restart.
type AuditStream struct {
	cfg   StreamConfig
	acked atomic.Int64
	head  atomic.Int64 // the highest sequence seen
}

// positionFile is the JSON of the position file.
type positionFile struct {
	Seq int64 `json:"seq"`
}

// NewAuditStream reads the stream's position and returns the stream; Run
// starts it.
func NewAuditStream(cfg StreamConfig) (*AuditStream, error) {
	if cfg.Source == nil || cfg.Sink == nil || cfg.PositionFile == "" {
		return nil, errors.New("audit stream: a source, a sink and a position file are required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(30*time.Second, cfg.BackoffMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &AuditStream{cfg: cfg}
	pos, err := readPosition(cfg.PositionFile)
	if err != nil {
		return nil, err
	}
	s.acked.Store(pos)
	s.head.Store(pos)
	s.report()
	return s, nil
}

func readPosition(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit stream: reading the position: %v", err)
	}
	var p positionFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || p.Seq < 0 {
		return 0, fmt.Errorf("audit stream: %s is not a position file (want {\"seq\": N}): remove it to stream from the first record", path)
	}
	return p.Seq, nil
}

// writePosition replaces the position file atomically: a crash leaves the
// old position or the new one, never a torn file.
func writePosition(path string, seq int64) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".audit-position-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	data, _ := json.Marshal(positionFile{Seq: seq})
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Acked returns the sequence number of the last acknowledged record.
func (s *AuditStream) Acked() int64 { return s.acked.Load() }

// noteHead records that the chain has at least seq records. With Metrics
// shared with the gateway, the records this replica commits count too, so
// the lag is known before the stream reads them.
func (s *AuditStream) noteHead(seq int64) {
	for {
		h := s.head.Load()
		if seq <= h || s.head.CompareAndSwap(h, seq) {
			break
		}
	}
	s.report()
}

func (s *AuditStream) report() {
	if m := s.cfg.Metrics; m != nil {
		m.AuditHead(s.head.Load())
		acked, head := s.acked.Load(), m.head.Load()
		m.sinkAcked.Set(float64(acked))
		m.sinkLag.Set(float64(max(0, head-acked)))
	}
}

// Run delivers records until ctx ends, then returns nil. It never gives
// up: a failing source or sink is retried with backoff, each failure
// logged and counted.
func (s *AuditStream) Run(ctx context.Context) error {
	backoff := s.cfg.BackoffMin
	fail := func(what string, err error) {
		if m := s.cfg.Metrics; m != nil {
			m.sinkErrors.Inc()
		}
		s.cfg.Logger.Warn("audit stream: "+what+" failed; retrying", "after_seq", s.acked.Load(), "retry_in", backoff, "error", err)
		sleep(ctx, backoff)
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
	for ctx.Err() == nil {
		entries, err := s.cfg.Source.AuditAfter(ctx, s.acked.Load(), s.cfg.Batch)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fail("reading the audit log", err)
			continue
		}
		if len(entries) == 0 {
			s.report()
			s.setLagAge(time.Time{})
			sleep(ctx, s.cfg.Poll)
			continue
		}
		s.noteHead(entries[len(entries)-1].Seq)
		s.setLagAge(entries[0].Time)
		if err := s.cfg.Sink.Write(ctx, entries); err != nil {
			if ctx.Err() != nil {
				break
			}
			fail("delivering to the sink", err)
			continue
		}
		last := entries[len(entries)-1].Seq
		if err := writePosition(s.cfg.PositionFile, last); err != nil {
			// Delivered but not recorded: after a restart these records
			// go out again (at least once), never lost.
			fail("recording the position", err)
		}
		s.acked.Store(last)
		if m := s.cfg.Metrics; m != nil {
			m.sinkRecords.Add(float64(len(entries)))
		}
		s.report()
		backoff = s.cfg.BackoffMin
	}
	return nil
}

// setLagAge sets the age of the oldest record not yet acknowledged (zero
// time: none).
func (s *AuditStream) setLagAge(oldest time.Time) {
	m := s.cfg.Metrics
	if m == nil {
		return
	}
	if oldest.IsZero() {
		m.sinkLagAge.Set(0)
		return
	}
	m.sinkLagAge.Set(max(0, time.Since(oldest).Seconds()))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
