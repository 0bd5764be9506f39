package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit: every AppendAudit queues its record and waits until a
// batch holding it is written and committed. There is no writer goroutine:
// the first appender that finds nobody writing becomes the leader and
// writes the batch itself (its own record and whatever else is queued, up
// to maxAuditBatch); records queued meanwhile wait for the leader to end,
// and the next batch is written by a leader of its own. Alone, a record is
// written by its own caller with no hand-off between goroutines before the
// write (at one call at a time, two scheduler hand-offs fewer per record;
// unless the last write failed or was slow: see auditWriter.slow);
// under load many records share one commit (one fsync on SQLite, one round
// of WAL flush on PostgreSQL), as they did with a writer goroutine.
//
// Except an outcome. A forwarded call's outcome is appended after its
// answer, and nobody waits for it on the call path; but the request of the
// caller's next call does, and it would wait for the outcome's commit to
// end before its own could start: two commits (two fsyncs) on the path of
// every call but the first. So a leader whose batch holds only outcomes
// lingers, up to outcomeLinger, for a record that is not one; that record's
// appender takes the lead over and writes both in one commit, without
// waking the lingering goroutine first. A crash in that window loses
// outcomes whose requests are already durable: they show as requests with
// no outcome, as any crash before an outcome lands does (docs/store.md).
const (
	maxAuditBatch = 128
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
	// then, for a detached record (appendDetached), is called with the
	// result instead of a caller waiting on done.
	then func(seq int64, err error)
}

type auditWriter struct {
	mu      sync.Mutex
	idle    sync.Cond // signalled when leader becomes false
	closed  bool
	pending []*appendReq // queued, not taken by a leader yet
	// leader is set while a goroutine leads: writes a batch, or lingers
	// before one. Whenever pending is not empty, one does.
	leader bool
	// lingering is the channel the leader lingers on, nil when it does
	// not linger. An appender taking the lead over sets it to nil, and
	// closes it only if the lingering leader has no record of its own
	// (which the new leader's commit would wake it with); close closes it
	// and leaves it set, so the leader knows it still leads.
	lingering     chan struct{}
	lingeringOwns bool
	// lingerWait, when set, leads in place of a goroutine: detached
	// outcomes are queued (the first of them at lingerSince), nobody else
	// is, and the clock writes them when the linger runs out unless an
	// appender takes the lead over first (it clears this).
	lingerWait  bool
	lingerSince time.Time
	// lingerClock is one timer for the writer's life, armed (clockArmed)
	// when a detached linger starts and it is not armed already; taking
	// the lead over leaves it be. When it fires on a linger that started
	// after it was armed, it re-arms for the rest. A timer made, or reset
	// or stopped, on every call had the runtime wake a thread for the
	// timer on every call (its poller's wake-up when a timer is earlier
	// than the processor's next one): about one thread started per call
	// at one call at a time. Now that happens about once per linger.
	lingerClock *time.Timer
	clockArmed  bool
	clockArms   int // times armed (tests count them)

	// write writes and commits a batch, setting seq on each record written
	// and err on each refused on its own; an error fails the whole batch.
	// Leaders call it one at a time.
	write func([]*appendReq) error
	// linger is how long a batch of outcomes only waits for another
	// record (outcomeLinger; tests may change it before the first append).
	linger time.Duration
	// queued counts records accepted and not yet answered (tests wait on it).
	queued atomic.Int64
	// commits counts the batches written, records the records in them
	// (AuditWriteCounts; benchmarks report commits per call).
	commits atomic.Int64
	records atomic.Int64
	// writing is set while a batch is being written (tests wait on it).
	writing atomic.Bool
	// batch is the leaders' buffer for the batch they take (one leader
	// at a time; write does not keep it).
	batch []*appendReq
	// slow is set when the last write failed or took over slowWrite: the
	// database is in trouble, and an appender that leads then writes on
	// a goroutine of its own, so that its context still bounds its wait
	// (a leader writing on its own goroutine waits for the write, up to
	// the write's own limit). Cleared by the next quick write.
	slow atomic.Bool
}

// slowWrite is how long a write may take before leaders stop writing on
// their callers' goroutines (auditWriter.slow).
const slowWrite = time.Second

func newAuditWriter(write func([]*appendReq) error) *auditWriter {
	w := &auditWriter{write: write, linger: outcomeLinger}
	w.idle.L = &w.mu
	return w
}

// append queues rec and waits until it is committed or ctx ends. A record
// still queued when ctx ends is dropped; one already taken by a leader may
// commit anyway. An appender that leads writes whatever its ctx says: the
// batch holds other callers' records.
func (w *auditWriter) append(ctx context.Context, rec AuditRecord) (int64, error) {
	const op = "append audit"
	if err := ctx.Err(); err != nil {
		return 0, dbError(op, err)
	}
	r := &appendReq{rec: rec, done: make(chan struct{})}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, errorf(op, ErrClosed, "store is closing")
	}
	w.pending = append(w.pending, r)
	w.queued.Add(1)
	lead := false
	switch {
	case !w.leader:
		w.leader, lead = true, true
	case w.lingerWait && rec.Phase != PhaseOutcome:
		// Detached outcomes wait for a record like this one. The clock
		// stays armed: when it fires it finds nothing to do.
		w.lingerWait, lead = false, true
	case w.lingering != nil && rec.Phase != PhaseOutcome:
		// Outcomes linger for a record like this one: take the lead over
		// and write them with it. The lingering leader learns it when its
		// own record is written (not before, while this one writes).
		if !w.lingeringOwns {
			close(w.lingering)
		}
		w.lingering, lead = nil, true
	}
	w.mu.Unlock()
	if lead {
		if w.slow.Load() {
			go w.lead(r, true)
		} else {
			w.lead(r, true)
		}
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

// appendDetached queues rec (meant for outcomes, which nobody waits for)
// and returns at once; then is called with its sequence number, or the
// error, once the batch holding it is written, on the goroutine that wrote
// it (it must not block). An outcome queued when nobody leads lingers on
// the writer's clock, not on a goroutine: the next request's appender
// writes it with its own record, and no goroutine is started or woken for
// it. Anything else queued when nobody leads starts a leader.
func (w *auditWriter) appendDetached(rec AuditRecord, then func(seq int64, err error)) {
	r := &appendReq{rec: rec, done: make(chan struct{}), then: then}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		then(0, errorf("append audit", ErrClosed, "store is closing"))
		return
	}
	w.pending = append(w.pending, r)
	w.queued.Add(1)
	switch {
	case w.leader:
		// The leader, or the one it starts, writes it.
	case w.linger > 0 && rec.Phase == PhaseOutcome:
		w.leader, w.lingerWait, w.lingerSince = true, true, time.Now()
		w.armClock(w.linger)
	default:
		w.leader = true
		go w.lead(nil, true)
	}
	w.mu.Unlock()
}

