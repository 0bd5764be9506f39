package gateway

import (
	"encoding/json"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

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
		// Refusing is narrower than redacting: these are redacted in the
		// audit, but the call goes through.
		{"cache key is not refused", map[string]any{"key": "user:42", "monkey": 1, "keyboard": "qwerty"}, ""},
		{"shell pwd is not refused", map[string]any{"pwd": "/home/app"}, ""},
		{"auth and dsn are not refused", map[string]any{"auth": "basic", "dsn": "postgres://h/db"}, ""},
	}
	for _, tt := range tests {
		got := findSecretArg(tt.args, "")
		if got != tt.want {
			t.Errorf("%s: findSecretArg(%v) = %q, want %q", tt.name, tt.args, got, tt.want)
		}
	}
}

func TestSecretName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"pass", true}, {"PASS", true}, {"pwd", true}, {"DB_PWD", true}, {"db.pwd", true},
		{"passwd", true}, {"password", true}, {"MYSQL_ROOT_PASSWORD", true}, {"userPassword", true},
		{"passphrase", true}, {"auth", true}, {"x-auth", true}, {"authToken", true},
		{"Authorization", true}, {"proxy-authorization", true}, {"oauth", true},
		{"key", true}, {"api-key", true}, {"apiKey", true}, {"APIKey", true}, {"api_key", true},
		{"apikey", true}, {"privateKey", true}, {"private_key", true}, {"ssh key", true},
		{"key_id", true}, {"keys", true}, {"accessKey", true}, {"aws_secret_access_key", true},
		{"dsn", true}, {"DATABASE_DSN", true}, {"sentryDsn", true}, {"connectionString", true},
		{"credential", true}, {"credentials", true}, {"creds", true}, {"gcpCredentialsJson", true},
		{"secret", true}, {"client_secret", true}, {"clientSecret", true}, {"webhookSecret", true},
		{"token", true}, {"access_token", true}, {"xsrftoken", true}, {"refreshToken", true},
		{"cookie", true}, {"Set-Cookie", true}, {"session", true}, {"sessionId", true},
		{"session_id", true}, {"jwt", true}, {"bearer", true}, {"otp", true},
		// Innocent words that contain a secret word.
		{"monkey", false}, {"keyboard", false}, {"keynote", false}, {"turkey", false},
		{"author", false}, {"authors", false}, {"passenger", false}, {"compass", false},
		{"bypass_cache", false}, {"city", false}, {"query", false}, {"pathway", false},
		{"", false}, {"_", false},
	}
	for _, tt := range tests {
		if got := secretName(tt.name); got != tt.want {
			t.Errorf("secretName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNameWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"privateKey", []string{"private", "key"}},
		{"APIKey", []string{"api", "key"}},
		{"X-API-Key", []string{"x", "api", "key"}},
		{"DB_PWD", []string{"db", "pwd"}},
		{"user.password2", []string{"user", "password2"}},
		{"monkey", []string{"monkey"}},
		{"--", nil},
	}
	for _, tt := range tests {
		if got := nameWords(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("nameWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Realistic-looking fake credentials; none is a live secret.
const (
	testAPIKey = "ak_live_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
	testJWT    = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
	testAWSID  = "AKIAIOSFODNN7EXAMPLE"
	testAWSKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testPEM    = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc==\n-----END RSA PRIVATE KEY-----"
)

func TestScrubText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain text is kept", "weather in Paris tomorrow", "weather in Paris tomorrow"},
		{"short text is kept", "ak_live", "ak_live"},
		{"our API key alone", testAPIKey, "[REDACTED]"},
		{"our API key in a sentence", "use " + testAPIKey + " now", "use [REDACTED] now"},
		{"our test API key", "k=ak_test_abc", "k=[REDACTED]"},
		{"our API key glued to text", "x" + testAPIKey + "!", "x[REDACTED]!"},
		{"our API key in upper case", "AK_LIVE_ABCDEFGHIJ", "[REDACTED]"},
		{"an empty API key prefix still goes", "id ak_live_", "id [REDACTED]"},
		{"JWT", "token is " + testJWT, "token is [REDACTED]"},
		{"JWT as a request id", testJWT, "[REDACTED]"},
		{"PEM private key", "key:\n" + testPEM + "\nend", "key:\n[REDACTED]\nend"},
		{"PEM private key cut short", "-----BEGIN PRIVATE KEY-----\nMIIE", "[REDACTED]"},
		{"PEM certificate is public", "-----BEGIN CERTIFICATE-----\nMIIB", "-----BEGIN CERTIFICATE-----\nMIIB"},
		{"OpenSSH private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----", "[REDACTED]"},
		{"Bearer value", "Authorization: Bearer abc.def-123", "Authorization: Bearer [REDACTED]"},
		{"bearer in lower case", "bearer 0123456789abcdef", "bearer [REDACTED]"},
		{"Basic value", "Basic dXNlcjpwYXNz", "Basic [REDACTED]"},
		{"Basic value with padding", "Basic dXNlcjpwYXNzd29yZA==", "Basic [REDACTED]"},
		{"bearer as a word is kept", "Bearer authentication failed", "Bearer authentication failed"},
		{"basic as a word is kept", "basic settings", "basic settings"},
		{"URL with a password", "postgres://app:s3cr3t@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"},
		{"URL with an empty user", "redis://:hunter22@cache:6379", "redis://:[REDACTED]@cache:6379"},
		{"two URLs", "a https://u:p1@h/ b ftp://v:p2@k/", "a https://u:[REDACTED]@h/ b ftp://v:[REDACTED]@k/"},
		{"URL without a password is kept", "https://user@example.com/path?q=1", "https://user@example.com/path?q=1"},
		{"URL with a port is kept", "http://example.com:8080/x", "http://example.com:8080/x"},
		{"query string password", "https://h/login?user=bob&password=hunter2&x=1", "https://h/login?user=bob&password=[REDACTED]&x=1"},
		{"connection string", "Server=db;User Id=sa;Password=Pa55w0rd;", "Server=db;User Id=sa;Password=[REDACTED];"},
		{"env line pwd", "DB_PWD=abc123", "DB_PWD=[REDACTED]"},
		{"quoted key=value", `api_key="xyz 123"`, `api_key=[REDACTED]`},
		{"innocent key=value is kept", "city=Paris&units=metric", "city=Paris&units=metric"},
		{"JSON text password", `{"user":"bob","password":"hunter2"}`, `{"user":"bob","password":[REDACTED]}`},
		{"JSON text escaped quote", `{"token": "a\"b"}`, `{"token": [REDACTED]}`},
		{"JSON text innocent", `{"city": "Paris"}`, `{"city": "Paris"}`},
		{"AWS access key id", "id " + testAWSID, "id [REDACTED]"},
		{"AWS secret next to its id", testAWSID + " " + testAWSKey, "[REDACTED] [REDACTED]"},
		{"AWS secret alone is kept", "x " + testAWSKey, "x " + testAWSKey},
		{"git hash next to an AWS id is kept", testAWSID + " 0123456789abcdef0123456789abcdef01234567", "[REDACTED] 0123456789abcdef0123456789abcdef01234567"},
		{"GitHub token", "ghp_0123456789abcdefghijABCDEFGHIJ", "[REDACTED]"},
		{"GitHub fine-grained token", "tok github_pat_11ABCDEFG0123456789_abcdefghij", "tok [REDACTED]"},
		{"Slack bot token", "xoxb-1234567890-abcdefghij", "[REDACTED]"},
		{"OpenAI key", "sk-proj-abcdefghijklmnopqrstuvwx", "[REDACTED]"},
		{"Stripe key", "sk_live_abcdefghij0123", "[REDACTED]"},
		{"Google API key", "AIzaSyA-0123456789abcdefghijklmnopqrstu", "[REDACTED]"},
		{"an email is kept", "alice@customer.com", "alice@customer.com"},
		{"a UUID request id is kept", "7f0c8a4e-2b1d-4c3a-9e8f-0a1b2c3d4e5f", "7f0c8a4e-2b1d-4c3a-9e8f-0a1b2c3d4e5f"},
	}
	for _, tt := range tests {
		if got := scrubText(tt.in); got != tt.want {
			t.Errorf("%s: scrubText(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		in   string // JSON
		want string // JSON
	}{
		{"plain", `{"city":"Paris","n":3}`, `{"city":"Paris","n":3}`},
		{"secret names at the top", `{"pwd":"x","pass":"y","auth":"z","key":"k","dsn":"d"}`,
			`{"auth":"[REDACTED]","dsn":"[REDACTED]","key":"[REDACTED]","pass":"[REDACTED]","pwd":"[REDACTED]"}`},
		{"secret names at depth", `{"db":{"conn":{"Password":"x","host":"h"}},"list":[{"apiKey":"k"}]}`,
			`{"db":{"conn":{"Password":"[REDACTED]","host":"h"}},"list":[{"apiKey":"[REDACTED]"}]}`},
		{"an object under a secret name goes whole", `{"credentials":{"user":"u","x":1}}`, `{"credentials":"[REDACTED]"}`},
		{"a number under a secret name", `{"pin_code":1,"password":123456}`, `{"password":"[REDACTED]","pin_code":1}`},
		{"a number under a measure name is kept", `{"max_tokens":500,"tokens_used":3,"password_length":12}`,
			`{"max_tokens":500,"password_length":12,"tokens_used":3}`},
		{"a string under a measure name goes", `{"max_tokens":"abc"}`, `{"max_tokens":"[REDACTED]"}`},
		{"booleans and null are kept", `{"auth":true,"token":null}`, `{"auth":true,"token":null}`},
		{"innocent names", `{"monkey":"m","keyboard":"k","author":"a"}`, `{"author":"a","keyboard":"k","monkey":"m"}`},
		{"values under any name", `{"note":"` + testAPIKey + `","q":"Bearer abcdefgh12345","url":"https://u:pw@h/"}`,
			`{"note":"[REDACTED]","q":"Bearer [REDACTED]","url":"https://u:[REDACTED]@h/"}`},
		{"values in lists", `{"l":["ok","` + testJWT + `"]}`, `{"l":["ok","[REDACTED]"]}`},
		{"maps in lists in lists", `{"l":[[{"b":1,"a":{"pwd":"x","c":[{"z":1,"y":2}]}}],{"k":"v"}]}`, `{"l":[[{"a":{"c":[{"y":2,"z":1}],"pwd":"[REDACTED]"},"b":1}],{"k":"v"}]}`},
		{"AWS secret under an aws name", `{"aws":{"value":"` + testAWSKey + `"}}`, `{"aws":{"value":"[REDACTED]"}}`},
		{"AWS secret elsewhere is kept", `{"blob":"` + testAWSKey + `"}`, `{"blob":"` + testAWSKey + `"}`},
		{"an API key as a name", `{"` + testAPIKey + `":"v"}`, `{"[REDACTED]":"v"}`},
		{"top-level list", `["` + testJWT + `"]`, `["[REDACTED]"]`},
		{"escaping", `{"h":"<a&b>\u2028\u0001\t\"\\","n":-1.5e3,"e":[],"o":{}}`, `{"e":[],"h":"\u003ca\u0026b\u003e\u2028\u0001\t\"\\","n":-1.5e3,"o":{}}`},
	}
	for _, tt := range tests {
		var in any
		dec := json.NewDecoder(strings.NewReader(tt.in))
		dec.UseNumber()
		if err := dec.Decode(&in); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		before, _ := json.Marshal(in)
		b, err := json.Marshal(redact(in))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := string(b); got != tt.want {
			t.Errorf("%s: redact(%s) = %s, want %s", tt.name, tt.in, got, tt.want)
		}
		if m, ok := in.(map[string]any); ok {
			fast, err := redactedJSON(m)
			if err != nil || string(fast) != tt.want {
				t.Errorf("%s: redactedJSON(%s) = %s, %v; want %s", tt.name, tt.in, fast, err, tt.want)
			}
		}
		if after, _ := json.Marshal(in); string(after) != string(before) {
			t.Errorf("%s: redact modified its input: %s, was %s", tt.name, after, before)
		}
	}
}

// TestRedactShares checks that redact does not copy arguments without
// secrets: audit records of large calls must not double their memory.
func TestRedactShares(t *testing.T) {
	big := strings.Repeat("a", 1<<20)
	in := map[string]any{"data": big, "list": []any{big}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	redact(in)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Errorf("redact of 2 MiB of clean arguments allocated %d bytes, want under 64 KiB", got)
	}
}

var liveKey = regexp.MustCompile(`(?i)ak_(?:live|test)_`)

func FuzzRedact(f *testing.F) {
	f.Add("pwd", "hunter2", "x "+testAPIKey)
	f.Add("note", testJWT, "postgres://u:p@h/db")
	f.Add("aws", testAWSID+" "+testAWSKey, testPEM)
	f.Add("AK_LIVE_x", "Bearer ak_live_", `{"password": "x"}`)
	f.Fuzz(func(t *testing.T, name, a, b string) {
		in := map[string]any{name: a, "list": []any{b, map[string]any{a: b}}}
		out := redact(in)
		enc, err := json.Marshal(out)
		if err != nil {
			return // invalid UTF-8 round trips as replacement chars; nothing to check
		}
		if fast, err := redactedJSON(in); err != nil || string(fast) != string(enc) {
			t.Errorf("redactedJSON(%q) = %s, %v; json.Marshal(redact) = %s", in, fast, err, enc)
		}
		if liveKey.Match(enc) {
			t.Errorf("redact(%q) = %s: still holds an API key", in, enc)
		}
		for _, s := range []string{name, a, b} {
			if got := scrubText(s); liveKey.MatchString(got) {
				t.Errorf("scrubText(%q) = %q: still holds an API key", s, got)
			}
		}
	})
}

// TestAuditRedactsEndToEnd sends secret-looking arguments through /invoke
// and reads the stored record: none of the secrets may be in it.
func TestAuditRedactsEndToEnd(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	params := map[string]any{
		"text": "connect postgres://app:s3cr3tpw@db/x with " + testAPIKey,
		"pwd":  "pwdvalue1", "pass": "passvalue1", "key": "keyvalue1", "dsn": "dsnvalue1",
		"opts": map[string]any{"ssh_pass": "pkvalue1", "note": testJWT, "aws": map[string]any{"v": testAWSKey}},
	}
	tok := g.issue("alice@example.com", step("tools", "echo", params))
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, map[string]any{"enforce_only": true})
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: status %d: %v", resp.StatusCode, out)
	}
	rec := lastAudit(t, g)
	args := string(rec.Arguments)
	for _, secret := range []string{"s3cr3tpw", testAPIKey, "pwdvalue1", "passvalue1", "keyvalue1", "dsnvalue1", "pkvalue1", testJWT, testAWSKey} {
		if strings.Contains(args, secret) {
			t.Errorf("audit arguments hold %q: %s", secret, args)
		}
	}
	if !strings.Contains(args, "postgres://app:[REDACTED]@db/x") {
		t.Errorf("audit arguments lost the URL around its password: %s", args)
	}
}
