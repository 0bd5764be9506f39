package gateway

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// No audit, no action. A call that may reach an upstream is recorded in two
// records of the hash chain: its request, committed before the upstream is
// called (if it cannot be written, the call is refused and the upstream
// never sees it), and its outcome, appended when the call ends without
// holding up the answer. A call refused before that point gets one decision
// record, committed before the answer. See docs/store.md.

// invocation is what a handler learned about a call, for its audit records.
type invocation struct {
	start      time.Time
	rec        store.AuditRecord
	decision   policy.Decision
	requestSeq int64 // the committed request record, once the call was let through
}

// newInvocation starts the record of a call from its HTTP request and caller.
func (s *Server) newInvocation(reqID string, c caller) *invocation {
	return newInvocationAt(s.now(), reqID, c)
}

// newInvocationAt is newInvocation for a call that started at start.
func newInvocationAt(start time.Time, reqID string, c caller) *invocation {
	inv := &invocation{start: start, rec: store.AuditRecord{
		Time: start.UTC(), RequestID: reqID, APIKeyID: c.KeyID, Service: c.Name, Agent: c.Agent, Step: -1,
	}}
	c.stamp(&inv.rec)
	return inv
}

// conclude completes the record of a call that ended with err (nil:
// answered) at end: its duration, deciding rule, decision and outcome.
func (inv *invocation) conclude(err error, end time.Time) {
	rec := &inv.rec
	rec.DurationMS = end.Sub(inv.start).Milliseconds()
	rec.Rule = inv.decision.RuleID
	if err == nil {
		if rec.Outcome == "" {
			rec.Outcome = "ok"
		}
		return
	}
	e := asError(err)
	switch e.Kind {
	case KindPolicyHold:
		rec.Decision = store.Held
	case KindUpstream, KindUpstreamTimeout, KindUnavailable, KindInternal, KindRevoked, KindInputRequired:
		if rec.Decision == "" || inv.requestSeq > 0 {
			rec.Decision = store.Failed
		}
	default:
		rec.Decision = store.Blocked
	}
	_, code := statusOf(e.Kind)
	rec.Outcome = code + ": " + e.Message
}

// commitRequest makes the request record of an allowed call durable. It is
// called after every check passed and before the upstream is called; an
// error means the call must not be forwarded.
func (s *Server) commitRequest(ctx context.Context, inv *invocation) error {
	rec := inv.rec
	rec.Phase = store.PhaseRequest
	rec.Decision = store.Allowed
	rec.Rule = inv.decision.RuleID
	rec.Outcome = "forwarded"
	rec.DurationMS = s.now().Sub(inv.start).Milliseconds()
	seq, err := s.appendAudit(ctx, rec)
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "store unavailable: cannot write the audit record, so the call was not forwarded", Err: err}
	}
	inv.requestSeq = seq
	return nil
}

// finish records how a call ended and returns the error its answer must
// carry instead of its own, if any. A forwarded call's outcome is appended
// in the background: its request is already durable, and a crash before
// the outcome lands shows as a request with no outcome. Any other call's
// decision record is committed before the answer; if it cannot be, the
// answer is 503 (nothing was forwarded).
func (s *Server) finish(ctx context.Context, inv *invocation, err error) error {
	inv.conclude(err, s.now())
	final := inv.rec.Decision
	if inv.requestSeq > 0 && final != store.Failed {
		final = store.Allowed
	}
	if inv.rec.TraceID == "" {
		inv.rec.TraceID = traceIDOf(ctx)
	}
	s.callDone(ctx, &inv.rec, final)
	if inv.requestSeq == 0 {
		aerr := s.audit(ctx, inv.rec)
		if aerr != nil && err != nil && asError(err).Kind == KindUnavailable {
			return err // the store was already down: say so as it was said first
		}
		return aerr
	}
	out := inv.rec
	out.Phase, out.Concludes, out.Arguments = store.PhaseOutcome, inv.requestSeq, nil
	if out.Decision != store.Failed {
		out.Decision = store.Allowed
	}
	s.outcomes.Add(1)
	// The outcome's commit belongs to the call's trace (its span), not to
	// the request's lifetime. A span that neither records nor carries a
	// trace (tracing off, no traceparent) is the background's own.
	octx := context.Background()
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() || sp.SpanContext().IsValid() {
		octx = trace.ContextWithSpan(octx, sp)
	}
	if d, ok := s.store.(store.DetachedAppender); ok {
		// No goroutine per call: the store calls back once the outcome is
		// committed (most often with the next call's request).
		_, span, start := s.beginAudit(octx, &out)
		d.AppendAuditDetached(out, func(seq int64, err error) {
			s.auditCommitted(span, &out, start, seq, err)
			if err == nil {
				s.outcomes.Done()
				return
			}
			go func() { // rare: a failed commit is retried, off the committer
				defer s.outcomes.Done()
				s.retryOutcome(octx, out, err)
			}()
		})
		return nil
	}
	go func() {
		defer s.outcomes.Done()
		ctx, cancel := context.WithTimeout(octx, 30*time.Second)
		defer cancel()
		if _, err := s.appendAudit(ctx, out); err != nil {
			s.retryOutcome(ctx, out, err)
		}
	}()
	return nil
}

