package chat

import (
	"math"
	"strings"
	"unicode/utf8"

	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Python semantics of the expression operators. The rewriter (rewrite.go)
// turns every operator node of a parsed template into a call to one of these.

func opAdd(a, b any) *exec.Value {
	if a == nil || b == nil {
		return undefinedError("undefined value used in '+'")
	}
	// Markup + str (either order) HTML-escapes the plain string.
	_, am := a.(pyMarkup)
	_, bm := b.(pyMarkup)
	if am || bm {
		as, aok := asStr(a)
		bs, bok := asStr(b)
		if aok && bok {
			if !am {
				as = htmlEscape(as)
			}
			if !bm {
				bs = htmlEscape(bs)
			}
			return ret(pyMarkup(as + bs))
		}
		a, b = demarkup(a), demarkup(b)
	}
	if isNumber(a) && isNumber(b) {
		ai, aInt := toInt(a)
		bi, bInt := toInt(b)
		if aInt && bInt {
			return ret(ai + bi)
		}
		af, _ := toFloat(a)
		bf, _ := toFloat(b)
		return ret(af + bf)
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return ret(x + y)
		}
		return typeError("can only concatenate str (not \"%s\") to str", typeName(b))
	case pyList:
		if y, ok := b.(pyList); ok {
			out := make(pyList, 0, len(x)+len(y))
			return ret(append(append(out, x...), y...))
		}
		return typeError("can only concatenate list (not \"%s\") to list", typeName(b))
	case pyTuple:
		if y, ok := b.(pyTuple); ok {
			out := make(pyTuple, 0, len(x)+len(y))
			return ret(append(append(out, x...), y...))
		}
		return typeError("can only concatenate tuple (not \"%s\") to tuple", typeName(b))
	}
	return typeError("unsupported operand type(s) for +: '%s' and '%s'", typeName(a), typeName(b))
}

func opSub(a, b any) *exec.Value {
	return arith("-", a, b,
		func(x, y int) (any, *exec.Value) { return x - y, nil },
		func(x, y float64) (any, *exec.Value) { return x - y, nil })
}

func opMul(a, b any) *exec.Value {
	if a == nil || b == nil {
		return undefinedError("undefined value used in '*'")
	}
	if n, ok := toInt(b); ok {
		if r := repeat(a, n); r != nil {
			return r
		}
	}
	if n, ok := toInt(a); ok {
		if r := repeat(b, n); r != nil {
			return r
		}
	}
	return arith("*", a, b,
		func(x, y int) (any, *exec.Value) { return x * y, nil },
		func(x, y float64) (any, *exec.Value) { return x * y, nil })
}

// repeat implements sequence * int; nil when a is not a sequence.
func repeat(a any, n int) *exec.Value {
	if n < 0 {
		n = 0
	}
	// Python has no limit; templates never need more than this and a
	// runaway repetition must not exhaust memory.
	const limit = 1 << 22
	switch x := a.(type) {
	case string:
		if len(x)*n > limit {
			return fail("MemoryError: repeated string too large")
		}
		return ret(strings.Repeat(x, n))
	case pyList:
		if len(x)*n > limit {
			return fail("MemoryError: repeated list too large")
		}
		out := make(pyList, 0, len(x)*n)
		for range n {
			out = append(out, x...)
		}
		return ret(out)
	case pyTuple:
		if len(x)*n > limit {
			return fail("MemoryError: repeated tuple too large")
		}
		out := make(pyTuple, 0, len(x)*n)
		for range n {
			out = append(out, x...)
		}
		return ret(out)
	}
	return nil
}

func opTrueDiv(a, b any) *exec.Value {
	if a == nil || b == nil {
		return undefinedError("undefined value used in '/'")
	}
	af, ok1 := toFloat(a)
	bf, ok2 := toFloat(b)
	if !ok1 || !ok2 {
		return typeError("unsupported operand type(s) for /: '%s' and '%s'", typeName(a), typeName(b))
	}
	if bf == 0 {
		return fail("ZeroDivisionError: division by zero")
	}
	return ret(af / bf)
}

func opFloorDiv(a, b any) *exec.Value {
	return arith("//", a, b,
		func(x, y int) (any, *exec.Value) {
			if y == 0 {
				return nil, fail("ZeroDivisionError: integer division or modulo by zero")
			}
			q := x / y
			if (x%y != 0) && ((x < 0) != (y < 0)) {
				q--
			}
			return q, nil
		},
		func(x, y float64) (any, *exec.Value) {
			if y == 0 {
				return nil, fail("ZeroDivisionError: float floor division by zero")
			}
			return math.Floor(x / y), nil
		})
}

func opMod(a, b any) *exec.Value {
	if s, ok := a.(string); ok {
		return percentFormat(s, b)
	}
	return arith("%", a, b,
		func(x, y int) (any, *exec.Value) {
			if y == 0 {
				return nil, fail("ZeroDivisionError: integer division or modulo by zero")
			}
			m := x % y
			if m != 0 && ((m < 0) != (y < 0)) {
				m += y
			}
			return m, nil
		},
		func(x, y float64) (any, *exec.Value) {
			if y == 0 {
				return nil, fail("ZeroDivisionError: float modulo")
			}
			m := math.Mod(x, y)
			if m != 0 && ((m < 0) != (y < 0)) {
				m += y
			}
			return m, nil
		})
}

