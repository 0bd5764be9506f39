package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStore is the one suite both engines must pass.
func testStore(t *testing.T, e engine) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e engine)
	}{
		{"Migrations", testMigrations},
		{"APIKeys", testAPIKeys},
		{"APIKeyHashNotReversible", testAPIKeyHashNotReversible},
		{"SigningKeys", testSigningKeys},
		{"SigningKeyBootstrapRace", testSigningKeyBootstrapRace},
		{"Tokens", testTokens},
		{"Bundles", testBundles},
		{"AuditConcurrentAppends", testAuditConcurrent},
		{"AuditTamper", testAuditTamper},
		{"AuditListExport", testAuditListExport},
		{"AuditSince", testAuditSince},
		{"AuditDurable", testAuditDurable},
		{"AuditCloseFlushes", testAuditCloseFlushes},
		{"Revocations", testRevocations},
		{"AuditPhases", testAuditPhases},
		{"AuditRefusesUnstorable", testAuditRefusesUnstorable},
		{"AuditMigrateV1", testAuditMigrateV1},
		{"AuditMigrateRowid", testAuditMigrateRowid},
		{"AuditCloseCommitsQueuedOutcomes", testAuditCloseCommitsQueuedOutcomes},
		{"AuditBatchFailure", testAuditBatchFailure},
		{"AuditOutcomeLingers", testAuditOutcomeLingers},
		{"AuditAppendersCancel", testAuditAppendersCancel},
		{"AuditDetachedOutcome", testAuditDetachedOutcome},
		{"AuditLingerClock", testAuditLingerClock},
		{"AuditSlowStoreBoundsLeaders", testAuditSlowStoreBoundsLeaders},
		{"RevokedSince", testRevokedSince},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, e) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// raw gives a test direct SQL access, to tamper with what a Store wrote.
func raw(t *testing.T, s Store, query string, args ...any) {
	t.Helper()
	ss := s.(*sqlStore)
	if _, err := ss.w.Exec(ss.q(query), args...); err != nil {
		t.Fatalf("raw SQL %q: %v", query, err)
	}
}

func testMigrations(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	// Several processes starting at once on an empty database.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(ctx, dsn)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Open #%d: %v", i, err)
		}
	}
	s := open(t, dsn)
	var n int
	ss := s.(*sqlStore)
	if err := ss.r.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(migrations))
	}
}

