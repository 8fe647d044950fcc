package chat

import (
	"fmt"
	"sort"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// renderState is the per-Render state shared by the helpers: the first
// Python-level error raised while rendering. gonja sometimes flattens or
// drops errors on their way up (and swallows them in a for-loop's `if`
// filter); jinja2 never does, so the first error recorded here decides the
// outcome of the render.
type renderState struct {
	err *pyError
}

func (st *renderState) record(v *exec.Value) *exec.Value {
	if v != nil && v.IsError() && st.err == nil {
		if e, ok := v.Interface().(*pyError); ok {
			st.err = e
		} else {
			st.err = &pyError{Msg: v.Error()}
		}
	}
	return v
}

// wrap returns f as a template callable whose errors are recorded.
func (st *renderState) wrap(f pyFunc) pyFunc {
	return func(va *exec.VarArgs) *exec.Value {
		return st.record(st.bind(f(va)))
	}
}

// bind makes callables returned to the template (bound methods) record their
// errors too.
func (st *renderState) bind(v *exec.Value) *exec.Value {
	if v == nil || v.IsError() || !v.IsCallable() {
		return v
	}
	if f, ok := v.Interface().(pyFunc); ok {
		return exec.AsValue(st.wrap(f))
	}
	return v
}

// globals returns the template globals of one render: the rewriter's
// helpers, jinja2's global functions and transformers' raise_exception /
// strftime_now.
func (st *renderState) globals(now func() time.Time) map[string]any {
	g := map[string]any{
		hNone: pyNone,
		hStr:  st.wrap(func(va *exec.VarArgs) *exec.Value { return ret(pyStr(arg(va, 0))) }),
		hBool: st.wrap(func(va *exec.VarArgs) *exec.Value { return ret(truthy(arg(va, 0))) }),
		hIter: st.wrap(func(va *exec.VarArgs) *exec.Value {
			items, err := pyIter(arg(va, 0))
			if err != nil {
				return err
			}
			return ret(pyList(items))
		}),
		hGetattr: st.wrap(func(va *exec.VarArgs) *exec.Value {
			name, _ := arg(va, 1).(string)
			return getAttr(arg(va, 0), name)
		}),
		hGetitem: st.wrap(func(va *exec.VarArgs) *exec.Value { return getItem(arg(va, 0), arg(va, 1)) }),
		hSlice: st.wrap(func(va *exec.VarArgs) *exec.Value {
			return getSlice(arg(va, 0), arg(va, 1), arg(va, 2), arg(va, 3))
		}),
		hBinop: st.wrap(func(va *exec.VarArgs) *exec.Value {
			op, _ := arg(va, 0).(string)
			if op == "+" {
				return opAdd(rawArg(va, 1), rawArg(va, 2))
			}
			return binop(op, arg(va, 1), arg(va, 2))
		}),
		hCall: st.wrap(func(va *exec.VarArgs) *exec.Value {
			desc, _ := arg(va, 0).(string)
			f := rawArg(va, 1)
			sub := restArgs(va, 2)
			sub.KwArgs = va.KwArgs
			switch fn := f.(type) {
			case pyFunc:
				return st.bind(fn(sub))
			case exec.Macro:
				return fn(sub)
			case nil:
				return undefinedError("'" + desc + "' is undefined (called as a function)")
			}
			return typeError("'%s' object is not callable", typeName(f))
		}),
		hNot: st.wrap(func(va *exec.VarArgs) *exec.Value { return ret(!truthy(arg(va, 0))) }),
		hNeg: st.wrap(func(va *exec.VarArgs) *exec.Value { return opNeg(arg(va, 0)) }),
		hPos: st.wrap(func(va *exec.VarArgs) *exec.Value { return opPos(arg(va, 0)) }),
		hList: st.wrap(func(va *exec.VarArgs) *exec.Value {
			out := make(pyList, len(va.Args))
			for i := range va.Args {
				out[i] = rawArg(va, i)
			}
			return ret(out)
		}),
		hTuple: st.wrap(func(va *exec.VarArgs) *exec.Value {
			out := make(pyTuple, len(va.Args))
			for i := range va.Args {
				out[i] = rawArg(va, i)
			}
			return ret(out)
		}),
		hDict: st.wrap(func(va *exec.VarArgs) *exec.Value {
			d := pyDict{}
			for i := 0; i+1 < len(va.Args); i += 2 {
				k := arg(va, i)
				if !hashable(k) {
					return typeError("unhashable type: '%s'", typeName(k))
				}
				d = d.with(k, rawArg(va, i+1))
			}
			return ret(d)
		}),
		hFilter: st.wrap(func(va *exec.VarArgs) *exec.Value {
			name, _ := arg(va, 0).(string)
			f, ok := filters[name]
			if !ok {
				return fail("TemplateAssertionError: No filter named '%s'.", name)
			}
			sub := restArgs(va, 2)
			sub.KwArgs = va.KwArgs
			if markupFilters[name] {
				return f(rawArg(va, 1), sub)
			}
			return f(arg(va, 1), sub)
		}),
		hTest: st.wrap(func(va *exec.VarArgs) *exec.Value {
			name, _ := arg(va, 0).(string)
			t, ok := tests[name]
			if !ok {
				return fail("TemplateAssertionError: No test named '%s'.", name)
			}
			sub := restArgs(va, 2)
			sub.KwArgs = va.KwArgs
			r, err := t(arg(va, 1), sub)
			if err != nil {
				return err
			}
			return ret(r)
		}),
		"namespace": st.wrap(func(va *exec.VarArgs) *exec.Value {
			ns := &pyNamespace{}
			for i := range va.Args {
				d, ok := arg(va, i).(pyDict)
				if !ok {
					return typeError("namespace() positional arguments must be mappings")
				}
				for _, it := range d {
					ns.attrs = ns.attrs.with(it.Key, it.Value)
				}
			}
			for _, k := range kwargNames(va) {
				v, _ := kwarg(va, k)
				ns.attrs = ns.attrs.with(k, v)
			}
			return ret(ns)
		}),
		"dict": st.wrap(func(va *exec.VarArgs) *exec.Value {
			d := pyDict{}
			if len(va.Args) > 0 {
				src, ok := arg(va, 0).(pyDict)
				if !ok {
					return typeError("dict() argument must be a mapping")
				}
				d = append(d, src...)
			}
			for _, k := range kwargNames(va) {
				v, _ := kwarg(va, k)
				d = d.with(k, v)
			}
			return ret(d)
		}),
		"range": st.wrap(func(va *exec.VarArgs) *exec.Value {
			var bounds [3]int
			bounds[2] = 1
			n := len(va.Args)
			if n < 1 || n > 3 {
				return typeError("range expected 1 to 3 arguments, got %d", n)
			}
			for i := range n {
				x, ok := toInt(arg(va, i))
				if !ok {
					return typeError("'%s' object cannot be interpreted as an integer", typeName(arg(va, i)))
				}
				bounds[i] = x
			}
			start, stop, step := 0, bounds[0], 1
			if n >= 2 {
				start, stop = bounds[0], bounds[1]
			}
			if n == 3 {
				step = bounds[2]
			}
			if step == 0 {
				return fail("ValueError: range() arg 3 must not be zero")
			}
			out := pyList{}
			for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
				if len(out) >= 100000 {
					return fail("OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
				}
				out = append(out, i)
			}
			return ret(out)
		}),
		"raise_exception": st.wrap(func(va *exec.VarArgs) *exec.Value {
			return exec.AsValue(&pyError{Msg: pyStr(arg(va, 0)), Raised: true})
		}),
		"strftime_now": st.wrap(func(va *exec.VarArgs) *exec.Value {
			f, ok := arg(va, 0).(string)
			if !ok {
				return typeError("strftime() argument 1 must be str, not %s", typeName(arg(va, 0)))
			}
			return ret(pyStrftime(now(), f))
		}),
	}
	return g
}

// kwargNames returns the keyword argument names of a call in source order
// when the rewriter recorded it, else sorted.
func kwargNames(va *exec.VarArgs) []string {
	var names []string
	if order, ok := kwarg(va, hKwOrder); ok {
		if t, ok := order.(pyTuple); ok {
			for _, n := range t {
				if s, ok := n.(string); ok {
					names = append(names, s)
				}
			}
			return names
		}
	}
	for k := range va.KwArgs {
		if k != hKwOrder {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

func binop(op string, a, b any) *exec.Value {
	switch op {
	case "+":
		return opAdd(a, b)
	case "-":
		return opSub(a, b)
	case "*":
		return opMul(a, b)
	case "/":
		return opTrueDiv(a, b)
	case "//":
		return opFloorDiv(a, b)
	case "%":
		return opMod(a, b)
	case "**":
		return opPow(a, b)
	case "~":
		return ret(pyStr(a) + pyStr(b))
	case "in":
		return opContains(b, a)
	case "==", "!=", "<", "<=", ">", ">=":
		return opCompare(op, a, b)
	}
	return fail("unsupported operator %s", fmt.Sprintf("%q", op))
}
