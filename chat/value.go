package chat

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// The template engine works on Python-like values so that expressions behave
// as they do under jinja2:
//
//	jinja2 Undefined  -> Go nil
//	None              -> pyNone
//	bool, int, float  -> bool, int, float64
//	str               -> string
//	list, tuple       -> pyList, pyTuple
//	dict              -> pyDict (insertion ordered, like Python dicts)
//	generator         -> *pyGen (what map/select/items/... return in jinja2)
//	Namespace         -> *pyNamespace
//	callables         -> func(*exec.VarArgs) *exec.Value (and exec.Macro)
//
// Values coming back from gonja (loop variables, macro results, ...) are
// normalized by fromGonja.

// noneType is Python's None. It is a bool kind so that gonja's own truth
// tests (used for `and` / `or`) see it as false.
type noneType bool

// pyNone is the None singleton.
const pyNone noneType = false

// String returns "None", like Python.
func (noneType) String() string { return "None" }

// pyMarkup is markupsafe's Markup: a string jinja2 considers HTML-safe. With
// autoescape off (as in transformers) it only matters for `+`, which
// HTML-escapes a plain-string operand joined to a Markup (|safe / |escape
// results).
type pyMarkup string

// asStr returns v as a Go string when it is a str (plain or Markup).
func asStr(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case pyMarkup:
		return string(x), true
	}
	return "", false
}

// demarkup turns a Markup into a plain string (most operations do not care).
func demarkup(v any) any {
	if m, ok := v.(pyMarkup); ok {
		return string(m)
	}
	return v
}

// pyList is a Python list.
type pyList []any

// pyTuple is a Python tuple.
type pyTuple []any

// Dict views, what dict.keys() / .values() / .items() return: iterable and
// sized, but not subscriptable or JSON serializable.
type (
	pyKeys   []any
	pyValues []any
	pyItems  []any
)

// viewItems returns the elements of a dict view.
func viewItems(v any) ([]any, string, bool) {
	switch x := v.(type) {
	case pyKeys:
		return x, "dict_keys", true
	case pyValues:
		return x, "dict_values", true
	case pyItems:
		return x, "dict_items", true
	}
	return nil, "", false
}

// dictItem is one key/value pair of a pyDict.
type dictItem struct {
	Key   any
	Value any
}

// pyDict is an insertion-ordered Python dict. It is a slice kind so that
// gonja's truth test sees an empty dict as false. Dicts are small (JSON
// objects, template literals), so lookups are linear.
type pyDict []dictItem

// lookup returns the value for key and whether it is present.
func (d pyDict) lookup(key any) (any, bool) {
	for i := range d {
		if keyEqual(d[i].Key, key) {
			return d[i].Value, true
		}
	}
	return nil, false
}

// with returns a copy of d with key set to value (appended when new).
func (d pyDict) with(key, value any) pyDict {
	out := make(pyDict, len(d), len(d)+1)
	copy(out, d)
	for i := range out {
		if keyEqual(out[i].Key, key) {
			out[i].Value = value
			return out
		}
	}
	return append(out, dictItem{key, value})
}

// pyGen is a one-shot iterator, like the generators jinja2 filters return.
// Iterating it a second time yields nothing; err is raised when it is
// iterated (jinja2 filters are generator functions, so their errors are lazy).
type pyGen struct {
	items []any
	err   error
	used  bool
}

// pyNamespace is jinja2's Namespace: the only object templates may assign
// attributes to.
type pyNamespace struct {
	attrs pyDict
}

// pyFunc is the Go signature of every callable this package exposes.
type pyFunc = func(*exec.VarArgs) *exec.Value

