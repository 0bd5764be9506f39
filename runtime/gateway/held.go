package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/armoriq/controlplane/runtime/approval"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
)

// A held call becomes a pending approval bound to exactly that call; the
// same call retried after a person approved it runs once. Both call paths
// (/invoke and /mcp) come here from one place each, when the policy's
// decision is hold.

// approvalParam is the parameter the SDKs retry an approved call with;
// metaApproval is the _meta key an MCP client may use instead.
const (
	approvalParam = "_delegation_id"
	metaApproval  = "armoriq/approval"
)

// takeApprovalID returns args without the approval parameter, and the id it
// held ("" if none), so that the call compares equal to its planned step.
func takeApprovalID(args map[string]any) (map[string]any, string) {
	v, ok := args[approvalParam]
	if !ok {
		return args, ""
	}
	out := make(map[string]any, len(args)-1)
	for k, x := range args {
		if k != approvalParam {
			out[k] = x
		}
	}
	id, _ := v.(string)
	if id == "" {
		id = "invalid"
	}
	return out, id
}

// heldCall is a call the policy held, as the approval binds it.
type heldCall struct {
	tokenID, planHash, merkleRoot string
	step                          int64
	server, tool                  string
	args                          map[string]any
	user                          string
	approvalID                    string // the approval the caller presents, if any
}

// hold runs a held call's approval: nil when an approval of exactly this
// call was granted and is now used up (the call proceeds, once), else the
// answer: held (pending, with the approval id) or refused (denied,
// expired, used, or not this call's approval).
func (s *Server) hold(ctx context.Context, inv *invocation, d policy.Decision, h heldCall) error {
	c := callerFrom(ctx)
	if c.KeyID == "" {
		c = caller{KeyID: inv.rec.APIKeyID, Name: inv.rec.Service}
	}
	call := approval.Call{
		TokenID: h.tokenID, PlanHash: h.planHash, Step: h.step, Server: h.server, Tool: h.tool,
		Args: h.args, Redacted: inv.rec.Arguments, User: h.user, Agent: inv.rec.Agent,
		Rule: d.RuleID, Reason: d.Reason, Approvers: d.Approvers,
		RequesterKeyID: c.KeyID, Requester: c.Name, RequestID: inv.rec.RequestID,
	}
	svc := s.human.approvals
	id := h.approvalID
	if id == "" {
		a, created, err := svc.Request(ctx, call)
		if err != nil {
			return approvalError(err)
		}
		if created {
			s.notifyApproval("requested", a, s.publicLink("/console/approvals/"+a.ID))
		}
		if a.State == store.ApprovalPending {
			return s.heldAnswer(inv, d, h, a)
		}
		id = a.ID // approved and unused: this is the retry it waited for
	} else if !approval.ValidID(id) {
		return s.refuse(inv, d, "", "%s %q is not an approval id", approvalParam, id)
	}
	a, err := svc.Claim(ctx, id, call)
	inv.rec.ApprovalID = id
	switch {
	case err == nil:
		s.log.Info("approved call proceeds", "approval", id, "server", h.server, "tool", h.tool, "by", a.DecidedBy)
		s.notifyApproval("executed", a, "")
		return nil
	case errors.Is(err, approval.ErrPending):
		return s.heldAnswer(inv, d, h, a)
	case errors.Is(err, approval.ErrDenied), errors.Is(err, approval.ErrExpired), errors.Is(err, approval.ErrExecuted),
		errors.Is(err, approval.ErrMismatch), errors.Is(err, approval.ErrNotFound):
		return s.refuse(inv, d, id, "%v", err)
	}
	return approvalError(err)
}

// heldAnswer is the 403 hold of a call waiting for approval a: the SDKs
// read its delegation_context.
func (s *Server) heldAnswer(inv *invocation, d policy.Decision, h heldCall, a store.Approval) error {
	inv.rec.ApprovalID = a.ID
	planID := ""
	if len(h.planHash) >= 24 {
		planID = "plan_" + h.planHash[:24]
	}
	approvers := a.Approvers
	if approvers == nil {
		approvers = []string{}
	}
	msg := d.Reason + " (approval " + a.ID + " is pending: once it is approved, retry the same call with " + approvalParam + " or _meta[\"" + metaApproval + "\"])"
	return &Error{Kind: KindPolicyHold, Message: msg, Enforcement: &Enforcement{
		Action: "hold", Reason: d.Reason,
		Metadata: map[string]any{"rule": d.RuleID, "requiresApproval": true, "approval_id": a.ID, "approvers": approvers},
		DelegationContext: map[string]any{
			"delegationId": a.ID, "approval_id": a.ID, "status": string(a.State), "expiresAt": a.ExpiresAt.UTC().Format(time.RFC3339),
			"planId": planID, "intentReference": h.tokenID, "merkleRoot": h.merkleRoot,
			"request_id": inv.rec.RequestID, "intent_reference": h.tokenID, "plan_hash": h.planHash, "step": h.step,
			"server": h.server, "tool": h.tool, "user": h.user,
			"approvalUrl": s.publicLink("/console/approvals/" + a.ID),
		},
	}}
}

// refuse blocks a held call whose approval does not let it run.
func (s *Server) refuse(inv *invocation, d policy.Decision, id, format string, args ...any) error {
	e := errorf(KindPolicyBlocked, format, args...)
	md := map[string]any{"rule": d.RuleID, "server": inv.rec.Server, "tool": inv.rec.Tool, "request_id": inv.rec.RequestID}
	if id != "" {
		md["approval_id"] = id
	}
	e.Enforcement = &Enforcement{Action: "block", Reason: e.Message, Metadata: md}
	return e
}

// publicLink is an absolute link when the gateway knows its public URL,
// else a path.
func (s *Server) publicLink(path string) string {
	return s.human.cfg.PublicURL + path
}
