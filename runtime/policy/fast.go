package policy

import (
	"math/big"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The fast path evaluates the common shape of a condition (comparisons of
// args.NAME, user.*, tool, server and time.* with literals, joined by &&, || and
// !; try(args.NAME, literal), startswith, endswith, contains over a literal
// list or user.groups) natively, without building HCL values. It gives up (ok == false) on
// anything it is not sure HCL would evaluate the same way (a missing
// argument, mixed types, non-ASCII strings, large integers) and the
// condition is then evaluated by HCL, so results never differ.

type fastKind int8

const (
	fastNum fastKind = iota + 1
	fastStr
	fastBool
)

type fastVal struct {
	kind fastKind
	num  float64
	str  string
	b    bool
}

// fastNode is one node of a condition compiled for the fast path.
type fastNode struct {
	op   *hclsyntax.Operation // for binary and unary operations
	fn   fastFunc             // for function calls, with l and r as arguments
	l, r *fastNode
	lit  *fastVal // a literal
	list []string // contains: the literal list, ASCII strings
	// a variable: args.<name>, or a string the search knows
	arg string
	v   fastVar
}

type fastFunc int8

const (
	fnNone       fastFunc = iota
	fnTry                 // try(args.x, literal)
	fnStartsWith          // startswith(s, prefix)
	fnEndsWith            // endswith(s, suffix)
	fnContains            // contains(["a", "b"], s)
	fnInGroup             // contains(user.groups, s)
)

type fastVar int8

const (
	varNone fastVar = iota
	varArg
	varTool
	varServer
	varEmail
	varDomain
	varAgent
	varUnix
	varHour
	varMinute
	varWeekday
)

// compileFast returns nil when expr has a shape the fast path does not take.
func compileFast(expr hclsyntax.Expression) *fastNode {
	switch x := expr.(type) {
	case *hclsyntax.ParenthesesExpr:
		return compileFast(x.Expression)
	case *hclsyntax.LiteralValueExpr:
		v, ok := fastLiteral(x.Val)
		if !ok {
			return nil
		}
		return &fastNode{lit: &v}
	case *hclsyntax.TemplateExpr:
		// A quoted string is a template of one literal part.
		if len(x.Parts) == 1 {
			if lit, ok := x.Parts[0].(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String {
				return compileFast(lit)
			}
		}
	case *hclsyntax.ScopeTraversalExpr:
		return fastTraversal(x.Traversal)
	case *hclsyntax.FunctionCallExpr:
		return compileFastCall(x)
	case *hclsyntax.UnaryOpExpr:
		if x.Op != hclsyntax.OpLogicalNot {
			return nil
		}
		if n := compileFast(x.Val); n != nil {
			return &fastNode{op: x.Op, l: n}
		}
	case *hclsyntax.BinaryOpExpr:
		switch x.Op {
		case hclsyntax.OpEqual, hclsyntax.OpNotEqual, hclsyntax.OpLessThan, hclsyntax.OpLessThanOrEqual,
			hclsyntax.OpGreaterThan, hclsyntax.OpGreaterThanOrEqual, hclsyntax.OpLogicalAnd, hclsyntax.OpLogicalOr:
		default:
			return nil
		}
		l, r := compileFast(x.LHS), compileFast(x.RHS)
		if l != nil && r != nil {
			return &fastNode{op: x.Op, l: l, r: r}
		}
	}
	return nil
}

func compileFastCall(x *hclsyntax.FunctionCallExpr) *fastNode {
	if x.ExpandFinal || len(x.Args) != 2 {
		return nil
	}
	switch x.Name {
	case "try":
		// try(args.x, fallback): args.x if present, else the fallback.
		l, r := compileFast(x.Args[0]), compileFast(x.Args[1])
		if l == nil || l.v != varArg || r == nil || r.lit == nil {
			return nil
		}
		return &fastNode{fn: fnTry, l: l, r: r}
	case "startswith", "endswith":
		l, r := compileFast(x.Args[0]), compileFast(x.Args[1])
		if l == nil || r == nil {
			return nil
		}
		fn := fnStartsWith
		if x.Name == "endswith" {
			fn = fnEndsWith
		}
		return &fastNode{fn: fn, l: l, r: r}
	case "contains":
		r := compileFast(x.Args[1])
		if r == nil {
			return nil
		}
		if st, ok := x.Args[0].(*hclsyntax.ScopeTraversalExpr); ok && len(st.Traversal) == 2 && st.Traversal.RootName() == "user" {
			if a, ok := st.Traversal[1].(hcl.TraverseAttr); ok && a.Name == "groups" {
				return &fastNode{fn: fnInGroup, r: r}
			}
		}
		tc, ok := x.Args[0].(*hclsyntax.TupleConsExpr)
		if !ok || len(tc.Exprs) == 0 {
			return nil
		}
		n := &fastNode{fn: fnContains, r: r}
		for _, e := range tc.Exprs {
			el := compileFast(e)
			if el == nil || el.lit == nil || el.lit.kind != fastStr {
				return nil
			}
			n.list = append(n.list, el.lit.str)
		}
		return n
	}
	return nil
}

func fastLiteral(v cty.Value) (fastVal, bool) {
	if !v.IsKnown() || v.IsNull() {
		return fastVal{}, false
	}
	switch v.Type() {
	case cty.Bool:
		return fastVal{kind: fastBool, b: v.True()}, true
	case cty.String:
		s := v.AsString()
		return fastVal{kind: fastStr, str: s}, isASCII(s)
	case cty.Number:
		f, acc := v.AsBigFloat().Float64()
		return fastVal{kind: fastNum, num: f}, acc == big.Exact && f > -1<<53 && f < 1<<53
	}
	return fastVal{}, false
}

func fastTraversal(tr hcl.Traversal) *fastNode {
	attr := func(i int) (string, bool) {
		if len(tr) <= i {
			return "", false
		}
		a, ok := tr[i].(hcl.TraverseAttr)
		return a.Name, ok
	}
	switch tr.RootName() {
	case "tool":
		if len(tr) == 1 {
			return &fastNode{v: varTool}
		}
	case "server":
		if len(tr) == 1 {
			return &fastNode{v: varServer}
		}
	case "args":
		if name, ok := attr(1); ok && len(tr) == 2 {
			return &fastNode{v: varArg, arg: name}
		}
	case "time":
		name, ok := attr(1)
		if !ok || len(tr) != 2 {
			return nil
		}
		switch name {
		case "unix":
			return &fastNode{v: varUnix}
		case "hour":
			return &fastNode{v: varHour}
		case "minute":
			return &fastNode{v: varMinute}
		case "weekday":
			return &fastNode{v: varWeekday}
		}
	case "user":
		name, ok := attr(1)
		if !ok || len(tr) != 2 {
			return nil
		}
		switch name {
		case "email":
			return &fastNode{v: varEmail}
		case "domain":
			return &fastNode{v: varDomain}
		case "agent":
			return &fastNode{v: varAgent}
		}
	}
	return nil
}

// evalFast evaluates n; ok is false when HCL must decide instead.
func (s *search) evalFast(n *fastNode) (v fastVal, ok bool) {
	switch {
	case n.lit != nil:
		return *n.lit, true
	case n.v != varNone:
		return s.fastVariable(n)
	case n.fn != fnNone:
		return s.fastCall(n)
	case n.r == nil: // !
		x, ok := s.evalFast(n.l)
		if !ok || x.kind != fastBool {
			return fastVal{}, false
		}
		return fastVal{kind: fastBool, b: !x.b}, true
	}
	l, ok := s.evalFast(n.l)
	if !ok {
		return fastVal{}, false
	}
	r, ok := s.evalFast(n.r)
	if !ok {
		return fastVal{}, false
	}
	var b bool
	switch n.op {
	case hclsyntax.OpLogicalAnd, hclsyntax.OpLogicalOr:
		if l.kind != fastBool || r.kind != fastBool {
			return fastVal{}, false
		}
		if n.op == hclsyntax.OpLogicalAnd {
			b = l.b && r.b
		} else {
			b = l.b || r.b
		}
	case hclsyntax.OpEqual, hclsyntax.OpNotEqual:
		if l.kind != r.kind {
			return fastVal{}, false
		}
		switch l.kind {
		case fastNum:
			b = l.num == r.num
		case fastBool:
			b = l.b == r.b
		case fastStr:
			b = l.str == r.str
		}
		if n.op == hclsyntax.OpNotEqual {
			b = !b
		}
	default: // orderings
		if l.kind != fastNum || r.kind != fastNum {
			return fastVal{}, false
		}
		switch n.op {
		case hclsyntax.OpLessThan:
			b = l.num < r.num
		case hclsyntax.OpLessThanOrEqual:
			b = l.num <= r.num
		case hclsyntax.OpGreaterThan:
			b = l.num > r.num
		case hclsyntax.OpGreaterThanOrEqual:
			b = l.num >= r.num
		}
	}
	return fastVal{kind: fastBool, b: b}, true
}

func (s *search) fastCall(n *fastNode) (fastVal, bool) {
	switch n.fn {
	case fnTry:
		if _, present := s.req.Args[n.l.arg]; !present {
			return *n.r.lit, true
		}
		return s.fastVariable(n.l)
	case fnInGroup:
		g, ok := s.evalFast(n.r)
		if !ok || g.kind != fastStr {
			return fastVal{}, false
		}
		in := false
		for _, name := range s.req.Groups {
			in = in || name == g.str
		}
		if def := s.e.groups[g.str]; !in && def != nil {
			in = s.inDef(def)
		}
		return fastVal{kind: fastBool, b: in}, true
	case fnContains:
		x, ok := s.evalFast(n.r)
		if !ok || x.kind != fastStr {
			return fastVal{}, false
		}
		in := false
		for _, el := range n.list {
			in = in || el == x.str
		}
		return fastVal{kind: fastBool, b: in}, true
	}
	l, ok := s.evalFast(n.l)
	if !ok || l.kind != fastStr {
		return fastVal{}, false
	}
	r, ok := s.evalFast(n.r)
	if !ok || r.kind != fastStr {
		return fastVal{}, false
	}
	if n.fn == fnStartsWith {
		return fastVal{kind: fastBool, b: strings.HasPrefix(l.str, r.str)}, true
	}
	return fastVal{kind: fastBool, b: strings.HasSuffix(l.str, r.str)}, true
}

func (s *search) fastVariable(n *fastNode) (fastVal, bool) {
	var str string
	switch n.v {
	case varArg:
		x, present := s.req.Args[n.arg]
		if !present {
			return fastVal{}, false
		}
		switch x := x.(type) {
		case float64:
			return fastVal{kind: fastNum, num: x}, x == x && x > -1<<53 && x < 1<<53
		case int:
			return fastVal{kind: fastNum, num: float64(x)}, x > -1<<53 && x < 1<<53
		case bool:
			return fastVal{kind: fastBool, b: x}, true
		case string:
			if infinite(x) {
				return fastVal{}, false // HCL refuses it, see toCty
			}
			str = x
		default:
			return fastVal{}, false
		}
	case varTool:
		str = s.req.Tool
	case varServer:
		str = s.req.Server
	case varEmail:
		str = s.user
	case varDomain:
		str = s.domain
	case varAgent:
		str = s.req.Agent
	case varUnix:
		return fastVal{kind: fastNum, num: float64(s.now().Unix())}, true
	case varHour:
		return fastVal{kind: fastNum, num: float64(s.now().Hour())}, true
	case varMinute:
		return fastVal{kind: fastNum, num: float64(s.now().Minute())}, true
	case varWeekday:
		str = weekdays[s.now().Weekday()]
	}
	return fastVal{kind: fastStr, str: str}, isASCII(str)
}

var weekdays = [...]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