func opPow(a, b any) *exec.Value {
	return arith("**", a, b,
		func(x, y int) (any, *exec.Value) {
			if y < 0 {
				if x == 0 {
					return nil, fail("ZeroDivisionError: 0.0 cannot be raised to a negative power")
				}
				return math.Pow(float64(x), float64(y)), nil
			}
			r := 1
			for range min(y, 4096) {
				r *= x
			}
			return r, nil
		},
		func(x, y float64) (any, *exec.Value) { return math.Pow(x, y), nil })
}

// arith applies a numeric binary operator with Python int/float promotion.
func arith(op string, a, b any, fi func(x, y int) (any, *exec.Value), ff func(x, y float64) (any, *exec.Value)) *exec.Value {
	if a == nil || b == nil {
		return undefinedError("undefined value used in '" + op + "'")
	}
	if !isNumber(a) || !isNumber(b) {
		return typeError("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(a), typeName(b))
	}
	ai, aInt := toInt(a)
	bi, bInt := toInt(b)
	var r any
	var err *exec.Value
	if aInt && bInt {
		r, err = fi(ai, bi)
	} else {
		af, _ := toFloat(a)
		bf, _ := toFloat(b)
		r, err = ff(af, bf)
	}
	if err != nil {
		return err
	}
	return ret(r)
}

func opNeg(a any) *exec.Value {
	switch x := a.(type) {
	case nil:
		return undefinedError("undefined value used in unary '-'")
	case int:
		return ret(-x)
	case bool:
		n, _ := toInt(x)
		return ret(-n)
	case float64:
		return ret(-x)
	}
	return typeError("bad operand type for unary -: '%s'", typeName(a))
}

func opPos(a any) *exec.Value {
	switch x := a.(type) {
	case nil:
		return undefinedError("undefined value used in unary '+'")
	case int, float64:
		return ret(x)
	case bool:
		n, _ := toInt(x)
		return ret(n)
	}
	return typeError("bad operand type for unary +: '%s'", typeName(a))
}

// opCompare implements ==, !=, <, <=, >, >=.
func opCompare(op string, a, b any) *exec.Value {
	switch op {
	case "==":
		return ret(pyEqual(a, b))
	case "!=":
		return ret(!pyEqual(a, b))
	}
	c, err := pyCompare(a, b, op)
	if err != nil {
		return err
	}
	switch op {
	case "<":
		return ret(c < 0)
	case "<=":
		return ret(c <= 0)
	case ">":
		return ret(c > 0)
	case ">=":
		return ret(c >= 0)
	}
	return fail("unknown comparison operator %q", op)
}

// opContains is Python's `item in container`.
func opContains(container, item any) *exec.Value {
	switch c := container.(type) {
	case string:
		s, ok := item.(string)
		if !ok {
			if item == nil {
				return undefinedError("undefined value used with 'in'")
			}
			return typeError("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return ret(strings.Contains(c, s))
	case pyDict:
		if !hashable(item) {
			return typeError("unhashable type: '%s'", typeName(item))
		}
		_, ok := c.lookup(item)
		return ret(ok)
	case *pyNamespace:
		return typeError("argument of type 'Namespace' is not iterable")
	case nil, pyList, pyTuple, *pyGen, pyKeys, pyValues, pyItems:
		items, err := pyIter(c)
		if err != nil {
			return err
		}
		for _, e := range items {
			if pyEqual(e, item) {
				return ret(true)
			}
		}
		return ret(false)
	}
	return typeError("argument of type '%s' is not iterable", typeName(container))
}

func hashable(v any) bool {
	switch v.(type) {
	case pyList, pyDict, *pyGen:
		return false
	case pyTuple:
		for _, e := range v.(pyTuple) {
			if !hashable(e) {
				return false
			}
		}
	}
	return true
}

// getAttr is jinja2's sandboxed environment.getattr(obj, name): a Python
// attribute (method) first, then obj[name], else Undefined.
func getAttr(obj any, name string) *exec.Value {
	if obj == nil {
		return undefinedError("attribute '" + name + "' of an undefined value")
	}
	if m := method(obj, name); m != nil {
		return ret(m)
	}
	switch x := obj.(type) {
	case pyDict:
		if v, ok := x.lookup(name); ok {
			return ret(v)
		}
		return ret(nil)
	case *pyNamespace:
		if v, ok := x.attrs.lookup(name); ok {
			return ret(v)
		}
		return ret(nil)
	case string, int, float64, bool, noneType, pyList, pyTuple, *pyGen, pyFunc, exec.Macro, pyKeys, pyValues, pyItems:
		return ret(nil)
	}
	if strings.HasPrefix(name, "_") {
		return ret(nil)
	}
	if _, ok := obj.(*controlStructures.LoopInfos); ok {
		// jinja2's loop.depth only grows in recursive loops; gonja counts
		// nesting.
		switch name {
		case "depth":
			return ret(1)
		case "depth0":
			return ret(0)
		}
	}
	v, ok := exec.ToValue(obj).GetAttribute(name)
	if !ok || v.IsError() {
		return ret(nil)
	}
	return ret(fromGonja(v))
}

// getItem is jinja2's environment.getitem(obj, key): obj[key] first, then an
// attribute when key is a string, else Undefined.
func getItem(obj, key any) *exec.Value {
	if obj == nil {
		return undefinedError("item " + pyRepr(key) + " of an undefined value")
	}
	switch x := obj.(type) {
	case pyDict:
		if hashable(key) {
			if v, ok := x.lookup(key); ok {
				return ret(v)
			}
		}
	case pyList:
		if v, ok := index(x, key); ok {
			return ret(v)
		}
	case pyTuple:
		if v, ok := index(x, key); ok {
			return ret(v)
		}
	case string:
		if i, ok := toInt(key); ok {
			n := utf8.RuneCountInString(x)
			if i < 0 {
				i += n
			}
			if i >= 0 && i < n {
				return ret(string([]rune(x)[i]))
			}
		}
	case *pyNamespace, noneType, int, float64, bool, *pyGen, pyKeys, pyValues, pyItems:
	default:
		if k, ok := key.(string); ok {
			if v, found := exec.ToValue(obj).GetItem(k); found && !v.IsError() {
				return ret(fromGonja(v))
			}
		} else if k, ok := toInt(key); ok {
			if v, found := exec.ToValue(obj).GetItem(k); found && !v.IsError() {
				return ret(fromGonja(v))
			}
		}
	}
	if name, ok := key.(string); ok {
		return getAttr(obj, name)
	}
	return ret(nil)
}

func index(seq []any, key any) (any, bool) {
	i, ok := toInt(key)
	if !ok {
		return nil, false
	}
	if i < 0 {
		i += len(seq)
	}
	if i < 0 || i >= len(seq) {
		return nil, false
	}
	return seq[i], true
}

// getSlice is obj[start:stop:step] with Python semantics; nil bounds
// (Undefined) and None mean "omitted".
func getSlice(obj, start, stop, step any) *exec.Value {
	if obj == nil {
		return undefinedError("slice of an undefined value")
	}
	bound := func(v any) (int, bool, *exec.Value) {
		switch v.(type) {
		case nil, noneType:
			return 0, false, nil
		}
		i, ok := toInt(v)
		if !ok {
			return 0, false, typeError("slice indices must be integers or None or have an __index__ method")
		}
		return i, true, nil
	}
	st, hasStep, err := bound(step)
	if err != nil {
		return err
	}
	if !hasStep {
		st = 1
	}
	if st == 0 {
		return fail("ValueError: slice step cannot be zero")
	}
	b, hasB, err := bound(start)
	if err != nil {
		return err
	}
	e, hasE, err := bound(stop)
	if err != nil {
		return err
	}
	var items []any
	var runes []rune
	n := 0
	switch x := obj.(type) {
	case string:
		runes = []rune(x)
		n = len(runes)
	case pyList:
		items, n = x, len(x)
	case pyTuple:
		items, n = x, len(x)
	default:
		return ret(nil)
	}
	lo, hi := sliceBounds(n, b, hasB, e, hasE, st)
	var idx []int
	if st > 0 {
		for i := lo; i < hi; i += st {
			idx = append(idx, i)
		}
	} else {
		for i := lo; i > hi; i += st {
			idx = append(idx, i)
		}
	}
	switch obj.(type) {
	case string:
		out := make([]rune, len(idx))
		for k, i := range idx {
			out[k] = runes[i]
		}
		return ret(string(out))
	case pyList:
		out := make(pyList, len(idx))
		for k, i := range idx {
			out[k] = items[i]
		}
		return ret(out)
	default:
		out := make(pyTuple, len(idx))
		for k, i := range idx {
			out[k] = items[i]
		}
		return ret(out)
	}
}

// sliceBounds is CPython's PySlice_AdjustIndices.
func sliceBounds(n, start int, hasStart bool, stop int, hasStop bool, step int) (int, int) {
	if step > 0 {
		if !hasStart {
			start = 0
		} else if start < 0 {
			start = max(start+n, 0)
		} else {
			start = min(start, n)
		}
		if !hasStop {
			stop = n
		} else if stop < 0 {
			stop = max(stop+n, 0)
		} else {
			stop = min(stop, n)
		}
		return start, stop
	}
	if !hasStart {
		start = n - 1
	} else if start < 0 {
		start = max(start+n, -1)
	} else {
		start = min(start, n-1)
	}
	if !hasStop {
		stop = -1
	} else if stop < 0 {
		stop = max(stop+n, -1)
	} else {
		stop = min(stop, n-1)
	}
	return start, stop
}
