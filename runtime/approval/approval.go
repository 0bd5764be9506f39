// Package approval turns a held call into a pending approval that a person
// decides. An approval is bound to exactly one call (the intent token, the
// plan step, the server, the tool and a hash of the arguments), may be
// decided only by someone the holding rule names (else any admin) who is
// not the caller, expires, and lets the call it names run at most once.
package approval

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/armoriq/controlplane/runtime/store"
)

// DefaultTTL is how long an approval stays open when no TTL is configured.
const DefaultTTL = time.Hour

// Errors. Each error the Service returns matches one of them with
// errors.Is; its text says what and why, safe to show to the caller.
var (
	ErrNotFound  = errors.New("no such approval")
	ErrForbidden = errors.New("not allowed to decide this approval")
	ErrDecided   = errors.New("approval already decided or expired")
	ErrMismatch  = errors.New("approval is for another call")
	ErrPending   = errors.New("approval is still pending")
	ErrDenied    = errors.New("approval was denied")
	ErrExpired   = errors.New("approval expired")
	ErrExecuted  = errors.New("approval was already used")
	ErrInvalid   = errors.New("invalid approval request")
)

// Call is a held call as the gateway saw it.
type Call struct {
	TokenID  string
	PlanHash string
	Step     int64
	Server   string
	Tool     string
	// Args are the call's arguments, as compared with the plan (injected
	// SDK fields and the approval id stripped); ArgsHash binds them.
	Args map[string]any
	// Redacted are the arguments as the audit log shows them.
	Redacted json.RawMessage
	User     string
	Agent    string

	Rule      string   // the rule that held the call
	Reason    string   // its reason
	Approvers []string // who the rule lets approve (emails, *@domain); empty: any admin

	RequesterKeyID string
	Requester      string // the requesting key's name
	RequestID      string
}

// Approver is who decides.
type Approver struct {
	KeyID string
	Name  string // the key's name: an email for a person's key
	Role  store.Role
}

// Service runs approvals over a store.
type Service struct {
	store store.Store
	ttl   time.Duration
	now   func() time.Time
}

// New returns a Service. ttl <= 0 means DefaultTTL; now nil means time.Now.
func New(s store.Store, ttl time.Duration, now func() time.Time) *Service {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: s, ttl: ttl, now: now}
}

// TTL is how long a new approval stays open.
func (s *Service) TTL() time.Duration { return s.ttl }