// armClock arms the linger clock to fire in d, unless it is armed already
// (to fire no later than a linger started since needs). w.mu is held.
func (w *auditWriter) armClock(d time.Duration) {
	if w.clockArmed {
		return
	}
	w.clockArmed = true
	w.clockArms++
	if w.lingerClock == nil {
		w.lingerClock = time.AfterFunc(d, w.clockFired)
	} else {
		w.lingerClock.Reset(d)
	}
}

// clockFired runs when the linger clock fires: it writes the detached
// outcomes still lingering once their linger has run out, or re-arms for
// the rest of a linger that started after the clock was armed.
func (w *auditWriter) clockFired() {
	w.mu.Lock()
	w.clockArmed = false
	if !w.lingerWait {
		w.mu.Unlock() // an appender took the lead over, or nothing lingers
		return
	}
	if rest := w.linger - time.Since(w.lingerSince); rest > 0 {
		w.armClock(rest)
		w.mu.Unlock()
		return
	}
	w.lingerWait = false
	w.mu.Unlock()
	w.lead(nil, false) // lingered already
}

// lead writes batches until nothing is queued, own (the leader's own
// record, nil for a leader started by another) is written, or another
// appender takes the lead over from its linger. It is called with leader
// set. mayLinger false writes the first batch at once, outcomes or not.
func (w *auditWriter) lead(own *appendReq, mayLinger bool) {
	w.mu.Lock()
	for first := true; ; first = false {
		if len(w.pending) == 0 {
			w.leader = false
			w.idle.Broadcast()
			w.mu.Unlock()
			return
		}
		if own != nil && isDone(own) {
			// Others are queued and this caller's record is written: a
			// leader of their own writes theirs, so this caller's answer
			// does not wait for their commit. That leader goes on while
			// records keep coming, as a writer goroutine would.
			w.mu.Unlock()
			go w.lead(nil, true)
			return
		}
		if (mayLinger || !first) && w.linger > 0 && !w.closed && len(w.pending) < maxAuditBatch && onlyOutcomes(w.pending) {
			ch := make(chan struct{})
			w.lingering, w.lingeringOwns = ch, own != nil
			var written chan struct{} // nil: never ready
			if own != nil {
				written = own.done
			}
			w.mu.Unlock()
			t := time.NewTimer(w.linger)
			select {
			case <-ch:
			case <-written:
			case <-t.C:
			}
			t.Stop()
			w.mu.Lock()
			if w.lingering != ch {
				// Another appender leads now and writes these.
				w.mu.Unlock()
				return
			}
			w.lingering = nil // the linger ran out, or the writer closes
		}
		n := min(len(w.pending), maxAuditBatch)
		batch := w.batch[:0] // leaders write one at a time: theirs to reuse
		for _, r := range w.pending[:n] {
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				batch = append(batch, r)
			} else {
				w.queued.Add(-1)
			}
		}
		clear(w.pending[:n])
		w.pending = w.pending[n:]
		if len(w.pending) == 0 {
			w.pending = nil
		}
		w.mu.Unlock()
		if len(batch) > 0 {
			w.writing.Store(true)
			start := time.Now()
			err := w.write(batch)
			w.slow.Store(err != nil || time.Since(start) > slowWrite)
			w.writing.Store(false)
			w.commits.Add(1)
			w.records.Add(int64(len(batch)))
			for _, r := range batch {
				if r.err == nil {
					r.err = err
				}
				w.queued.Add(-1)
				close(r.done)
				if r.then != nil {
					r.then(r.seq, r.err)
				}
			}
		}
		clear(batch)
		w.batch = batch
		w.mu.Lock()
	}
}

func isDone(r *appendReq) bool {
	select {
	case <-r.done:
		return true
	default:
		return r.state.Load() == reqAbandoned
	}
}

// waiting returns the number of records queued and not taken by a leader
// (tests wait on it).
func (w *auditWriter) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
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

// close stops new appends, ends a linger, and waits until every record
// queued is written.
func (w *auditWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		if w.lingering != nil {
			close(w.lingering)
		}
		if w.lingerClock != nil && w.lingerClock.Stop() {
			w.clockArmed = false
		}
		if w.lingerWait {
			// Write what the clock waits for now: clearing lingerWait
			// takes the lead (the clock, if it fires, finds nothing).
			w.lingerWait = false
			w.mu.Unlock()
			w.lead(nil, false)
			w.mu.Lock()
		}
	}
	for w.leader {
		w.idle.Wait()
	}
}
