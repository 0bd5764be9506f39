package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// condition is a compiled when expression.
type condition struct {
	expr  hclsyntax.Expression
	fast  *fastNode // nil when the fast path cannot take it
	roots []string  // the variables it uses
}

// Variables a condition may use, and the attributes of the object ones.
var (
	rootNames = []string{"args", "user", "tool", "server", "time"}
	userAttrs = []string{"email", "domain", "groups", "agent"}
	timeAttrs = []string{"unix", "rfc3339", "date", "hour", "minute", "weekday"}
)

func (e *Engine) compileCondition(br *bundle.Rule) (*condition, error) {
	start := whenPos(br)
	line, col := start.Line, start.Col
	if br.WhenPos.Line == 0 {
		line, col = 1, 1 // positions relative to the expression
	}
	expr, diags := hclsyntax.ParseExpression([]byte(br.When), start.File, hcl.Pos{Line: line, Column: col, Byte: 0})
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	c := &condition{expr: expr}
	for _, tr := range expr.Variables() {
		root := tr.RootName()
		if !contains(rootNames, root) {
			return nil, posErrorf(tr.SourceRange(), "unknown variable %q (conditions may use %s)", root, strings.Join(rootNames, ", "))
		}
		if !contains(c.roots, root) {
			c.roots = append(c.roots, root)
		}
		var attrs []string
		switch root {
		case "user":
			attrs = userAttrs
		case "time":
			attrs = timeAttrs
		}
		if attrs != nil && len(tr) > 1 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok && !contains(attrs, a.Name) {
				return nil, posErrorf(a.SrcRange, "%s has no attribute %q (it has %s)", root, a.Name, strings.Join(attrs, ", "))
			}
		}
	}
	var funcErr error
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		if fc, ok := n.(*hclsyntax.FunctionCallExpr); ok && funcErr == nil {
			if _, ok := e.funcs[fc.Name]; !ok {
				funcErr = posErrorf(fc.NameRange, "unknown function %q", fc.Name)
			}
		}
		return nil
	})
	if funcErr != nil {
		return nil, funcErr
	}
	c.fast = compileFast(expr)
	return c, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func posErrorf(r hcl.Range, format string, args ...any) error {
	return fmt.Errorf("%s: %s", rangePos(r), fmt.Sprintf(format, args...))
}

func rangePos(r hcl.Range) string {
	return FormatPos(bundle.Pos{File: r.Filename, Line: r.Start.Line, Col: r.Start.Column})
}

// diagError turns HCL diagnostics into one error, each with its position.
func diagError(diags hcl.Diagnostics) error {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + strings.TrimSuffix(d.Detail, ".")
		}
		if d.Subject != nil {
			msg = rangePos(*d.Subject) + ": " + msg
		}
		parts = append(parts, msg)
	}
	return fmt.Errorf("%s", strings.Join(parts, "; "))
}

// eval evaluates r's condition for the request. An error, a result that is
// not a bool, or a panic inside a function is an error: the caller fails
// closed.
func (s *search) eval(r *rule) (ok bool, err error) {
	if r.when.fast != nil {
		if v, ok := s.evalFast(r.when.fast); ok && v.kind == fastBool {
			return v.b, nil
		}
	}
	return s.evalHCL(r)
}

// evalHCL evaluates r's condition with HCL.
func (s *search) evalHCL(r *rule) (ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, fmt.Errorf("evaluation failed: %v", p)
		}
	}()
	sc := s.evalScope(r.when.roots)
	if sc.argsErr != nil && contains(r.when.roots, "args") {
		return false, sc.argsErr
	}
	v, diags := r.when.expr.Value(sc.ctx)
	if diags.HasErrors() {
		return false, diagError(diags)
	}
	v, _ = v.Unmark()
	switch {
	case !v.IsKnown():
		return false, fmt.Errorf("condition has no known value (an argument it reads is \"inf\", \"Infinity\" or a number beyond a 64-bit float, which would compare as an infinite number)")
	case v.IsNull():
		return false, fmt.Errorf("condition is null, not a bool")
	case v.Type() != cty.Bool:
		return false, fmt.Errorf("condition is a %s, not a bool", v.Type().FriendlyName())
	}
	return v.True(), nil
}

// scope is the evaluation context of one request. Variables are built
// when a condition first uses them.
type scope struct {
	ctx     *hcl.EvalContext
	argsErr error
}

