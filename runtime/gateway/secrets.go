package gateway

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/armoriq/controlplane/runtime/store"
)

// Two different things happen to secret-looking arguments, and they use
// two lists on purpose (docs/gateway.md, "Redaction"):
//
//   - the gateway REFUSES a call whose argument names look like a credential
//     (findSecretArg, looksSecret): credentials belong in the gateway's
//     server config, not in what an agent (or a prompt injection) sends.
//     Refusing breaks a tool, so that list is narrow: bare "key", "pwd",
//     "auth" or "dsn" are not refused (a cache "key", a shell tool's "pwd").
//   - the audit REDACTS, at any depth, the values under secret-looking names
//     (secretName, a wider list) and secret-looking values under any name
//     (scrubText). Redacting only hides a value from the record, so it errs
//     on the side of hiding.

// secretNames are argument-name fragments that make the gateway refuse a
// call. They match anywhere in the name, case- and separator-insensitively.
var secretNames = []string{
	"password", "passwd", "passphrase", "secret", "token", "apikey", "api_key",
	"authorization", "auth_header", "cookie", "privatekey", "private_key",
	"credential", "session_id", "sessionid", "access_key", "accesskey",
	"client_secret", "bearer", "x-api-key", "set-cookie",
}

// secretNamesNorm are secretNames with '-' as '_', and secretNamesJoined
// without separators, computed once.
var secretNamesNorm, secretNamesJoined = func() (norm, joined []string) {
	for _, s := range secretNames {
		s = strings.ReplaceAll(s, "-", "_")
		norm = append(norm, s)
		joined = append(joined, strings.ReplaceAll(s, "_", ""))
	}
	return norm, joined
}()

// looksSecret reports whether an argument name is one the gateway refuses.
func looksSecret(name string) bool {
	n := strings.ReplaceAll(strings.ToLower(name), "-", "_")
	// camelCase and run-together forms: "apiKey" → "apikey".
	joined := strings.ReplaceAll(n, "_", "")
	for i, s := range secretNamesNorm {
		if strings.Contains(n, s) || strings.Contains(joined, secretNamesJoined[i]) {
			return true
		}
	}
	return false
}

// findSecretArg returns the path of the first argument (at any depth, in
// sorted key order) whose name the gateway refuses, or "".
func findSecretArg(v any, path string) string {
	f := secretArgFinder{seen: make(map[string]bool)}
	if !f.has(v) {
		return ""
	}
	segs := f.find(v)
	var b strings.Builder
	b.WriteString(path)
	for i := len(segs) - 1; i >= 0; i-- {
		seg := segs[i]
		if b.Len() == 0 {
			seg = strings.TrimPrefix(seg, ".")
		}
		b.WriteString(seg)
	}
	return b.String()
}

// secretArgFinder caches looksSecret: the same keys repeat in every row of
// a list.
type secretArgFinder struct{ seen map[string]bool }

func (f secretArgFinder) looks(k string) bool {
	s, ok := f.seen[k]
	if !ok {
		s = looksSecret(k)
		if len(f.seen) < 4096 {
			f.seen[k] = s
		}
	}
	return s
}

// has reports whether any name in v looks secret, in any order and
// without allocating per value.
func (f secretArgFinder) has(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if f.looks(k) || f.has(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if f.has(e) {
				return true
			}
		}
	}
	return false
}

// find returns the path to the first secret-looking name in sorted key
// order, as segments (".key", "[i]") from the innermost out, or nil.
func (f secretArgFinder) find(v any) []string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if f.looks(k) {
				return []string{"." + k}
			}
			if !f.has(x[k]) {
				continue
			}
			if q := f.find(x[k]); q != nil {
				return append(q, "."+k)
			}
		}
	case []any:
		for i, e := range x {
			if !f.has(e) {
				continue
			}
			if q := f.find(e); q != nil {
				return append(q, "["+strconv.Itoa(i)+"]")
			}
		}
	}
	return nil
}

// redacted is what replaces a secret in audit records.
const redacted = "[REDACTED]"

