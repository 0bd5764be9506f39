package gateway

import "testing"

func TestFindSecretArg(t *testing.T) {
	tests := []struct {
		name string
		args any
		want string
	}{
		{"no args", nil, ""},
		{"plain args", map[string]any{"city": "Paris", "count": 3}, ""},
		{"top-level password", map[string]any{"password": "x"}, "password"},
		{"camelCase apiKey", map[string]any{"apiKey": "x"}, "apiKey"},
		{"dash form x-api-key", map[string]any{"headers": map[string]any{"X-API-Key": "x"}}, "headers.X-API-Key"},
		{"nested in list", map[string]any{"items": []any{map[string]any{"ok": 1}, map[string]any{"access_token": "x"}}}, "items[1].access_token"},
		{"authorization header", map[string]any{"Authorization": "Bearer x"}, "Authorization"},
		{"private key", map[string]any{"ssh": map[string]any{"private_key": "x"}}, "ssh.private_key"},
		{"cookie", map[string]any{"cookie": "a=b"}, "cookie"},
		{"token as a name fragment counts", map[string]any{"query": "password reset docs", "tokens_used": 3}, "tokens_used"},
	}
	for _, tt := range tests {
		got := findSecretArg(tt.args, "")
		if got != tt.want {
			t.Errorf("%s: findSecretArg(%v) = %q, want %q", tt.name, tt.args, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	in := map[string]any{
		"city":   "Paris",
		"secret": "s3",
		"nested": map[string]any{"Token": "t", "keep": "v"},
		"note":   "ak_live_abcdefghijk_0123456789",
	}
	out := redact(in).(map[string]any)
	if out["city"] != "Paris" || out["secret"] != redacted || out["note"] != redacted {
		t.Errorf("redact(%v) = %v", in, out)
	}
	n := out["nested"].(map[string]any)
	if n["Token"] != redacted || n["keep"] != "v" {
		t.Errorf("redact nested = %v", n)
	}
	if in["secret"] != "s3" {
		t.Errorf("redact mutated its input: %v", in)
	}
}
