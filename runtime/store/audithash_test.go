package store

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"
)

// TestAuditHashVector pins the encoding docs/store.md describes: changing
// it breaks every existing chain, so this vector must never change.
func TestAuditHashVector(t *testing.T) {
	rec := AuditRecord{
		Seq:            1,
		Time:           time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		RequestID:      "req-1",
		APIKeyID:       "abcdefghij12",
		Service:        "svc",
		User:           "ann@example.com",
		Agent:          "agent-1",
		Server:         "github",
		Tool:           "create_issue",
		Arguments:      json.RawMessage(`{"title":"hi"}`),
		Decision:       Allowed,
		Rule:           "allow-github",
		BundleRevision: "rev1",
		PlanHash:       "ph",
		Step:           0,
		Outcome:        "200",
		DurationMS:     12,
		PrevHash:       zeroHash,
	}
	const want = "8528036f72a6cac47ebc9d560ee9deb67980def6d6c92fa71ebd33695fe271af"
	if got := hex.EncodeToString(AuditHash(&rec)); got != want {
		t.Errorf("AuditHash(vector) = %s, want %s", got, want)
	}
	rec.Step = 1
	if got := hex.EncodeToString(AuditHash(&rec)); got == want {
		t.Errorf("AuditHash ignores Step")
	}
}

// TestAuditHashVectorV2 pins encoding v2, which every new record uses.
func TestAuditHashVectorV2(t *testing.T) {
	rec := AuditRecord{
		Seq:            2,
		Time:           time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		RequestID:      "req-1",
		APIKeyID:       "abcdefghij12",
		Service:        "svc",
		User:           "ann@example.com",
		Agent:          "agent-1",
		Server:         "github",
		Tool:           "create_issue",
		Arguments:      json.RawMessage(`null`),
		Decision:       Allowed,
		Rule:           "allow-github",
		BundleRevision: "rev1",
		Outcome:        "ok",
		DurationMS:     12,
		Phase:          PhaseOutcome,
		Concludes:      1,
		Client:         "claude-code",
		TraceID:        "4bf92f3577b34da6a3ce929d0e0e4736",
		ApprovalID:     "apr-1",
		PrevHash:       bytes.Repeat([]byte{0xab}, 32),
		HashVersion:    2,
	}
	const want = "7c006d2275e7918062a42fc4590ffb3c8d85b94324381b2013b69c728578ec9f"
	if got := hex.EncodeToString(AuditHash(&rec)); got != want {
		t.Errorf("AuditHash(v2 vector) = %s, want %s", got, want)
	}
	// Every v2 field is covered.
	for name, edit := range map[string]func(r *AuditRecord){
		"phase":       func(r *AuditRecord) { r.Phase = PhaseRequest },
		"concludes":   func(r *AuditRecord) { r.Concludes = 3 },
		"client":      func(r *AuditRecord) { r.Client = "claude-codf" },
		"trace_id":    func(r *AuditRecord) { r.TraceID = "" },
		"approval_id": func(r *AuditRecord) { r.ApprovalID = "apr-2" },
		// Moving bytes between adjacent fields changes the hash.
		"client/trace_id boundary": func(r *AuditRecord) { r.Client, r.TraceID = "claude-code4", r.TraceID[1:] },
	} {
		r := rec
		edit(&r)
		if got := hex.EncodeToString(AuditHash(&r)); got == want {
			t.Errorf("AuditHash ignores an edit of %s", name)
		}
	}
}

