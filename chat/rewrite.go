package chat

import (
	"fmt"
	"reflect"
	"sort"

	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// gonja evaluates expressions with its own (Go-flavoured) semantics. After
// parsing, the rewriter replaces every operator, attribute/item access,
// literal collection, filter and test node of the template by a call to one
// of this package's helpers (see helpers.go), which implement jinja2's
// Python semantics. gonja keeps doing what it does well: lexing with
// trim_blocks/lstrip_blocks, parsing, control flow, scoping and macros.
//
// Only `and` / `or` stay gonja nodes (they must short-circuit); gonja's truth
// test agrees with Python's on this package's values.

// Helper names. They live in the template globals; the "__m_" prefix keeps
// them out of the way of template variables.
const (
	hNone     = "__m_none"
	hStr      = "__m_str"
	hBool     = "__m_bool"
	hIter     = "__m_iter"
	hGetattr  = "__m_getattr"
	hGetitem  = "__m_getitem"
	hSlice    = "__m_slice"
	hBinop    = "__m_binop"
	hNot      = "__m_not"
	hNeg      = "__m_neg"
	hPos      = "__m_pos"
	hList     = "__m_list"
	hTuple    = "__m_tuple"
	hDict     = "__m_dict"
	hFilter   = "__m_filter"
	hTest     = "__m_test"
	hKwOrder  = "__m_kworder"
	hCall     = "__m_call"
	hUndefVar = "__m_undefined"
)

type rewriter struct {
	err    error
	src    string         // the source gonja parsed (token positions index it)
	macros []*nodes.Macro // enclosing macro definitions
}

func (rw *rewriter) fail(pos *tokens.Token, format string, args ...any) {
	if rw.err != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if pos != nil {
		msg = fmt.Sprintf("line %d: %s", pos.Line, msg)
	}
	rw.err = fmt.Errorf("%s", msg)
}

func nameNode(pos *tokens.Token, name string) *nodes.Name {
	t := &tokens.Token{Type: tokens.Name, Val: name}
	if pos != nil {
		t.Pos, t.Line, t.Col = pos.Pos, pos.Line, pos.Col
	}
	return &nodes.Name{Name: t}
}

func stringNode(pos *tokens.Token, s string) *nodes.String {
	t := &tokens.Token{Type: tokens.String, Val: s}
	if pos != nil {
		t.Pos, t.Line, t.Col = pos.Pos, pos.Line, pos.Col
	}
	return &nodes.String{Location: t, Val: s}
}

func callNode(pos *tokens.Token, helper string, args ...nodes.Expression) *nodes.Call {
	return &nodes.Call{
		Location: pos,
		Func:     nameNode(pos, helper),
		Args:     args,
		Kwargs:   map[string]nodes.Expression{},
	}
}

func position(n nodes.Node) *tokens.Token {
	if n == nil {
		return nil
	}
	defer func() { _ = recover() }()
	return n.Position()
}

// wrapper rewrites every node of a block in place.
func (rw *rewriter) wrapper(w *nodes.Wrapper) {
	if w == nil {
		return
	}
	for _, n := range w.Nodes {
		rw.node(n)
	}
}

func (rw *rewriter) node(n nodes.Node) {
	switch x := n.(type) {
	case nil, *nodes.Data, *nodes.Comment:
	case *nodes.Output:
		x.Expression = callNode(x.Start, hStr, rw.expr(x.Expression))
		if x.Condition != nil {
			x.Condition = callNode(x.Start, hBool, rw.expr(x.Condition))
		}
		if x.Alternative != nil {
			x.Alternative = callNode(x.Start, hStr, rw.expr(x.Alternative))
		}
	case *nodes.ControlStructureBlock:
		rw.controlStructure(x.ControlStructure)
	case *nodes.Wrapper:
		rw.wrapper(x)
	default:
		rw.fail(position(n), "unsupported template node %T", n)
	}
}

func (rw *rewriter) controlStructure(cs nodes.ControlStructure) {
	switch x := cs.(type) {
	case *controlStructures.IfControlStructure:
		for i, c := range x.Conditions {
			x.Conditions[i] = callNode(position(c), hBool, rw.expr(c))
		}
		for _, w := range x.Wrappers {
			rw.wrapper(w)
		}
	case *controlStructures.ForControlStructure:
		x.ObjectEvaluator = callNode(position(x.ObjectEvaluator), hIter, rw.expr(x.ObjectEvaluator))
		if x.IfCondition != nil {
			x.IfCondition = callNode(position(x.IfCondition), hBool, rw.expr(x.IfCondition))
		}
		rw.wrapper(x.BodyWrapper)
		rw.wrapper(x.EmptyWrapper)
	case *controlStructures.MacroControlStructure:
		for _, p := range x.Kwargs {
			if p.Value == nil {
				continue
			}
			// A parameter without default is parsed as a None node located
			// at the parameter name; jinja2 leaves it Undefined, so keep it.
			if none, ok := p.Value.(*nodes.None); ok {
				if key, ok := p.Key.(*nodes.String); ok && none.Location == key.Location {
					continue
				}
			}
			p.Value = rw.expr(p.Value)
		}
		rw.macros = append(rw.macros, x.Macro)
		rw.wrapper(x.Wrapper)
		rw.macros = rw.macros[:len(rw.macros)-1]
	case rewritable:
		x.rewrite(rw)
	default:
		rw.generic(reflect.ValueOf(cs))
	}
}

// rewritable is implemented by this package's own control structures.
type rewritable interface {
	rewrite(rw *rewriter)
}

var (
	exprType    = reflect.TypeFor[nodes.Expression]()
	wrapperType = reflect.TypeFor[*nodes.Wrapper]()
	callType    = reflect.TypeFor[*nodes.Call]()
)

// generic rewrites the exported expression and block fields of a control
// structure this package does not know (call blocks, ...).
func (rw *rewriter) generic(v reflect.Value) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		switch {
		case f.Type == exprType:
			if !fv.IsNil() {
				fv.Set(reflect.ValueOf(rw.expr(fv.Interface().(nodes.Expression))))
			}
		case f.Type == callType:
			if !fv.IsNil() {
				if c, ok := rw.expr(fv.Interface().(*nodes.Call)).(*nodes.Call); ok {
					fv.Set(reflect.ValueOf(c))
				}
			}
		case f.Type == wrapperType:
			rw.wrapper(fv.Interface().(*nodes.Wrapper))
		case f.Type.Kind() == reflect.Slice && f.Type.Elem() == exprType:
			for j := range fv.Len() {
				e := fv.Index(j)
				if !e.IsNil() {
					e.Set(reflect.ValueOf(rw.expr(e.Interface().(nodes.Expression))))
				}
			}
		case f.Type.Kind() == reflect.Slice && f.Type.Elem() == wrapperType:
			for j := range fv.Len() {
				rw.wrapper(fv.Index(j).Interface().(*nodes.Wrapper))
			}
		case f.Anonymous:
			rw.generic(fv)
		}
	}
}

