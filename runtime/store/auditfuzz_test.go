package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/armoriq/controlplane/runtime/store/storetest"
)

// FuzzAppendAudit: whatever text and arguments a record carries, the store
// either refuses it with ErrInvalid before writing anything, or stores it
// exactly: read back byte for byte, the chain still verifying. Runs on
// SQLite, and on PostgreSQL too when $ARMORIQ_TEST_POSTGRES is set
// (PostgreSQL is the engine that refuses NUL and invalid UTF-8).
func FuzzAppendAudit(f *testing.F) {
	f.Add("req-1", "alice@example.com", "claude-code", "trace", "ok", []byte(`{"a":1}`))
	f.Add("\xff", "bob\x00", "", "", "", []byte(`null`))
	f.Add("r", "u", "c\x01\x7f\u2028", "\xed\xa0\x80", "failed: \x00", []byte(`{"a":"\xff"}`))
	f.Add("", "", "", "", "", []byte(``))
	f.Add("r", "ü", "例え", "\U0010FFFF", "x", []byte(`"\u0000"`))
	f.Add("r", "u", "c", "t", "o", []byte(`{"a":1}{`))
	ctx := context.Background()
	stores := []Store{openFuzz(f, "sqlite:"+filepath.Join(f.TempDir(), "armoriq.db"))}
	if os.Getenv(storetest.PostgresEnv) != "" {
		stores = append(stores, openFuzz(f, storetest.PostgresDSN(f)))
	}
	f.Fuzz(func(t *testing.T, requestID, user, client, traceID, outcome string, args []byte) {
		for _, s := range stores {
			before, err := s.VerifyAudit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rec := AuditRecord{RequestID: requestID, User: user, Client: client, TraceID: traceID, Outcome: outcome,
				Arguments: args, Decision: Allowed, Phase: PhaseRequest}
			seq, err := s.AppendAudit(ctx, rec)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("AppendAudit: %v, want success or ErrInvalid", err)
				}
				if after, _ := s.VerifyAudit(ctx); after.HeadSeq != before.HeadSeq {
					t.Fatalf("a refused record moved the head from %d to %d", before.HeadSeq, after.HeadSeq)
				}
				continue
			}
			got, err := s.ListAudit(ctx, AuditFilter{AfterSeq: seq - 1, Limit: 1})
			if err != nil || len(got) != 1 {
				t.Fatalf("ListAudit(seq %d) = %v, %v", seq, got, err)
			}
			g := got[0]
			if g.RequestID != requestID || g.User != user || g.Client != client || g.TraceID != traceID || g.Outcome != outcome ||
				!bytes.Equal(g.Arguments, rawJSON(args)) || !bytes.Equal(AuditHash(&g), g.Hash) {
				t.Fatalf("stored %+v, read back %+v", rec, g)
			}
			if !json.Valid(g.Arguments) {
				t.Fatalf("stored arguments %q are not JSON", g.Arguments)
			}
			if rep, err := s.VerifyAudit(ctx); err != nil || !rep.OK() {
				t.Fatalf("VerifyAudit after appending %+v: %v, %v", rec, rep.Problem, err)
			}
		}
	})
}

func openFuzz(f *testing.F, dsn string) Store {
	s, err := Open(context.Background(), dsn)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	return s
}
