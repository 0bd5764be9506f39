package gateway

import (
	"context"
	"encoding/json"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
)

// AuditSource reads st's committed audit records for the audit stream
// (telemetry.AuditStream), each as the JSON GET /v1/audit/export writes,
// without the fields computed when records are read (outcome_missing,
// concluded_by): the stream carries records as they were committed. It
// reads what the database holds (NoWait): records still in a SQLite
// store's audit journal come at a later poll, and polls do not force the
// journal's applier into small transactions.
func AuditSource(st store.Store) telemetry.AuditSource { return storeSource{st} }

type storeSource struct{ st store.Store }

func (s storeSource) AuditAfter(ctx context.Context, seq int64, limit int) ([]telemetry.AuditEntry, error) {
	recs, err := s.st.ListAudit(ctx, store.AuditFilter{AfterSeq: seq, Limit: min(limit, 1000), NoWait: true})
	if err != nil {
		return nil, err
	}
	out := make([]telemetry.AuditEntry, len(recs))
	for i, r := range recs {
		r.OutcomeMissing, r.ConcludedBy = false, 0
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		out[i] = telemetry.AuditEntry{Seq: r.Seq, Time: r.Time, JSON: b}
	}
	return out, nil
}
