package gateway

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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
	// anchors: the pattern is only run when the string contains one of
	// them (ignoring ASCII case), which keeps large clean strings cheap.
	anchors []string
	re      *regexp.Regexp
	// group is the submatch that is replaced (0: the whole match), so that
	// "postgres://u:pw@h" keeps everything but "pw".
	group int
	// keep, when set, spares a match that is not a secret after all.
	keep func(s string, m []int) bool
}

// valuePatterns are the secret-looking values scrubText replaces, in this
// order; docs/gateway.md ("Redaction") lists them.
var valuePatterns = []valuePattern{
	{name: "armoriq API key", anchors: []string{"ak_live_", "ak_test_"},
		re: regexp.MustCompile(`(?i)ak_(?:live|test)_[A-Za-z0-9_\-]*`)},
	{name: "PEM private key", anchors: []string{"PRIVATE KEY"},
		re: regexp.MustCompile(`(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)`)},
	{name: "JWT", anchors: []string{"eyJ"},
		re: regexp.MustCompile(`eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*`)},
	{name: "Authorization value", anchors: []string{"bearer", "basic"},
		re:    regexp.MustCompile(`(?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/\-]{8,}=*)`),
		group: 1, keep: plainWord},
	{name: "password in a URL", anchors: []string{"://"},
		re:    regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:([^@\s/]+)@`),
		group: 1},
	{name: "secret name=value", anchors: []string{"="},
		re:    regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*("[^"]*"|'[^']*'|[^\s;&,"']+)`),
		group: 2, keep: innocentName},
	{name: "secret \"name\": \"value\"", anchors: []string{`"`},
		re:    regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_.\-]{0,63})"[ \t]*:[ \t]*("(?:[^"\\]|\\.)*")`),
		group: 2, keep: innocentName},
	{name: "AWS access key id", anchors: []string{"AKIA", "ASIA", "ABIA", "ACCA"},
		re: awsKeyID},
	{name: "GitHub token", anchors: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"},
		re: regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})`)},
	{name: "Slack token", anchors: []string{"xox"},
		re: regexp.MustCompile(`\bxox[abposre]-[A-Za-z0-9\-]{10,}`)},
	{name: "OpenAI, Anthropic or Stripe secret key", anchors: []string{"sk-", "sk_", "rk_"},
		re: regexp.MustCompile(`\b(?:sk-[A-Za-z0-9_\-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,})`)},
	{name: "Google API key", anchors: []string{"AIza"},
		re: regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}`)},
}

// plainWord spares "Bearer authentication" and "basic Settings": a
// credential is long, or has a digit, a symbol or an upper-case letter
// after its first character.
func plainWord(s string, m []int) bool {
	v := s[m[2]:m[3]]
	return len(v) < 20 && !strings.ContainsAny(v, "0123456789._~+/=-") &&
		!strings.ContainsAny(v[1:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

// innocentName spares name=value pairs whose name is not a secret name.
func innocentName(s string, m []int) bool {
	return !secretName(s[m[2]:m[3]])
}

// awsKeyID is an AWS access key id. Next to one, a 40-character base64
// string is taken for its secret access key.
var awsKeyID = regexp.MustCompile(`\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`)

// awsSecretKey is a candidate AWS secret access key: 40 base64 characters
// standing alone.
var awsSecretKey = regexp.MustCompile(`(?:^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{39}[A-Za-z0-9/+=])(?:$|[^A-Za-z0-9/+=])`)

// scrubText returns s with every secret-looking part replaced by
// [REDACTED]: our API keys anywhere in it, Authorization values, JWTs, PEM
// private keys, passwords in URLs, values of secret names in name=value and
// "name": "value" text, AWS keys, and GitHub, Slack, OpenAI, Stripe and
// Google tokens. It is applied to every string argument in an audit record,
// and is what free-text audit fields (request id, user, agent, messages) go
// through. s is returned as is, with no allocation, when nothing in it
// looks secret.
func scrubText(s string) string {
	if len(s) < 8 {
		return s
	}
	aws := containsAnyFold(s, []string{"AKIA", "ASIA", "ABIA", "ACCA"}) && awsKeyID.MatchString(s)
	for i := range valuePatterns {
		p := &valuePatterns[i]
		if !containsAnyFold(s, p.anchors) {
			continue
		}
		s = replaceGroup(p, s)
	}
	if aws {
		s = scrubAWSSecret(s)
	}
	return s
}

// scrubAWSSecret replaces 40-character base64 strings with both upper and
// lower case letters (an AWS secret access key; a git hash is lower case).
func scrubAWSSecret(s string) string {
	if len(s) < 40 {
		return s
	}
	ms := awsSecretKey.FindAllStringSubmatchIndex(s, -1)
	if ms == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range ms {
		cand := s[m[2]:m[3]]
		if !strings.ContainsAny(cand, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || !strings.ContainsAny(cand, "abcdefghijklmnopqrstuvwxyz") {
			continue
		}
		b.WriteString(s[last:m[2]])
		b.WriteString(redacted)
		last = m[3]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// replaceGroup replaces submatch p.group of every match of p.re in s with
// [REDACTED], returning s itself when nothing is replaced.
func replaceGroup(p *valuePattern, s string) string {
	ms := p.re.FindAllStringSubmatchIndex(s, -1)
	if ms == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range ms {
		start, end := m[2*p.group], m[2*p.group+1]
		if start < last || (p.keep != nil && p.keep(s, m)) {
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[last:start])
		b.WriteString(redacted)
		last = end
	}
	if last == 0 && b.Len() == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// containsAnyFold reports whether s contains one of the ASCII anchors,
// ignoring ASCII case, without allocating.
func containsAnyFold(s string, anchors []string) bool {
	for _, a := range anchors {
		if indexFold(s, a) >= 0 {
			return true
		}
	}
	return false
}

// indexFold is strings.Index ignoring ASCII case; sub must be non-empty.
func indexFold(s, sub string) int {
	n := len(sub)
	first := lower(sub[0])
	for i := 0; i+n <= len(s); i++ {
		if lower(s[i]) != first {
			continue
		}
		j := 1
		for j < n && lower(s[i+j]) == lower(sub[j]) {
			j++
		}
		if j == n {
			return i
		}
	}
	return -1
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
		e.buf = appendJSONString(e.buf, s)
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
			e.buf = appendJSONString(e.buf, en.name)
			e.buf = append(e.buf, ':')
			c := e.class(en.name)
			if c.secret && !keepUnderSecretName(en.val, c.measure) {
				e.buf = appendJSONString(e.buf, redacted)
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

// appendJSONString appends s as a JSON string, escaped exactly as
// encoding/json escapes it (HTML characters, U+2028 and U+2029 included;
// invalid UTF-8 becomes U+FFFD).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