func (s *search) evalScope(roots []string) *scope {
	if s.scope == nil {
		s.scope = &scope{ctx: &hcl.EvalContext{Variables: make(map[string]cty.Value, 5), Functions: s.e.funcs}}
	}
	sc := s.scope
	for _, root := range roots {
		if _, ok := sc.ctx.Variables[root]; !ok {
			sc.ctx.Variables[root] = s.variable(root)
		}
	}
	return sc
}

func (s *search) variable(root string) cty.Value {
	req := s.req
	switch root {
	case "args":
		args, err := toCty(req.Args, 0)
		if err != nil {
			s.scope.argsErr = fmt.Errorf("args: %v", err)
			return cty.EmptyObjectVal
		}
		if args.IsNull() {
			return cty.EmptyObjectVal
		}
		return args
	case "tool":
		return cty.StringVal(req.Tool)
	case "server":
		return cty.StringVal(req.Server)
	case "user":
		return cty.ObjectVal(map[string]cty.Value{
			"email":  cty.StringVal(s.user),
			"domain": cty.StringVal(s.domain),
			"groups": s.groupList(),
			"agent":  cty.StringVal(req.Agent),
		})
	case "time":
		t := s.now()
		return cty.ObjectVal(map[string]cty.Value{
			"unix":    cty.NumberIntVal(t.Unix()),
			"rfc3339": cty.StringVal(t.Format(time.RFC3339)),
			"date":    cty.StringVal(t.Format("2006-01-02")),
			"hour":    cty.NumberIntVal(int64(t.Hour())),
			"minute":  cty.NumberIntVal(int64(t.Minute())),
			"weekday": cty.StringVal(weekdays[t.Weekday()]),
		})
	}
	return cty.NilVal // unreachable: roots are checked by compileCondition
}

// now is the request's time in UTC, or the current time, the same for
// every condition of one decision.
func (s *search) now() time.Time {
	if s.t.IsZero() {
		s.t = s.req.Time
		if s.t.IsZero() {
			s.t = time.Now()
		}
		s.t = s.t.UTC()
	}
	return s.t
}

// groupList is user.groups: the policy's groups the user belongs to and
// the groups asserted in the request, sorted, without duplicates.
func (s *search) groupList() cty.Value {
	set := map[string]bool{}
	for _, g := range s.req.Groups {
		set[g] = true
	}
	for name, g := range s.e.groups {
		if s.inDef(g) {
			set[name] = true
		}
	}
	if len(set) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	vals := make([]cty.Value, len(names))
	for i, n := range names {
		vals[i] = cty.StringVal(n)
	}
	return cty.ListVal(vals)
}

// maxArgsDepth bounds the nesting of arguments converted for conditions.
const maxArgsDepth = 64

// toCty converts decoded JSON arguments (and the usual Go scalars) into a
// cty value: objects, tuples, strings, numbers, bools and null.
func toCty(v any, depth int) (cty.Value, error) {
	if depth > maxArgsDepth {
		return cty.NilVal, fmt.Errorf("nested more than %d levels", maxArgsDepth)
	}
	switch v := v.(type) {
	case nil:
		return cty.NullVal(cty.DynamicPseudoType), nil
	case bool:
		return cty.BoolVal(v), nil
	case string:
		if infinite(v) {
			// Unknown, so that what reads it has no known value and
			// fails, and what does not read it is unaffected, as on
			// the fast path.
			return cty.UnknownVal(cty.String), nil
		}
		return cty.StringVal(v), nil
	case float64:
		if math.IsNaN(v) {
			return cty.NilVal, fmt.Errorf("NaN is not a number")
		}
		return cty.NumberFloatVal(v), nil
	case float32:
		return toCty(float64(v), depth)
	case int:
		return cty.NumberIntVal(int64(v)), nil
	case int8:
		return cty.NumberIntVal(int64(v)), nil
	case int16:
		return cty.NumberIntVal(int64(v)), nil
	case int32:
		return cty.NumberIntVal(int64(v)), nil
	case int64:
		return cty.NumberIntVal(v), nil
	case uint:
		return cty.NumberUIntVal(uint64(v)), nil
	case uint8:
		return cty.NumberUIntVal(uint64(v)), nil
	case uint16:
		return cty.NumberUIntVal(uint64(v)), nil
	case uint32:
		return cty.NumberUIntVal(uint64(v)), nil
	case uint64:
		return cty.NumberUIntVal(v), nil
	case json.Number:
		if infinite(string(v)) {
			return cty.NilVal, fmt.Errorf("number %.40s is beyond the range of a 64-bit float", string(v))
		}
		n, err := cty.ParseNumberVal(string(v))
		if err != nil {
			return cty.NilVal, fmt.Errorf("invalid number %q", string(v))
		}
		return n, nil
	case []any:
		if len(v) == 0 {
			return cty.EmptyTupleVal, nil
		}
		vals := make([]cty.Value, len(v))
		for i, x := range v {
			cv, err := toCty(x, depth+1)
			if err != nil {
				return cty.NilVal, err
			}
			vals[i] = cv
		}
		return cty.TupleVal(vals), nil
	case []string:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = x
		}
		return toCty(l, depth)
	case map[string]any:
		if len(v) == 0 {
			return cty.EmptyObjectVal, nil
		}
		attrs := make(map[string]cty.Value, len(v))
		for k, x := range v {
			cv, err := toCty(x, depth+1)
			if err != nil {
				return cty.NilVal, err
			}
			attrs[k] = cv
		}
		return cty.ObjectVal(attrs), nil
	case map[string]string:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = x
		}
		return toCty(m, depth)
	}
	return cty.NilVal, fmt.Errorf("unsupported argument type %T", v)
}

