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

// refPatterns are the regular expressions the hand-written scanners of
// valuePatterns implement (their comments name them).
var refPatterns = map[string]func(string) []span{
	"armoriq API key": reSpans(regexp.MustCompile(`(?i)ak_(?:live|test)_[A-Za-z0-9_\-]*`), 0, nil),
	"Authorization value": reSpans(regexp.MustCompile(`(?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/\-]{8,}=*)`), 1,
		func(s string, m []int) bool { return plainWord(s[m[2]:m[3]]) }),
	"password in a URL": reSpans(regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:([^@\s/]+)@`), 1, nil),
	"secret name=value": reSpans(regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*("[^"]*"|'[^']*'|[^\s;&,"']+)`), 2,
		func(s string, m []int) bool { return !secretName(s[m[2]:m[3]]) }),
	"JWT":                                    reSpans(regexp.MustCompile(`eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*`), 0, nil),
	"AWS access key id":                      reSpans(regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`), 0, nil),
	"GitHub token":                           reSpans(regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})`), 0, nil),
	"Slack token":                            reSpans(regexp.MustCompile(`\bxox[abposre]-[A-Za-z0-9\-]{10,}`), 0, nil),
	"OpenAI, Anthropic or Stripe secret key": reSpans(regexp.MustCompile(`\b(?:sk-[A-Za-z0-9_\-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,})`), 0, nil),
	"Google API key":                         reSpans(regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}`), 0, nil),
	`secret "name": "value"`: reSpans(regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_.\-]{0,63})"[ \t]*:[ \t]*("(?:[^"\\]|\\.)*")`), 2,
		func(s string, m []int) bool { return !secretName(s[m[2]:m[3]]) }),
}

func checkScanners(t *testing.T, s string) {
	t.Helper()
	for _, p := range valuePatterns {
		ref, ok := refPatterns[p.name]
		if !ok {
			continue
		}
		got, want := p.spans(s), ref(s)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: spans(%q) = %v, the regular expression gives %v", p.name, s, got, want)
		}
	}
}

func TestScannersMatchTheirRegexps(t *testing.T) {
	for _, s := range []string{
		"use " + testAPIKey + " or AK_TEST_x-y_z, not ak_lives_ nor xak_live_",
		"Authorization: Bearer abc.def-123 basic dXNlcjpwYXNz xbearer 12345678 Bearer\tshort Basic authentication",
		"a https://u:p1@h/ b ftp://v:p2@k/ 1http://x:y@z 9a+b.c-d://u:pw@h http://u@h http://:x@h http://u:@h",
		"Server=db;User Id=sa;Password=Pa55w0rd; token = 'a b' pwd=\"x\" a= b key= 1.x=2 _pw=3 pass=\"open",
		`{"password":"hunter2","a":"b","token" : "x\"y","pwd":"a\` + "\n" + `b","key":1} "1bad": "x" "ok.key-x_1": "v"`,
		"eyJa.b.c eyJ.b.c eyJa..c xeyJa.b. eyJhbGci.eyJzdWIi.sig.more",
		"AKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX xAKIAIOSFODNN7EXAMPLE ASIA0123456789ABCDEF-",
		"ghp_0123456789abcdefghijABCDEFGHIJ github_pat_11ABCDEFG0123456789_abcdefghij xghp_0123456789abcdefghij ghp_short",
		"xoxb-1234567890-abcdefghij xoxz-1234567890 sk-proj-abcdefghijklmnopqrstuvwx sk_live_abcdefghij0123 rk_test_0123456789",
		"AIzaSyA-0123456789abcdefghijklmnopqrstuvwxyz AIzaShort",
	} {
		checkScanners(t, s)
	}
}

func FuzzScrubText(f *testing.F) {
	f.Add("Bearer abcdefgh12 a=b&password=x " + testAPIKey)
	f.Add(`{"secret": "s\"x", "n": "v"} postgres://u:p@h/db`)
	f.Add("1.x=2 _pw=3 bearer  ABCDEFGHIJ== basic x")
	f.Add("eyJa.b.c AKIAIOSFODNN7EXAMPLE ghp_0123456789abcdefghij xoxb-1234567890 sk-abcdefghijklmnopqrst AIzaSyA-0123456789abcdefghijklmnopqrstu")
	f.Fuzz(func(t *testing.T, s string) {
		out := scrubText(s)
		if liveKey.MatchString(out) {
			t.Errorf("scrubText(%q) = %q: still holds an API key", s, out)
		}
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return // the regular expressions fold case beyond ASCII
			}
		}
		checkScanners(t, s)
	})
}

// FuzzScrubTextPrefilter: whenever maySpanSecret says no pattern can
// match, the full scan (every pattern, as scrubText ran before the
// prefilter) leaves the string as it is.
func FuzzScrubTextPrefilter(f *testing.F) {
	for _, s := range []string{
		"req_0193a1b2c3d4e5f6a7b8c9d0e1", "alice@example.com", "armoriq-bench", "allow-echo",
		"Bearer abcdefgh12", "a=b&password=x", `{"secret": "x"}`, "postgres://u:p@h/db",
		"eyJa.b.c", "AKIAIOSFODNN7EXAMPLE", "ghp_0123456789abcdefghij", "github_pat_0123456789abcdefghij",
		"xoxb-1234567890", "sk-abcdefghijklmnopqrst", "sk_live_0123456789", "AIzaSyA-0123456789abcdefghijklmnopqrstu",
		"ak_live_abcdefgh", "AK_TEST_abcdefgh", "-----BEGIN PRIVATE KEY-----", testAPIKey,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if maySpanSecret(s) {
			return
		}
		out := s
		if len(s) >= 8 {
			aws := containsAny(out, awsKeyIDAnchors) && len(awsKeyIDSpans(out)) > 0
			for i := range valuePatterns {
				out = replaceSpans(out, valuePatterns[i].spans(out))
			}
			if aws {
				out = scrubAWSSecret(out)
			}
		}
		if out != s {
			t.Errorf("maySpanSecret(%q) = false, but the patterns make it %q", s, out)
		}
	})
}

// BenchmarkScrubText measures scrubText over 1 MiB strings, clean and
// full of what makes its scanners look closer: every shape must stay linear
// (go test ./runtime/gateway -run XXX -bench ScrubText).
func BenchmarkScrubText(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"clean", strings.Repeat("abcdefgh ", 1<<17)},
		{"name=value", strings.Repeat("a=b&c=d ", 1<<17)},
		{"json-pairs", strings.Repeat(`"a": "b", `, 1<<17)},
		{"urls", strings.Repeat(`http://x:y@h/ `, 1<<16)},
		{"bearer", strings.Repeat(`bearer abcdefghijkl `, 1<<16)},
		{"prefixes", strings.Repeat(`sk- ghp_ xox AIza eyJ AKIA ak_ `, 1<<15)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.s)))
			for b.Loop() {
				scrubText(c.s)
			}
		})
	}
}
