package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit: every AppendAudit queues its record and waits. One writer
// goroutine takes the first queued record plus whatever else is queued (up to
// maxAuditBatch), writes them all in one transaction, commits, and only then
// wakes their callers. Under load many records share one commit (one fsync on
// SQLite, one round of WAL flush on PostgreSQL); alone, a record is written
// at once.
//
// Except an outcome. A forwarded call's outcome is appended after its
// answer, and nobody waits for it on the call path; but the request of the
// caller's next call does, and it would wait for the outcome's commit to
// end before its own could start: two commits (two fsyncs) on the path of
// every call but the first. So a batch made only of outcomes lingers, up to
// outcomeLinger, for a record that is not one, and both are written in one
// commit. A crash in that window loses outcomes whose requests are already
// durable: they show as requests with no outcome, as any crash before an
// outcome lands does (docs/store.md).
const (
	maxAuditBatch = 128
	auditQueue    = 1024
	outcomeLinger = 5 * time.Millisecond
)

// Append request states.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

type appendReq struct {
	rec   AuditRecord
	state atomic.Int32
	seq   int64
	err   error // set by write for a record refused on its own, or for the whole batch
	done  chan struct{}
}

type auditWriter struct {
	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	queue  chan *appendReq
	exited chan struct{}
	// write writes and commits a batch, setting seq on each record written
	// and err on each refused on its own; an error fails the whole batch.
	write func([]*appendReq) error
	// linger is how long a batch of outcomes only waits for another
	// record (outcomeLinger; tests may change it before the first append).
	linger time.Duration
	// queued counts records accepted and not yet answered (tests wait on it).
	queued atomic.Int64
	// commits counts the batches written (benchmarks report it per call).
	commits atomic.Int64
	// writing is set while a batch is being written (tests wait on it).
	writing atomic.Bool
}

func newAuditWriter(write func([]*appendReq) error) *auditWriter {
	w := &auditWriter{
		queue:  make(chan *appendReq, auditQueue),
		exited: make(chan struct{}),
		write:  write,
		linger: outcomeLinger,
	}
	go w.run()
	return w
}

// append queues rec and waits until it is committed or ctx ends. A record
// still queued when ctx ends is dropped; one already taken by the writer may
// commit anyway.
func (w *auditWriter) append(ctx context.Context, rec AuditRecord) (int64, error) {
	const op = "append audit"
	r := &appendReq{rec: rec, done: make(chan struct{})}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return 0, errorf(op, ErrClosed, "store is closing")
	}
	select {
	case w.queue <- r:
		w.queued.Add(1)
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return 0, dbError(op, ctx.Err())
	}
	select {
	case <-r.done:
		return r.seq, r.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return 0, dbError(op+" (not written)", ctx.Err())
		}
		return 0, dbError(op+" (being written, outcome unknown)", ctx.Err())
	}
}

func (w *auditWriter) run() {
	defer close(w.exited)
	batch := make([]*appendReq, 0, maxAuditBatch)
	var timer *time.Timer
	for first := range w.queue {
		batch = w.fill(append(batch[:0], first))
		if onlyOutcomes(batch) && len(batch) < maxAuditBatch && w.linger > 0 {
			if timer == nil {
				timer = time.NewTimer(w.linger)
			} else {
				timer.Reset(w.linger)
			}
		linger:
			for len(batch) < maxAuditBatch {
				select {
				case r, ok := <-w.queue:
					if !ok {
						break linger
					}
					batch = append(batch, r)
					if r.rec.Phase != PhaseOutcome {
						batch = w.fill(batch)
						break linger
					}
				case <-timer.C:
					break linger
				}
			}
			timer.Stop()
		}
		live := batch[:0]
		for _, r := range batch {
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				live = append(live, r)
			} else {
				w.queued.Add(-1)
			}
		}
		if len(live) == 0 {
			continue
		}
		w.writing.Store(true)
		err := w.write(live)
		w.writing.Store(false)
		w.commits.Add(1)
		for _, r := range live {
			if r.err == nil {
				r.err = err
			}
			w.queued.Add(-1)
			close(r.done)
		}
	}
}

// fill adds to batch what is queued now, without waiting, up to
// maxAuditBatch.
func (w *auditWriter) fill(batch []*appendReq) []*appendReq {
	for len(batch) < maxAuditBatch {
		select {
		case r, ok := <-w.queue:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// onlyOutcomes reports whether every record of batch is an outcome.
func onlyOutcomes(batch []*appendReq) bool {
	for _, r := range batch {
		if r.rec.Phase != PhaseOutcome {
			return false
		}
	}
	return true
}

// close stops new appends, lets the writer commit everything queued, and
// waits for it.
func (w *auditWriter) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.exited
}
