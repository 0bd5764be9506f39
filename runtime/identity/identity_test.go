package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"plain email", "alice@customer.com", true},
		{"empty", "", true},
		{"non-ASCII name", "zoë@example.com", true},
		{"invalid UTF-8", "\xff", false},
		{"NUL", "bob\x00@example.com", false},
		{"newline", "bob\n@example.com", false},
		{"escape", "bob\x1b[31m", false},
		{"C1 control", "bob\u0085", false},
		{"right-to-left override", "bob\u202e@example.com", false},
		{"zero-width space", "bo\u200bb@example.com", false},
		{"BOM", "\ufeffbob", false},
		{"private use", "bob\ue000", false},
		{"line separator", "bob\u2028", false},
		{"too long", strings.Repeat("a", MaxUser+1), false},
		{"our API key", "ak_live_abc_0123456789abcdef", false},
		{"our API key inside", "x-ak_test_abc_0123456789", false},
		{"Authorization value", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", false},
		{"Basic credentials", "basic dXNlcjpwYXNzd29yZA==", false},
	} {
		err := Check("user_id", tc.in, MaxUser)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check(%q) = %v, want ok=%v", tc.name, tc.in, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "user_id ") {
			t.Errorf("%s: error %q does not name the field", tc.name, err)
		}
	}
}

func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"sdk-1733300000000", true},
		{"4bf92f35-77b3-4da6-a3ce-929d0e0e4736", true},
		{"", false},
		{"\xff", false},
		{"a b", false},
		{"id\x00", false},
		{strings.Repeat("a", MaxRequestID+1), false},
		{"ak_live_key1_0123456789abcdef0123", false},
		{"<script>", false},
	} {
		got := RequestID(tc.in)
		if (got == tc.in) != tc.keep {
			t.Errorf("RequestID(%q) = %q, want kept=%v", tc.in, got, tc.keep)
		}
		if err := Check("X-Request-ID", got, MaxRequestID); err != nil {
			t.Errorf("RequestID(%q) = %q, which fails Check: %v", tc.in, got, err)
		}
	}
}

// TestNewRequestID: ids the gateway makes sort by time (so they land
// together in the audit log's request_id index), are valid request ids,
// and differ within one millisecond.
func TestNewRequestID(t *testing.T) {
	base := time.UnixMilli(1764806400000) // 2025-12-04
	var prev string
	seen := map[string]bool{}
	for i, now := range []time.Time{base, base, base.Add(time.Millisecond), base.Add(time.Second), base.Add(400 * 24 * time.Hour)} {
		id := newRequestID(now)
		if len(id) != 36 || !strings.HasPrefix(id, "req_") || strings.Trim(id[4:], "0123456789abcdef") != "" {
			t.Errorf("newRequestID(%v) = %q, want req_ and 32 hex digits", now, id)
		}
		if RequestID(id) != id {
			t.Errorf("RequestID(%q) does not keep it", id)
		}
		if seen[id] {
			t.Errorf("newRequestID made %q twice", id)
		}
		seen[id] = true
		if i > 1 && id <= prev {
			t.Errorf("newRequestID(%v) = %q sorts before the id of an earlier millisecond, %q", now, id, prev)
		}
		prev = id
	}
	if got, want := newRequestID(base)[4:16], "019ae6a89800"; got != want {
		t.Errorf("time part %s, want %s (milliseconds in hex)", got, want)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name             string
		tokenEmail, uid  string
		claims           []Claim
		want, wantSource string
		wantErr          error // nil: no error; errProblem: a *Problem
	}{
		{name: "token user_id only", uid: "weather-service", want: "weather-service", wantSource: "token user_id"},
		{name: "token user_id trimmed", uid: " mallory@Example.com ", want: "mallory@example.com", wantSource: "token user_id"},
		{name: "call names bob (SDK 0.2.6 params)", uid: "weather-service",
			claims: []Claim{{"params.user_email", "bob@customer.com"}, {"params._iam_context.user_email", "bob@customer.com"}, {"params._iam_context.email", "Bob@Customer.com "}},
			want:   "bob@customer.com", wantSource: "params.user_email"},
		{name: "top-level user_email", uid: "svc", claims: []Claim{{"user_email", "alice@customer.com"}}, want: "alice@customer.com", wantSource: "user_email"},
		{name: "two users in one call", uid: "svc",
			claims:  []Claim{{"user_email", "alice@customer.com"}, {"params.user_email", "bob@customer.com"}},
			wantErr: ErrConflict},
		{name: "bound token, same user named", tokenEmail: "alice@customer.com", uid: "svc",
			claims: []Claim{{"params.user_email", "ALICE@customer.com"}}, want: "alice@customer.com", wantSource: "token user_email"},
		{name: "bound token, other user named", tokenEmail: "alice@customer.com", uid: "svc",
			claims: []Claim{{"params.user_email", "bob@customer.com"}}, wantErr: ErrNotTokenUser},
		{name: "bound token, nothing named", tokenEmail: "alice@customer.com", uid: "svc", want: "alice@customer.com", wantSource: "token user_email"},
		{name: "empty claims ignored", uid: "svc", claims: []Claim{{"params.user_email", "  "}}, want: "svc", wantSource: "token user_id"},
		{name: "NUL in claim", uid: "svc", claims: []Claim{{"X-Armoriq-User", "bob\x00"}}, wantErr: errProblem},
		{name: "space inside claim", uid: "svc", claims: []Claim{{"X-Armoriq-User", "bob @x.com"}}, wantErr: errProblem},
		{name: "API key as a user", uid: "svc", claims: []Claim{{"user_email", "ak_live_k_0123456789abcdef"}}, wantErr: errProblem},
	} {
		got, err := Resolve(tc.tokenEmail, tc.uid, tc.claims...)
		switch {
		case tc.wantErr == errProblem:
			var p *Problem
			if !errors.As(err, &p) {
				t.Errorf("%s: Resolve = %+v, %v; want a *Problem", tc.name, got, err)
			}
		case tc.wantErr != nil:
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: Resolve = %+v, %v; want %v", tc.name, got, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: Resolve: %v", tc.name, err)
		case got.User != tc.want || got.Source != tc.wantSource:
			t.Errorf("%s: Resolve = %+v, want %q from %q", tc.name, got, tc.want, tc.wantSource)
		}
	}
}

