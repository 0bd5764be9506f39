package console

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
)

// TestTemplatesRender renders every page with representative data, so a
// template mistake fails here and not in front of an operator.
func TestTemplatesRender(t *testing.T) {
	c := &Console{prefix: "/console", now: time.Now}
	if c.pages != nil {
		t.Fatal("the pages are parsed before the first page is served")
	}
	if _, err := c.page("error"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	s := &session{Identity: Identity{KeyID: "k1", Name: "root", Role: store.RoleAdmin}, CSRF: "tok"}
	ap := store.Approval{ID: "apv_x", State: store.ApprovalPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour), Server: "pay", Tool: "transfer",
		Arguments: json.RawMessage(`{"amount":5000}`), User: "eve@example.com", Rule: "big", Reason: "why", RequesterKeyID: "agent"}
	rec := store.AuditRecord{Seq: 3, Time: now, Decision: store.Held, Server: "pay", Tool: "transfer", Arguments: json.RawMessage(`{}`), Hash: []byte{1, 2}}
	b := &bundle.Bundle{Manifest: bundle.Manifest{Revision: "r1", Sources: []bundle.Source{{Path: "armoriq.yaml", SHA256: "abc"}}},
		Policy:  bundle.Policy{Rules: []bundle.Rule{{ID: "big", Effect: "hold", Tools: []string{"pay/transfer"}, Approvers: []string{"bob@example.com"}, Pos: bundle.Pos{File: "armoriq.yaml", Line: 9}}}},
		Servers: []bundle.Server{{ID: "pay", Transport: "http", URL: "http://x"}}}
	pages := map[string]any{
		"error":      nil,
		"login":      map[string]string{"CSRF": "x", "Next": "/console/"},
		"login_wait": map[string]string{"UserCode": "BCDF-GHJK"},
		"overview": Overview{Revision: "r1", Sources: b.Manifest.Sources, Decisions: map[store.Decision]int{store.Held: 2},
			Servers: []ServerState{{ID: "pay", State: "up"}}, Reconciler: &ReconcilerStatus{State: "Ready", At: now}},
		"approvals": map[string]any{"List": []store.Approval{ap}, "State": ""},
		"approval":  map[string]any{"A": ap, "Trail": []store.AuditRecord{rec}},
		"keys":      map[string]any{"List": []store.APIKey{{ID: "k1", Name: "root", Role: store.RoleAdmin, CreatedAt: now}}, "Created": map[string]string{"Key": "ak_live_x", "ID": "k2", "Role": "agent"}},
		"audit":     map[string]any{"Form": auditForm{User: "eve"}, "Records": []store.AuditRecord{rec}, "Next": int64(3), "Verify": verifyResult{At: now, Report: store.VerifyReport{Records: 3}}},
		"record":    rec,
		"policy":    b,
		"device":    map[string]any{"List": []store.DeviceLogin{{UserCode: "BCDF-GHJK", State: store.DevicePending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}}, "Code": ""},
	}
	for name, data := range pages {
		var out strings.Builder
		if err := c.pages[name].Execute(&out, page{Title: name, S: s, Prefix: "/console", Data: data, Now: now}); err != nil {
			t.Errorf("page %s: %v", name, err)
		}
	}
	if len(pages) != len(c.pages) {
		t.Errorf("rendered %d pages, the console has %d", len(pages), len(c.pages))
	}
}

func FuzzParseAuditForm(f *testing.F) {
	f.Add("eve@example.com", "held", "2026-05-01T10:00", "2026-05-01T10:00:00Z", "12")
	f.Add("", "maybe", "yesterday", "", "-1")
	f.Fuzz(func(t *testing.T, user, decision, since, until, after string) {
		q := url.Values{"user": {user}, "decision": {decision}, "since": {since}, "until": {until}, "after": {after}}
		form, af, err := parseAuditForm(q)
		if err != nil {
			return
		}
		if af.Decision != "" && !af.Decision.Valid() || af.AfterSeq < 0 || form.Decision != decision {
			t.Fatalf("parseAuditForm accepted %v as %+v", q, af)
		}
	})
}