func (rw *rewriter) exprs(list []nodes.Expression) []nodes.Expression {
	out := make([]nodes.Expression, len(list))
	for i, e := range list {
		out[i] = rw.expr(e)
	}
	return out
}

func (rw *rewriter) kwargs(m map[string]nodes.Expression) map[string]nodes.Expression {
	out := make(map[string]nodes.Expression, len(m))
	for k, e := range m {
		out[k] = rw.expr(e)
	}
	return out
}

// kwOrder lists keyword argument names in source order (Go maps lose it; a
// dict(...) or namespace(...) call needs it to order its keys).
func kwOrder(pos *tokens.Token, m map[string]nodes.Expression) nodes.Expression {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		pi, pj := position(m[names[i]]), position(m[names[j]])
		if pi == nil || pj == nil {
			return names[i] < names[j]
		}
		return pi.Pos < pj.Pos
	})
	args := make([]nodes.Expression, len(names))
	for i, n := range names {
		args[i] = stringNode(pos, n)
	}
	return callNode(pos, hTuple, args...)
}

func (rw *rewriter) expr(e nodes.Expression) nodes.Expression {
	if e == nil || rw.err != nil {
		return e
	}
	switch x := e.(type) {
	case *nodes.String, *nodes.Integer, *nodes.Float, *nodes.Bool, *nodes.Error:
		return e
	case *nodes.None:
		if x.Location != nil && x.Location.Val == "nil" {
			// jinja2 has no `nil` literal: it is an ordinary (undefined) name.
			return nameNode(x.Location, "nil")
		}
		return nameNode(x.Location, hNone)
	case *nodes.Name:
		switch x.Name.Val {
		case "varargs", "kwargs":
			// jinja2 macros take extra arguments when their body uses
			// these names.
			if n := len(rw.macros); n > 0 {
				if x.Name.Val == "varargs" {
					rw.macros[n-1].VarArgsName = "varargs"
				} else {
					rw.macros[n-1].KwArgsName = "kwargs"
				}
			}
		case "if", "else":
			rw.fail(x.Name, "unexpected '%s'", x.Name.Val)
		case "none":
			return nameNode(x.Name, hNone)
		case "true":
			return &nodes.Bool{Location: x.Name, Val: true}
		case "false":
			return &nodes.Bool{Location: x.Name, Val: false}
		}
		return e
	case *nodes.List:
		return callNode(x.Location, hList, rw.exprs(x.Val)...)
	case *nodes.Tuple:
		return callNode(x.Location, hTuple, rw.exprs(x.Val)...)
	case *nodes.Dict:
		args := make([]nodes.Expression, 0, 2*len(x.Pairs))
		for _, p := range x.Pairs {
			args = append(args, rw.expr(p.Key), rw.expr(p.Value))
		}
		return callNode(x.Token, hDict, args...)
	case *nodes.GetAttribute:
		obj := rw.expr(x.Node.(nodes.Expression))
		if x.Attribute == "" {
			return callNode(x.Location, hGetitem, obj, &nodes.Integer{Location: x.Location, Val: x.Index})
		}
		return callNode(x.Location, hGetattr, obj, stringNode(x.Location, x.Attribute))
	case *nodes.GetItem:
		if x.Arg == nil {
			rw.fail(x.Location, "empty subscript")
			return e
		}
		return callNode(x.Location, hGetitem, rw.expr(x.Node.(nodes.Expression)), rw.expr(x.Arg.(nodes.Expression)))
	case *nodes.GetSlice:
		bound := func(n nodes.Node) nodes.Expression {
			if n == nil {
				return nameNode(x.Location, hNone)
			}
			return rw.expr(n.(nodes.Expression))
		}
		return callNode(x.Location, hSlice, rw.expr(x.Node.(nodes.Expression)), bound(x.Start), bound(x.End), bound(x.Step))
	case *nodes.Call:
		desc := "expression"
		switch f := x.Func.(type) {
		case *nodes.Name:
			desc = f.Name.Val
		case *nodes.GetAttribute:
			desc = "." + f.Attribute
		}
		c := callNode(x.Location, hCall, append([]nodes.Expression{stringNode(x.Location, desc), rw.expr(x.Func.(nodes.Expression))}, rw.exprs(x.Args)...)...)
		c.Kwargs = rw.kwargs(x.Kwargs)
		if n, ok := x.Func.(*nodes.Name); ok && (n.Name.Val == "dict" || n.Name.Val == "namespace") && len(x.Kwargs) > 1 {
			c.Kwargs[hKwOrder] = kwOrder(x.Location, x.Kwargs)
		}
		return c
	case *nodes.Negation:
		return callNode(x.Operator, hNot, rw.expr(x.Term))
	case *nodes.UnaryExpression:
		if x.Negative {
			return callNode(x.Operator, hNeg, rw.expr(x.Term))
		}
		return callNode(x.Operator, hPos, rw.expr(x.Term))
	case *nodes.BinaryExpression:
		if chain := rw.comparisonChain(x); chain != nil {
			return chain
		}
		op := x.Operator.Token.Val
		left, right := rw.expr(x.Left), rw.expr(x.Right)
		switch op {
		case "and", "or":
			return &nodes.BinaryExpression{Left: left, Right: right, Operator: x.Operator}
		case "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=", "in":
			return callNode(x.Operator.Token, hBinop, stringNode(x.Operator.Token, op), left, right)
		}
		rw.fail(x.Operator.Token, "unsupported operator %q", op)
		return e
	case *nodes.FilteredExpression:
		if t := testOf(x.Expression); t != nil && len(t.Test.Args) > 0 && len(x.Filters) > 0 && !rw.closesBefore(position(t.Expression), x.Filters[0].Token) {
			// gonja parses a test's argument without its filters, then
			// applies them to the whole test: `x in l|list` must be
			// `x in (l|list)`, as in jinja2.
			last := len(t.Test.Args) - 1
			t.Test.Args[last] = &nodes.FilteredExpression{Expression: t.Test.Args[last], Filters: x.Filters}
			return rw.expr(x.Expression)
		}
		cur := rw.expr(x.Expression)
		for _, f := range x.Filters {
			cur = rw.filterCall(f, cur)
		}
		return cur
	case *nodes.TestExpression:
		t := x.Test
		if _, ok := tests[t.Name]; !ok {
			rw.fail(t.Token, "no test named '%s'", t.Name)
			return e
		}
		c := callNode(t.Token, hTest, append([]nodes.Expression{stringNode(t.Token, t.Name), rw.expr(x.Expression)}, rw.exprs(t.Args)...)...)
		c.Kwargs = rw.kwargs(t.Kwargs)
		return c
	}
	rw.fail(position(e), "unsupported expression %T", e)
	return e
}