var errProblem = errors.New("a *Problem")

func TestParamClaims(t *testing.T) {
	// What @armoriq/sdk 0.2.6 sends for invoke(..., 'bob@customer.com').
	params := map[string]any{
		"city":       "Paris",
		"user_email": "bob@customer.com",
		"_iam_context": map[string]any{
			"allowed_tools": []any{"get_weather"}, "email": "bob@customer.com", "user_email": "bob@customer.com",
			"user_id": "weather-service", "agent_id": "agent",
		},
	}
	cl, err := ParamClaims(params)
	if err != nil || len(cl) != 3 {
		t.Fatalf("ParamClaims = %v, %v; want 3 claims", cl, err)
	}
	if _, err := ParamClaims(map[string]any{"user_email": 5}); err == nil {
		t.Error("ParamClaims(user_email: 5) = nil error, want one")
	}
	if _, err := ParamClaims(map[string]any{"_iam_context": "bob"}); err == nil {
		t.Error(`ParamClaims(_iam_context: "bob") = nil error, want one`)
	}
}

func FuzzResolve(f *testing.F) {
	f.Add("alice@x.com", "svc", "bob@x.com", "\xff")
	f.Fuzz(func(t *testing.T, tokenEmail, uid, a, b string) {
		r, err := Resolve(tokenEmail, uid, Claim{"a", a}, Claim{"b", b})
		if err != nil {
			return
		}
		// Whatever is named and accepted is a clean identity.
		if r.Source != "token user_id" && r.Source != "token user_email" {
			if cerr := Check("user", r.User, MaxUser); cerr != nil {
				t.Fatalf("Resolve accepted %q: %v", r.User, cerr)
			}
		}
		if r.User != NormalizeUser(r.User) {
			t.Fatalf("Resolve returned %q, not normalised", r.User)
		}
	})
}

// TestUserLookalikes: a user written to look like another is either the
// same user once normalised or refused, never a third identity that
// escapes a rule naming the first.
func TestUserLookalikes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // "" means refused
	}{
		{"plain", "bob@customer.com", "bob@customer.com"},
		{"case and space", " Bob@Customer.COM ", "bob@customer.com"},
		{"fullwidth at sign", "bob\uff20customer.com", "bob@customer.com"},
		{"fullwidth letters", "\uff42\uff4f\uff42@customer.com", "bob@customer.com"},
		{"Kelvin sign", "\u212aate@customer.com", "kate@customer.com"},
		{"trailing dot of the domain", "bob@customer.com.", "bob@customer.com"},
		{"Cyrillic o in the local part", "b\u043eb@customer.com", ""},
		{"Cyrillic s in the domain", "bob@cu\u0455tomer.com", ""},
		{"non-ASCII domain (IDN not in A-labels)", "bob@b\u00fccher.de", ""},
		{"IDN in A-labels", "bob@xn--bcher-kva.de", "bob@xn--bcher-kva.de"},
		{"two at signs", "bob@customer.com@evil.com", ""},
		{"empty domain", "bob@", ""},
		{"empty local part", "@customer.com", ""},
		{"one script, not Latin", "\u0432\u043e\u0432@customer.com", "\u0432\u043e\u0432@customer.com"},
		{"accented Latin", "zo\u00eb@example.com", "zo\u00eb@example.com"},
		{"decomposed accent composes", "zoe\u0308@example.com", "zo\u00eb@example.com"},
		{"a user id, not an email", "weather-service", "weather-service"},
	} {
		got, err := User("user_email", tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: User(%q) = %q, want it refused", tc.name, tc.in, got)
		case tc.want != "" && err != nil:
			t.Errorf("%s: User(%q): %v, want %q", tc.name, tc.in, err, tc.want)
		case tc.want != "" && got != tc.want:
			t.Errorf("%s: User(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func FuzzUser(f *testing.F) {
	for _, s := range []string{"bob@customer.com", "bob\uff20customer.com", " B\u043eb@X.com. .", "zoe\u0308@example.com", "svc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := User("user", s)
		if err != nil {
			return
		}
		// What is accepted is accepted again, unchanged: the stored form
		// is the compared form.
		if again, err := User("user", u); err != nil || again != u {
			t.Fatalf("User(%q) = %q, but User(%q) = %q, %v", s, u, u, again, err)
		}
	})
}