// infinite reports whether s reads as an infinite number to a float64
// upstream: "inf", "Infinity" (any case and sign), or a number beyond the
// range of a 64-bit float ("1e309", "-1e309"), which such an upstream
// reads as ±Inf. A condition that reads such an argument fails: "-Inf" >
// 1000 is false, and a hold on large amounts must not be skipped with it,
// nor with a number that HCL (arbitrary precision) reads as finite and the
// upstream does not.
func infinite(s string) bool {
	if len(s) < 3 {
		return false
	}
	f, _ := strconv.ParseFloat(s, 64)
	return math.IsInf(f, 0)
}

type funcTable = map[string]function.Function

// conditionFuncs are the functions a when condition may call: a subset of
// go-cty's standard library, HCL's try and can, and a few string matchers.
// format is left out: a width like %0900000000s builds a string of that
// size, and a decision must stay cheap.
func conditionFuncs() funcTable {
	return funcTable{
		// collections
		"contains":        stdlib.ContainsFunc,
		"length":          stdlib.LengthFunc,
		"keys":            stdlib.KeysFunc,
		"values":          stdlib.ValuesFunc,
		"lookup":          stdlib.LookupFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"concat":          stdlib.ConcatFunc,
		"distinct":        stdlib.DistinctFunc,
		"flatten":         stdlib.FlattenFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		// strings
		"lower":      stdlib.LowerFunc,
		"upper":      stdlib.UpperFunc,
		"strlen":     stdlib.StrlenFunc,
		"substr":     stdlib.SubstrFunc,
		"join":       stdlib.JoinFunc,
		"split":      stdlib.SplitFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
		"trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc,
		"replace":    stdlib.ReplaceFunc,
		"regex":      stdlib.RegexFunc,
		"regexall":   stdlib.RegexAllFunc,
		"startswith": startsWithFunc,
		"endswith":   endsWithFunc,
		"glob":       globFunc,
		"regexmatch": regexMatchFunc,
		// numbers
		"abs":   stdlib.AbsoluteFunc,
		"min":   stdlib.MinFunc,
		"max":   stdlib.MaxFunc,
		"floor": stdlib.FloorFunc,
		"ceil":  stdlib.CeilFunc,
		// conversion and errors
		"tostring": stdlib.MakeToFunc(cty.String),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool":   stdlib.MakeToFunc(cty.Bool),
		"try":      tryfunc.TryFunc,
		"can":      tryfunc.CanFunc,
	}
}

func stringPredicate(name1, name2 string, f func(a, b string) bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{
			{Name: name1, Type: cty.String},
			{Name: name2, Type: cty.String},
		},
		Type: function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(f(args[0].AsString(), args[1].AsString())), nil
		},
	})
}

var (
	// startswith(s, prefix)
	startsWithFunc = stringPredicate("str", "prefix", strings.HasPrefix)
	// endswith(s, suffix)
	endsWithFunc = stringPredicate("str", "suffix", strings.HasSuffix)
	// glob(pattern, s): the '*' and '?' matching of tool patterns.
	globFunc = stringPredicate("pattern", "str", globMatch)
	// regexmatch(pattern, s): whether the RE2 pattern matches anywhere in s.
	regexMatchFunc = function.New(&function.Spec{
		Params: []function.Parameter{
			{Name: "pattern", Type: cty.String},
			{Name: "str", Type: cty.String},
		},
		Type: function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			re, err := regexp.Compile(args[0].AsString())
			if err != nil {
				return cty.NilVal, function.NewArgErrorf(0, "invalid regular expression: %s", err)
			}
			return cty.BoolVal(re.MatchString(args[1].AsString())), nil
		},
	})
)
