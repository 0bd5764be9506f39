package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Decision is the gateway's verdict on one call.
type Decision string

// The decisions.
const (
	Allowed Decision = "allowed"
	Blocked Decision = "blocked"
	Held    Decision = "held"
	Failed  Decision = "failed"
)

// Valid reports whether d is one of the known decisions.
func (d Decision) Valid() bool {
	return d == Allowed || d == Blocked || d == Held || d == Failed
}

// AuditPhase says which part of a call a record is: "no audit, no action"
// writes an allowed call as two records, its request (committed before the
// upstream is called) and its outcome (when the call ends).
type AuditPhase string

// The phases.
const (
	// PhaseDecision is a one-shot decision that never reached an upstream:
	// blocked, held, refused. It is the zero value, and what every record
	// written before phases existed is.
	PhaseDecision AuditPhase = ""
	// PhaseRequest is an allowed call, committed before the upstream is
	// called. Its outcome comes in a later PhaseOutcome record.
	PhaseRequest AuditPhase = "request"
	// PhaseOutcome is the end of a request (ok or failed, duration);
	// Concludes names the request's Seq.
	PhaseOutcome AuditPhase = "outcome"
	// PhaseApproval is an approval granted or denied by a person.
	PhaseApproval AuditPhase = "approval"
)

// Valid reports whether p is one of the known phases.
func (p AuditPhase) Valid() bool {
	return p == PhaseDecision || p == PhaseRequest || p == PhaseOutcome || p == PhaseApproval
}

// AuditRecord is one record in the audit log. The store sets Seq,
// PrevHash, Hash and HashVersion; Time defaults to now. Arguments must
// already be redacted: the store keeps them byte for byte. Every field up
// to Hash is covered by the hash chain; OutcomeMissing and ConcludedBy are
// computed when records are read.
type AuditRecord struct {
	Seq            int64           `json:"seq"`
	Time           time.Time       `json:"time"`
	RequestID      string          `json:"request_id"`
	APIKeyID       string          `json:"api_key_id"`
	Service        string          `json:"service"` // service identity
	User           string          `json:"user"`    // end user
	Agent          string          `json:"agent"`
	Server         string          `json:"server"`
	Tool           string          `json:"tool"`
	Arguments      json.RawMessage `json:"arguments"`
	Decision       Decision        `json:"decision"`
	Rule           string          `json:"rule"` // matched rule
	BundleRevision string          `json:"bundle_revision"`
	PlanHash       string          `json:"plan_hash"`
	Step           int64           `json:"step"` // plan step index; meaningful when PlanHash is set
	Outcome        string          `json:"outcome"`
	DurationMS     int64           `json:"duration_ms"`
	Phase          AuditPhase      `json:"phase,omitempty"`
	Concludes      int64           `json:"concludes,omitempty"`   // outcome: the Seq of the request it ends
	Client         string          `json:"client,omitempty"`      // the client name the caller sent (recorded, never trusted)
	TraceID        string          `json:"trace_id,omitempty"`    // the call's trace
	ApprovalID     string          `json:"approval_id,omitempty"` // the approval the call used or decided
	// UserSource says where the end user came from: "token user_email",
	// a field of the call ("params.user_email", …), "X-Armoriq-User"
	// (asserted by a key allowed to), "access token" (an identity
	// provider's token), "token user_id" or "api key".
	UserSource string `json:"user_source,omitempty"`
	// AuthIssuer and AuthSubject name the OAuth access token a call was
	// made with: its issuer and subject (empty for an API key).
	AuthIssuer  string `json:"auth_issuer,omitempty"`
	AuthSubject string `json:"auth_subject,omitempty"`
	PrevHash    []byte `json:"prev_hash"`
	Hash        []byte `json:"hash"`
	// HashVersion is the encoding Hash was computed with: 1 (or 0, in an
	// export written before versions were recorded), 2 or 3. The store
	// sets it; a version-1 record has none of the fields from Phase to
	// AuthSubject, a version-2 record none from UserSource on.
	HashVersion int `json:"hash_version,omitempty"`

	// OutcomeMissing (not hashed, set when read): a request record that no
	// outcome record concludes: the call is still running, or the gateway
	// stopped (a crash) before its outcome was written.
	OutcomeMissing bool `json:"outcome_missing,omitempty"`
	// ConcludedBy (not hashed, set when read): on a request record, the Seq
	// of the outcome record that concludes it.
	ConcludedBy int64 `json:"concluded_by,omitempty"`
}

