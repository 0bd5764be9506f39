package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// decodePayload decodes a frame's payload as decodeFrame does.
func decodePayload(t *testing.T, payload []byte) AuditRecord {
	t.Helper()
	var rec AuditRecord
	jr := journalRecord{AuditRecord: &rec}
	if err := json.Unmarshal(payload, &jr); err != nil {
		t.Fatalf("payload %s does not decode: %v", payload, err)
	}
	rec.Arguments = json.RawMessage(jr.Arguments)
	rec.Time = rec.Time.UTC() // as decodeFrame does
	return rec
}

// checkPayload: rec's payload decodes to what encoding/json's encoding of
// it decodes to.
func checkPayload(t *testing.T, rec *AuditRecord) {
	t.Helper()
	want, err := json.Marshal(journalRecord{AuditRecord: rec, Arguments: string(rec.Arguments)})
	got, gerr := appendRecordPayload(nil, rec)
	if err != nil && gerr == nil && (rec.Time.Year() < 0 || rec.Time.Year() > 9999) {
		t.Fatalf("encoding/json refuses time %v (%v); appendRecordPayload took it", rec.Time, err)
	}
	if err != nil && gerr == nil {
		return // a zone encoding/json refuses, which the payload writes in UTC
	}
	if (err != nil) != (gerr != nil) {
		t.Fatalf("encoding/json: %v; appendRecordPayload: %v", err, gerr)
	}
	if err != nil {
		return
	}
	if !json.Valid(got) {
		t.Fatalf("payload is not JSON: %q", got)
	}
	if w, g := decodePayload(t, want), decodePayload(t, got); !reflect.DeepEqual(w, g) {
		t.Fatalf("payloads decode apart:\nencoding/json %s\n-> %+v\nhand-written   %s\n-> %+v", want, w, got, g)
	}
}

func TestRecordPayload(t *testing.T) {
	full := &AuditRecord{
		Seq: 42, Time: time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC), RequestID: "req_0193", APIKeyID: "key_1",
		Service: "svc", User: "alice@example.com", Agent: "agent <1> & \"2\"", Server: "weather", Tool: "get\tweather\n",
		Arguments: json.RawMessage(`{"city":"Zürich","q":"<b>\u2028"}`), Decision: Allowed, Rule: "policy.allow[0]",
		BundleRevision: "rev", PlanHash: "sha256:ab", Step: 3, Outcome: "ok \x01\x7f", DurationMS: 12,
		Phase: PhaseRequest, Concludes: 7, Client: "claude", TraceID: "t", ApprovalID: "apv", UserSource: "api key",
		AuthIssuer: "https://issuer", AuthSubject: "sub", PrevHash: []byte{1, 2, 3}, Hash: []byte{}, HashVersion: 3,
		OutcomeMissing: true, ConcludedBy: 9,
	}
	for _, tc := range []struct {
		name string
		rec  *AuditRecord
	}{
		{"every field set", full},
		{"zero record", &AuditRecord{}},
		{"invalid UTF-8 in strings and arguments", &AuditRecord{Seq: 1, User: "a\xffb\xc3", Arguments: json.RawMessage("\xe2\x28\xa1")}},
		{"nil and empty hashes", &AuditRecord{Seq: 2, PrevHash: nil, Hash: []byte{}}},
		{"a time zone", &AuditRecord{Seq: 3, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600+1800))}},
		{"a year JSON cannot hold", &AuditRecord{Seq: 4, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkPayload(t, tc.rec) })
	}
}

// FuzzRecordPayload: whatever a record holds, its hand-written payload
// decodes to what encoding/json's would.
func FuzzRecordPayload(f *testing.F) {
	f.Add(int64(1), int64(1764888000123456789), "req_1", "alice@example.com", "get\"weather\\", "ok\n\x00", "\xff<&>", []byte(`{"a":1}`), []byte{1, 2}, 3, int64(0), "request")
	f.Add(int64(-5), int64(0), "", "", "", "", "", []byte(nil), []byte(nil), 0, int64(9), "")
	f.Fuzz(func(t *testing.T, seq, nanos int64, reqID, user, tool, outcome, client string, args, hash []byte, hv int, concludes int64, phase string) {
		checkPayload(t, &AuditRecord{
			Seq: seq, Time: time.Unix(0, nanos).UTC(), RequestID: reqID, User: user, Tool: tool, Outcome: outcome,
			Client: client, Arguments: args, Hash: hash, PrevHash: args, HashVersion: hv, Concludes: concludes,
			Phase: AuditPhase(phase), Decision: Decision(tool),
		})
	})
}