var compareOps = map[string]bool{"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}

// comparisonChain rewrites jinja2's chained comparison `a < b < c` (which
// gonja parses as `(a < b) < c`) into `a < b and b < c`; nil when x is not
// an unparenthesized chain.
func (rw *rewriter) comparisonChain(x *nodes.BinaryExpression) nodes.Expression {
	if !compareOps[x.Operator.Token.Val] {
		return nil
	}
	left, ok := x.Left.(*nodes.BinaryExpression)
	if !ok || !compareOps[left.Operator.Token.Val] || rw.closesBefore(position(left), x.Operator.Token) {
		return nil
	}
	// Collect operands and operators left to right.
	var operands []nodes.Expression
	var ops []*nodes.BinOperator
	cur := nodes.Expression(x)
	for {
		b, ok := cur.(*nodes.BinaryExpression)
		if !ok || !compareOps[b.Operator.Token.Val] {
			operands = append(operands, cur)
			break
		}
		if b != x && rw.closesBefore(position(b), ops[0].Token) {
			operands = append(operands, cur)
			break
		}
		ops = append([]*nodes.BinOperator{b.Operator}, ops...)
		operands = append([]nodes.Expression{b.Right}, operands...)
		cur = b.Left
		if len(ops) > 64 {
			return nil
		}
	}
	// operands was built right to left with the leftmost appended last.
	operands = append([]nodes.Expression{operands[len(operands)-1]}, operands[:len(operands)-1]...)
	var out nodes.Expression
	for i, op := range ops {
		cmp := callNode(op.Token, hBinop, stringNode(op.Token, op.Token.Val), rw.expr(operands[i]), rw.expr(operands[i+1]))
		if out == nil {
			out = cmp
		} else {
			and := &tokens.Token{Type: tokens.And, Val: "and", Pos: op.Token.Pos, Line: op.Token.Line, Col: op.Token.Col}
			out = &nodes.BinaryExpression{Left: out, Right: cmp, Operator: &nodes.BinOperator{Token: and}}
		}
	}
	return out
}

// testOf returns the test of `x is t(arg)` / `x in arg`, possibly negated.
func testOf(e nodes.Expression) *nodes.TestExpression {
	switch x := e.(type) {
	case *nodes.TestExpression:
		return x
	case *nodes.Negation:
		if t, ok := x.Term.(*nodes.TestExpression); ok {
			return t
		}
	}
	return nil
}

// closesBefore reports whether, in the source between from and to, a
// bracket closes that was opened before from: then `to` (a filter) applies
// to a parenthesized group containing from.
func (rw *rewriter) closesBefore(from, to *tokens.Token) bool {
	if from == nil || to == nil || from.Pos < 0 || to.Pos > len(rw.src) || from.Pos >= to.Pos {
		return true
	}
	depth := 0
	var quote byte
	for i := from.Pos; i < to.Pos; i++ {
		c := rw.src[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
			if depth < 0 {
				return true
			}
		}
	}
	return false
}

// filterCall turns `value | name(args)` into a helper call.
func (rw *rewriter) filterCall(f *nodes.FilterCall, value nodes.Expression) nodes.Expression {
	if _, ok := filters[f.Name]; !ok {
		rw.fail(f.Token, "no filter named '%s'", f.Name)
		return value
	}
	c := callNode(f.Token, hFilter, append([]nodes.Expression{stringNode(f.Token, f.Name), value}, rw.exprs(f.Args)...)...)
	c.Kwargs = rw.kwargs(f.Kwargs)
	return c
}