// AuditFilter selects audit records. Zero fields match everything.
type AuditFilter struct {
	User      string
	Server    string
	Tool      string
	Decision  Decision
	Phase     AuditPhase // only records of this phase; PhaseDecision (zero) matches every phase
	RequestID string     // only records of this request id (a request and its outcome share it)
	Since     time.Time  // Time >= Since
	Until     time.Time  // Time < Until
	AfterSeq  int64      // Seq > AfterSeq, for paging
	Limit     int        // ListAudit: 0 means 100, at most 1000; ExportAudit: 0 means all
	// NoWait reads what the database holds now: records still on their
	// way from a SQLite store's audit journal (up to 100 ms of them) are
	// not waited for. For followers that poll (the audit stream), which
	// would otherwise make every poll an early, smaller apply.
	NoWait bool
}

// ProblemKind names what VerifyAudit found wrong.
type ProblemKind string

// The problems VerifyAudit reports.
const (
	// Edited: the record's hash does not match its fields.
	Edited ProblemKind = "edited"
	// Deleted: a sequence number is missing (Seq is the first missing one).
	Deleted ProblemKind = "deleted"
	// Inserted: a record that does not belong to the chain: it does not
	// link to its predecessor, its successor does not link to it, or it
	// lies past the chain head.
	Inserted ProblemKind = "inserted"
)

// VerifyReport is the result of VerifyAudit.
type VerifyReport struct {
	Records  int64  // records checked
	HeadSeq  int64  // the chain head's sequence number
	HeadHash []byte // the chain head's hash: anchor it elsewhere to detect a full rewrite
	Problem  *AuditProblem
	// PendingOutcomes counts the request records (among those checked)
	// that no outcome record concludes: calls still running, or cut off by
	// a crash. Not a chain problem; FirstPending is the lowest such Seq.
	PendingOutcomes int64
	FirstPending    int64
}

// OK reports whether the chain verified.
func (r VerifyReport) OK() bool { return r.Problem == nil }

// AuditProblem is the first broken link VerifyAudit found.
type AuditProblem struct {
	Seq    int64
	Kind   ProblemKind
	Detail string
}

func (p *AuditProblem) String() string {
	return fmt.Sprintf("record %d %s: %s", p.Seq, p.Kind, p.Detail)
}

// The hash encodings. Version 1 is what records written before phases
// existed were hashed with; every new record uses auditHashVersion.
const (
	auditHashLabelV1 = "armoriq audit v1"
	auditHashLabelV2 = "armoriq audit v2"
	auditHashLabelV3 = "armoriq audit v3"
	auditHashVersion = 3
)

// zeroHash is the PrevHash of the first record.
var zeroHash = make([]byte, sha256.Size)

// AuditHash returns the hash of rec: SHA-256 over the canonical encoding of
// every hashed field, PrevHash included, in the encoding rec.HashVersion
// names (see docs/store.md). It returns nil, which matches no stored hash,
// when the version is unknown or a record carries a field that its version
// did not have.
func AuditHash(rec *AuditRecord) []byte {
	bp := encodingPool.Get().(*[]byte)
	defer putEncoding(bp)
	enc, ok := appendAuditEncoding((*bp)[:0], rec)
	*bp = enc
	if !ok {
		return nil
	}
	sum := sha256.Sum256(enc)
	return sum[:]
}

// encodingPool holds the buffers AuditHash encodes records into: the group
// writer and VerifyAudit hash one record after another.
var encodingPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putEncoding returns a buffer to the pool unless a huge record (arguments
// of megabytes) grew it: the pool should not pin that memory.
func putEncoding(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		encodingPool.Put(bp)
	}
}

