package schema

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// translate turns CUE's errors into diagnostics a person can act on: one
// per path, positioned in the user's file, with disjunction failures
// folded into "must be A or B, got C".
func translate(root *node, errs []cueErr) Diagnostics {
	type group struct {
		labels []string
		errs   []cueErr
	}
	var order []string
	groups := map[string]*group{}
	for _, e := range errs {
		e.labels = realLabels(root, e.labels)
		if strings.Contains(e.format, "errors in empty disjunction") {
			continue
		}
		if n, _, m := root.lookup(e.labels, false); m == len(e.labels) && n.kind == kInvalid {
			continue // reported where it failed to decode
		}
		k := strings.Join(e.labels, "\x00")
		g := groups[k]
		if g == nil {
			g = &group{labels: e.labels}
			groups[k] = g
			order = append(order, k)
		}
		g.errs = append(g.errs, e)
	}
	// A path whose failure is explained deeper down (auth: a struct, not
	// "none"; auth.type: wrong value) reports only the deeper problem.
	hasDeeper := func(k string) bool {
		for _, o := range order {
			if len(o) > len(k) && strings.HasPrefix(o, k+"\x00") {
				return true
			}
		}
		return false
	}
	var diags Diagnostics
	for _, k := range order {
		g := groups[k]
		if hasDeeper(k) && onlyMismatches(g.errs) {
			continue
		}
		diags = append(diags, describe(root, g.labels, g.errs)...)
	}
	return diags
}

func onlyMismatches(errs []cueErr) bool {
	for _, e := range errs {
		if !strings.HasPrefix(e.format, "conflicting values") {
			return false
		}
	}
	return true
}

var boundRE = regexp.MustCompile(`^=~"(.*)"$`)

func describe(root *node, labels []string, errs []cueErr) Diagnostics {
	var diags Diagnostics
	n, pos, matched := root.lookup(labels, false)
	path := pathString(labels)
	present := matched == len(labels)
	got := ""
	if present {
		got = n.literal()
	}

	// Alternatives of a failed disjunction of literals.
	var alts []string
	var others []cueErr
	for _, e := range errs {
		if strings.HasPrefix(e.format, "conflicting values") && len(e.args) >= 2 {
			a, b := fmt.Sprint(e.args[0]), fmt.Sprint(e.args[1])
			exp := a
			if present && isDataLiteral(a, n) {
				exp = b
			}
			if !containsStr(alts, exp) {
				alts = append(alts, exp)
			}
			continue
		}
		others = append(others, e)
	}
	switch {
	case len(alts) > 0 && isAlgorithm(labels) && present && n.kind == kString:
		diags.errorf(pos, path, "%s", algorithmHint(n.str))
	case len(alts) > 0:
		diags.errorf(pos, path, "must be %s, got %s", joinAlts(alts), got)
	}
	for _, e := range others {
		switch {
		case e.format == "field not allowed":
			_, kpos, _ := root.lookup(labels, true)
			diags.errorf(kpos, path, "unknown key %q%s", labels[len(labels)-1], suggest(labels))
			continue
		case e.format == "field is required but not present" || strings.Contains(e.format, "incomplete value"):
			if present && !strings.Contains(e.format, "required") {
				diags.errorf(pos, path, "incomplete value %s", got)
				continue
			}
			parent := pathString(labels[:len(labels)-1])
			diags.errorf(pos, parent, "missing required key %q%s", labels[len(labels)-1], requiredWhy(root, labels))
		case strings.HasPrefix(e.format, "invalid value") && len(e.args) >= 2:
			bound := fmt.Sprint(e.args[1])
			if m := boundRE.FindStringSubmatch(bound); m != nil {
				diags.errorf(pos, path, "invalid value %s: %s", got, patternHint(labels, m[1], n))
			} else {
				diags.errorf(pos, path, "invalid value %s: must be %s", got, bound)
			}
		case strings.HasPrefix(e.format, "incompatible list lengths"):
			diags.errorf(pos, path, "must not be empty")
		default:
			diags.errorf(pos, path, "%s", strings.TrimSpace(fmt.Sprintf(e.format, e.args...)))
		}
	}
	return diags
}

