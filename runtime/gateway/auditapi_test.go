package gateway

import (
	"testing"

	"github.com/armoriq/controlplane/runtime/store"
)

// The admin API filters by phase and request id, shows which request has
// no outcome, and verify reports the requests without one.
func TestAuditAPIPhases(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
		t.Fatalf("call: status %d: %v", resp.StatusCode, out)
	}
	reqs := g.records(store.AuditFilter{Phase: store.PhaseRequest})
	if len(reqs) != 1 {
		t.Fatalf("request records = %+v, want 1", reqs)
	}
	var list struct {
		Records []store.AuditRecord `json:"records"`
	}
	g.do("GET", "/v1/audit?phase=request", g.adminKey, nil, 200, &list)
	if len(list.Records) != 1 || list.Records[0].Phase != store.PhaseRequest || list.Records[0].ConcludedBy == 0 || list.Records[0].OutcomeMissing {
		t.Errorf("GET /v1/audit?phase=request = %+v, want the one request, concluded", list.Records)
	}
	g.do("GET", "/v1/audit?request_id="+reqs[0].RequestID, g.adminKey, nil, 200, &list)
	if len(list.Records) != 2 {
		t.Errorf("GET /v1/audit?request_id=%s = %d records, want the request and its outcome", reqs[0].RequestID, len(list.Records))
	}
	g.do("GET", "/v1/audit?phase=done", g.adminKey, nil, 400, nil)

	// A request cut off by a crash: appended as the gateway would before
	// calling the upstream, with no outcome after it.
	cut := reqs[0]
	cut.RequestID = "req-cut"
	seq, err := g.store.AppendAudit(t.Context(), cut)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK              bool  `json:"ok"`
		PendingOutcomes int64 `json:"pending_outcomes"`
		FirstPending    int64 `json:"first_pending"`
	}
	g.do("GET", "/v1/audit/verify", g.adminKey, nil, 200, &rep)
	if !rep.OK || rep.PendingOutcomes != 1 || rep.FirstPending != seq {
		t.Errorf("GET /v1/audit/verify = %+v, want ok with 1 pending, #%d", rep, seq)
	}
	g.do("GET", "/v1/audit?request_id=req-cut", g.adminKey, nil, 200, &list)
	if len(list.Records) != 1 || !list.Records[0].OutcomeMissing {
		t.Errorf("the cut-off request as listed: %+v, want outcome_missing", list.Records)
	}
}