func testAPIKeys(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))

	full, id, hash := GenerateAPIKey()
	k := APIKey{ID: id, Name: "ci bot", Role: RoleAgent, SecretHash: hash, Last4: APIKeyLast4(full), AssertUsers: true}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	if err := s.CreateAPIKey(ctx, k); !errors.Is(err, ErrConflict) {
		t.Errorf("CreateAPIKey of an existing id: got %v, want ErrConflict", err)
	}
	bad := k
	bad.ID, bad.Role = "zzzzzzzzzzzzzzzz", "root"
	if err := s.CreateAPIKey(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("CreateAPIKey with role %q: got %v, want ErrInvalid", bad.Role, err)
	}

	got, err := s.GetAPIKey(ctx, id)
	if err != nil {
		t.Fatalf("GetAPIKey: %v", err)
	}
	if got.ID != id || got.Name != "ci bot" || got.Role != RoleAgent || !bytes.Equal(got.SecretHash, hash) ||
		got.Last4 != full[len(full)-4:] || got.CreatedAt.IsZero() || got.Revoked() || !got.AssertUsers {
		t.Errorf("GetAPIKey = %+v, want the key as created", got)
	}
	_, secret, err := ParseAPIKey(full)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckAPISecret(got.ID, secret, got.SecretHash) {
		t.Errorf("CheckAPISecret rejects the key's own secret")
	}
	if _, err := s.GetAPIKey(ctx, "nosuchkey00000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAPIKey(unknown): got %v, want ErrNotFound", err)
	}

	_, id2, hash2 := GenerateAPIKey()
	if err := s.CreateAPIKey(ctx, APIKey{ID: id2, Name: "viewer", Role: RoleViewer, SecretHash: hash2, Last4: "abcd"}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != id || keys[1].ID != id2 || !keys[0].AssertUsers || keys[1].AssertUsers {
		t.Errorf("ListAPIKeys = %v, want [%s %s]", keys, id, id2)
	}

	at, err := s.RevokeAPIKey(ctx, id)
	if err != nil || at.IsZero() {
		t.Fatalf("RevokeAPIKey = %v, %v", at, err)
	}
	again, err := s.RevokeAPIKey(ctx, id)
	if err != nil || !again.Equal(at) {
		t.Errorf("second RevokeAPIKey = %v, %v; want %v, nil (idempotent)", again, err, at)
	}
	if got, _ := s.GetAPIKey(ctx, id); !got.RevokedAt.Equal(at) || got.Role != RoleAgent {
		t.Errorf("after revocation GetAPIKey = %+v, want revoked at %v, role kept", got, at)
	}
	if _, err := s.RevokeAPIKey(ctx, "nosuchkey00000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAPIKey(unknown): got %v, want ErrNotFound", err)
	}

	// The role is frozen at creation: the Store offers no way to change it.
	st := reflect.TypeFor[Store]()
	for i := range st.NumMethod() {
		m := st.Method(i).Name
		if strings.Contains(m, "APIKey") && !strings.HasPrefix(m, "Create") && !strings.HasPrefix(m, "Get") &&
			!strings.HasPrefix(m, "List") && !strings.HasPrefix(m, "Revoke") {
			t.Errorf("Store.%s may change a stored API key; keys are immutable but for revocation", m)
		}
	}
}

