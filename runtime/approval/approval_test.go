package approval

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newService(t testing.TB) (*Service, *clock) {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	return New(s, time.Hour, c.now), c
}

func payment() Call {
	return Call{
		TokenID: "tok1", PlanHash: "ph", Step: 0, Server: "pay", Tool: "transfer",
		Args: map[string]any{"amount": 5000, "to": "acct-9"}, User: "alice@example.com",
		Rule: "big-payments", Reason: "payments over 1000 need a second person",
		RequesterKeyID: "agentkey", Requester: "payments agent", RequestID: "r1",
	}
}

var (
	admin  = Approver{KeyID: "adminkey", Name: "root", Role: store.RoleAdmin}
	bob    = Approver{KeyID: "bobkey", Name: "Bob@Example.com", Role: store.RoleViewer}
	carol  = Approver{KeyID: "carolkey", Name: "carol@sec.example.com", Role: store.RoleViewer}
	viewer = Approver{KeyID: "viewkey", Name: "dave@example.com", Role: store.RoleViewer}
)

func TestMayDecide(t *testing.T) {
	base := store.Approval{Rule: "r", RequesterKeyID: "agentkey", User: "alice@example.com"}
	named := base
	named.Approvers = []string{"bob@example.com", "*@sec.example.com"}
	tests := []struct {
		name string
		a    store.Approval
		who  Approver
		ok   bool
	}{
		{"admin, no approvers named", base, admin, true},
		{"viewer, no approvers named", base, viewer, false},
		{"the requesting key itself", base, Approver{KeyID: "agentkey", Role: store.RoleAdmin}, false},
		{"the end user themself, an admin", base, Approver{KeyID: "k", Name: " ALICE@example.com", Role: store.RoleAdmin}, false},
		{"an agent key", base, Approver{KeyID: "k", Name: "x@example.com", Role: store.RoleAgent}, false},
		{"named approver with a viewer key", named, bob, true},
		{"approver by domain", named, carol, true},
		{"admin not named", named, admin, false},
		{"viewer not named", named, viewer, false},
		{"no identity", named, Approver{}, false},
		{"look-alike domain", named, Approver{KeyID: "k", Name: "eve@evilsec.example.com", Role: store.RoleViewer}, false},
	}
	for _, tt := range tests {
		err := MayDecide(tt.a, tt.who)
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: MayDecide = %v, want allowed=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: error %v does not match ErrForbidden", tt.name, err)
		}
	}
}

func TestApproveThenRunOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	c := payment()
	a, created, err := s.Request(ctx, c)
	if err != nil || !created || a.State != store.ApprovalPending || !ValidID(a.ID) {
		t.Fatalf("Request = %+v, %v, %v", a, created, err)
	}
	// Retrying before a decision finds the same approval.
	again, created, err := s.Request(ctx, c)
	if err != nil || created || again.ID != a.ID {
		t.Errorf("second Request = %s, created %v, %v; want %s, not created", again.ID, created, err, a.ID)
	}
	if _, err := s.Claim(ctx, a.ID, c); !errors.Is(err, ErrPending) {
		t.Errorf("Claim while pending: got %v, want ErrPending", err)
	}
	if _, err := s.Decide(ctx, a.ID, viewer, true, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("a viewer approving: got %v, want ErrForbidden", err)
	}
	got, err := s.Decide(ctx, a.ID, admin, true, "invoice 42 checked")
	if err != nil || got.State != store.ApprovalApproved || got.DecidedBy != "root" {
		t.Fatalf("Decide = %+v, %v", got, err)
	}
	if _, err := s.Decide(ctx, a.ID, admin, false, ""); !errors.Is(err, ErrDecided) {
		t.Errorf("deciding twice: got %v, want ErrDecided", err)
	}
	// Other arguments, another step, another token: not this approval.
	for name, other := range map[string]func(*Call){
		"other amount": func(c *Call) { c.Args = map[string]any{"amount": 50000, "to": "acct-9"} },
		"other step":   func(c *Call) { c.Step = 1 },
		"other token":  func(c *Call) { c.TokenID = "tok2" },
		"other tool":   func(c *Call) { c.Tool = "refund" },
	} {
		oc := payment()
		other(&oc)
		if _, err := s.Claim(ctx, a.ID, oc); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Claim got %v, want ErrMismatch", name, err)
		}
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := s.Claim(ctx, a.ID, c); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrExecuted) {
				t.Errorf("concurrent Claim: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d claims succeeded, want exactly 1", wins.Load())
	}
	// Used up: the same call held again asks for a new approval.
	next, created, err := s.Request(ctx, c)
	if err != nil || !created || next.ID == a.ID {
		t.Errorf("Request after execution = %s, created %v, %v; want a new approval", next.ID, created, err)
	}
}

