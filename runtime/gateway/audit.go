package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

// auditArgs encodes arguments for the audit log, secrets redacted.
func auditArgs(args map[string]any) json.RawMessage {
	if args == nil {
		return nil
	}
	b, err := redactedJSON(args)
	if err != nil {
		return json.RawMessage(`"[unencodable arguments]"`)
	}
	return b
}

func parseAuditFilter(r *http.Request) (store.AuditFilter, error) {
	q := r.URL.Query()
	f := store.AuditFilter{User: q.Get("user"), Server: q.Get("server"), Tool: q.Get("tool"), Decision: store.Decision(q.Get("decision"))}
	if f.Decision != "" && !f.Decision.Valid() {
		return f, errorf(KindInvalid, "decision %q is not one of allowed, blocked, held, failed", f.Decision)
	}
	f.Phase, f.RequestID = store.AuditPhase(q.Get("phase")), q.Get("request_id")
	if f.Phase != "" && !f.Phase.Valid() {
		return f, errorf(KindInvalid, "phase %q is not one of request, outcome, approval", f.Phase)
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, errorf(KindInvalid, "%s=%q is not an RFC 3339 time", name, v)
			}
			*dst = t
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, errorf(KindInvalid, "after=%q is not a non-negative integer", v)
		}
		f.AfterSeq = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, errorf(KindInvalid, "limit=%q must be between 1 and 1000", v)
		}
		f.Limit = n
	}
	return f, nil
}

// readWait bounds how long an audit read waits for this process's outcome
// records still being appended, so a reader right after a call sees it.
const readWait = 2 * time.Second

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) error {
	s.waitOutcomes(readWait)
	f, err := parseAuditFilter(r)
	if err != nil {
		return err
	}
	recs, err := s.store.ListAudit(r.Context(), f)
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "cannot read the audit log", Err: err}
	}
	next := f.AfterSeq
	if len(recs) > 0 {
		next = recs[len(recs)-1].Seq
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs, "next_after": next})
	return nil
}

func (s *Server) handleVerifyAudit(w http.ResponseWriter, r *http.Request) error {
	s.waitOutcomes(readWait)
	rep, err := s.store.VerifyAudit(r.Context())
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "cannot verify the audit log", Err: err}
	}
	out := map[string]any{"ok": rep.OK(), "records": rep.Records, "head_seq": rep.HeadSeq, "head_hash": rep.HeadHash,
		"pending_outcomes": rep.PendingOutcomes, "first_pending": rep.FirstPending}
	if p := rep.Problem; p != nil {
		out["first_bad_seq"] = p.Seq
		out["kind"] = p.Kind
		out["problem"] = p.String()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleExportAudit(w http.ResponseWriter, r *http.Request) error {
	s.waitOutcomes(readWait)
	f, err := parseAuditFilter(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	started := false
	keepWriting := s.extendWrites(w)
	err = s.store.ExportAudit(r.Context(), f, func(rec store.AuditRecord) error {
		started = true
		keepWriting()
		return enc.Encode(rec)
	})
	if err != nil && !started {
		return &Error{Kind: KindUnavailable, Message: "cannot export the audit log", Err: err}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		// Headers are gone; the truncated stream is all we can signal.
		s.log.Error("audit export interrupted", "error", err)
	}
	return nil
}
