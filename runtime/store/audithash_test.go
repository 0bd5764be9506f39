package store

import (
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