// retryOutcome appends out again after its append failed with err, a few
// times within 30 s (a reset connection is usually back at the next try),
// and logs when it could not be recorded.
func (s *Server) retryOutcome(ctx context.Context, out store.AuditRecord, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for wait := 50 * time.Millisecond; wait <= time.Second && ctx.Err() == nil && !errors.Is(err, store.ErrClosed); wait *= 4 {
		time.Sleep(wait)
		if _, err = s.appendAudit(ctx, out); err == nil {
			return
		}
	}
	s.log.Error("audit: the outcome of a forwarded call was not recorded; its request record stands without one",
		"request_id", out.RequestID, "request_seq", out.Concludes, "error", err)
}

// waitOutcomes waits, at most d, for outcome records still being appended,
// so that a reader of the audit log right after a call sees its outcome.
func (s *Server) waitOutcomes(d time.Duration) {
	done := make(chan struct{})
	go func() { s.outcomes.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// audit commits a one-shot decision record and returns only once it is
// durable, so a call's record exists before its response is sent. A failed
// append fails the request: an unaudited decision must not look like one.
func (s *Server) audit(ctx context.Context, rec store.AuditRecord) error {
	if _, err := s.appendAudit(ctx, rec); err != nil {
		return &Error{Kind: KindUnavailable, Message: "store unavailable: cannot write the audit record; the call was not completed", Err: err}
	}
	return nil
}

// appendAudit cleans rec's text fields and appends it. The record must land
// even if the client went away or the key was revoked mid-call.
func (s *Server) appendAudit(ctx context.Context, rec store.AuditRecord) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ctx, span, start := s.beginAudit(ctx, &rec)
	seq, err := s.store.AppendAudit(ctx, rec)
	s.auditCommitted(span, &rec, start, seq, err)
	return seq, err
}

// beginAudit readies rec for its append (the trace id from ctx if it has
// none, its text fields cleaned) and starts the span of its commit.
func (s *Server) beginAudit(ctx context.Context, rec *store.AuditRecord) (context.Context, trace.Span, time.Time) {
	if rec.TraceID == "" {
		rec.TraceID = traceIDOf(ctx)
	}
	cleanRecord(rec)
	ctx, span := s.tracing.Tracer.Start(ctx, "armoriq.audit.commit")
	return ctx, span, time.Now()
}

// auditCommitted counts a commit of rec that started at start and ends its
// span.
func (s *Server) auditCommitted(span trace.Span, rec *store.AuditRecord, start time.Time, seq int64, err error) {
	if err == nil {
		s.metrics.AuditCommit(string(rec.Phase), time.Since(start), seq)
	}
	if span.IsRecording() {
		phase := string(rec.Phase)
		if phase == "" {
			phase = "decision"
		}
		span.SetAttributes(attrAuditPhase.String(phase), attrAuditSeq.Int64(seq), attrDecision.String(string(rec.Decision)))
		if err != nil {
			span.SetStatus(codes.Error, "the audit record was not committed")
		}
	}
	span.End()
}

// maxRecordText bounds a free-text field of an audit record (outcomes and
// reasons quote what callers sent).
const maxRecordText = 2048

// cleanRecord makes every text field of rec storable whatever a caller
// sent: valid UTF-8, no control characters, bounded, and never a
// credential. Identities were already refused at the edge when unusable;
// this is the last line, so that no input can make the write fail after
// the decision was taken.
func cleanRecord(rec *store.AuditRecord) {
	for _, f := range []*string{&rec.RequestID, &rec.APIKeyID, &rec.Service, &rec.User, &rec.Agent, &rec.Client,
		&rec.Server, &rec.Tool, &rec.Rule, &rec.BundleRevision, &rec.PlanHash, &rec.Outcome, &rec.TraceID, &rec.ApprovalID} {
		*f = cleanText(*f, maxRecordText)
	}
}

// cleanText returns s as valid UTF-8 without control or formatting
// characters (each becomes U+FFFD), at most max bytes, with anything that
// looks like a secret redacted (scrubText: our API keys, Authorization
// values, JWTs, …).
func cleanText(s string, max int) string {
	clean := utf8.ValidString(s) && len(s) <= max
	if clean {
		for _, r := range s {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r))) {
				clean = false
				break
			}
		}
	}
	if !clean {
		var b strings.Builder
		for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
			if r < 0x20 || r == 0x7f || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				r = '\uFFFD'
			}
			if b.Len()+utf8.RuneLen(r) > max {
				break
			}
			b.WriteRune(r)
		}
		s = b.String()
	}
	return scrubText(s)
}