// secretWords mark a name as secret when they are one whole word of it.
// Words are split at any non-alphanumeric character and at camelCase
// boundaries, so "api-key", "privateKey" and "DB_PWD" have the word "key" or
// "pwd", while "monkey", "keyboard", "author" and "passenger" do not.
var secretWords = map[string]bool{
	"pass": true, "pwd": true, "pw": true, "passwd": true, "password": true, "passwords": true,
	"passphrase": true, "secret": true, "secrets": true, "token": true, "tokens": true,
	"auth": true, "oauth": true, "authorization": true, "key": true, "keys": true,
	"apikey": true, "dsn": true, "credential": true, "credentials": true, "cred": true,
	"creds": true, "cookie": true, "cookies": true, "session": true, "sessionid": true,
	"jwt": true, "bearer": true, "otp": true, "privatekey": true, "signingkey": true,
}

// secretFragments mark a name as secret wherever they occur in it, words
// joined ("xsrftoken", "clientSecret", "MYSQL_ROOT_PASSWORD"): they are
// distinctive enough not to occur inside innocent words.
var secretFragments = []string{
	"password", "passwd", "passphrase", "secret", "token", "credential", "cookie",
	"apikey", "privatekey", "accesskey", "secretkey", "authorization", "bearer",
	"sessionid", "connectionstring", "connstr",
}

// measureWords mark a secret-looking name as a measure of something rather
// than the thing ("max_tokens", "tokens_used", "password_length"): a number
// under such a name is kept. A string under it is still redacted.
var measureWords = map[string]bool{
	"count": true, "counts": true, "len": true, "length": true, "size": true, "used": true,
	"max": true, "min": true, "num": true, "limit": true, "ttl": true, "expiry": true,
	"expires": true, "expiration": true, "timeout": true, "index": true, "idx": true,
}

// nameWords splits an argument name into lower-case words: at every
// character that is not a letter or digit, and at camelCase boundaries
// ("privateKey" → private key, "APIKey" → api key, "DB_PWD" → db pwd).
func nameWords(name string) []string {
	var words []string
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			words = append(words, strings.ToLower(name[start:end]))
		}
		start = -1
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
		if !alnum {
			flush(i)
			continue
		}
		if start < 0 {
			start = i
			continue
		}
		if isUpper(c) {
			prev := name[i-1]
			next := byte(0)
			if i+1 < len(name) {
				next = name[i+1]
			}
			// "privateKey": lower then upper; "APIKey": the last upper of a
			// run followed by a lower letter.
			if !isUpper(prev) || isLower(next) {
				flush(i)
				start = i
			}
		}
	}
	flush(len(name))
	return words
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }

// nameClass is what secretName found in an argument name.
type nameClass struct {
	secret  bool // the value is redacted
	measure bool // a number under it is kept
	aws     bool // the name is about AWS: 40-character keys below it are redacted
}

// classifyName decides how the value under an argument name is redacted.
func classifyName(name string) nameClass {
	var c nameClass
	words := nameWords(name)
	for _, w := range words {
		switch {
		case secretWords[w]:
			c.secret = true
		case measureWords[w]:
			c.measure = true
		case w == "aws":
			c.aws = true
		}
	}
	if !c.secret {
		joined := strings.Join(words, "")
		for _, f := range secretFragments {
			if strings.Contains(joined, f) {
				c.secret = true
				break
			}
		}
	}
	return c
}

// secretName reports whether the value under an argument name is redacted
// from audit records (numbers under measure names aside, see redact).
func secretName(name string) bool { return classifyName(name).secret }

// redact returns v with what looks secret replaced by [REDACTED]: the
// values under secret-looking names, at any depth, and the secret-looking
// parts of every string (scrubText). Booleans and nulls are always kept (they
// cannot carry a secret), and so are numbers under a measure name
// ("max_tokens": 500). v is not modified; parts without secrets are shared
// with it rather than copied.
func redact(v any) any {
	out, _ := redactValue(v, false)
	return out
}