func testAPIKeyHashNotReversible(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	full, id, hash := GenerateAPIKey()
	if err := s.CreateAPIKey(ctx, APIKey{ID: id, Name: "k", Role: RoleAdmin, SecretHash: hash, Last4: APIKeyLast4(full)}); err != nil {
		t.Fatal(err)
	}
	_, secret, _ := ParseAPIKey(full)
	// Everything the database holds for the key, as text and as bytes.
	ss := s.(*sqlStore)
	rows, err := ss.r.Query(`SELECT * FROM api_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			b := fmt.Appendf(nil, "%v %s", v, v)
			if bytes.Contains(b, []byte(secret[:12])) || bytes.Contains(b, []byte(full[:len(full)-4])) {
				t.Errorf("column %s holds the key's secret: %q", cols[i], b)
			}
		}
	}
	other := secret[:42] + "x"
	if secret[42] == 'x' {
		other = secret[:42] + "y"
	}
	if CheckAPISecret(id, other, hash) {
		t.Errorf("CheckAPISecret accepts a different secret %q", other)
	}
}

func testSigningKeys(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	k1, _ := NewSigningKey()
	if err := s.PutSigningKey(ctx, k1); err != nil {
		t.Fatalf("PutSigningKey: %v", err)
	}
	if err := s.PutSigningKey(ctx, k1); !errors.Is(err, ErrConflict) {
		t.Errorf("PutSigningKey twice: got %v, want ErrConflict", err)
	}
	if err := s.PutSigningKey(ctx, SigningKey{ID: "short", PrivateKey: []byte("x")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutSigningKey with a 1-byte key: got %v, want ErrInvalid", err)
	}
	k2, _ := NewSigningKey()
	k2.CreatedAt = k1.CreatedAt.Add(time.Second)
	if err := s.PutSigningKey(ctx, k2); err != nil {
		t.Fatal(err)
	}
	retired, err := s.RetireSigningKey(ctx, k1.ID)
	if err != nil || retired.IsZero() {
		t.Fatalf("RetireSigningKey = %v, %v", retired, err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != k1.ID || !keys[0].RetiredAt.Equal(retired) ||
		keys[1].ID != k2.ID || !keys[1].RetiredAt.IsZero() || !keys[1].PrivateKey.Equal(k2.PrivateKey) {
		t.Errorf("SigningKeys = %+v, want %s retired then %s active", keys, k1.ID, k2.ID)
	}
	// Bootstrap with an active key present returns it, not the candidate.
	k3, _ := NewSigningKey()
	got, err := s.BootstrapSigningKey(ctx, k3)
	if err != nil || got.ID != k2.ID {
		t.Errorf("BootstrapSigningKey = %s, %v; want the active %s", got.ID, err, k2.ID)
	}
}

func testSigningKeyBootstrapRace(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	replicas := []Store{open(t, dsn), open(t, dsn)}
	const perReplica = 8
	got := make([]string, 2*perReplica)
	errs := make([]error, len(got))
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			cand, _ := NewSigningKey()
			k, err := replicas[i%2].BootstrapSigningKey(ctx, cand)
			got[i], errs[i] = k.ID, err
		})
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("BootstrapSigningKey #%d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("BootstrapSigningKey #%d got kid %s, #0 got %s: replicas disagree", i, got[i], got[0])
		}
	}
	keys, err := replicas[0].SigningKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Errorf("after the race SigningKeys = %d keys, %v; want exactly 1", len(keys), err)
	}
}

func testTokens(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	issued := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tok := Token{ID: "jti-1", PlanID: "plan-1", PlanHash: "ph", MerkleRoot: "mr", APIKeyID: "key1",
		User: "ann@example.com", Agent: "bot", IssuedAt: issued, ExpiresAt: issued.Add(time.Minute)}
	if err := s.PutToken(ctx, tok); err != nil {
		t.Fatalf("PutToken: %v", err)
	}
	if err := s.PutToken(ctx, tok); !errors.Is(err, ErrConflict) {
		t.Errorf("PutToken twice: got %v, want ErrConflict", err)
	}
	got, err := s.GetToken(ctx, "jti-1")
	if err != nil || !reflect.DeepEqual(got, tok) {
		t.Errorf("GetToken = %+v, %v; want %+v", got, err, tok)
	}
	at, err := s.RevokeToken(ctx, "jti-1")
	if err != nil || at.IsZero() {
		t.Fatalf("RevokeToken = %v, %v", at, err)
	}
	if again, err := s.RevokeToken(ctx, "jti-1"); err != nil || !again.Equal(at) {
		t.Errorf("second RevokeToken = %v, %v; want %v (idempotent)", again, err, at)
	}
	if got, _ := s.GetToken(ctx, "jti-1"); !got.RevokedAt.Equal(at) {
		t.Errorf("GetToken after revocation: RevokedAt %v, want %v", got.RevokedAt, at)
	}
	if _, err := s.GetToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetToken(unknown): got %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeToken(unknown): got %v, want ErrNotFound", err)
	}

	later := tok
	later.ID, later.ExpiresAt = "jti-2", issued.Add(time.Hour)
	if err := s.PutToken(ctx, later); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneTokens(ctx, issued.Add(30*time.Minute)); err != nil || n != 1 {
		t.Errorf("PruneTokens(issued+30m) = %d, %v; want 1 (jti-1 expired at issued+1m)", n, err)
	}
	if _, err := s.GetToken(ctx, "jti-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetToken(pruned jti-1): got %v, want ErrNotFound", err)
	}
	if _, err := s.GetToken(ctx, "jti-2"); err != nil {
		t.Errorf("GetToken(jti-2, still valid at the prune time): %v", err)
	}
}

func testBundles(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	s, other := open(t, dsn), open(t, dsn)
	if _, err := s.ActiveBundle(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("ActiveBundle on an empty store: got %v, want ErrNotFound", err)
	}
	if st, err := s.BundleStatus(ctx); err != nil || st.Active.Sequence != 0 || st.LastError != "" {
		t.Errorf("BundleStatus on an empty store = %+v, %v", st, err)
	}
	b1 := Bundle{Revision: "abc", Sequence: 1, Data: []byte("bundle one")}
	if err := s.SetActiveBundle(ctx, b1, 0); err != nil {
		t.Fatalf("SetActiveBundle(first): %v", err)
	}
	// A replica that still believes nothing is active loses.
	if err := other.SetActiveBundle(ctx, Bundle{Revision: "def", Sequence: 1, Data: []byte("x")}, 0); !errors.Is(err, ErrStale) {
		t.Errorf("SetActiveBundle with a stale prevSeq: got %v, want ErrStale", err)
	}
	if err := s.SetActiveBundle(ctx, Bundle{Revision: "old", Sequence: 1, Data: []byte("x")}, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetActiveBundle with a sequence not above prevSeq: got %v, want ErrInvalid", err)
	}
	got, err := other.ActiveBundle(ctx)
	if err != nil || got.Revision != "abc" || got.Sequence != 1 || string(got.Data) != "bundle one" || got.ActivatedAt.IsZero() {
		t.Errorf("ActiveBundle = %+v, %v; want revision abc, sequence 1", got, err)
	}

	if err := s.SetBundleError(ctx, "signature does not verify"); err != nil {
		t.Fatal(err)
	}
	st, err := s.BundleStatus(ctx)
	if err != nil || st.LastError != "signature does not verify" || st.LastErrorAt.IsZero() || st.Active.Revision != "abc" || st.Active.Data != nil {
		t.Errorf("BundleStatus after an error = %+v, %v", st, err)
	}

	// Two replicas race from sequence 1: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, st := range []Store{s, other} {
		wg.Go(func() {
			errs[i] = st.SetActiveBundle(ctx, Bundle{Revision: fmt.Sprint("r", i), Sequence: 2, Data: []byte{byte(i)}}, 1)
		})
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || !(errors.Is(errs[0], ErrStale) || errors.Is(errs[1], ErrStale)) {
		t.Errorf("racing SetActiveBundle: got %v and %v, want one nil and one ErrStale", errs[0], errs[1])
	}
	st, _ = s.BundleStatus(ctx)
	if st.Active.Sequence != 2 || st.LastError != "" || !st.LastErrorAt.IsZero() {
		t.Errorf("BundleStatus after activation = %+v, want sequence 2 and the error cleared", st)
	}
}

func auditRec(i int) AuditRecord {
	decisions := []Decision{Allowed, Blocked, Held, Failed}
	return AuditRecord{
		RequestID: fmt.Sprint("req-", i), APIKeyID: "key1", Service: "svc", User: fmt.Sprintf("user%d@example.com", i%3),
		Agent: "agent", Server: "github", Tool: fmt.Sprint("tool", i%2), Arguments: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
		Decision: decisions[i%4], Rule: "rule-1", BundleRevision: "rev", PlanHash: "ph", Step: int64(i % 5),
		Outcome: "200", DurationMS: int64(i),
	}
}

func appendN(t *testing.T, s Store, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.AppendAudit(ctxT(t), auditRec(i)); err != nil {
			t.Fatalf("AppendAudit #%d: %v", i, err)
		}
	}
}

func testAuditConcurrent(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	// Two replicas append at once: the chain must stay one chain. (A
	// journaled SQLite store appends alone: TestJournalOneAppender.)
	dsn = e.directDSN(dsn)
	replicas := []Store{open(t, dsn), open(t, dsn)}
	const workers, each = 64, 50
	seqs := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq, err := replicas[w%2].AppendAudit(ctx, auditRec(w*each+i))
				if err != nil {
					t.Errorf("AppendAudit: %v", err)
					return
				}
				seqs[w] = append(seqs[w], seq)
			}
		})
	}
	wg.Wait()
	seen := make(map[int64]bool)
	for _, ss := range seqs {
		for i, seq := range ss {
			if seen[seq] {
				t.Fatalf("sequence %d returned twice", seq)
			}
			if i > 0 && seq <= ss[i-1] {
				t.Errorf("one caller's sequences went backwards: %d after %d", seq, ss[i-1])
			}
			seen[seq] = true
		}
	}
	for seq := int64(1); seq <= workers*each; seq++ {
		if !seen[seq] {
			t.Fatalf("sequence %d was never returned: sequences are not contiguous", seq)
		}
	}
	rep, err := replicas[0].VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != workers*each || rep.HeadSeq != workers*each {
		t.Errorf("VerifyAudit = %+v (problem %v), %v; want %d records, no problem", rep, rep.Problem, err, workers*each)
	}
	// The group commit counts what each replica wrote, in how many batches.
	var records int64
	for i, r := range replicas {
		w, ok := AuditWriteCounts(r)
		if !ok || w.Batches < 1 || w.Batches > w.Records {
			t.Errorf("replica %d: AuditWriteCounts = %+v, %v; want at least one batch, at most one per record", i, w, ok)
		}
		records += w.Records
	}
	if records != workers*each {
		t.Errorf("the replicas counted %d records written, want %d", records, workers*each)
	}
}

func testAuditTamper(t *testing.T, e engine) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, s Store)
		seq    int64
		kind   ProblemKind
	}{
		{"edit a field", func(t *testing.T, s Store) {
			raw(t, s, `UPDATE audit_log SET tool = 'delete_repo' WHERE seq = 5`)
		}, 5, Edited},
		{"edit the arguments", func(t *testing.T, s Store) {
			raw(t, s, `UPDATE audit_log SET arguments = '{"n":99}' WHERE seq = 7`)
		}, 7, Edited},
		{"delete a row", func(t *testing.T, s Store) {
			raw(t, s, `DELETE FROM audit_log WHERE seq = 5`)
		}, 5, Deleted},
		{"delete the last rows", func(t *testing.T, s Store) {
			raw(t, s, `DELETE FROM audit_log WHERE seq >= 9`)
		}, 9, Deleted},
		{"insert a row past the head", func(t *testing.T, s Store) {
			forged := forgeAfter(t, s, 10)
			insertRaw(t, s, forged)
		}, 11, Inserted},
		{"replace a row with a rehashed forgery", func(t *testing.T, s Store) {
			forged := forgeAfter(t, s, 4) // a well-formed record 5 linked to record 4
			raw(t, s, `DELETE FROM audit_log WHERE seq = 5`)
			insertRaw(t, s, forged)
		}, 5, Inserted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			s := open(t, e.newDB(t))
			appendN(t, s, 10)
			if rep, err := s.VerifyAudit(ctx); err != nil || !rep.OK() {
				t.Fatalf("VerifyAudit before tampering = %v, %v", rep.Problem, err)
			}
			tt.tamper(t, s)
			rep, err := s.VerifyAudit(ctx)
			if err != nil {
				t.Fatalf("VerifyAudit: %v", err)
			}
			if rep.Problem == nil || rep.Problem.Seq != tt.seq || rep.Problem.Kind != tt.kind {
				t.Errorf("VerifyAudit after %s: got problem %v, want record %d %s", tt.name, rep.Problem, tt.seq, tt.kind)
			}
		})
	}
}

// forgeAfter builds a self-consistent record that links to record seq, as
// an attacker who knows the hash function would.
func forgeAfter(t *testing.T, s Store, seq int64) AuditRecord {
	t.Helper()
	recs, err := s.ListAudit(ctxT(t), AuditFilter{AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(recs) != 1 {
		t.Fatalf("ListAudit(seq %d) = %v, %v", seq, recs, err)
	}
	f := auditRec(1000)
	f.Seq, f.Time, f.PrevHash, f.HashVersion = seq+1, time.Now().UTC(), recs[0].Hash, auditHashVersion
	f.Hash = AuditHash(&f)
	return f
}

func insertRaw(t *testing.T, s Store, r AuditRecord) {
	t.Helper()
	raw(t, s, `INSERT INTO audit_log (`+auditCols+`) VALUES `+auditPlaceholders,
		r.Seq, r.Time.UnixNano(), r.RequestID, r.APIKeyID, r.Service, r.User, r.Agent, r.Server, r.Tool,
		string(r.Arguments), string(r.Decision), r.Rule, r.BundleRevision, r.PlanHash, r.Step, r.Outcome,
		r.DurationMS, r.PrevHash, r.Hash, r.HashVersion, string(r.Phase), r.Concludes, r.Client, r.TraceID, r.ApprovalID,
		r.UserSource, r.AuthIssuer, r.AuthSubject)
}

func testAuditListExport(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	start := time.Now().UTC()
	appendN(t, s, 12)
	if _, err := s.AppendAudit(ctx, AuditRecord{Decision: "maybe"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAudit with decision %q: got %v, want ErrInvalid", "maybe", err)
	}
	if _, err := s.AppendAudit(ctx, AuditRecord{Decision: Allowed, Arguments: json.RawMessage(`{`)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AppendAudit with arguments %q: got %v, want ErrInvalid", `{`, err)
	}

	all, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(all) != 12 {
		t.Fatalf("ListAudit(all) = %d records, %v; want 12", len(all), err)
	}
	want := auditRec(3)
	got := all[3]
	if got.Seq != 4 || got.RequestID != want.RequestID || string(got.Arguments) != string(want.Arguments) ||
		got.Decision != want.Decision || got.Step != want.Step || got.Time.Before(start) || !bytes.Equal(got.PrevHash, all[2].Hash) {
		t.Errorf("ListAudit()[3] = %+v, want %+v with seq 4 chained to seq 3", got, want)
	}

	count := func(f AuditFilter) int {
		recs, err := s.ListAudit(ctx, f)
		if err != nil {
			t.Fatalf("ListAudit(%+v): %v", f, err)
		}
		return len(recs)
	}
	for _, c := range []struct {
		f    AuditFilter
		want int
	}{
		{AuditFilter{User: "user0@example.com"}, 4},
		{AuditFilter{Tool: "tool1"}, 6},
		{AuditFilter{Server: "github", Tool: "tool1", Decision: Blocked}, 3},
		{AuditFilter{Decision: Held}, 3},
		{AuditFilter{AfterSeq: 10}, 2},
		{AuditFilter{Limit: 5}, 5},
		{AuditFilter{Since: start}, 12},
		{AuditFilter{Until: start}, 0},
		{AuditFilter{Server: "gitlab"}, 0},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("ListAudit(%+v) = %d records, want %d", c.f, got, c.want)
		}
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := s.ExportAudit(ctx, AuditFilter{}, func(r AuditRecord) error { return enc.Encode(r) }); err != nil {
		t.Fatalf("ExportAudit: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 12 {
		t.Fatalf("ExportAudit wrote %d lines, want 12", len(lines))
	}
	var back AuditRecord
	if err := json.Unmarshal([]byte(lines[11]), &back); err != nil || back.Seq != 12 || !bytes.Equal(AuditHash(&back), back.Hash) {
		t.Errorf("exported line 12 %s: does not decode to a record that verifies (%v)", lines[11], err)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.ExportAudit(ctx, AuditFilter{}, func(AuditRecord) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("ExportAudit with a failing callback: got %v after %d records, want stop after 1", err, n)
	}
}

// A lower time bound selects by the records' times, whatever their order:
// a record may carry an earlier time than one appended before it (the
// caller's clock), and the query's start in seq order must not skip it.
func testAuditSince(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, sec := range []int{30, 10, 50, 20, 40} { // seq i+1 at t0 + sec
		r := auditRec(i)
		r.Time = t0.Add(time.Duration(sec) * time.Second)
		if _, err := s.AppendAudit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		f    AuditFilter
		want []int64
	}{
		{AuditFilter{Since: t0.Add(20 * time.Second)}, []int64{1, 3, 4, 5}},
		{AuditFilter{Since: t0.Add(31 * time.Second)}, []int64{3, 5}},
		{AuditFilter{Since: t0.Add(50 * time.Second)}, []int64{3}},
		{AuditFilter{Since: t0.Add(51 * time.Second)}, nil},
		{AuditFilter{Since: t0}, []int64{1, 2, 3, 4, 5}},
		{AuditFilter{Since: t0.Add(15 * time.Second), Until: t0.Add(45 * time.Second)}, []int64{1, 4, 5}},
		{AuditFilter{Since: t0.Add(15 * time.Second), User: "user1@example.com"}, []int64{5}},
		{AuditFilter{Since: t0.Add(15 * time.Second), AfterSeq: 3}, []int64{4, 5}},
		{AuditFilter{Since: t0.Add(15 * time.Second), Limit: 2}, []int64{1, 3}},
	} {
		recs, err := s.ListAudit(ctx, tt.f)
		var got []int64
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ListAudit(since %s, until %s, user %q, after %d, limit %d) = %v, %v; want %v",
				tt.f.Since.Sub(t0), tt.f.Until.Sub(t0), tt.f.User, tt.f.AfterSeq, tt.f.Limit, got, err, tt.want)
		}
	}
}

func testAuditDurable(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := s.AppendAudit(ctx, auditRec(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.AppendAudit(ctx, auditRec(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendAudit after Close: got %v, want ErrClosed", err)
	}
	if _, err := s.ListAudit(ctx, AuditFilter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("ListAudit after Close: got %v, want ErrClosed", err)
	}
	if _, err := s.Subscribe(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: got %v, want ErrClosed", err)
	}
	s = open(t, dsn)
	recs, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(recs) != 1 || recs[0].Seq != seq || recs[0].RequestID != "req-1" {
		t.Errorf("after reopening ListAudit = %+v, %v; want the record appended before Close", recs, err)
	}
	if seq2, err := s.AppendAudit(ctx, auditRec(2)); err != nil || seq2 != seq+1 {
		t.Errorf("AppendAudit after reopening = %d, %v; want %d", seq2, err, seq+1)
	}
	if rep, err := s.VerifyAudit(ctx); err != nil || !rep.OK() || rep.Records != 2 {
		t.Errorf("VerifyAudit after reopening = %+v, %v", rep, err)
	}
}

func testAuditCloseFlushes(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	results := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = s.AppendAudit(ctx, auditRec(i)) })
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	committed := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			committed++
		case !errors.Is(errs[i], ErrClosed):
			t.Errorf("AppendAudit during Close: %v, want success or ErrClosed", errs[i])
		}
	}
	s = open(t, dsn)
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK() || rep.Records != int64(committed) {
		t.Errorf("after Close and reopen VerifyAudit = %+v (%v), %v; want %d records: every acknowledged append", rep, rep.Problem, err, committed)
	}
}

func testRevocations(t *testing.T, e engine) {
	ctx := ctxT(t)
	dsn := e.newDB(t)
	a, b := open(t, dsn), open(t, dsn)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	chA, err := a.Subscribe(subCtx)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	var chB <-chan Revocation
	if e.replicasHearEachOther {
		if chB, err = b.Subscribe(subCtx); err != nil {
			t.Fatalf("Subscribe on the second replica: %v", err)
		}
	}

	_, id, hash := GenerateAPIKey()
	if err := a.CreateAPIKey(ctx, APIKey{ID: id, Name: "k", Role: RoleAgent, SecretHash: hash, Last4: "wxyz"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := a.PutToken(ctx, Token{ID: "tok-9", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeAPIKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeToken(ctx, "tok-9"); err != nil {
		t.Fatal(err)
	}
	want := []Revocation{{Kind: RevokedAPIKey, ID: id}, {Kind: RevokedToken, ID: "tok-9"}}
	expect := func(name string, ch <-chan Revocation) {
		for _, w := range want {
			select {
			case got := <-ch:
				if got != w {
					t.Errorf("%s heard %+v, want %+v", name, got, w)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s heard nothing within 10s, want %+v", name, w)
			}
		}
	}
	expect("the revoking store", chA)
	if chB != nil {
		expect("the other replica", chB)
	}
	cancel()
	for range chA { // closed once the context ends
	}
}
