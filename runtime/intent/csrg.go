package intent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// StepPath returns the X-CSRG-Path the SDKs send for step i: "/steps/[i]/action".
func StepPath(i int) string {
	return "/steps/[" + strconv.Itoa(i) + "]/action"
}

// ParseStepPath returns i from "/steps/[i]/action".
func ParseStepPath(path string) (int, error) {
	rest, ok := strings.CutPrefix(path, "/steps/[")
	if !ok {
		return 0, fmt.Errorf("csrg path %q is not /steps/[i]/action", truncate(path, 80))
	}
	num, ok := strings.CutSuffix(rest, "]/action")
	if !ok || num == "" || len(num) > 9 || (len(num) > 1 && num[0] == '0') {
		return 0, fmt.Errorf("csrg path %q is not /steps/[i]/action", truncate(path, 80))
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("csrg path %q is not /steps/[i]/action", truncate(path, 80))
	}
	return i, nil
}

// ValueDigest returns the X-CSRG-Value-Digest of an action as the Python SDK
// computes it: the lowercase hex SHA-256 of json.dumps(action), the JSON string
// with its quotes, non-ASCII escaped (the canonical form of the string).
func ValueDigest(action string) string {
	b, err := appendPyString(nil, action)
	if err != nil {
		b = []byte(strconv.Quote(action)) // invalid UTF-8: no SDK sends it; any stable digest will do
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// valueDigestJS is the TypeScript SDK's digest: SHA-256 of JSON.stringify(action),
// which leaves non-ASCII characters unescaped.
func valueDigestJS(action string) string {
	b := make([]byte, 0, len(action)+2)
	b = append(b, '"')
	for i := 0; i < len(action); {
		c := action[i]
		if c >= utf8.RuneSelf {
			_, size := utf8.DecodeRuneInString(action[i:])
			b = append(b, action[i:i+size]...)
			i += size
			continue
		}
		i++
		b = appendEscapedASCII(b, c, false)
	}
	b = append(b, '"')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MatchValueDigest reports whether digest is the value digest of action as
// either SDK computes it: Python's json.dumps (ValueDigest) or TypeScript's
// JSON.stringify, which differ only for actions with characters outside ASCII
// or U+007F.
func MatchValueDigest(action, digest string) bool {
	d := strings.ToLower(digest)
	if subtle.ConstantTimeCompare([]byte(d), []byte(ValueDigest(action))) == 1 {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(d), []byte(valueDigestJS(action))) == 1
}