// redactValue returns v redacted and whether anything changed. aws is set
// below a name about AWS, where a bare 40-character key is a secret key.
func redactValue(v any, aws bool) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			c := classifyName(k)
			nk := scrubText(k)
			var ne any
			changed := nk != k
			switch {
			case c.secret && !keepUnderSecretName(e, c.measure):
				ne, changed = redacted, true
			default:
				var ch bool
				ne, ch = redactValue(e, aws || c.aws)
				changed = changed || ch
			}
			if !changed {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					out[k2] = e2
				}
			}
			if nk != k {
				delete(out, k)
				for i := 2; ; i++ {
					if _, taken := x[nk]; !taken {
						if _, taken := out[nk]; !taken {
							break
						}
					}
					nk = scrubText(k) + "#" + strconv.Itoa(i)
				}
			}
			out[nk] = ne
		}
		if out == nil {
			return x, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			ne, ch := redactValue(e, aws)
			if !ch {
				continue
			}
			if out == nil {
				out = make([]any, len(x))
				copy(out, x)
			}
			out[i] = ne
		}
		if out == nil {
			return x, false
		}
		return out, true
	case string:
		s := scrubText(x)
		if aws {
			s = scrubAWSSecret(s)
		}
		return s, s != x
	default:
		return v, false
	}
}

// keepUnderSecretName reports whether a value under a secret-looking name is
// kept: a boolean or null always, a number under a measure name.
func keepUnderSecretName(v any, measure bool) bool {
	switch v.(type) {
	case nil, bool:
		return true
	case json.Number, float64, float32, int, int64, int32, uint, uint64:
		return measure
	}
	return false
}

// valuePattern is one kind of secret found inside a string, whatever the
// argument's name.
type valuePattern struct {
	name string
	// anchors: the pattern is only looked for when the string contains
	// one of them (case-sensitively; scanners that ignore case check for
	// themselves), which keeps large clean strings cheap.
	anchors []string
	// spans returns the parts of s to replace, in order, not overlapping.
	spans func(s string) []span
}

// span is a part of a string to replace, [start, end).
type span struct{ start, end int }

// reSpans returns the spans function of a regular expression whose
// submatch group is replaced (0: the whole match), unless keep spares the
// match. Only patterns with a literal start are regular expressions: the
// others are scanned by hand, in time linear in the string (a regular
// expression without a literal prefix runs at a few MB/s, and a 1 MiB
// argument full of '=' is something a caller can send).
func reSpans(re *regexp.Regexp, group int, keep func(s string, m []int) bool) func(string) []span {
	return func(s string) []span {
		var out []span
		for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
			if m[2*group] < 0 || (keep != nil && keep(s, m)) {
				continue
			}
			out = append(out, span{m[2*group], m[2*group+1]})
		}
		return out
	}
}