// HashArgs is the hex SHA-256 of the canonical JSON of args (object keys
// sorted, as encoding/json writes maps).
func HashArgs(args map[string]any) string {
	if args == nil {
		args = map[string]any{}
	}
	b, err := json.Marshal(args)
	if err != nil {
		// Arguments came from JSON; they always encode. Hash the error so
		// no two unencodable calls share a binding with a real one.
		b = []byte("unencodable: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Request returns the open approval (pending, or approved and unused) of
// exactly this call, or creates a pending one: retrying a held call does
// not pile up approvals. created says whether it is new.
func (s *Service) Request(ctx context.Context, c Call) (a store.Approval, created bool, err error) {
	if c.TokenID == "" || c.Server == "" || c.Tool == "" || c.Step < 0 {
		return store.Approval{}, false, fmt.Errorf("%w: a held call needs its token, step, server and tool", ErrInvalid)
	}
	hash := HashArgs(c.Args)
	for attempt := 0; ; attempt++ {
		a, created, err = s.request(ctx, c, hash)
		if !errors.Is(err, store.ErrConflict) || attempt == 2 {
			return a, created, err
		}
		// Another request of the same call won the race, or an open
		// approval past its expiry was not swept yet: sweep, look again.
		if _, err := s.Expire(ctx); err != nil {
			return store.Approval{}, false, err
		}
	}
}

func (s *Service) request(ctx context.Context, c Call, hash string) (store.Approval, bool, error) {
	now := s.now().UTC()
	open, err := s.store.ListApprovals(ctx, store.ApprovalFilter{TokenID: c.TokenID, Step: c.Step, ArgsHash: hash, Limit: 20})
	if err != nil {
		return store.Approval{}, false, err
	}
	for _, o := range open {
		if (o.State == store.ApprovalPending || o.State == store.ApprovalApproved) && now.Before(o.ExpiresAt) {
			if o.Server != c.Server || o.Tool != c.Tool {
				return store.Approval{}, false, fmt.Errorf("%w: token %s step %d is already held for %s/%s", ErrInvalid, c.TokenID, c.Step, o.Server, o.Tool)
			}
			// A service key names its end users: an approval open for
			// one of them is not this call's, and there is one open
			// approval per token, step and arguments (the store's unique
			// index), so this call waits until that one is settled.
			if o.User != c.User || o.Agent != c.Agent {
				return store.Approval{}, false, fmt.Errorf("%w: token %s step %d with these arguments is already held for another end user or agent (approval %s); retry once it is decided and used, or expired", ErrInvalid, c.TokenID, c.Step, o.ID)
			}
			return o, false, nil
		}
	}
	a := store.Approval{
		ID: newID(), State: store.ApprovalPending, CreatedAt: now, ExpiresAt: now.Add(s.ttl),
		TokenID: c.TokenID, PlanHash: c.PlanHash, Step: c.Step, Server: c.Server, Tool: c.Tool,
		ArgsHash: hash, Arguments: c.Redacted, User: c.User, Agent: c.Agent,
		Rule: c.Rule, Reason: c.Reason, Approvers: normalize(c.Approvers),
		RequesterKeyID: c.RequesterKeyID, Requester: c.Requester, RequestID: c.RequestID,
	}
	if err := s.store.CreateApproval(ctx, a); err != nil {
		return store.Approval{}, false, err
	}
	return a, true, nil
}

// Get returns one approval, its state brought up to date (an open approval
// past its expiry reads as expired).
func (s *Service) Get(ctx context.Context, id string) (store.Approval, error) {
	a, err := s.store.GetApproval(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Approval{}, fmt.Errorf("%w %q", ErrNotFound, id)
	}
	if err != nil {
		return store.Approval{}, err
	}
	return s.current(a), nil
}

// List returns approvals, pending first, states brought up to date.
func (s *Service) List(ctx context.Context, f store.ApprovalFilter) ([]store.Approval, error) {
	list, err := s.store.ListApprovals(ctx, f)
	for i := range list {
		list[i] = s.current(list[i])
	}
	return list, err
}

func (s *Service) current(a store.Approval) store.Approval {
	if (a.State == store.ApprovalPending || a.State == store.ApprovalApproved) && !s.now().Before(a.ExpiresAt) {
		a.State = store.ApprovalExpired
	}
	return a
}

// MayDecide reports why who may not decide a (nil: they may). Nobody
// decides a call made with their own key or for themself. A rule that
// names approvers lets exactly them decide, with any key that can sign in
// (admin or viewer); otherwise only admins decide.
func MayDecide(a store.Approval, who Approver) error {
	name := strings.ToLower(strings.TrimSpace(who.Name))
	switch {
	case who.KeyID == "":
		return fmt.Errorf("%w: no identity", ErrForbidden)
	case who.KeyID == a.RequesterKeyID:
		return fmt.Errorf("%w: nobody approves their own call (the call was made with key %s)", ErrForbidden, who.KeyID)
	case name != "" && strings.EqualFold(name, strings.TrimSpace(a.User)):
		return fmt.Errorf("%w: nobody approves their own call (the call was made for %s)", ErrForbidden, a.User)
	case who.Role != store.RoleAdmin && who.Role != store.RoleViewer:
		return fmt.Errorf("%w: a key with role %s cannot decide approvals", ErrForbidden, who.Role)
	}
	if len(a.Approvers) == 0 {
		if who.Role != store.RoleAdmin {
			return fmt.Errorf("%w: rule %s names no approvers, so only an admin decides", ErrForbidden, a.Rule)
		}
		return nil
	}
	for _, ap := range a.Approvers {
		if matchApprover(ap, name) {
			return nil
		}
	}
	return fmt.Errorf("%w: rule %s lets only %s decide", ErrForbidden, a.Rule, strings.Join(a.Approvers, ", "))
}

// matchApprover matches a lower-case identity against an approver entry:
// an exact email, "*@domain" or "*".
func matchApprover(entry, name string) bool {
	switch {
	case name == "":
		return false
	case entry == "*":
		return true
	case strings.HasPrefix(entry, "*@"):
		return strings.HasSuffix(name, entry[1:])
	}
	return entry == name
}

// Decide approves or denies a pending approval as who, with a comment.
func (s *Service) Decide(ctx context.Context, id string, who Approver, approve bool, comment string) (store.Approval, error) {
	comment = strings.TrimSpace(comment)
	if len(comment) > 1000 {
		return store.Approval{}, fmt.Errorf("%w: the comment is longer than 1000 characters", ErrInvalid)
	}
	if !utf8.ValidString(comment) {
		return store.Approval{}, fmt.Errorf("%w: the comment is not valid UTF-8", ErrInvalid)
	}
	for _, r := range comment {
		// Controls, and format characters that reorder or hide text from
		// whoever reads the decision (bidirectional overrides, zero-width
		// characters), as identities refuse them.
		if unicode.IsControl(r) && r != '\n' && r != '\t' || unicode.In(r, unicode.Cf, unicode.Co) {
			return store.Approval{}, fmt.Errorf("%w: the comment holds the control or formatting character %U", ErrInvalid, r)
		}
	}
	a, err := s.Get(ctx, id)
	if err != nil {
		return store.Approval{}, err
	}
	if a.State != store.ApprovalPending {
		return a, fmt.Errorf("%w: approval %s is %s", ErrDecided, id, a.State)
	}
	if err := MayDecide(a, who); err != nil {
		return a, err
	}
	by := who.Name
	if by == "" {
		by = who.KeyID
	}
	got, err := s.store.DecideApproval(ctx, id, store.ApprovalDecision{
		Approve: approve, ByKeyID: who.KeyID, By: by, Comment: comment, At: s.now().UTC(),
	})
	if errors.Is(err, store.ErrConflict) {
		return got, fmt.Errorf("%w: approval %s is %s", ErrDecided, id, got.State)
	}
	return got, err
}

// Claim lets the call c run under approval id: the approval must be for
// exactly this call, approved, unexpired and unused. It is then used up:
// of any number of concurrent claims, one succeeds.
func (s *Service) Claim(ctx context.Context, id string, c Call) (store.Approval, error) {
	a, err := s.Get(ctx, id)
	if err != nil {
		return store.Approval{}, err
	}
	if a.TokenID != c.TokenID || a.Step != c.Step || a.Server != c.Server || a.Tool != c.Tool || a.ArgsHash != HashArgs(c.Args) {
		return a, fmt.Errorf("%w: approval %s was given for %s/%s step %d of another token or with other arguments",
			ErrMismatch, id, a.Server, a.Tool, a.Step)
	}
	// A service key names its end users: what a person approved for one
	// of them does not run for another (nor under another agent).
	if a.User != c.User || a.Agent != c.Agent {
		return a, fmt.Errorf("%w: approval %s was given for a call made for another end user or agent", ErrMismatch, id)
	}
	if err := stateError(a); err != nil {
		return a, err
	}
	got, err := s.store.ExecuteApproval(ctx, id, s.now().UTC())
	if errors.Is(err, store.ErrConflict) {
		if err := stateError(got); err != nil {
			return got, err
		}
		return got, fmt.Errorf("%w: approval %s was already used", ErrExecuted, id)
	}
	return got, err
}

// stateError explains why an approval in state a.State does not let its
// call run; nil for approved.
func stateError(a store.Approval) error {
	switch a.State {
	case store.ApprovalApproved:
		return nil
	case store.ApprovalPending:
		return fmt.Errorf("%w: approval %s is waiting for a decision", ErrPending, a.ID)
	case store.ApprovalDenied:
		why := ""
		if a.Comment != "" {
			why = ": " + a.Comment
		}
		return fmt.Errorf("%w by %s%s", ErrDenied, a.DecidedBy, why)
	case store.ApprovalExpired:
		return fmt.Errorf("%w at %s", ErrExpired, a.ExpiresAt.UTC().Format(time.RFC3339))
	case store.ApprovalExecuted:
		return fmt.Errorf("%w: approval %s let its call run once, at %s", ErrExecuted, a.ID, a.ExecutedAt.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%w: approval %s is in unknown state %q", ErrDecided, a.ID, a.State)
}

// Expire marks open approvals past their expiry as expired and returns them.
func (s *Service) Expire(ctx context.Context) ([]store.Approval, error) {
	return s.store.ExpireApprovals(ctx, s.now().UTC())
}

// newID returns an approval id: "apv_" and 20 random base32 characters.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [20]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return "apv_" + string(b[:])
}

// ValidID reports whether s has the form of an approval id, so a caller
// can refuse junk before any lookup.
func ValidID(s string) bool {
	if len(s) != 24 || !strings.HasPrefix(s, "apv_") {
		return false
	}
	for _, c := range s[4:] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

func normalize(list []string) []string {
	var out []string
	for _, s := range list {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "" && !strings.Contains(s, "\n") {
			out = append(out, s)
		}
	}
	return out
}
