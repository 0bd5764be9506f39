package schema

import (
	"bytes"
	_ "embed"
	"fmt"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/errors"
)

// Source is the CUE schema of armoriq.yaml, as embedded in the binary.
//
//go:embed armoriq.cue
var cueSource []byte

// CUESchema returns the CUE source of the schema (for `cue vet` and docs).
func CUESchema() []byte { return append([]byte(nil), cueSource...) }

// A cue.Context is not safe for concurrent use and never frees what it
// compiled. A validator therefore holds one context under a mutex and
// replaces it (recompiling the schema from the embedded source, about a
// millisecond) once contextBudget values have gone through it, so a
// long-running reconciler stays bounded in memory. See docs/config.md.
const contextBudget = 200_000

// The definitions units are checked against, by unit entry name.
var entryDefs = map[string]string{
	"config":  "#Config",
	"server":  "#Server",
	"rule":    "#Rule",
	"test":    "#Test",
	"gateway": "#Gateway",
	"auth":    "#Auth",
}

type validator struct {
	mu   sync.Mutex
	ctx  *cue.Context
	defs map[string]cue.Value
	used int // values built in ctx since it was created
}

var (
	validators       [maxWorkers]validator
	schemaCompileErr error
	schemaOnce       sync.Once
)

// compileSchema checks once that the embedded schema compiles.
func compileSchema() error {
	schemaOnce.Do(func() {
		schemaCompileErr = cuecontext.New().CompileBytes(cueSource, cue.Filename("armoriq.cue")).Err()
	})
	return schemaCompileErr
}

// acquire locks the validator and returns a context with the schema's
// definitions, fresh if the current context has been used enough. cost is
// the number of values about to be built in it.
func (v *validator) acquire(cost int) (*cue.Context, map[string]cue.Value) {
	v.mu.Lock()
	if v.ctx == nil || v.used+cost > contextBudget {
		v.ctx = cuecontext.New()
		s := v.ctx.CompileBytes(cueSource, cue.Filename("armoriq.cue"))
		v.defs = make(map[string]cue.Value, len(entryDefs))
		for entry, def := range entryDefs {
			v.defs[entry] = s.LookupPath(cue.ParsePath(def))
		}
		v.used = 0
	}
	v.used += cost
	return v.ctx, v.defs
}

func (v *validator) release() {
	// A context that took a very large file is dropped right away.
	if v.used > contextBudget {
		v.ctx, v.defs, v.used = nil, nil, 0
	}
	v.mu.Unlock()
}

// unit is one piece of the file checked on its own against a definition,
// so that one error cannot hide another (CUE reports a struct's closedness
// error and drops the other errors of the same value).
type unit struct {
	entry  string   // config, server, rule, test, gateway
	labels []string // where the unit sits in the file
	data   *node
}

// checkSchema validates the tree against the CUE schema and returns the
// problems found, translated to positions in the user's file.
func checkSchema(root *node) Diagnostics {
	if err := compileSchema(); err != nil {
		return Diagnostics{{Severity: SeverityError, Summary: "internal error: the embedded schema does not compile: " + err.Error()}}
	}
	// The file is checked piece by piece: the top level with its lists
	// emptied, then each list element against its definition. One error
	// cannot hide another, and the evaluation of each piece is garbage
	// once checked, which keeps the peak memory of a large file low.
	var units []unit
	top := &node{kind: kMap, pos: root.pos}
	for _, f := range root.fields {
		switch {
		case f.key == "mcp_servers" && f.val.kind == kList:
			units = append(units, listUnits("server", []string{"mcp_servers"}, f.val)...)
			f = field{key: f.key, keyPos: f.keyPos, val: &node{kind: kList, pos: f.val.pos}}
		case f.key == "tests" && f.val.kind == kList:
			units = append(units, listUnits("test", []string{"tests"}, f.val)...)
			f = field{key: f.key, keyPos: f.keyPos, val: &node{kind: kList, pos: f.val.pos}}
		case f.key == "gateways" && f.val.kind == kList:
			units = append(units, listUnits("gateway", []string{"gateways"}, f.val)...)
			f = field{key: f.key, keyPos: f.keyPos, val: &node{kind: kList, pos: f.val.pos}}
		case f.key == "policy" && f.val.kind == kMap:
			pol := &node{kind: kMap, pos: f.val.pos}
			for _, pf := range f.val.fields {
				if pf.key == "rules" && pf.val.kind == kList {
					units = append(units, listUnits("rule", []string{"policy", "rules"}, pf.val)...)
					pf = field{key: pf.key, keyPos: pf.keyPos, val: &node{kind: kList, pos: pf.val.pos}}
				}
				pol.fields = append(pol.fields, pf)
			}
			f = field{key: f.key, keyPos: f.keyPos, val: pol}
		}
		top.fields = append(top.fields, f)
	}
	units = append([]unit{{entry: "config", data: top}}, units...)
	errs := runUnits(units)
	if len(errs) == 0 {
		return nil
	}
	diags := translate(root, errs)
	// CUE drops a closedness error when the same value has another error,
	// so unknown keys are looked for separately, asking the schema itself.
	_, defs := validators[0].acquire(countNodes(root))
	defer validators[0].release()
	checkKeys(defs["config"], defs["auth"], root, nil, &diags)
	return diags
}