// valuePatterns are the secret-looking values scrubText replaces, in this
// order; docs/gateway.md ("Redaction") lists them. Each hand-written
// scanner matches what the regular expression in its comment would (for
// ASCII text), as FuzzScrubText checks.
var valuePatterns = []valuePattern{
	// (?i)ak_(?:live|test)_[A-Za-z0-9_\-]*
	{name: "armoriq API key", spans: apiKeySpans},
	{name: "PEM private key", anchors: []string{"PRIVATE KEY"},
		spans: reSpans(regexp.MustCompile(`(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)`), 0, nil)},
	// eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*
	{name: "JWT", anchors: []string{"eyJ"}, spans: jwtSpans},
	// (?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/\-]{8,}=*), group 1,
	// unless plainWord
	{name: "Authorization value", spans: authSpans},
	// [A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:([^@\s/]+)@, group 1
	{name: "password in a URL", anchors: []string{"://"}, spans: urlPasswordSpans},
	// ([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*("[^"]*"|'[^']*'|[^\s;&,"']+),
	// group 2, when group 1 is a secret name
	{name: "secret name=value", anchors: []string{"="}, spans: keyValueSpans},
	// "([A-Za-z_][A-Za-z0-9_.\-]{0,63})"[ \t]*:[ \t]*("(?:[^"\\]|\\.)*"),
	// group 2, when group 1 is a secret name
	{name: "secret \"name\": \"value\"", anchors: []string{":"}, spans: jsonPairSpans},
	// \b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b
	{name: "AWS access key id", anchors: awsKeyIDAnchors, spans: awsKeyIDSpans},
	// \b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})
	{name: "GitHub token", anchors: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}, spans: tokenSpans(
		tokenRule{prefixes: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, class: isAlnum, min: 20},
		tokenRule{prefixes: []string{"github_pat_"}, class: isWordByte, min: 20})},
	// \bxox[abposre]-[A-Za-z0-9\-]{10,}
	{name: "Slack token", anchors: []string{"xox"}, spans: tokenSpans(tokenRule{
		prefixes: []string{"xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe-"}, class: isAlnumDash, min: 10})},
	// \b(?:sk-[A-Za-z0-9_\-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,})
	{name: "OpenAI, Anthropic or Stripe secret key", anchors: []string{"sk-", "sk_", "rk_"}, spans: tokenSpans(
		tokenRule{prefixes: []string{"sk-"}, class: isWordDash, min: 20},
		tokenRule{prefixes: []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"}, class: isAlnum, min: 10})},
	// \bAIza[0-9A-Za-z_\-]{35}
	{name: "Google API key", anchors: []string{"AIza"}, spans: tokenSpans(tokenRule{
		prefixes: []string{"AIza"}, class: isWordDash, min: 35, max: 35})},
}

// tokenRule is a credential with a known prefix: the prefix at a word
// boundary, then characters of class, at least min of them (and at most
// max, if set, the match stopping there); with boundaryAfter, what follows
// must not be a word character.
type tokenRule struct {
	prefixes      []string
	class         func(byte) bool
	min, max      int
	boundaryAfter bool
}

// tokenSpans returns the spans function of credentials with known
// prefixes, the leftmost first, as the regular expression alternation of
// the rules would find them, in time linear in the string.
func tokenSpans(rules ...tokenRule) func(string) []span {
	type prefix struct {
		text string
		rule int
	}
	var prefixes []prefix
	for ri, r := range rules {
		for _, p := range r.prefixes {
			prefixes = append(prefixes, prefix{p, ri})
		}
	}
	return func(s string) []span {
		var out []span
		// next[j]: the next occurrence of prefix j at or after where it
		// was last looked for, -1 when there is none: each prefix's
		// occurrences are searched for once in all.
		next := make([]int, len(prefixes))
		for j := range next {
			next[j] = -2 // not looked for yet
		}
		i := 0
		for {
			// The leftmost occurrence of any prefix at or after i.
			best, bestRule, bestLen := -1, -1, 0
			for j, p := range prefixes {
				if next[j] == -2 || (next[j] >= 0 && next[j] < i) {
					next[j] = -1
					if k := strings.Index(s[i:], p.text); k >= 0 {
						next[j] = i + k
					}
				}
				if n := next[j]; n >= 0 && (best < 0 || n < best) {
					best, bestRule, bestLen = n, p.rule, len(p.text)
				}
			}
			if best < 0 {
				return out
			}
			i = best + 1
			if best > 0 && isWordByte(s[best-1]) {
				continue
			}
			r := rules[bestRule]
			t := best + bestLen
			e := t
			for e < len(s) && r.class(s[e]) && (r.max == 0 || e-t < r.max) {
				e++
			}
			if e-t < r.min || (r.boundaryAfter && e < len(s) && isWordByte(s[e])) {
				continue
			}
			out = append(out, span{best, e})
			i = e
		}
	}
}

// jwtSpans finds JSON Web Tokens: eyJ, then three dot-separated parts of
// base64url characters (the last may be empty).
func jwtSpans(s string) []span {
	var out []span
	run := func(j int) int {
		for j < len(s) && isWordDash(s[j]) {
			j++
		}
		return j
	}
	for i := 0; ; {
		k := strings.Index(s[i:], "eyJ")
		if k < 0 {
			return out
		}
		p := i + k
		i = p + 1
		a := run(p + 3)
		if a == p+3 || a == len(s) || s[a] != '.' {
			continue
		}
		b := run(a + 1)
		if b == a+1 || b == len(s) || s[b] != '.' {
			continue
		}
		e := run(b + 1)
		out = append(out, span{p, e})
		i = e
	}
}

// Byte classes of the scanners.
func isAlpha(c byte) bool     { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool     { return c >= '0' && c <= '9' }
func isWordByte(c byte) bool  { return isAlpha(c) || isDigit(c) || c == '_' }
func isREspace(c byte) bool   { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
func isNameByte(c byte) bool  { return isWordByte(c) || c == '.' || c == '-' }
func isTokenByte(c byte) bool { return isAlpha(c) || isDigit(c) || strings.IndexByte("._~+/-", c) >= 0 }
func isAlnum(c byte) bool     { return isAlpha(c) || isDigit(c) }
func isAlnumDash(c byte) bool { return isAlnum(c) || c == '-' }
func isWordDash(c byte) bool  { return isWordByte(c) || c == '-' }
func isUpperOrDigit(c byte) bool {
	return c >= 'A' && c <= 'Z' || isDigit(c)
}

// foldAt reports whether s[i:] starts with the lower-case ASCII word w,
// ignoring ASCII case.
func foldAt(s string, i int, w string) bool {
	if i < 0 || i+len(w) > len(s) {
		return false
	}
	for j := 0; j < len(w); j++ {
		if lower(s[i+j]) != w[j] {
			return false
		}
	}
	return true
}

// apiKeySpans finds our API keys in any case: ak_live_ or ak_test_ and the
// key characters after it.
func apiKeySpans(s string) []span {
	var out []span
	last := 0
	for i := 0; i+8 <= len(s); {
		k := strings.IndexByte(s[i+2:], '_')
		if k < 0 {
			break
		}
		p := i + 2 + k - 2 // where "ak_" would start
		if p >= last && foldAt(s, p, "ak_") && (foldAt(s, p+3, "live_") || foldAt(s, p+3, "test_")) {
			e := p + 8
			for e < len(s) && (isWordByte(s[e]) || s[e] == '-') {
				e++
			}
			out = append(out, span{p, e})
			last, i = e, e
			continue
		}
		i = p + 1
	}
	return out
}

// authSpans finds Bearer and Basic credentials, in any case.
func authSpans(s string) []span {
	var out []span
	for i := 0; i < len(s); {
		k := strings.IndexAny(s[i:], "bB")
		if k < 0 {
			break
		}
		p := i + k
		i = p + 1
		if p > 0 && isWordByte(s[p-1]) {
			continue
		}
		var w int
		switch {
		case foldAt(s, p, "bearer"):
			w = p + 6
		case foldAt(s, p, "basic"):
			w = p + 5
		default:
			continue
		}
		t := w
		for t < len(s) && (s[t] == ' ' || s[t] == '\t') {
			t++
		}
		if t == w {
			continue
		}
		e := t
		for e < len(s) && isTokenByte(s[e]) {
			e++
		}
		if e-t < 8 {
			continue
		}
		for e < len(s) && s[e] == '=' {
			e++
		}
		i = e
		if !plainWord(s[t:e]) {
			out = append(out, span{t, e})
		}
	}
	return out
}

// urlPasswordSpans finds the password of scheme://user:password@ URLs.
func urlPasswordSpans(s string) []span {
	var out []span
	last := 0 // the end of the last whole match, after its '@'
	for i := 0; ; {
		k := strings.Index(s[i:], "://")
		if k < 0 {
			return out
		}
		c := i + k
		i = c + 1
		// A scheme: a letter, then letters, digits, + . - up to "://".
		st := c
		for st > last && (isAlpha(s[st-1]) || isDigit(s[st-1]) || strings.IndexByte("+.-", s[st-1]) >= 0) {
			st--
		}
		for st < c && !isAlpha(s[st]) {
			st++
		}
		if st == c {
			continue
		}
		u := c + 3
		for u < len(s) && s[u] != '/' && s[u] != ':' && s[u] != '@' && !isREspace(s[u]) {
			u++
		}
		if u == len(s) || s[u] != ':' {
			continue
		}
		e := u + 1
		for e < len(s) && s[e] != '@' && s[e] != '/' && !isREspace(s[e]) {
			e++
		}
		if e == u+1 || e == len(s) || s[e] != '@' {
			continue
		}
		out = append(out, span{u + 1, e})
		last, i = e+1, e+1
	}
}

// nameStart returns where the name that ends at end begins: the first
// letter or underscore of the run of name characters before end that is at
// or after min, or -1.
func nameStart(s string, end, min int) int {
	r := end
	for r > min && isNameByte(s[r-1]) {
		r--
	}
	for r < end && !(isAlpha(s[r]) || s[r] == '_') {
		r++
	}
	if r == end {
		return -1
	}
	return r
}

// keyValueSpans finds the values of secret names in name=value text
// (query strings, connection strings, environment lines).
func keyValueSpans(s string) []span {
	var out []span
	var names nameCache
	last := 0
	for i := 0; ; {
		k := strings.IndexByte(s[i:], '=')
		if k < 0 {
			return out
		}
		eq := i + k
		i = eq + 1
		n := eq
		for n > last && (s[n-1] == ' ' || s[n-1] == '\t') {
			n--
		}
		st := nameStart(s, n, last)
		if st < 0 {
			continue
		}
		v := eq + 1
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
		e := -1
		if v < len(s) && (s[v] == '"' || s[v] == '\'') {
			if q := strings.IndexByte(s[v+1:], s[v]); q >= 0 {
				e = v + 1 + q + 1
			}
		} else {
			e = v
			for e < len(s) && !isREspace(s[e]) && strings.IndexByte(`;&,"'`, s[e]) < 0 {
				e++
			}
			if e == v {
				e = -1
			}
		}
		if e < 0 {
			continue
		}
		if names.secret(s[st:n]) {
			out = append(out, span{v, e})
		}
		last, i = e, e
	}
}

// jsonPairSpans finds the string values of secret names in JSON text held
// in a string ({"password": "x"} sent as text).
func jsonPairSpans(s string) []span {
	var out []span
	var names nameCache
	last := 0
	for i := 0; ; {
		k := strings.IndexByte(s[i:], ':')
		if k < 0 {
			return out
		}
		colon := i + k
		i = colon + 1
		q := colon
		for q > last && (s[q-1] == ' ' || s[q-1] == '\t') {
			q--
		}
		if q == last || s[q-1] != '"' {
			continue
		}
		q-- // the closing quote of the name
		st := q
		for st > last && isNameByte(s[st-1]) {
			st--
		}
		if st == last || s[st-1] != '"' || st == q || q-st > 64 || !(isAlpha(s[st]) || s[st] == '_') {
			continue
		}
		v := colon + 1
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
		if v == len(s) || s[v] != '"' {
			continue
		}
		e := -1
		for j := v + 1; j < len(s); j++ {
			if s[j] == '"' {
				e = j + 1
				break
			}
			if s[j] == '\\' {
				if j+1 == len(s) || s[j+1] == '\n' {
					break
				}
				j++
			}
		}
		if e < 0 {
			continue
		}
		if names.secret(s[st:q]) {
			out = append(out, span{v, e})
		}
		last, i = e, e
	}
}

// nameCache caches secretName for the names of one string, which repeat
// ("a=1&a=2&...").
type nameCache map[string]bool

func (c *nameCache) secret(name string) bool {
	if v, ok := (*c)[name]; ok {
		return v
	}
	v := secretName(name)
	if *c == nil {
		*c = make(nameCache)
	}
	if len(*c) < 256 {
		(*c)[name] = v
	}
	return v
}

// plainWord spares "Bearer authentication" and "basic Settings": a
// credential is long, or has a digit, a symbol or an upper-case letter
// after its first character.
func plainWord(v string) bool {
	return len(v) < 20 && !strings.ContainsAny(v, "0123456789._~+/=-") &&
		!strings.ContainsAny(v[1:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

// awsKeyIDSpans finds AWS access key ids. Next to one, a 40-character
// base64 string is taken for its secret access key.
var awsKeyIDSpans = tokenSpans(tokenRule{prefixes: awsKeyIDAnchors, class: isUpperOrDigit, min: 16, max: 16, boundaryAfter: true})

var awsKeyIDAnchors = []string{"AKIA", "ASIA", "ABIA", "ACCA"}

// scrubText returns s with every secret-looking part replaced by
// [REDACTED]: our API keys anywhere in it, Authorization values, JWTs, PEM
// private keys, passwords in URLs, values of secret names in name=value and
// "name": "value" text, AWS keys, and GitHub, Slack, OpenAI, Stripe and
// Google tokens. It is applied to every string argument in an audit record,
// and is what free-text audit fields (request id, user, agent, messages) go
// through. s is returned as is, with no allocation, when nothing in it
// looks secret. It takes time linear in len(s).
func scrubText(s string) string {
	if len(s) < 8 || !maySpanSecret(s) {
		return s
	}
	aws := containsAny(s, awsKeyIDAnchors) && len(awsKeyIDSpans(s)) > 0
	for i := range valuePatterns {
		p := &valuePatterns[i]
		if p.anchors != nil && !containsAny(s, p.anchors) {
			continue
		}
		s = replaceSpans(s, p.spans(s))
	}
	if aws {
		s = scrubAWSSecret(s)
	}
	return s
}

// maySpanSecret reports, in one pass over s, whether any of scrubText's
// patterns could match it; false means none can, so that the short fields
// of every audit record (ids, names, hashes) skip the dozen scans. It is
// conservative: each pattern needs one of these (FuzzScrubTextPrefilter
// checks that scrubText leaves s unchanged whenever it answers false):
//
//   - '=' (name=value), ':' (JSON pairs, URLs), a space or a tab
//     (Authorization values, PEM blocks);
//   - '_' after k or K (ak_, sk_, rk_), p o u s r (gh?_), b or t
//     (github_pat_);
//   - '-' after k (sk-), or after a b p o s r e (xox?-);
//   - "eyJ" (JWTs); 'A' then K S B C (AWS key ids) or I (Google keys);
//   - any byte past ASCII next to '_' or '-', where case folding is
//     not ASCII's.
func maySpanSecret(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '=', ':', ' ', '\t':
			return true
		case '_':
			if i > 0 {
				switch s[i-1] {
				case 'k', 'K', 'p', 'o', 'u', 's', 'r', 'b', 't':
					return true
				}
				if s[i-1] >= 0x80 {
					return true
				}
			}
		case '-':
			if i > 0 {
				switch s[i-1] {
				case 'k', 'a', 'b', 'p', 'o', 's', 'r', 'e':
					return true
				}
				if s[i-1] >= 0x80 {
					return true
				}
			}
		case 'J':
			if i >= 2 && s[i-2] == 'e' && s[i-1] == 'y' {
				return true
			}
		case 'A':
			if i+1 < len(s) {
				switch s[i+1] {
				case 'K', 'S', 'B', 'C', 'I':
					return true
				}
			}
		}
	}
	return false
}

// containsAny reports whether s contains one of the anchors.
func containsAny(s string, anchors []string) bool {
	for _, a := range anchors {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// scrubAWSSecret replaces 40-character base64 strings standing alone, with
// both upper and lower case letters (an AWS secret access key; a git hash
// is lower case).
func scrubAWSSecret(s string) string {
	if len(s) < 40 {
		return s
	}
	isB64 := func(c byte) bool { return isAlpha(c) || isDigit(c) || c == '/' || c == '+' || c == '=' }
	var out []span
	for i := 0; i < len(s); {
		if !isB64(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isB64(s[j]) {
			j++
		}
		if cand := s[i:j]; len(cand) == 40 && !strings.Contains(cand[:39], "=") &&
			strings.ContainsAny(cand, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(cand, "abcdefghijklmnopqrstuvwxyz") {
			out = append(out, span{i, j})
		}
		i = j
	}
	return replaceSpans(s, out)
}

// replaceSpans replaces the spans of s with [REDACTED], returning s itself
// when there are none.
func replaceSpans(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(spans)*len(redacted))
	last := 0
	for _, sp := range spans {
		if sp.start < last {
			continue
		}
		b.WriteString(s[last:sp.start])
		b.WriteString(redacted)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// redactedJSON encodes args for an audit record with what redact removes
// removed, in one pass and without an intermediate copy: the bytes are those
// of json.Marshal(redact(args)) (keys sorted, the same escaping), at a
// fraction of the allocations, which matters for the memory one large call
// can take (docs/gateway.md, "Limits").
func redactedJSON(args map[string]any) (json.RawMessage, error) {
	e := redactEncoder{classes: make(map[string]nameClass)}
	e.buf = make([]byte, 0, encodedSize(args))
	if err := e.value(args, false); err != nil {
		return nil, err
	}
	return e.buf, nil
}

type encEntry struct {
	name string
	val  any
}

// encodedSize estimates the JSON size of v (exact without escapes or
// redactions), so the encoder allocates its buffer once.
func encodedSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 2
	case json.Number:
		return len(x)
	case bool:
		return 5
	case map[string]any:
		n := 2
		for k, e := range x {
			n += len(k) + 4 + encodedSize(e)
		}
		return n
	case []any:
		n := 2
		for _, e := range x {
			n += 1 + encodedSize(e)
		}
		return n
	default:
		return 4
	}
}

type redactEncoder struct {
	buf []byte
	// scratch holds, per depth, the entries of the map being encoded,
	// reused by its siblings.
	scratch [][]encEntry
	depth   int
	// classes caches classifyName: the same keys repeat in every row of a
	// list.
	classes map[string]nameClass
}

func (e *redactEncoder) class(k string) nameClass {
	c, ok := e.classes[k]
	if !ok {
		c = classifyName(k)
		if len(e.classes) < 4096 {
			e.classes[k] = c
		}
	}
	return c
}

func (e *redactEncoder) value(v any, aws bool) error {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case string:
		s := scrubText(x)
		if aws {
			s = scrubAWSSecret(s)
		}
		e.buf = store.AppendJSONString(e.buf, s)
	case json.Number:
		if x == "" {
			x = "0" // as json.Marshal encodes an empty Number
		} else if c := x[0]; c != '-' && (c < '0' || c > '9') || strings.ContainsAny(string(x), " \t\r\n") || !json.Valid([]byte(x)) {
			return fmt.Errorf("invalid number literal %q", x)
		}
		e.buf = append(e.buf, x...)
	case map[string]any:
		// Keys are sorted as encoded (json.Marshal sorts the map's keys).
		for len(e.scratch) <= e.depth {
			e.scratch = append(e.scratch, nil)
		}
		entries := e.scratch[e.depth][:0]
		defer func() { e.scratch[e.depth] = entries[:0] }()
		for k, v := range x {
			if scrubText(k) != k {
				// Rare: a key that holds a secret. redact renames it
				// and handles collisions; encode its output.
				b, err := json.Marshal(redact(x))
				if err != nil {
					return err
				}
				e.buf = append(e.buf, b...)
				return nil
			}
			entries = append(entries, encEntry{k, v})
		}
		slices.SortFunc(entries, func(a, b encEntry) int { return strings.Compare(a.name, b.name) })
		e.buf = append(e.buf, '{')
		for i, en := range entries {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = store.AppendJSONString(e.buf, en.name)
			e.buf = append(e.buf, ':')
			c := e.class(en.name)
			if c.secret && !keepUnderSecretName(en.val, c.measure) {
				e.buf = store.AppendJSONString(e.buf, redacted)
				continue
			}
			e.depth++
			err := e.value(en.val, aws || c.aws)
			e.depth--
			if err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
	case []any:
		e.buf = append(e.buf, '[')
		for i, el := range x {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.depth++
			err := e.value(el, aws)
			e.depth--
			if err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	default:
		b, err := json.Marshal(redact(v))
		if err != nil {
			return err
		}
		e.buf = append(e.buf, b...)
	}
	return nil
}
