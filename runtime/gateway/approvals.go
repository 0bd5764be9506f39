package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/armoriq/controlplane/runtime/approval"
	"github.com/armoriq/controlplane/runtime/store"
)

// approvalError translates the approval package's errors into ours.
func approvalError(err error) error {
	var kind Kind
	switch {
	case err == nil:
		return nil
	case errors.Is(err, approval.ErrNotFound):
		kind = KindNotFound
	case errors.Is(err, approval.ErrForbidden):
		kind = KindForbidden
	case errors.Is(err, approval.ErrInvalid):
		kind = KindInvalid
	case errors.Is(err, approval.ErrDecided), errors.Is(err, approval.ErrExecuted):
		kind = KindConflict
	case errors.Is(err, approval.ErrMismatch):
		kind = KindIntentMismatch
	default:
		return &Error{Kind: KindUnavailable, Message: "cannot read or write approvals: store unavailable", Err: err}
	}
	return &Error{Kind: kind, Message: err.Error()}
}

// decideApproval approves or denies approval id as c, records the decision
// in the audit log and notifies the webhook.
func (s *Server) decideApproval(ctx context.Context, c caller, id string, approve bool, comment string, link string) (store.Approval, error) {
	// A credential pasted into the comment is redacted before it is
	// stored (docs/gateway.md, "Redaction"): the approvals table, the
	// audit log and the webhook see "[REDACTED]".
	a, err := s.human.approvals.Decide(ctx, id, callerIdentity(c), approve, scrubText(comment))
	if err != nil {
		return a, approvalError(err)
	}
	if err := s.auditApproval(ctx, a); err != nil {
		// The decision stands (it is in the store); say the record failed.
		s.log.Error("approval decided but its audit record failed", "approval", a.ID, "error", err)
		return a, err
	}
	event := "denied"
	if approve {
		event = "approved"
	}
	s.log.Info("approval decided", "approval", a.ID, "decision", event, "by", c.KeyID)
	s.notifyApproval(event, a, link)
	return a, nil
}

// auditApproval records a person's decision on an approval.
func (s *Server) auditApproval(ctx context.Context, a store.Approval) error {
	outcome := "denied by " + a.DecidedBy
	if a.State == store.ApprovalApproved {
		outcome = "approved by " + a.DecidedBy
	}
	if a.Comment != "" {
		outcome += ": " + a.Comment
	}
	rev := ""
	if ab := s.active.Load(); ab != nil {
		rev = ab.b.Manifest.Revision
	}
	d := store.Blocked
	if a.State == store.ApprovalApproved {
		d = store.Allowed
	}
	return s.audit(ctx, store.AuditRecord{
		Time: a.DecidedAt, RequestID: a.RequestID, APIKeyID: a.DecidedByKeyID, Service: a.DecidedBy,
		User: a.User, Agent: a.Agent, Server: a.Server, Tool: a.Tool, Arguments: a.Arguments,
		Decision: d, Rule: a.Rule, BundleRevision: rev, PlanHash: a.PlanHash, Step: a.Step,
		Outcome: outcome, Phase: store.PhaseApproval, ApprovalID: a.ID,
	})
}

func (s *Server) approvalLink(r *http.Request, id string) string {
	return s.baseURL(r) + "/console/approvals/" + id
}

func (s *Server) handleListApprovals(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.ApprovalFilter{State: store.ApprovalState(q.Get("state"))}
	if f.State != "" && !f.State.Valid() {
		return errorf(KindInvalid, "state=%q is not one of pending, approved, denied, expired, executed", f.State)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errorf(KindInvalid, "limit=%q must be between 1 and 1000", v)
		}
		f.Limit = n
	}
	list, err := s.human.approvals.List(r.Context(), f)
	if err != nil {
		return approvalError(err)
	}
	if list == nil {
		list = []store.Approval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": list})
	return nil
}

func (s *Server) handleGetApproval(w http.ResponseWriter, r *http.Request) error {
	a, err := s.human.approvals.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return approvalError(err)
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) handleDecideApproval(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Comment string `json:"comment"`
		}
		if r.ContentLength != 0 {
			if err := decodeJSON(r, &req); err != nil {
				return err
			}
		}
		id := r.PathValue("id")
		a, err := s.decideApproval(r.Context(), callerFrom(r.Context()), id, approve, req.Comment, s.approvalLink(r, id))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, a)
		return nil
	}
}