// maxWorkers bounds how many CUE contexts (one per goroutine, each under
// its own mutex) check the pieces of one large file in parallel; files of
// fewer than parallelMin pieces use one.
const (
	maxWorkers  = 4
	parallelMin = 512
)

// runUnits validates the units, in parallel for a large file, and returns
// the errors in unit order.
func runUnits(units []unit) []cueErr {
	w := min(runtime.GOMAXPROCS(0), maxWorkers, len(units)/parallelMin+1)
	results := make([][]cueErr, w)
	chunk := (len(units) + w - 1) / w
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		us := units[i*chunk : min((i+1)*chunk, len(units))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			cost := 0
			for _, u := range us {
				cost += countNodes(u.data)
			}
			ctx, defs := validators[i].acquire(cost)
			defer validators[i].release()
			results[i] = validateUnits(ctx, defs, us)
		}()
	}
	wg.Wait()
	var out []cueErr
	for _, r := range results {
		out = append(out, r...)
	}
	return out
}

// checkKeys reports every key the schema does not allow, walking the tree
// beside the schema.
func checkKeys(sv, authDef cue.Value, n *node, labels []string, ds *Diagnostics) {
	if freeKeys(labels) {
		return // any key is allowed, and asking would intern it (see cueData)
	}
	switch n.kind {
	case kMap:
		for _, f := range n.fields {
			l := append(labels[:len(labels):len(labels)], f.key)
			if !sv.Allows(cue.Str(f.key)) {
				ds.errorf(f.keyPos, pathString(l), "unknown key %q%s", f.key, suggest(l))
				continue
			}
			child := sv.LookupPath(cue.MakePath(cue.Str(f.key).Optional()))
			if f.key == "auth" && len(labels) == 2 && labels[0] == "mcp_servers" {
				// Of the disjunction "none" | #Auth, the struct alternative.
				child = authDef
			}
			if !child.Exists() {
				child = sv.LookupPath(cue.MakePath(cue.AnyString))
			}
			if child.Exists() {
				checkKeys(child, authDef, f.val, l, ds)
			}
		}
	case kList:
		elem := sv.LookupPath(cue.MakePath(cue.AnyIndex))
		if !elem.Exists() {
			return
		}
		for i, it := range n.items {
			checkKeys(elem, authDef, it, append(labels[:len(labels):len(labels)], strconv.Itoa(i)), ds)
		}
	}
}

func listUnits(entry string, labels []string, list *node) []unit {
	us := make([]unit, len(list.items))
	for i, it := range list.items {
		us[i] = unit{entry: entry, labels: append(append([]string(nil), labels...), strconv.Itoa(i)), data: it}
	}
	return us
}

// cueErr is a CUE error with its path rewritten to the user's file's path.
type cueErr struct {
	labels []string
	format string
	args   []any
}

func validateUnits(ctx *cue.Context, defs map[string]cue.Value, units []unit) []cueErr {
	var out []cueErr
	for _, u := range units {
		data := ctx.Encode(cueData(u.data, u.labels))
		if err := data.Err(); err != nil {
			out = append(out, cueErr{labels: u.labels, format: "%s", args: []any{err.Error()}})
			continue
		}
		errs := validateOne(defs[u.entry], data)
		out = append(out, relabel(u.labels, errs)...)
		if len(u.labels) == 0 || !hasFatal(errs) {
			continue
		}
		// CUE drops "required but not present" errors of a value that has
		// another error: remove the bad values and look again.
		pruned, removed := u.data, map[string]bool{}
		for _, e := range errs {
			if !isRequired(e) && len(e.labels) > 0 {
				pruned = without(pruned, e.labels)
				removed[e.labels[0]] = true
			}
		}
		if removed["transport"] || removed["auth"] {
			continue // the requirements depend on the removed value
		}
		for _, e := range validateOne(defs[u.entry], ctx.Encode(cueData(pruned, u.labels))) {
			if isRequired(e) && !removed[e.labels[len(e.labels)-1]] {
				out = append(out, relabel(u.labels, []cueErr{e})...)
			}
		}
	}
	return out
}