// fromGonja converts a value produced by gonja into this package's value
// model.
func fromGonja(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case *exec.Value:
		if x == nil || !x.Val.IsValid() {
			return nil
		}
		if x.IsError() {
			return x.Interface()
		}
		return fromGonja(x.Interface())
	case string, pyMarkup, bool, int, float64, noneType, pyList, pyTuple, pyDict, pyKeys, pyValues, pyItems, *pyGen, *pyNamespace, pyFunc, exec.Macro, error:
		return v
	case exec.ValuesList:
		out := make(pyList, len(x))
		for i, e := range x {
			out[i] = fromGonja(e)
		}
		return out
	case [2]*exec.Value:
		return pyTuple{fromGonja(x[0]), fromGonja(x[1])}
	case *exec.Dict:
		out := make(pyDict, 0, len(x.Pairs))
		for _, p := range x.Pairs {
			out = out.with(fromGonja(p.Key), fromGonja(p.Value))
		}
		return out
	case exec.Dict:
		return fromGonja(&x)
	case []any:
		// Only gonja's macro varargs come as []any: a tuple in jinja2.
		out := make(pyTuple, len(x))
		for i, e := range x {
			out[i] = fromGonja(e)
		}
		return out
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(pyDict, 0, len(keys))
		for _, k := range keys {
			out = append(out, dictItem{k, fromGonja(x[k])})
		}
		return out
	case []string:
		out := make(pyList, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return int(reflect.ValueOf(x).Convert(reflect.TypeFor[int64]()).Int())
	case float32:
		return float64(x)
	}
	return v
}

// arg returns the i-th positional argument of a call as a Python value, or
// nil (undefined) when absent. A Markup argument becomes a plain string.
func arg(va *exec.VarArgs, i int) any {
	return demarkup(rawArg(va, i))
}

// rawArg is arg keeping Markup strings.
func rawArg(va *exec.VarArgs, i int) any {
	if va == nil || i < 0 || i >= len(va.Args) {
		return nil
	}
	return fromGonja(va.Args[i])
}

// kwarg returns a keyword argument and whether it was given.
func kwarg(va *exec.VarArgs, name string) (any, bool) {
	if va == nil {
		return nil, false
	}
	v, ok := va.KwArgs[name]
	if !ok {
		return nil, false
	}
	return demarkup(fromGonja(v)), true
}

// param returns the argument at position i, or the keyword argument name,
// or def.
func param(va *exec.VarArgs, i int, name string, def any) any {
	if va != nil && i >= 0 && i < len(va.Args) {
		return arg(va, i)
	}
	if v, ok := kwarg(va, name); ok {
		return v
	}
	return def
}

// ret wraps a Python value (or error) for gonja.
func ret(v any) *exec.Value {
	if v == nil {
		return exec.AsValue(nil)
	}
	return exec.AsValue(v)
}

// fail wraps an error for gonja.
func fail(format string, args ...any) *exec.Value {
	return exec.AsValue(&pyError{Msg: fmt.Sprintf(format, args...)})
}

// pyError is a template runtime error: a failed Python operation (TypeError,
// UndefinedError, ...) or a raise_exception() call in the template.
type pyError struct {
	// Msg is the message, prefixed with the Python exception class name when
	// it stands for one ("TypeError: ...").
	Msg string
	// Raised is true when the template called raise_exception(Msg).
	Raised bool
}

// Error implements the error interface.
func (e *pyError) Error() string { return e.Msg }

func typeError(format string, args ...any) *exec.Value {
	return fail("TypeError: "+format, args...)
}

func undefinedError(what string) *exec.Value {
	return fail("UndefinedError: %s", what)
}

// typeName returns Python's type name for v.
func typeName(v any) string {
	if _, name, ok := viewItems(v); ok {
		return name
	}
	switch v.(type) {
	case nil:
		return "Undefined"
	case noneType:
		return "NoneType"
	case bool:
		return "bool"
	case int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyMarkup:
		return "Markup"
	case pyList:
		return "list"
	case pyTuple:
		return "tuple"
	case pyDict:
		return "dict"
	case *pyGen:
		return "generator"
	case *pyNamespace:
		return "Namespace"
	case pyFunc, exec.Macro:
		return "function"
	case error:
		return "error"
	}
	return fmt.Sprintf("%T", v)
}

// isCallable reports whether v can be called from a template.
func isCallable(v any) bool {
	if v == nil {
		return false
	}
	return reflect.TypeOf(v).Kind() == reflect.Func
}

