package store

import (
	"errors"
	"strings"
	"testing"
)

func TestGenerateAPIKey(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		full, id, hash := GenerateAPIKey()
		if !strings.HasPrefix(full, "ak_live_"+id+"_") {
			t.Fatalf("GenerateAPIKey() = %q with id %q, want ak_live_<id>_<secret>", full, id)
		}
		gotID, secret, err := ParseAPIKey(full)
		if err != nil || gotID != id || len(secret) != 43 {
			t.Fatalf("ParseAPIKey(%q) = %q, %q, %v; want id %q and a 43-character secret", full, gotID, secret, err, id)
		}
		if !CheckAPISecret(id, secret, hash) {
			t.Fatalf("CheckAPISecret(%q) rejects the secret GenerateAPIKey hashed", full)
		}
		if seen[id] || seen[secret] {
			t.Fatalf("GenerateAPIKey repeated an id or secret: %q", full)
		}
		seen[id], seen[secret] = true, true
	}
}

func TestParseAPIKey(t *testing.T) {
	secret := strings.Repeat("aZ9", 14) + "q" // 43 base62 characters
	for _, tt := range []struct {
		in     string
		id     string
		wantOK bool
	}{
		{"ak_live_abcdefghij12_" + secret, "abcdefghij12", true},
		{"ak_live_abcdefghijklmnop_" + secret, "abcdefghijklmnop", true},
		{"ak_test_abcdefghij12_" + secret, "", false}, // not ours
		{"ak_live_abcdefghij1_" + secret, "", false},  // id too short
		{"ak_live_ABCDEFGHIJ12_" + secret, "", false}, // id not lower case
		{"ak_live_abcdefghij12_" + secret[1:], "", false},
		{"ak_live_abcdefghij12_" + secret + "x", "", false},
		{"ak_live_abcdefghij12_" + secret[1:] + "_", "", false},
		{"ak_live_abcdefghij12" + secret, "", false},
		{"Bearer ak_live_abcdefghij12_" + secret, "", false},
		{"", "", false},
	} {
		id, got, err := ParseAPIKey(tt.in)
		if tt.wantOK {
			if err != nil || id != tt.id || got != secret {
				t.Errorf("ParseAPIKey(%q) = %q, %q, %v; want %q, %q, nil", tt.in, id, got, err, tt.id, secret)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseAPIKey(%q) = %q, %q, %v; want ErrInvalid", tt.in, id, got, err)
		}
		if err != nil && strings.Contains(err.Error(), secret[:10]) {
			t.Errorf("ParseAPIKey(%q) error %q quotes the secret", tt.in, err)
		}
	}
}

// The hash binds the key id: a hash copied to another row checks nothing.
func TestCheckAPISecretBindsID(t *testing.T) {
	full, id, hash := GenerateAPIKey()
	_, secret, _ := ParseAPIKey(full)
	if CheckAPISecret("another0key0id", secret, hash) {
		t.Errorf("CheckAPISecret accepts the secret of %s under another id", id)
	}
	if CheckAPISecret(id, secret, hash[:31]) {
		t.Errorf("CheckAPISecret accepts a truncated hash")
	}
}

func FuzzParseAPIKey(f *testing.F) {
	full, _, _ := GenerateAPIKey()
	f.Add(full)
	f.Add("ak_live__")
	f.Add("ak_live_abcdefghij12_")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := ParseAPIKey(s)
		if err != nil {
			return
		}
		if s != "ak_live_"+id+"_"+secret || strings.Contains(id, "_") || len(id) < 12 || len(secret) != 43 {
			t.Errorf("ParseAPIKey(%q) accepted id %q secret %q", s, id, secret)
		}
	})
}

func TestOpenDSN(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	for _, dsn := range []string{"sqlite:" + dir + "/a.db", dir + "/b.db"} {
		s, err := Open(ctx, dsn)
		if err != nil {
			t.Errorf("Open(%q): %v", dsn, err)
			continue
		}
		s.Close()
	}
	for _, dsn := range []string{"mysql://u:secretpw@host/db", "sqlite:", ""} {
		s, err := Open(ctx, dsn)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%q) = %v, %v; want ErrInvalid", dsn, s, err)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("Open(%q) error %q shows the password", dsn, err)
		}
	}
}
