package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// appendRecordPayload appends rec as a journal frame's payload: JSON that
// decodes to what json.Marshal(journalRecord{rec, string(rec.Arguments)})
// decodes to (FuzzRecordPayload checks it), written field by field.
// encoding/json's reflection was a fifth of a record's append on the call
// path; strings are escaped as encoding/json escapes them
// (AppendJSONString).
func appendRecordPayload(b []byte, rec *AuditRecord) ([]byte, error) {
	at := rec.Time.UTC() // as decodeFrame reads it back
	if y := at.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("record %d: time %v outside the years JSON can hold", rec.Seq, rec.Time)
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, rec.Seq, 10)
	b = append(b, `,"time":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendStringField(b, "request_id", rec.RequestID)
	b = appendStringField(b, "api_key_id", rec.APIKeyID)
	b = appendStringField(b, "service", rec.Service)
	b = appendStringField(b, "user", rec.User)
	b = appendStringField(b, "agent", rec.Agent)
	b = appendStringField(b, "server", rec.Server)
	b = appendStringField(b, "tool", rec.Tool)
	b = appendStringField(b, "decision", string(rec.Decision))
	b = appendStringField(b, "rule", rec.Rule)
	b = appendStringField(b, "bundle_revision", rec.BundleRevision)
	b = appendStringField(b, "plan_hash", rec.PlanHash)
	b = appendIntField(b, "step", rec.Step)
	b = appendStringField(b, "outcome", rec.Outcome)
	b = appendIntField(b, "duration_ms", rec.DurationMS)
	if rec.Phase != "" {
		b = appendStringField(b, "phase", string(rec.Phase))
	}
	if rec.Concludes != 0 {
		b = appendIntField(b, "concludes", rec.Concludes)
	}
	for _, f := range [...]struct{ name, v string }{
		{"client", rec.Client}, {"trace_id", rec.TraceID}, {"approval_id", rec.ApprovalID},
		{"user_source", rec.UserSource}, {"auth_issuer", rec.AuthIssuer}, {"auth_subject", rec.AuthSubject},
	} {
		if f.v != "" {
			b = appendStringField(b, f.name, f.v)
		}
	}
	b = appendBytesField(b, "prev_hash", rec.PrevHash)
	b = appendBytesField(b, "hash", rec.Hash)
	if rec.HashVersion != 0 {
		b = appendIntField(b, "hash_version", int64(rec.HashVersion))
	}
	if rec.OutcomeMissing {
		b = append(b, `,"outcome_missing":true`...)
	}
	if rec.ConcludedBy != 0 {
		b = appendIntField(b, "concluded_by", rec.ConcludedBy)
	}
	b = appendStringField(b, "arguments", string(rec.Arguments))
	return append(b, '}'), nil
}

func appendStringField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return AppendJSONString(b, v)
}

func appendIntField(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// appendBytesField appends v as encoding/json does: base64, or null for
// nil.
func appendBytesField(b []byte, name string, v []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}