// truthy is Python's bool(v) (jinja2 Undefined is false).
func truthy(v any) bool {
	if items, _, ok := viewItems(v); ok {
		return len(items) > 0
	}
	switch x := v.(type) {
	case nil:
		return false
	case noneType:
		return false
	case bool:
		return x
	case int:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case pyMarkup:
		return x != ""
	case pyList:
		return len(x) > 0
	case pyTuple:
		return len(x) > 0
	case pyDict:
		return len(x) > 0
	}
	if isCallable(v) {
		return true
	}
	if val, ok := v.(*exec.Value); ok {
		return val.IsTrue()
	}
	return exec.ToValue(v).IsTrue() || reflect.ValueOf(v).Kind() == reflect.Pointer
}

// toInt returns v as an int when it is a Python int (bools count, as in
// Python).
func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// toFloat returns v as a float64 when it is a Python number.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// isNumber reports whether v is a Python number (bool included).
func isNumber(v any) bool {
	switch v.(type) {
	case int, float64, bool:
		return true
	}
	return false
}

// pyStr is Python's str(v); jinja2 Undefined renders as "".
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case pyMarkup:
		return string(x)
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(x)
	case float64:
		return floatRepr(x)
	case noneType:
		return "None"
	case pyList, pyTuple, pyDict, *pyNamespace, *pyGen, pyKeys, pyValues, pyItems:
		return pyRepr(v)
	case error:
		return x.Error()
	}
	if isCallable(v) {
		return "<function>"
	}
	return exec.ToValue(v).String()
}

// pyRepr is Python's repr(v).
func pyRepr(v any) string {
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

// maxDepth bounds recursion over values (a namespace can contain itself).
const maxDepth = 200

func writeRepr(b *strings.Builder, v any, depth int) {
	if depth > maxDepth {
		b.WriteString("...")
		return
	}
	depth++
	if items, name, ok := viewItems(v); ok {
		b.WriteString(name + "(")
		writeRepr(b, pyList(items), depth)
		b.WriteString(")")
		return
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("Undefined")
	case string:
		b.WriteString(quoteRepr(x))
	case pyMarkup:
		b.WriteString("Markup(" + quoteRepr(string(x)) + ")")
	case pyList:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, depth)
		}
		b.WriteByte(']')
	case pyTuple:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, depth)
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case pyDict:
		b.WriteByte('{')
		for i, it := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, it.Key, depth)
			b.WriteString(": ")
			writeRepr(b, it.Value, depth)
		}
		b.WriteByte('}')
	case *pyNamespace:
		b.WriteString("<Namespace ")
		writeRepr(b, x.attrs, depth)
		b.WriteByte('>')
	case *pyGen:
		b.WriteString("<generator object>")
	default:
		b.WriteString(pyStr(v))
	}
}

// quoteRepr quotes s the way Python's repr(str) does.
func quoteRepr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < utf8.RuneSelf || unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// floatRepr formats f like Python's repr(float).
func floatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	idx := strings.IndexByte(e, 'e')
	exp, _ := strconv.Atoi(e[idx+1:])
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	mant := e[:idx]
	sign := "+"
	if exp < 0 {
		sign = "-"
		exp = -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}

// keyEqual is dict-key equality (hash + ==) for hashable scalars.
func keyEqual(a, b any) bool {
	return pyEqual(a, b)
}

// pyEqual is Python's a == b (jinja2 Undefined equals only Undefined).
func pyEqual(a, b any) bool {
	return equalDepth(a, b, 0)
}

