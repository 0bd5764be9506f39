package schema

import (
	_ "embed"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/errors"
)

// cueSource is the CUE schema of armoriq.yaml, embedded in the binary.
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

	"identity_provider": "#IdentityProvider",
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
	entry  string   // config, server, rule, test, gateway, identity_provider
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
		case f.key == "identity_providers" && f.val.kind == kList:
			units = append(units, listUnits("identity_provider", []string{"identity_providers"}, f.val)...)
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
		for i, l := range p {
			// CUE quotes labels that are not identifiers.
			if strings.HasPrefix(l, `"`) {
				if u, err := strconv.Unquote(l); err == nil {
					p[i] = u
				}
			}
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
