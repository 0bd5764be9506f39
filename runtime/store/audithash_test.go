package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestAuditHashVector pins the encoding docs/store.md describes: changing
// it breaks every existing chain, so this vector must never change.
func TestAuditHashVector(t *testing.T) {
	rec := vectorV1()
	const want = "8528036f72a6cac47ebc9d560ee9deb67980def6d6c92fa71ebd33695fe271af"
	if got := hex.EncodeToString(AuditHash(&rec)); got != want {
		t.Errorf("AuditHash(vector) = %s, want %s", got, want)
	}
	rec.Step = 1
	if got := hex.EncodeToString(AuditHash(&rec)); got == want {
		t.Errorf("AuditHash ignores Step")
	}
}

// vectorV1 is the record of the version-1 hash vector (docs/store.md).
func vectorV1() AuditRecord {
	return AuditRecord{
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
}

// TestAuditHashVectorV2 pins encoding v2, which every new record uses.
func TestAuditHashVectorV2(t *testing.T) {
	rec := vectorV2()
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

// vectorV2 is the record of the version-2 hash vector (docs/store.md).
func vectorV2() AuditRecord {
	return AuditRecord{
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
	rec := vectorV3()
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

// vectorV3 is the record of the version-3 hash vector (docs/store.md).
func vectorV3() AuditRecord {
	return AuditRecord{
		Seq: 2, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		RequestID: "req-1", APIKeyID: "abcdefghij12", Service: "svc", User: "ann@example.com",
		Agent: "agent-1", Server: "github", Tool: "create_issue", Arguments: json.RawMessage(`null`),
		Decision: Allowed, Rule: "allow-github", BundleRevision: "rev1", Outcome: "ok", DurationMS: 12,
		Phase: PhaseOutcome, Concludes: 1, Client: "claude-code", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		ApprovalID: "apr-1", UserSource: "access token", AuthIssuer: "https://idp.example.com", AuthSubject: "00u1abc",
		PrevHash: bytes.Repeat([]byte{0xab}, 32), HashVersion: 3,
	}
}

var update = flag.Bool("update", false, "rewrite testdata/audit_encoding.golden")

// TestAuditEncodingGolden pins the bytes AuditHash hashes for the two
// vectors, in hex, 32 bytes a line: a change shows where the encoding moved,
// not only that a hash differs. Never update it for a released encoding.
func TestAuditEncodingGolden(t *testing.T) {
	var got strings.Builder
	for _, v := range []struct {
		name string
		rec  AuditRecord
	}{{"v1", vectorV1()}, {"v2", vectorV2()}, {"v3", vectorV3()}} {
		enc, ok := appendAuditEncoding(nil, &v.rec)
		if !ok {
			t.Fatalf("appendAuditEncoding(%s vector) refused the record", v.name)
		}
		fmt.Fprintf(&got, "# %s vector: %d bytes, SHA-256 %x\n", v.name, len(enc), sha256.Sum256(enc))
		for len(enc) > 0 {
			n := min(32, len(enc))
			fmt.Fprintf(&got, "%x\n", enc[:n])
			enc = enc[n:]
		}
	}
	const path = "testdata/audit_encoding.golden"
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the golden file (go test -run TestAuditEncodingGolden -update writes it): %v", err)
	}
	if got.String() != string(want) {
		t.Errorf("encoding of the hash vectors changed:\ngot:\n%s\nwant:\n%s", got.String(), want)
	}
}

// streamAuditHash is AuditHash as it was first written, field by field
// into the hash: FuzzAuditEncoding holds the buffered encoding to it.
func streamAuditHash(rec *AuditRecord) []byte {
	label := auditHashLabelV1
	v3fields := rec.UserSource != "" || rec.AuthIssuer != "" || rec.AuthSubject != ""
	switch rec.HashVersion {
	case 0, 1:
		if rec.Phase != "" || rec.Concludes != 0 || rec.Client != "" || rec.TraceID != "" || rec.ApprovalID != "" || v3fields {
			return nil
		}
	case 2:
		if v3fields {
			return nil
		}
		label = auditHashLabelV2
	case 3:
		label = auditHashLabelV3
	default:
		return nil
	}
	v2 := label != auditHashLabelV1
	h := sha256.New()
	var buf [8]byte
	str := func(s []byte) {
		binary.BigEndian.PutUint32(buf[:4], uint32(len(s)))
		h.Write(buf[:4])
		h.Write(s)
	}
	num := func(n int64) {
		binary.BigEndian.PutUint64(buf[:], uint64(n))
		h.Write(buf[:])
	}
	str([]byte(label))
	num(rec.Seq)
	num(rec.Time.UnixNano())
	for _, s := range []string{rec.RequestID, rec.APIKeyID, rec.Service, rec.User, rec.Agent, rec.Server, rec.Tool} {
		str([]byte(s))
	}
	str(rec.Arguments)
	for _, s := range []string{string(rec.Decision), rec.Rule, rec.BundleRevision, rec.PlanHash} {
		str([]byte(s))
	}
	num(rec.Step)
	str([]byte(rec.Outcome))
	num(rec.DurationMS)
	if v2 {
		str([]byte(rec.Phase))
		num(rec.Concludes)
		str([]byte(rec.Client))
		str([]byte(rec.TraceID))
		str([]byte(rec.ApprovalID))
	}
	if label == auditHashLabelV3 {
		str([]byte(rec.UserSource))
		str([]byte(rec.AuthIssuer))
		str([]byte(rec.AuthSubject))
	}
	str(rec.PrevHash)
	return h.Sum(nil)
}

// FuzzAuditEncoding: for any record, AuditHash equals the field-by-field
// hash it replaced, so every stored chain still verifies.
func FuzzAuditEncoding(f *testing.F) {
	f.Add(int64(1), int64(0), "req", "user", `{"a":1}`, "request", int64(0), "client", int64(2), []byte{1, 2})
	f.Add(int64(9), int64(-5), "", "", ``, "", int64(3), "", int64(1), []byte(nil))
	f.Add(int64(-1), int64(1<<62), "x\x00y", "é", `null`, "outcome", int64(7), "", int64(3), zeroHash)
	f.Fuzz(func(t *testing.T, seq, ns int64, reqID, user, args, phase string, concludes int64, client string, version int64, prev []byte) {
		rec := AuditRecord{
			Seq: seq, Time: time.Unix(0, ns), RequestID: reqID, APIKeyID: reqID + "k", Service: user + "s", User: user,
			Agent: client, Server: phase, Tool: reqID, Arguments: json.RawMessage(args), Decision: Decision(phase),
			Rule: user, BundleRevision: client, PlanHash: args, Step: concludes, Outcome: phase, DurationMS: ns,
			Phase: AuditPhase(phase), Concludes: concludes, Client: client, TraceID: user, ApprovalID: reqID,
			UserSource: reqID, AuthIssuer: user, AuthSubject: client, PrevHash: prev, HashVersion: int(version),
		}
		v2 := rec
		v2.UserSource, v2.AuthIssuer, v2.AuthSubject = "", "", ""
		v1 := AuditRecord{Seq: seq, Time: rec.Time, User: user, Arguments: rec.Arguments, PrevHash: prev, HashVersion: int(version % 4)}
		for _, r := range []AuditRecord{rec, v2, v1} {
			if got, want := AuditHash(&r), streamAuditHash(&r); !bytes.Equal(got, want) {
				t.Fatalf("AuditHash(%+v) = %x, the field-by-field hash is %x", r, got, want)
			}
		}
	})
}