func equalDepth(a, b any, depth int) bool {
	if depth > maxDepth {
		return false
	}
	depth++
	a, b = demarkup(a), demarkup(b)
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if isNumber(a) && isNumber(b) {
		ai, aInt := toInt(a)
		bi, bInt := toInt(b)
		if aInt && bInt {
			return ai == bi
		}
		af, _ := toFloat(a)
		bf, _ := toFloat(b)
		return af == bf
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case noneType:
		_, ok := b.(noneType)
		return ok
	case pyList:
		y, ok := b.(pyList)
		return ok && seqEqual(x, y, depth)
	case pyTuple:
		y, ok := b.(pyTuple)
		return ok && seqEqual(x, y, depth)
	case pyDict:
		y, ok := b.(pyDict)
		if !ok || len(x) != len(y) {
			return false
		}
		for _, it := range x {
			w, found := y.lookup(it.Key)
			if !found || !equalDepth(it.Value, w, depth) {
				return false
			}
		}
		return true
	case *pyGen, *pyNamespace:
		return a == b
	}
	if isCallable(a) || isCallable(b) {
		return isCallable(a) && isCallable(b) && reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
	}
	return reflect.DeepEqual(a, b)
}

func seqEqual(x, y []any, depth int) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !equalDepth(x[i], y[i], depth) {
			return false
		}
	}
	return true
}

// pyCompare orders a and b like Python's <, returning -1, 0 or 1.
func pyCompare(a, b any, op string) (int, *exec.Value) {
	a, b = demarkup(a), demarkup(b)
	if a == nil || b == nil {
		return 0, undefinedError("undefined value used in comparison '" + op + "'")
	}
	if isNumber(a) && isNumber(b) {
		ai, aInt := toInt(a)
		bi, bInt := toInt(b)
		if aInt && bInt {
			return cmpOrdered(ai, bi), nil
		}
		af, _ := toFloat(a)
		bf, _ := toFloat(b)
		if af < bf {
			return -1, nil
		} else if af > bf {
			return 1, nil
		}
		return 0, nil
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	case pyList:
		if y, ok := b.(pyList); ok {
			return seqCompare(x, y, op)
		}
	case pyTuple:
		if y, ok := b.(pyTuple); ok {
			return seqCompare(x, y, op)
		}
	}
	return 0, typeError("'%s' not supported between instances of '%s' and '%s'", op, typeName(a), typeName(b))
}

func cmpOrdered[T int | float64 | string](a, b T) int {
	if a < b {
		return -1
	} else if a > b {
		return 1
	}
	return 0
}

func seqCompare(x, y []any, op string) (int, *exec.Value) {
	for i := 0; i < len(x) && i < len(y); i++ {
		if pyEqual(x[i], y[i]) {
			continue
		}
		return pyCompare(x[i], y[i], op)
	}
	return cmpOrdered(len(x), len(y)), nil
}

// pyLen is Python's len(v); jinja2 Undefined has length 0.
func pyLen(v any) (int, *exec.Value) {
	if items, _, ok := viewItems(v); ok {
		return len(items), nil
	}
	switch x := demarkup(v).(type) {
	case nil:
		return 0, nil
	case string:
		return utf8.RuneCountInString(x), nil
	case pyList:
		return len(x), nil
	case pyTuple:
		return len(x), nil
	case pyDict:
		return len(x), nil
	}
	return 0, typeError("object of type '%s' has no len()", typeName(v))
}

// pyIter returns the items iterating v yields: characters of a string, keys
// of a dict, nothing for jinja2 Undefined.
func pyIter(v any) ([]any, *exec.Value) {
	if items, _, ok := viewItems(v); ok {
		return items, nil
	}
	switch x := demarkup(v).(type) {
	case nil:
		return nil, nil
	case string:
		out := make([]any, 0, len(x))
		for _, r := range x {
			out = append(out, string(r))
		}
		return out, nil
	case pyList:
		return x, nil
	case pyTuple:
		return x, nil
	case pyDict:
		out := make([]any, len(x))
		for i, it := range x {
			out[i] = it.Key
		}
		return out, nil
	case *pyGen:
		if x.used {
			return nil, nil
		}
		x.used = true
		if x.err != nil {
			return nil, exec.AsValue(x.err)
		}
		return x.items, nil
	}
	return nil, typeError("'%s' object is not iterable", typeName(v))
}

// isIterable is jinja2's `is iterable` test.
func isIterable(v any) bool {
	switch v.(type) {
	case nil, string, pyMarkup, pyList, pyTuple, pyDict, *pyGen, pyKeys, pyValues, pyItems:
		return true
	}
	return false
}