func TestDeniedAndExpired(t *testing.T) {
	ctx := context.Background()
	s, clk := newService(t)
	c := payment()
	a, _, _ := s.Request(ctx, c)
	if _, err := s.Decide(ctx, a.ID, admin, false, "not on the vendor list"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, a.ID, c); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "not on the vendor list") {
		t.Errorf("Claim after denial: got %v, want ErrDenied with the reason", err)
	}
	c.Step = 2
	b, _, _ := s.Request(ctx, c)
	if _, err := s.Decide(ctx, b.ID, admin, true, ""); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Hour)
	if _, err := s.Claim(ctx, b.ID, c); !errors.Is(err, ErrExpired) {
		t.Errorf("Claim after expiry: got %v, want ErrExpired", err)
	}
	if got, _ := s.Get(ctx, b.ID); got.State != store.ApprovalExpired {
		t.Errorf("Get after expiry: state %s, want expired", got.State)
	}
	exp, err := s.Expire(ctx)
	if err != nil || len(exp) != 1 || exp[0].ID != b.ID {
		t.Errorf("Expire = %v, %v; want [%s]", exp, err, b.ID)
	}
	if _, err := s.Decide(ctx, "apv_aaaaaaaaaaaaaaaaaaaa", admin, true, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("deciding a missing approval: got %v, want ErrNotFound", err)
	}
	if _, err := s.Decide(ctx, a.ID, admin, true, "bad\x00comment"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a comment with a NUL: got %v, want ErrInvalid", err)
	}
}

func TestHashArgs(t *testing.T) {
	a := HashArgs(map[string]any{"b": 1, "a": []any{"x", map[string]any{"z": 1, "y": 2}}})
	b := HashArgs(map[string]any{"a": []any{"x", map[string]any{"y": 2, "z": 1}}, "b": 1})
	if a != b {
		t.Errorf("key order changed the hash: %s vs %s", a, b)
	}
	if HashArgs(nil) != HashArgs(map[string]any{}) {
		t.Error("nil and empty arguments hash differently")
	}
	if HashArgs(map[string]any{"amount": 1}) == HashArgs(map[string]any{"amount": 2}) {
		t.Error("different arguments hash the same")
	}
}

func FuzzValidID(f *testing.F) {
	f.Add(newID())
	f.Add("apv_AAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidID(s) && (len(s) != 24 || s[:4] != "apv_") {
			t.Errorf("ValidID(%q) = true", s)
		}
	})
}

// TestRequestRace: replicas holding the same call at once make one approval.
func TestRequestRace(t *testing.T) {
	s, _ := newService(t)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			a, _, err := s.Request(context.Background(), payment())
			if err != nil {
				t.Errorf("Request: %v", err)
			}
			ids[i] = a.ID
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent requests of one call made several approvals: %v", ids)
		}
	}
}

// TestExpiredThenHeldAgain: a call held again after its approval expired
// (not yet swept) gets a new approval.
func TestExpiredThenHeldAgain(t *testing.T) {
	s, clk := newService(t)
	a, _, _ := s.Request(context.Background(), payment())
	clk.t = clk.t.Add(2 * time.Hour)
	b, created, err := s.Request(context.Background(), payment())
	if err != nil || !created || b.ID == a.ID {
		t.Fatalf("held again after expiry: %s created %v, %v; want a new approval", b.ID, created, err)
	}
}