// cueData converts a unit's tree to the Go values handed to CUE. The keys
// of maps whose keys the user chooses (groups, env, test args) are replaced
// by their index: CUE v0.17 interns every label in a process-wide table it
// never frees (internal/core/runtime/index.go), so a long-running
// reconciler fed new group names at each commit would grow without bound.
// The schema accepts any key in those maps, so the names do not matter to
// it; realLabels maps error paths back.
func cueData(n *node, labels []string) any {
	switch n.kind {
	case kMap:
		free := freeKeys(labels)
		m := make(map[string]any, len(n.fields))
		for i, f := range n.fields {
			if f.val.kind == kInvalid {
				continue // reported where it failed to decode
			}
			key := f.key
			if free {
				key = indexKey(i)
			}
			m[key] = cueData(f.val, append(labels[:len(labels):len(labels)], f.key))
		}
		return m
	case kList:
		l := make([]any, len(n.items))
		for i, it := range n.items {
			l[i] = cueData(it, append(labels[:len(labels):len(labels)], strconv.Itoa(i)))
		}
		return l
	}
	return toGo(n)
}

func indexKey(i int) string { return "k" + strconv.Itoa(i) }

// freeKeys reports whether the map at labels takes keys of the user's
// choosing: groups, a server's env, a test's args (at any depth).
func freeKeys(labels []string) bool {
	switch {
	case len(labels) == 1 && labels[0] == "groups":
		return true
	case len(labels) == 3 && labels[0] == "mcp_servers" && labels[2] == "env":
		return true
	case len(labels) >= 3 && labels[0] == "tests" && labels[2] == "args":
		return true
	}
	return false
}

// realLabels undoes cueData's renaming of keys in an error's path.
func realLabels(root *node, labels []string) []string {
	out := make([]string, len(labels))
	cur := root
	for i, l := range labels {
		out[i] = l
		if cur == nil {
			continue
		}
		switch cur.kind {
		case kMap:
			var next *node
			if freeKeys(out[:i]) {
				for j, f := range cur.fields {
					if indexKey(j) == l {
						out[i], next = f.key, f.val
						break
					}
				}
			} else {
				next = cur.get(l)
			}
			cur = next
		case kList:
			idx, err := strconv.Atoi(l)
			if err != nil || idx < 0 || idx >= len(cur.items) {
				cur = nil
				continue
			}
			cur = cur.items[idx]
		default:
			cur = nil
		}
	}
	return out
}

// validateOne checks data against a definition; error labels are
// relative to the definition.
func validateOne(def, data cue.Value) []cueErr {
	v := def.Unify(data)
	var out []cueErr
	for _, e := range errors.Errors(v.Validate(cue.Concrete(true))) {
		p := e.Path()
		if len(p) > 0 && strings.HasPrefix(p[0], "#") {
			p = p[1:]
		}
		format, args := e.Msg()
		out = append(out, cueErr{labels: p, format: format, args: args})
	}
	return out
}

func relabel(prefix []string, errs []cueErr) []cueErr {
	out := make([]cueErr, len(errs))
	for i, e := range errs {
		out[i] = cueErr{labels: append(append([]string(nil), prefix...), e.labels...), format: e.format, args: e.args}
	}
	return out
}

func isRequired(e cueErr) bool { return e.format == "field is required but not present" }

func hasFatal(errs []cueErr) bool {
	for _, e := range errs {
		if !isRequired(e) {
			return true
		}
	}
	return false
}

// without returns a copy of n without the value at the relative path.
func without(n *node, labels []string) *node {
	if len(labels) == 0 || n.kind != kMap {
		return n
	}
	cp := *n
	cp.fields = nil
	for _, f := range n.fields {
		if f.key == labels[0] {
			if len(labels) == 1 {
				continue
			}
			f.val = without(f.val, labels[1:])
		}
		cp.fields = append(cp.fields, f)
	}
	return &cp
}

func countNodes(n *node) int {
	c := 1
	for _, f := range n.fields {
		c += countNodes(f.val)
	}
	for _, it := range n.items {
		c += countNodes(it)
	}
	return c
}

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
	if len(alts) > 0 {
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
				diags.errorf(pos, path, "invalid value %s: %s", got, patternHint(labels, m[1]))
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

func patternHint(labels []string, re string) string {
	last := labels[len(labels)-1]
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
	"":            {"version", "identity", "environment", "proxy", "mcp_servers", "groups", "policy", "intent", "tests", "gateways"},
	"identity":    {"api_key", "user_id", "agent_id"},
	"proxy":       {"url", "timeout", "max_retries"},
	"mcp_servers": {"id", "url", "description", "auth", "transport", "tool_prefix", "command", "args", "env", "path", "sha256"},
	"auth":        {"type", "token", "api_key", "header_name"},
	"policy":      {"allow", "deny", "rules"},
	"rules":       {"name", "effect", "tools", "users", "groups", "agents", "when", "reason"},
	"intent":      {"ttl_seconds", "require_csrg"},
	"tests":       {"name", "user", "groups", "agent", "tool", "args", "expect"},
	"gateways":    {"name", "url", "api_key"},
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