// isDataLiteral reports whether a, as CUE prints a value in an error, is
// the user's value n rather than what the schema expects.
func isDataLiteral(a string, n *node) bool {
	switch n.kind {
	case kList:
		return strings.HasPrefix(a, "[")
	case kMap:
		return strings.HasPrefix(a, "{")
	case kInt, kFloat:
		f, err := strconv.ParseFloat(a, 64)
		return err == nil && (f == n.f || n.kind == kInt && f == float64(n.i))
	}
	return a == n.literal()
}

func joinAlts(alts []string) string {
	sort.SliceStable(alts, func(i, j int) bool { return altRank(alts[i]) < altRank(alts[j]) })
	for i, a := range alts {
		switch {
		case strings.HasPrefix(a, "{"):
			alts[i] = "a map"
		case strings.HasPrefix(a, "["):
			alts[i] = "a list"
		case a == "int":
			alts[i] = "an integer"
		case !strings.HasPrefix(a, `"`) && !isNumberLit(a) && isIdent(a):
			alts[i] = "a " + a // a type: "a string"
		}
	}
	switch len(alts) {
	case 1:
		return alts[0]
	default:
		return strings.Join(alts[:len(alts)-1], ", ") + " or " + alts[len(alts)-1]
	}
}

// altRank orders literal alternatives as the schema writes them (by their
// first appearance in its source) and puts types after literals.
func altRank(s string) int {
	if strings.HasPrefix(s, `"`) {
		if i := bytes.Index(cueSource, []byte(s)); i >= 0 {
			return i
		}
		return len(cueSource)
	}
	return len(cueSource) + 1
}

func isNumberLit(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func patternHint(labels []string, re string, n *node) string {
	last := labels[len(labels)-1]
	if len(labels) >= 3 && labels[0] == "identity_providers" {
		if h := providerHint(labels[2], n); h != "" {
			return h
		}
	}
	switch {
	case last == "id" && len(labels) == 3 && labels[0] == "mcp_servers":
		return "a server id may contain only letters, digits, '-' and '_'"
	case last == "sha256":
		return "must be a SHA-256 digest: 64 lowercase hex digits"
	}
	return "must match " + re
}

// requiredWhy explains conditional requirements (url for http, ...).
func requiredWhy(root *node, labels []string) string {
	key := labels[len(labels)-1]
	if len(labels) == 3 && labels[0] == "mcp_servers" && (key == "url" || key == "command" || key == "path" || key == "sha256") {
		srv, _, _ := root.lookup(labels[:2], false)
		t := "http"
		if tn := srv.get("transport"); tn != nil && tn.kind == kString {
			t = tn.str
		}
		return fmt.Sprintf(" (transport %s)", t)
	}
	if len(labels) == 4 && labels[2] == "auth" && (key == "token" || key == "api_key") {
		auth, _, _ := root.lookup(labels[:3], false)
		if tn := auth.get("type"); tn != nil && tn.kind == kString {
			return fmt.Sprintf(" (auth type %s)", tn.str)
		}
	}
	return ""
}

// knownKeys lists the keys each part of the file accepts, for suggestions.
var knownKeys = map[string][]string{
	"":            {"version", "identity", "environment", "proxy", "mcp_servers", "groups", "policy", "intent", "tests", "gateways", "identity_providers"},
	"identity":    {"api_key", "user_id", "agent_id"},
	"proxy":       {"url", "timeout", "max_retries"},
	"mcp_servers": {"id", "url", "description", "auth", "transport", "tool_prefix", "protocol", "command", "args", "env", "path", "sha256"},
	"auth":        {"type", "token", "api_key", "header_name"},
	"policy":      {"allow", "deny", "rules"},
	"rules":       {"name", "effect", "tools", "users", "groups", "agents", "when", "reason", "approvers"},
	"intent":      {"ttl_seconds", "require_csrg"},
	"tests":       {"name", "user", "groups", "agent", "tool", "args", "expect", "approvers"},
	"gateways":    {"name", "url", "api_key"},

	"identity_providers": {"name", "issuer", "audience", "user_claim", "groups_claim", "required_scopes", "allowed_algorithms"},
}

// suggest proposes a known key close to an unknown one.
func suggest(labels []string) string {
	parent := ""
	for i := len(labels) - 2; i >= 0; i-- {
		if _, err := strconv.Atoi(labels[i]); err != nil {
			parent = labels[i]
			break
		}
	}
	if len(labels) == 1 {
		parent = ""
	}
	key := labels[len(labels)-1]
	best, bestD := "", 3
	for _, k := range knownKeys[parent] {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