// A version-1 record cannot carry the fields v1 did not hash (else they
// could be edited unseen), and an unknown version hashes to nothing.
func TestAuditHashVersions(t *testing.T) {
	base := AuditRecord{Seq: 1, Decision: Allowed, Arguments: json.RawMessage(`null`), PrevHash: zeroHash}
	for _, tt := range []struct {
		name    string
		edit    func(r *AuditRecord)
		wantNil bool
	}{
		{"v0 (old export) plain", func(r *AuditRecord) {}, false},
		{"v1 plain", func(r *AuditRecord) { r.HashVersion = 1 }, false},
		{"v2 plain", func(r *AuditRecord) { r.HashVersion = 2 }, false},
		{"v1 with a phase", func(r *AuditRecord) { r.HashVersion, r.Phase = 1, PhaseRequest }, true},
		{"v1 concluding", func(r *AuditRecord) { r.HashVersion, r.Concludes = 1, 4 }, true},
		{"v0 with a client", func(r *AuditRecord) { r.Client = "x" }, true},
		{"v1 with a trace", func(r *AuditRecord) { r.HashVersion, r.TraceID = 1, "t" }, true},
		{"v1 with an approval", func(r *AuditRecord) { r.HashVersion, r.ApprovalID = 1, "a" }, true},
		{"v3 plain", func(r *AuditRecord) { r.HashVersion = 3 }, false},
		{"v3 with an issuer", func(r *AuditRecord) { r.HashVersion, r.AuthIssuer = 3, "https://idp" }, false},
		{"v2 with a user source", func(r *AuditRecord) { r.HashVersion, r.UserSource = 2, "access token" }, true},
		{"v1 with a subject", func(r *AuditRecord) { r.HashVersion, r.AuthSubject = 1, "s" }, true},
		{"v4", func(r *AuditRecord) { r.HashVersion = 4 }, true},
		{"v-1", func(r *AuditRecord) { r.HashVersion = -1 }, true},
	} {
		r := base
		tt.edit(&r)
		if got := AuditHash(&r); (got == nil) != tt.wantNil {
			t.Errorf("AuditHash(%s) = %x, want nil: %v", tt.name, got, tt.wantNil)
		}
	}
	v1, v2, v3 := base, base, base
	v1.HashVersion, v2.HashVersion, v3.HashVersion = 1, 2, 3
	if bytes.Equal(AuditHash(&v1), AuditHash(&v2)) || bytes.Equal(AuditHash(&v2), AuditHash(&v3)) {
		t.Errorf("the same record hashes alike under two versions")
	}
	// Each v3 field is hashed: changing one changes the hash.
	for _, edit := range []func(r *AuditRecord){
		func(r *AuditRecord) { r.UserSource = "X-Armoriq-User" },
		func(r *AuditRecord) { r.AuthIssuer = "https://idp" },
		func(r *AuditRecord) { r.AuthSubject = "sub" },
	} {
		r := v3
		edit(&r)
		if bytes.Equal(AuditHash(&r), AuditHash(&v3)) {
			t.Errorf("a v3 field is not hashed: %+v", r)
		}
	}
}

// TestAuditHashVectorV3 pins encoding v3, which every new record uses: v2
// plus who the call's identity came from (docs/store.md, "Version 3").
// The expected hash was computed from the table in the docs, not from
// AuditHash.
func TestAuditHashVectorV3(t *testing.T) {
	rec := AuditRecord{
		Seq: 2, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		RequestID: "req-1", APIKeyID: "abcdefghij12", Service: "svc", User: "ann@example.com",
		Agent: "agent-1", Server: "github", Tool: "create_issue", Arguments: json.RawMessage(`null`),
		Decision: Allowed, Rule: "allow-github", BundleRevision: "rev1", Outcome: "ok", DurationMS: 12,
		Phase: PhaseOutcome, Concludes: 1, Client: "claude-code", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		ApprovalID: "apr-1", UserSource: "access token", AuthIssuer: "https://idp.example.com", AuthSubject: "00u1abc",
		PrevHash: bytes.Repeat([]byte{0xab}, 32), HashVersion: 3,
	}
	const want = "901321bc1ceefc755a7f923d50792652575131fe14f24cd537c6aa512763ba8c"
	if got := hex.EncodeToString(AuditHash(&rec)); got != want {
		t.Errorf("AuditHash(v3 vector) = %s, want %s", got, want)
	}
	for name, edit := range map[string]func(r *AuditRecord){
		"user_source":  func(r *AuditRecord) { r.UserSource = "X-Armoriq-User" },
		"auth_issuer":  func(r *AuditRecord) { r.AuthIssuer = "https://idp.example.co" },
		"auth_subject": func(r *AuditRecord) { r.AuthSubject = "" },
		"issuer/subject boundary": func(r *AuditRecord) {
			r.AuthIssuer, r.AuthSubject = r.AuthIssuer+"0", r.AuthSubject[1:]
		},
	} {
		r := rec
		edit(&r)
		if got := hex.EncodeToString(AuditHash(&r)); got == want {
			t.Errorf("AuditHash ignores an edit of %s", name)
		}
	}
}
