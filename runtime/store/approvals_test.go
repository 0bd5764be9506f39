package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHumanSQLite(t *testing.T)   { testHuman(t, sqliteEngine) }
func TestHumanPostgres(t *testing.T) { testHuman(t, postgresEngine) }

func testHuman(t *testing.T, e engine) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e engine)
	}{
		{"ApprovalLifecycle", testApprovalLifecycle},
		{"ApprovalExecutedOnce", testApprovalExecutedOnce},
		{"ApprovalExpiry", testApprovalExpiry},
		{"DeviceLogins", testDeviceLogins},
		{"Sessions", testSessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, e) })
	}
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func approvalN(id string) Approval {
	return Approval{
		ID: id, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
		TokenID: "tok1", PlanHash: "ph", Step: 1, Server: "pay", Tool: "transfer", ArgsHash: "ah",
		Arguments: []byte(`{"amount":5000}`), User: "alice@example.com", Agent: "agent-1",
		Rule: "big-payments", Reason: "over 1000", Approvers: []string{"bob@example.com", "*@sec.example.com"},
		RequesterKeyID: "key1", Requester: "payments agent", RequestID: "req1",
	}
}

func testApprovalLifecycle(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	a := approvalN("ap1")
	if err := s.CreateApproval(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateApproval(ctx, a); !errors.Is(err, ErrConflict) {
		t.Errorf("second CreateApproval: got %v, want ErrConflict", err)
	}
	if err := s.CreateApproval(ctx, Approval{ID: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("CreateApproval without a binding: got %v, want ErrInvalid", err)
	}
	got, err := s.GetApproval(ctx, "ap1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ApprovalPending || got.Step != 1 || string(got.Arguments) != `{"amount":5000}` ||
		len(got.Approvers) != 2 || got.Approvers[1] != "*@sec.example.com" || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Errorf("GetApproval = %+v, want what was created, pending", got)
	}
	if _, err := s.GetApproval(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetApproval(nope): got %v, want ErrNotFound", err)
	}

	// The approvals of one call.
	b := approvalN("ap2")
	b.ArgsHash = "other"
	if err := s.CreateApproval(ctx, b); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListApprovals(ctx, ApprovalFilter{TokenID: "tok1", Step: 1, ArgsHash: "ah"})
	if err != nil || len(list) != 1 || list[0].ID != "ap1" {
		t.Errorf("ListApprovals(call) = %v, %v; want [ap1]", ids(list), err)
	}

	d := ApprovalDecision{Approve: true, ByKeyID: "key2", By: "bob@example.com", Comment: "ok, invoice 42", At: t0.Add(time.Minute)}
	got, err = s.DecideApproval(ctx, "ap1", d)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ApprovalApproved || got.DecidedBy != "bob@example.com" || got.Comment != "ok, invoice 42" || !got.DecidedAt.Equal(d.At) {
		t.Errorf("after approval: %+v", got)
	}
	// A decision is final.
	d.Approve = false
	if got, err = s.DecideApproval(ctx, "ap1", d); !errors.Is(err, ErrConflict) || got.State != ApprovalApproved {
		t.Errorf("deciding again: got %s, %v; want approved, ErrConflict", got.State, err)
	}
	if _, err := s.DecideApproval(ctx, "nope", d); !errors.Is(err, ErrNotFound) {
		t.Errorf("deciding a missing approval: got %v, want ErrNotFound", err)
	}
	// Denied cannot execute.
	if _, err := s.DecideApproval(ctx, "ap2", d); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ExecuteApproval(ctx, "ap2", t0.Add(2*time.Minute)); !errors.Is(err, ErrConflict) || got.State != ApprovalDenied {
		t.Errorf("executing a denied approval: got %s, %v; want denied, ErrConflict", got.State, err)
	}
	// Pending first, then newest.
	c := approvalN("ap3")
	c.ArgsHash = "third"
	c.CreatedAt = t0.Add(-time.Minute)
	if err := s.CreateApproval(ctx, c); err != nil {
		t.Fatal(err)
	}
	list, err = s.ListApprovals(ctx, ApprovalFilter{})
	if err != nil || len(list) != 3 || list[0].ID != "ap3" {
		t.Errorf("ListApprovals() = %v, %v; want ap3 (pending) first", ids(list), err)
	}
	list, err = s.ListApprovals(ctx, ApprovalFilter{State: ApprovalDenied})
	if err != nil || len(list) != 1 || list[0].ID != "ap2" {
		t.Errorf("ListApprovals(denied) = %v, %v; want [ap2]", ids(list), err)
	}
}

func ids(l []Approval) []string {
	var out []string
	for _, a := range l {
		out = append(out, a.ID)
	}
	return out
}

// testApprovalExecutedOnce: many retries of an approved call race; exactly
// one may run.
func testApprovalExecutedOnce(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	if err := s.CreateApproval(ctx, approvalN("ap1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExecuteApproval(ctx, "ap1", t0.Add(time.Minute)); !errors.Is(err, ErrConflict) {
		t.Errorf("executing a pending approval: got %v, want ErrConflict", err)
	}
	if _, err := s.DecideApproval(ctx, "ap1", ApprovalDecision{Approve: true, ByKeyID: "k", At: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// One open approval per call: a second one of the same call conflicts
	// while this one is approved and unused.
	dup := approvalN("ap1-dup")
	if err := s.CreateApproval(ctx, dup); !errors.Is(err, ErrConflict) {
		t.Errorf("a second open approval of the same call: got %v, want ErrConflict", err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.ExecuteApproval(ctx, "ap1", t0.Add(2*time.Minute)); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrConflict) {
				t.Errorf("ExecuteApproval: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent executions succeeded, want exactly 1", wins.Load())
	}
	got, _ := s.GetApproval(ctx, "ap1")
	if got.State != ApprovalExecuted || got.ExecutedAt.IsZero() {
		t.Errorf("after execution: state %s, executed_at %v", got.State, got.ExecutedAt)
	}
	if err := s.CreateApproval(ctx, dup); err != nil {
		t.Errorf("a new approval of the call once the first was used: %v", err)
	}
}

func testApprovalExpiry(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	for _, id := range []string{"pending", "approved", "late"} {
		a := approvalN(id)
		a.ArgsHash = "ah-" + id
		if err := s.CreateApproval(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DecideApproval(ctx, "approved", ApprovalDecision{Approve: true, ByKeyID: "k", At: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	late := t0.Add(time.Hour)
	if got, err := s.DecideApproval(ctx, "late", ApprovalDecision{Approve: true, ByKeyID: "k", At: late}); !errors.Is(err, ErrConflict) || got.State != ApprovalExpired {
		t.Errorf("approving at expiry: got %s, %v; want expired, ErrConflict", got.State, err)
	}
	if got, err := s.ExecuteApproval(ctx, "approved", late); !errors.Is(err, ErrConflict) || got.State != ApprovalExpired {
		t.Errorf("executing at expiry: got %s, %v; want expired, ErrConflict", got.State, err)
	}
	exp, err := s.ExpireApprovals(ctx, late)
	if err != nil || len(exp) != 3 {
		t.Fatalf("ExpireApprovals = %v, %v; want 3", ids(exp), err)
	}
	for _, id := range []string{"pending", "approved", "late"} {
		if got, _ := s.GetApproval(ctx, id); got.State != ApprovalExpired {
			t.Errorf("%s: state %s, want expired", id, got.State)
		}
	}
	if exp, err := s.ExpireApprovals(ctx, late); err != nil || len(exp) != 0 {
		t.Errorf("second ExpireApprovals = %v, %v; want none", ids(exp), err)
	}
}

func testDeviceLogins(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	h := sha256.Sum256([]byte("device code"))
	d := DeviceLogin{CodeHash: h[:], UserCode: "BCDF-GHJK", Client: "armoriq CLI on laptop", CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	if err := s.CreateDeviceLogin(ctx, d); err != nil {
		t.Fatal(err)
	}
	h2 := sha256.Sum256([]byte("another"))
	if err := s.CreateDeviceLogin(ctx, DeviceLogin{CodeHash: h2[:], UserCode: "BCDF-GHJK", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}); !errors.Is(err, ErrConflict) {
		t.Errorf("a taken user code: got %v, want ErrConflict", err)
	}
	if n, err := s.CountPendingDeviceLogins(ctx, t0); err != nil || n != 1 {
		t.Errorf("CountPendingDeviceLogins = %d, %v; want 1", n, err)
	}
	prev, err := s.TouchDeviceLogin(ctx, h[:], t0.Add(5*time.Second))
	if err != nil || !prev.LastPollAt.IsZero() || prev.State != DevicePending {
		t.Errorf("first poll: %+v, %v; want pending, never polled", prev, err)
	}
	prev, _ = s.TouchDeviceLogin(ctx, h[:], t0.Add(10*time.Second))
	if !prev.LastPollAt.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("second poll saw last poll %v, want %v", prev.LastPollAt, t0.Add(5*time.Second))
	}
	if _, err := s.ConsumeDeviceLogin(ctx, h[:], "key1", t0.Add(time.Minute)); !errors.Is(err, ErrConflict) {
		t.Errorf("consuming a pending login: got %v, want ErrConflict", err)
	}
	dd := DeviceDecision{Approve: true, Role: RoleViewer, Email: "alice@example.com", ByKeyID: "adm", By: "admin", At: t0.Add(time.Minute)}
	got, err := s.DecideDeviceLogin(ctx, "BCDF-GHJK", dd)
	if err != nil || got.State != DeviceApproved || got.Role != RoleViewer || got.Email != "alice@example.com" {
		t.Fatalf("DecideDeviceLogin = %+v, %v", got, err)
	}
	if _, err := s.DecideDeviceLogin(ctx, "BCDF-GHJK", dd); !errors.Is(err, ErrConflict) {
		t.Errorf("deciding twice: got %v, want ErrConflict", err)
	}
	got, err = s.ConsumeDeviceLogin(ctx, h[:], "key1", t0.Add(2*time.Minute))
	if err != nil || got.State != DeviceConsumed || got.KeyID != "key1" {
		t.Errorf("ConsumeDeviceLogin = %+v, %v", got, err)
	}
	if _, err := s.ConsumeDeviceLogin(ctx, h[:], "key2", t0.Add(2*time.Minute)); !errors.Is(err, ErrConflict) {
		t.Errorf("consuming twice: got %v, want ErrConflict", err)
	}
	// Expired: cannot be approved.
	h3 := sha256.Sum256([]byte("third"))
	if err := s.CreateDeviceLogin(ctx, DeviceLogin{CodeHash: h3[:], UserCode: "XXXX-XXXX", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	dd.At = t0.Add(time.Minute)
	if _, err := s.DecideDeviceLogin(ctx, "XXXX-XXXX", dd); !errors.Is(err, ErrConflict) {
		t.Errorf("approving an expired login: got %v, want ErrConflict", err)
	}
	list, err := s.ListDeviceLogins(ctx, t0)
	if err != nil || len(list) != 2 || list[0].UserCode != "XXXX-XXXX" {
		t.Errorf("ListDeviceLogins = %v, %v; want the pending one first", list, err)
	}
	if n, err := s.PruneHuman(ctx, t0.Add(time.Second)); err != nil || n != 2 {
		t.Errorf("PruneHuman = %d, %v; want 2", n, err)
	}
}

func testSessions(t *testing.T, e engine) {
	ctx := ctxT(t)
	s := open(t, e.newDB(t))
	h := sha256.Sum256([]byte("session"))
	ss := Session{IDHash: h[:], KeyID: "key1", CSRF: "csrf", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RevokeKeyOnEnd: true}
	if err := s.CreateSession(ctx, ss); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(ctx, h[:], t0.Add(time.Minute))
	if err != nil || got.KeyID != "key1" || got.CSRF != "csrf" || !got.RevokeKeyOnEnd || !bytes.Equal(got.IDHash, h[:]) {
		t.Errorf("GetSession = %+v, %v", got, err)
	}
	if _, err := s.GetSession(ctx, h[:], t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired session: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, h[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, h[:], t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted session: got %v, want ErrNotFound", err)
	}
}
