package gateway

import (
	"sort"
	"strconv"
	"strings"
)

// secretNames are argument-name fragments that mark a secret. A call whose
// arguments carry one is refused: credentials belong in the gateway's
// server config, not in what an agent (or a prompt injection) sends.
var secretNames = []string{
	"password", "passwd", "passphrase", "secret", "token", "apikey", "api_key",
	"authorization", "auth_header", "cookie", "privatekey", "private_key",
	"credential", "session_id", "sessionid", "access_key", "accesskey",
	"client_secret", "bearer", "x-api-key", "set-cookie",
}

// looksSecret reports whether an argument name looks like it holds a secret.
func looksSecret(name string) bool {
	n := strings.ToLower(name)
	n = strings.ReplaceAll(n, "-", "_")
	for _, s := range secretNames {
		s = strings.ReplaceAll(s, "-", "_")
		if strings.Contains(n, s) {
			return true
		}
		// camelCase and run-together forms: "apiKey" → "apikey".
		if strings.Contains(strings.ReplaceAll(n, "_", ""), strings.ReplaceAll(s, "_", "")) {
			return true
		}
	}
	return false
}

// findSecretArg returns the path of the first argument (at any depth, in
// sorted key order) whose name looks like a secret, or "".
func findSecretArg(v any, path string) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if looksSecret(k) {
				return p
			}
			if q := findSecretArg(x[k], p); q != "" {
				return q
			}
		}
	case []any:
		for i, e := range x {
			if q := findSecretArg(e, path+"["+strconv.Itoa(i)+"]"); q != "" {
				return q
			}
		}
	}
	return ""
}

// redacted is what replaces a secret-looking value in audit records.
const redacted = "[REDACTED]"

// redact returns a copy of v with the values of secret-looking keys, and
// strings that look like credentials, replaced by a marker.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if looksSecret(k) {
				out[k] = redacted
				continue
			}
			out[k] = redact(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redact(e)
		}
		return out
	case string:
		if looksLikeCredential(x) {
			return redacted
		}
		return x
	default:
		return v
	}
}

// credentialPrefixes are well-known credential formats worth redacting even
// under innocent argument names.
var credentialPrefixes = []string{
	"ak_live_", "ak_test_", "Bearer ", "bearer ", "ghp_", "gho_", "ghs_", "github_pat_",
	"sk-", "xoxb-", "xoxp-", "AKIA", "-----BEGIN",
}

func looksLikeCredential(s string) bool {
	for _, p := range credentialPrefixes {
		if strings.HasPrefix(s, p) && len(s) >= len(p)+8 {
			return true
		}
	}
	return false
}
