package policy

import (
	"math/big"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The fast path evaluates the common shape of a condition (comparisons of
// args.NAME, user.*, tool and server with literals, joined by &&, || and !)
// natively, without building HCL values. It gives up (ok == false) on
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
	l, r *fastNode
	lit  *fastVal // a literal
	// a variable: args.<name>, or a string the search knows
	arg string
	v   fastVar
}

type fastVar int8

const (
	varNone fastVar = iota
	varArg
	varTool
	varServer
	varEmail
	varDomain
	varAgent
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
	case *hclsyntax.ScopeTraversalExpr:
		return fastTraversal(x.Traversal)
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
	}
	return fastVal{kind: fastStr, str: str}, isASCII(str)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
