package chat

import (
	"fmt"
	"io"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// Control structures this package implements itself, with jinja2 semantics:
// set (namespace attributes, tuple unpacking, block form with filters),
// filter blocks, with blocks, and transformers' {% generation %} tag.

// evalValue evaluates an expression to a Python value.
func evalValue(r *exec.Renderer, e nodes.Expression) (any, error) {
	v := r.Eval(e)
	if v.IsError() {
		return nil, v
	}
	return fromGonja(v), nil
}

// renderBody renders a block into a string in a child scope.
func renderBody(r *exec.Renderer, w *nodes.Wrapper) (string, error) {
	var b strings.Builder
	sub := r.Inherit()
	sub.Output = &b
	if err := sub.ExecuteWrapper(w); err != nil {
		return "", err
	}
	return b.String(), nil
}

// boundFilter is a filter with its (rewritten) argument expressions.
type boundFilter struct {
	Token  *tokens.Token
	Name   string
	Args   []nodes.Expression
	Kwargs map[string]nodes.Expression
}

func (f *boundFilter) rewrite(rw *rewriter) {
	if _, ok := filters[f.Name]; !ok {
		rw.fail(f.Token, "no filter named '%s'", f.Name)
		return
	}
	f.Args = rw.exprs(f.Args)
	f.Kwargs = rw.kwargs(f.Kwargs)
}

func (f *boundFilter) apply(r *exec.Renderer, v any) (any, error) {
	va := exec.NewVarArgs()
	for _, a := range f.Args {
		x := r.Eval(a)
		if x.IsError() {
			return nil, x
		}
		va.Args = append(va.Args, x)
	}
	for k, a := range f.Kwargs {
		x := r.Eval(a)
		if x.IsError() {
			return nil, x
		}
		va.KwArgs[k] = x
	}
	out := filters[f.Name](v, va)
	if out.IsError() {
		return nil, out
	}
	return fromGonja(out), nil
}

func parseFilterChain(args *parser.Parser) ([]*boundFilter, error) {
	var chain []*boundFilter
	for {
		fc, err := args.ParseFilter()
		if err != nil {
			return nil, err
		}
		chain = append(chain, &boundFilter{Token: fc.Token, Name: fc.Name, Args: fc.Args, Kwargs: fc.Kwargs})
		if args.Match(tokens.Pipe) == nil {
			return chain, nil
		}
	}
}

// setStmt is {% set a = expr %}, {% set a, b = expr %}, {% set ns.x = expr %},
// {% set a = x if c else y %} and the block form {% set a | filter %}...{% endset %}.
type setStmt struct {
	Location *tokens.Token
	Targets  []nodes.Expression // *nodes.Name or *nodes.GetAttribute (namespace attribute)
	Expr     nodes.Expression
	Cond     nodes.Expression // inline `if` condition, or nil
	Alt      nodes.Expression // inline `else` value, or nil
	Body     *nodes.Wrapper
	Filters  []*boundFilter
}

func (s *setStmt) Position() *tokens.Token { return s.Location }
func (s *setStmt) String() string {
	return fmt.Sprintf("set(line %d)", s.Location.Line)
}

func (s *setStmt) rewrite(rw *rewriter) {
	for i, t := range s.Targets {
		if ga, ok := t.(*nodes.GetAttribute); ok {
			s.Targets[i] = &nodes.GetAttribute{Location: ga.Location, Node: rw.expr(ga.Node.(nodes.Expression)), Attribute: ga.Attribute}
		}
	}
	s.Expr = rw.expr(s.Expr)
	s.Cond = rw.expr(s.Cond)
	s.Alt = rw.expr(s.Alt)
	rw.wrapper(s.Body)
	for _, f := range s.Filters {
		f.rewrite(rw)
	}
}

func (s *setStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	var value any
	if s.Body != nil {
		out, err := renderBody(r, s.Body)
		if err != nil {
			return err
		}
		value = out
		for _, f := range s.Filters {
			if value, err = f.apply(r, value); err != nil {
				return err
			}
		}
	} else {
		expr := s.Expr
		if s.Cond != nil {
			c, err := evalValue(r, s.Cond)
			if err != nil {
				return err
			}
			if !truthy(c) {
				expr = s.Alt
			}
		}
		if expr != nil {
			v, err := evalValue(r, expr)
			if err != nil {
				return err
			}
			value = v
		}
	}
	if len(s.Targets) == 1 {
		return assign(r, s.Targets[0], value)
	}
	items, err := pyIter(value)
	if err != nil {
		return err
	}
	if len(items) != len(s.Targets) {
		return &pyError{Msg: fmt.Sprintf("ValueError: expected %d values to unpack, got %d", len(s.Targets), len(items))}
	}
	for i, t := range s.Targets {
		if err := assign(r, t, items[i]); err != nil {
			return err
		}
	}
	return nil
}

func assign(r *exec.Renderer, target nodes.Expression, value any) error {
	switch t := target.(type) {
	case *nodes.Name:
		r.Environment.Context.Set(t.Name.Val, value)
		return nil
	case *nodes.GetAttribute:
		obj, err := evalValue(r, t.Node.(nodes.Expression))
		if err != nil {
			return err
		}
		ns, ok := obj.(*pyNamespace)
		if !ok {
			return &pyError{Msg: "TemplateRuntimeError: cannot assign attribute on non-namespace object"}
		}
		ns.attrs = ns.attrs.with(t.Attribute, value)
		return nil
	}
	return &pyError{Msg: fmt.Sprintf("TemplateSyntaxError: cannot assign to %T", target)}
}

func parseSet(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	s := &setStmt{Location: p.Current()}
	for {
		name := args.Match(tokens.Name)
		if name == nil {
			return nil, args.Error("expected a variable name to assign to", args.Current())
		}
		var target nodes.Expression = &nodes.Name{Name: name}
		if dot := args.Match(tokens.Dot); dot != nil {
			attr := args.Match(tokens.Name)
			if attr == nil {
				return nil, args.Error("expected an attribute name", args.Current())
			}
			target = &nodes.GetAttribute{Location: dot, Node: target, Attribute: attr.Val}
		}
		s.Targets = append(s.Targets, target)
		if args.Match(tokens.Comma) == nil {
			break
		}
	}
	if args.Match(tokens.Assign) == nil {
		// Block form.
		if len(s.Targets) != 1 {
			return nil, args.Error("a block set takes a single target", args.Current())
		}
		if args.Match(tokens.Pipe) != nil {
			chain, err := parseFilterChain(args)
			if err != nil {
				return nil, err
			}
			s.Filters = chain
		}
		if !args.End() {
			return nil, args.Error("expected '=' or the end of the set tag", args.Current())
		}
		body, endArgs, err := p.WrapUntil("endset")
		if err != nil {
			return nil, err
		}
		if !endArgs.End() {
			return nil, endArgs.Error("endset takes no arguments", nil)
		}
		s.Body = body
		return s, nil
	}
	expr, err := args.ParseExpression()
	if err != nil {
		return nil, err
	}
	if args.Current(tokens.Comma) != nil {
		tuple := &nodes.Tuple{Location: position(expr), Val: []nodes.Expression{expr}}
		for args.Match(tokens.Comma) != nil {
			if args.End() {
				break
			}
			e, err := args.ParseExpression()
			if err != nil {
				return nil, err
			}
			tuple.Val = append(tuple.Val, e)
		}
		expr = tuple
	}
	s.Expr = expr
	cond, alt, err := args.ParseCondition()
	if err != nil {
		return nil, err
	}
	s.Cond, s.Alt = cond, alt
	if !args.End() {
		return nil, args.Error("malformed set tag", args.Current())
	}
	return s, nil
}

// filterStmt is {% filter name(args) | ... %}...{% endfilter %}.
type filterStmt struct {
	Location *tokens.Token
	Filters  []*boundFilter
	Body     *nodes.Wrapper
}

func (f *filterStmt) Position() *tokens.Token { return f.Location }
func (f *filterStmt) String() string          { return fmt.Sprintf("filter(line %d)", f.Location.Line) }

func (f *filterStmt) rewrite(rw *rewriter) {
	rw.wrapper(f.Body)
	for _, b := range f.Filters {
		b.rewrite(rw)
	}
}

func (f *filterStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	out, err := renderBody(r, f.Body)
	if err != nil {
		return err
	}
	var value any = out
	for _, b := range f.Filters {
		if value, err = b.apply(r, value); err != nil {
			return err
		}
	}
	_, err = io.WriteString(r.Output, pyStr(value))
	return err
}

func parseFilterBlock(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	f := &filterStmt{Location: p.Current()}
	chain, err := parseFilterChain(args)
	if err != nil {
		return nil, err
	}
	if !args.End() {
		return nil, args.Error("malformed filter tag", args.Current())
	}
	f.Filters = chain
	body, endArgs, err := p.WrapUntil("endfilter")
	if err != nil {
		return nil, err
	}
	if !endArgs.End() {
		return nil, endArgs.Error("endfilter takes no arguments", nil)
	}
	f.Body = body
	return f, nil
}

// withStmt is {% with a = x, b = y %}...{% endwith %}.
type withStmt struct {
	Location *tokens.Token
	Names    []string
	Values   []nodes.Expression
	Body     *nodes.Wrapper
}

func (w *withStmt) Position() *tokens.Token { return w.Location }
func (w *withStmt) String() string          { return fmt.Sprintf("with(line %d)", w.Location.Line) }

func (w *withStmt) rewrite(rw *rewriter) {
	w.Values = rw.exprs(w.Values)
	rw.wrapper(w.Body)
}

func (w *withStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	sub := r.Inherit()
	for i, e := range w.Values {
		v, err := evalValue(r, e)
		if err != nil {
			return err
		}
		sub.Environment.Context.Set(w.Names[i], v)
	}
	return sub.ExecuteWrapper(w.Body)
}

func parseWith(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	w := &withStmt{Location: p.Current()}
	for !args.End() {
		name := args.Match(tokens.Name)
		if name == nil || args.Match(tokens.Assign) == nil {
			return nil, args.Error("expected name = value in with tag", args.Current())
		}
		e, err := args.ParseExpression()
		if err != nil {
			return nil, err
		}
		w.Names = append(w.Names, name.Val)
		w.Values = append(w.Values, e)
		if args.Match(tokens.Comma) == nil && !args.End() {
			return nil, args.Error("expected ',' in with tag", args.Current())
		}
	}
	body, endArgs, err := p.WrapUntil("endwith")
	if err != nil {
		return nil, err
	}
	if !endArgs.End() {
		return nil, endArgs.Error("endwith takes no arguments", nil)
	}
	w.Body = body
	return w, nil
}

// generationStmt is transformers' {% generation %}...{% endgeneration %}: it
// marks assistant text for return_assistant_tokens_mask and renders its body
// unchanged (in a child scope, as jinja2's call block does).
type generationStmt struct {
	Location *tokens.Token
	Body     *nodes.Wrapper
}

func (g *generationStmt) Position() *tokens.Token { return g.Location }
func (g *generationStmt) String() string          { return fmt.Sprintf("generation(line %d)", g.Location.Line) }
func (g *generationStmt) rewrite(rw *rewriter)    { rw.wrapper(g.Body) }

func (g *generationStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	out, err := renderBody(r, g.Body)
	if err != nil {
		return err
	}
	_, err = io.WriteString(r.Output, out)
	return err
}

func parseGeneration(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	g := &generationStmt{Location: p.Current()}
	if !args.End() {
		return nil, args.Error("generation takes no arguments", args.Current())
	}
	body, endArgs, err := p.WrapUntil("endgeneration")
	if err != nil {
		return nil, err
	}
	if !endArgs.End() {
		return nil, endArgs.Error("endgeneration takes no arguments", nil)
	}
	g.Body = body
	return g, nil
}

// rawStmt is {% raw %}...{% endraw %}: its text is output unparsed, with
// whitespace control applied (gonja's own raw tag ignores it and panics on
// an empty block).
type rawStmt struct {
	Location *tokens.Token
	Body     *nodes.Wrapper
}

func (s *rawStmt) Position() *tokens.Token { return s.Location }
func (s *rawStmt) String() string          { return fmt.Sprintf("raw(line %d)", s.Location.Line) }
func (s *rawStmt) rewrite(*rewriter)       {}

func (s *rawStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	return r.ExecuteWrapper(s.Body)
}

func parseRaw(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	s := &rawStmt{Location: p.Current()}
	if !args.End() {
		return nil, args.Error("raw takes no arguments", args.Current())
	}
	body, endArgs, err := p.WrapUntil("endraw")
	if err != nil {
		return nil, err
	}
	if !endArgs.End() {
		return nil, endArgs.Error("endraw takes no arguments", nil)
	}
	for _, n := range body.Nodes {
		if _, ok := n.(*nodes.Data); !ok {
			return nil, p.Error("raw block must hold text only", position(n))
		}
	}
	s.Body = body
	return s, nil
}