// appendAuditEncoding appends to b the canonical encoding of rec that
// AuditHash hashes: the version's label, then every hashed field in a fixed
// order, numbers as 8 bytes big-endian, bytes and strings as a 4-byte
// big-endian length and the bytes. It reports false, appending nothing,
// when the version is unknown or a record carries a field that its version
// did not have. The bytes must never change: every stored hash is over
// them (TestAuditEncodingGolden pins them).
func appendAuditEncoding(b []byte, rec *AuditRecord) ([]byte, bool) {
	label := auditHashLabelV1
	v3fields := rec.UserSource != "" || rec.AuthIssuer != "" || rec.AuthSubject != ""
	switch rec.HashVersion {
	case 0, 1:
		if rec.Phase != "" || rec.Concludes != 0 || rec.Client != "" || rec.TraceID != "" || rec.ApprovalID != "" || v3fields {
			return b, false
		}
	case 2:
		if v3fields {
			return b, false
		}
		label = auditHashLabelV2
	case 3:
		label = auditHashLabelV3
	default:
		return b, false
	}
	b = appendField(b, label)
	b = binary.BigEndian.AppendUint64(b, uint64(rec.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(rec.Time.UnixNano()))
	b = appendField(b, rec.RequestID)
	b = appendField(b, rec.APIKeyID)
	b = appendField(b, rec.Service)
	b = appendField(b, rec.User)
	b = appendField(b, rec.Agent)
	b = appendField(b, rec.Server)
	b = appendField(b, rec.Tool)
	b = appendField(b, rec.Arguments)
	b = appendField(b, rec.Decision)
	b = appendField(b, rec.Rule)
	b = appendField(b, rec.BundleRevision)
	b = appendField(b, rec.PlanHash)
	b = binary.BigEndian.AppendUint64(b, uint64(rec.Step))
	b = appendField(b, rec.Outcome)
	b = binary.BigEndian.AppendUint64(b, uint64(rec.DurationMS))
	if label != auditHashLabelV1 {
		b = appendField(b, rec.Phase)
		b = binary.BigEndian.AppendUint64(b, uint64(rec.Concludes))
		b = appendField(b, rec.Client)
		b = appendField(b, rec.TraceID)
		b = appendField(b, rec.ApprovalID)
	}
	if label == auditHashLabelV3 {
		b = appendField(b, rec.UserSource)
		b = appendField(b, rec.AuthIssuer)
		b = appendField(b, rec.AuthSubject)
	}
	return appendField(b, rec.PrevHash), true
}

// appendField appends s with its length, as 4 bytes big-endian.
func appendField[S ~string | ~[]byte](b []byte, s S) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// verifier walks records in sequence order and remembers the first problem.
type verifier struct {
	report   VerifyReport
	prev     *AuditRecord // last record seen
	expected int64        // next sequence number
	// pending holds the requests seen that no outcome has concluded yet.
	// Outcomes follow their requests closely, so it stays small but for
	// the requests a crash cut off.
	pending map[int64]struct{}
}

func newVerifier(headSeq int64, headHash []byte) *verifier {
	return &verifier{
		report:   VerifyReport{HeadSeq: headSeq, HeadHash: headHash},
		expected: 1,
		pending:  make(map[int64]struct{}),
	}
}

func (v *verifier) fail(seq int64, kind ProblemKind, format string, args ...any) {
	v.report.Problem = &AuditProblem{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// next checks one record; it returns false once a problem is found.
func (v *verifier) next(rec *AuditRecord) bool {
	v.report.Records++
	prevHash := zeroHash
	if v.prev != nil {
		prevHash = v.prev.Hash
	}
	switch {
	case rec.Seq > v.report.HeadSeq:
		v.fail(rec.Seq, Inserted, "past the chain head (seq %d)", v.report.HeadSeq)
	case rec.Seq != v.expected:
		v.fail(v.expected, Deleted, "records %d to %d are missing", v.expected, rec.Seq-1)
	case rec.HashVersion < 1 || rec.HashVersion > auditHashVersion:
		v.fail(rec.Seq, Edited, "unknown hash version %d", rec.HashVersion)
	case !bytes.Equal(AuditHash(rec), rec.Hash):
		v.fail(rec.Seq, Edited, "its fields do not match its hash")
	case !bytes.Equal(rec.PrevHash, prevHash):
		if v.prev == nil {
			v.fail(rec.Seq, Inserted, "the first record does not start the chain")
		} else {
			// Both records hash correctly but do not link: the earlier one
			// was rewritten or slipped in, with its hash recomputed.
			v.fail(v.prev.Seq, Inserted, "record %d does not link to it", rec.Seq)
		}
	default:
		switch rec.Phase {
		case PhaseRequest:
			v.pending[rec.Seq] = struct{}{}
		case PhaseOutcome:
			delete(v.pending, rec.Concludes)
		}
		v.prev = rec
		v.expected++
		return true
	}
	return false
}

// done checks the end of the chain against the head.
func (v *verifier) done() VerifyReport {
	v.report.PendingOutcomes = int64(len(v.pending))
	for seq := range v.pending {
		if v.report.FirstPending == 0 || seq < v.report.FirstPending {
			v.report.FirstPending = seq
		}
	}
	if v.report.Problem != nil {
		return v.report
	}
	last, lastHash := int64(0), zeroHash
	if v.prev != nil {
		last, lastHash = v.prev.Seq, v.prev.Hash
	}
	switch {
	case last < v.report.HeadSeq:
		v.fail(last+1, Deleted, "records %d to %d are missing", last+1, v.report.HeadSeq)
	case !bytes.Equal(lastHash, v.report.HeadHash):
		v.fail(last, Inserted, "the last record does not match the chain head")
	}
	return v.report
}
