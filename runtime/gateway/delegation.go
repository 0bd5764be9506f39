package gateway

import (
	"net/http"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/approval"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/store"
)

// The SDKs' delegation endpoints (armoriq-compat.md, "Holds and
// approvals"), over our approvals. An approval exists only because the
// gateway held a call: these endpoints find and report it; none of them
// creates or widens anything.

// handleDelegationRequest is POST /delegation/request: the SDK asks for
// approval of the call it was just refused. The answer is that call's
// approval, matched by token, tool and arguments and owned by this key.
func (s *Server) handleDelegationRequest(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Tool            string         `json:"tool"`
		Action          string         `json:"action"`
		Arguments       map[string]any `json:"arguments"`
		IntentReference string         `json:"intentReference"`
		DelegationID    string         `json:"delegationId"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	c := callerFrom(r.Context())
	if req.DelegationID != "" {
		a, err := s.ownApproval(r, c, req.DelegationID)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, delegationView(a))
		return nil
	}
	tool := req.Tool
	if tool == "" {
		tool = req.Action
	}
	if tool == "" || req.IntentReference == "" {
		return errorf(KindInvalid, "tool and intentReference are required (or delegationId)")
	}
	args, _ := takeApprovalID(intent.StripInjected(req.Arguments))
	hash := approval.HashArgs(args)
	list, err := s.human.approvals.List(r.Context(), store.ApprovalFilter{Limit: 1000})
	if err != nil {
		return approvalError(err)
	}
	for _, a := range list {
		if a.TokenID == req.IntentReference && a.Tool == tool && a.ArgsHash == hash && a.RequesterKeyID == c.KeyID {
			writeJSON(w, http.StatusOK, delegationView(a))
			return nil
		}
	}
	return errorf(KindNotFound, "no held call of %s under intent token %q with these arguments: an approval is requested by calling the tool and being held", tool, req.IntentReference)
}

// delegationView is an approval as the SDKs read a delegation.
func delegationView(a store.Approval) map[string]any {
	return map[string]any{
		"success": true, "delegationId": a.ID, "delegation_id": a.ID, "status": string(a.State),
		"expiresAt": a.ExpiresAt.UTC().Format(time.RFC3339), "approved": a.State == store.ApprovalApproved,
		"approverEmail": a.DecidedBy, "comment": a.Comment, "tool": a.Tool, "server": a.Server,
	}
}

// ownApproval returns approval id if the calling key requested it.
func (s *Server) ownApproval(r *http.Request, c caller, id string) (store.Approval, error) {
	a, err := s.human.approvals.Get(r.Context(), id)
	if err != nil {
		return a, approvalError(err)
	}
	if a.RequesterKeyID != c.KeyID && c.Role != store.RoleAdmin {
		// Not this key's: say no more than that it is not found.
		return store.Approval{}, errorf(KindNotFound, "no approval %q of this API key", id)
	}
	return a, nil
}

// handleCheckApproved is GET /delegation/check-approved?tool=&delegationId=:
// whether this key's approval (the one named, else the newest for the
// tool) is granted and unused.
func (s *Server) handleCheckApproved(w http.ResponseWriter, r *http.Request) error {
	c := callerFrom(r.Context())
	q := r.URL.Query()
	id := q.Get("delegationId")
	if id == "" {
		id = q.Get("delegation_id")
	}
	var found *store.Approval
	if id != "" {
		a, err := s.ownApproval(r, c, id)
		if err != nil {
			return err
		}
		found = &a
	} else {
		tool := q.Get("tool")
		if tool == "" {
			return errorf(KindInvalid, "tool or delegationId is required")
		}
		list, err := s.human.approvals.List(r.Context(), store.ApprovalFilter{Limit: 1000})
		if err != nil {
			return approvalError(err)
		}
		// Granted first, then the newest open one.
		for _, want := range []store.ApprovalState{store.ApprovalApproved, store.ApprovalPending, store.ApprovalDenied} {
			for i := range list {
				if a := list[i]; a.RequesterKeyID == c.KeyID && a.Tool == tool && a.State == want && found == nil {
					found = &list[i]
				}
			}
		}
	}
	if found == nil {
		writeJSON(w, http.StatusOK, map[string]any{"approved": false, "status": "none", "delegationId": nil})
		return nil
	}
	out := delegationView(*found)
	out["approverRole"] = ""
	if found.DecidedBy != "" {
		out["approverRole"] = "approver"
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleMarkExecuted is POST /delegation/mark-executed {delegationId}: the
// SDK reports the approved call ran. The retry already used the approval;
// an approval not used yet is used up now, so it cannot run later.
func (s *Server) handleMarkExecuted(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DelegationID  string `json:"delegationId"`
		DelegationID2 string `json:"delegation_id"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	id := req.DelegationID
	if id == "" {
		id = req.DelegationID2
	}
	if id == "" {
		return errorf(KindInvalid, "delegationId is required")
	}
	a, err := s.ownApproval(r, callerFrom(r.Context()), id)
	if err != nil {
		return err
	}
	if a.State == store.ApprovalApproved {
		a, err = s.store.ExecuteApproval(r.Context(), id, s.now().UTC())
		if err != nil && a.State != store.ApprovalExecuted {
			return errorf(KindConflict, "approval %s is %s", id, a.State)
		}
	}
	if a.State != store.ApprovalExecuted {
		return errorf(KindConflict, "approval %s is %s, not executed", id, a.State)
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "delegationId": id, "status": string(a.State)})
	return nil
}

// handleMyRole is GET /delegation/my-role (X-User-Email): whether that
// person may approve held calls of the active policy. limit is 0: this
// gateway's approvals are per call, not amounts.
func (s *Server) handleMyRole(w http.ResponseWriter, r *http.Request) error {
	email := strings.ToLower(strings.TrimSpace(r.Header.Get("X-User-Email")))
	if email == "" {
		email = strings.ToLower(strings.TrimSpace(r.URL.Query().Get("email")))
	}
	var role any
	if email != "" {
		if ab := s.active.Load(); ab != nil && approverIn(ab.b.Policy.Rules, ab.b.Policy.Groups, email) {
			role = "approver"
		}
		if role == nil {
			keys, err := s.store.ListAPIKeys(r.Context())
			if err != nil {
				return &Error{Kind: KindUnavailable, Message: "cannot list keys", Err: err}
			}
			for _, k := range keys {
				if !k.Revoked() && strings.EqualFold(k.Name, email) && k.Role == store.RoleAdmin {
					role = "admin"
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": role, "limit": 0, "email": email})
	return nil
}

// handleDelegationCreate is 0.2.6's POST /delegation/create (hand a token
// to another agent's key). This gateway binds tokens to the key that asked
// for them and does not re-issue them to another agent; the delegate asks
// for its own token. The answer says so plainly.
func (s *Server) handleDelegationCreate(w http.ResponseWriter, r *http.Request) error {
	return errorf(KindInvalid, "token delegation to another agent is not supported by this gateway: the delegate agent requests its own intent token with its own API key; held calls are approved through /delegation/request and the console")
}
