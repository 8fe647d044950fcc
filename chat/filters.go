package chat

import (
	"html"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// filterFunc is a jinja2 filter: v is the filtered value, va the filter's
// own arguments.
type filterFunc func(v any, va *exec.VarArgs) *exec.Value

// testFunc is a jinja2 test (`value is name(args)`).
type testFunc func(v any, va *exec.VarArgs) (bool, *exec.Value)

var (
	filters map[string]filterFunc
	tests   map[string]testFunc
)

func init() {
	filters = map[string]filterFunc{
		"abs":         filterAbs,
		"attr":        filterAttr,
		"batch":       filterBatch,
		"capitalize":  func(v any, _ *exec.VarArgs) *exec.Value { return ret(pyCapitalize(pyStr(v))) },
		"center":      filterCenter,
		"count":       filterLength,
		"d":           filterDefault,
		"default":     filterDefault,
		"dictsort":    filterDictsort,
		"e":           filterEscape,
		"escape":      filterEscape,
		"first":       filterFirst,
		"float":       filterFloat,
		"forceescape": func(v any, _ *exec.VarArgs) *exec.Value { return ret(pyMarkup(htmlEscape(pyStr(v)))) },
		"format":      filterFormat,
		"indent":      filterIndent,
		"int":         filterInt,
		"items":       filterItems,
		"join":        filterJoin,
		"last":        filterLast,
		"length":      filterLength,
		"list":        filterList,
		"lower":       func(v any, _ *exec.VarArgs) *exec.Value { return ret(strings.ToLower(pyStr(v))) },
		"map":         filterMap,
		"max":         func(v any, va *exec.VarArgs) *exec.Value { return filterMinMax(v, va, 1) },
		"min":         func(v any, va *exec.VarArgs) *exec.Value { return filterMinMax(v, va, -1) },
		"reject":      func(v any, va *exec.VarArgs) *exec.Value { return filterSelect(v, va, false, false) },
		"rejectattr":  func(v any, va *exec.VarArgs) *exec.Value { return filterSelect(v, va, true, false) },
		"replace":     filterReplace,
		"reverse":     filterReverse,
		"round":       filterRound,
		"safe":        filterSafe,
		"select":      func(v any, va *exec.VarArgs) *exec.Value { return filterSelect(v, va, false, true) },
		"selectattr":  func(v any, va *exec.VarArgs) *exec.Value { return filterSelect(v, va, true, true) },
		"slice":       filterSlice,
		"sort":        filterSort,
		"string":      filterString,
		"striptags":   filterStriptags,
		"sum":         filterSum,
		"title":       func(v any, _ *exec.VarArgs) *exec.Value { return ret(jinjaTitle(pyStr(v))) },
		"tojson":      filterToJSON,
		"trim":        filterTrim,
		"truncate":    filterTruncate,
		"unique":      filterUnique,
		"upper":       func(v any, _ *exec.VarArgs) *exec.Value { return ret(strings.ToUpper(pyStr(v))) },
		"wordcount":   func(v any, _ *exec.VarArgs) *exec.Value { return ret(len(wordRe.FindAllString(pyStr(v), -1))) },
	}
	tests = map[string]testFunc{
		"boolean":   func(v any, _ *exec.VarArgs) (bool, *exec.Value) { _, ok := v.(bool); return ok, nil },
		"callable":  func(v any, _ *exec.VarArgs) (bool, *exec.Value) { return v == nil || isCallable(v), nil },
		"defined":   func(v any, _ *exec.VarArgs) (bool, *exec.Value) { return v != nil, nil },
		"undefined": func(v any, _ *exec.VarArgs) (bool, *exec.Value) { return v == nil, nil },
		"none":      func(v any, _ *exec.VarArgs) (bool, *exec.Value) { _, ok := v.(noneType); return ok, nil },
		"false":     func(v any, _ *exec.VarArgs) (bool, *exec.Value) { b, ok := v.(bool); return ok && !b, nil },
		"true":      func(v any, _ *exec.VarArgs) (bool, *exec.Value) { b, ok := v.(bool); return ok && b, nil },
		"integer":   func(v any, _ *exec.VarArgs) (bool, *exec.Value) { _, ok := v.(int); return ok, nil },
		"float":     func(v any, _ *exec.VarArgs) (bool, *exec.Value) { _, ok := v.(float64); return ok, nil },
		"number":    func(v any, _ *exec.VarArgs) (bool, *exec.Value) { return isNumber(v), nil },
		"string":    func(v any, _ *exec.VarArgs) (bool, *exec.Value) { _, ok := v.(string); return ok, nil },
		"mapping":   func(v any, _ *exec.VarArgs) (bool, *exec.Value) { _, ok := v.(pyDict); return ok, nil },
		"iterable":  func(v any, _ *exec.VarArgs) (bool, *exec.Value) { return isIterable(v), nil },
		"sequence":  testSequence,
		"escaped":   func(any, *exec.VarArgs) (bool, *exec.Value) { return false, nil },
		"lower": func(v any, _ *exec.VarArgs) (bool, *exec.Value) {
			return isCased(pyStr(v), isLowerRune, isUpperRune), nil
		},
		"upper": func(v any, _ *exec.VarArgs) (bool, *exec.Value) {
			return isCased(pyStr(v), isUpperRune, isLowerRune), nil
		},
		"even":        func(v any, va *exec.VarArgs) (bool, *exec.Value) { return testMod(v, 2, 0) },
		"odd":         func(v any, va *exec.VarArgs) (bool, *exec.Value) { return testMod(v, 2, 1) },
		"divisibleby": testDivisible,
		"sameas":      testSameAs,
		"in":          testIn,
		"eq":          cmpTest("=="),
		"equalto":     cmpTest("=="),
		"==":          cmpTest("=="),
		"ne":          cmpTest("!="),
		"!=":          cmpTest("!="),
		"lt":          cmpTest("<"),
		"lessthan":    cmpTest("<"),
		"<":           cmpTest("<"),
		"le":          cmpTest("<="),
		"<=":          cmpTest("<="),
		"gt":          cmpTest(">"),
		"greaterthan": cmpTest(">"),
		">":           cmpTest(">"),
		"ge":          cmpTest(">="),
		">=":          cmpTest(">="),
		"filter": func(v any, _ *exec.VarArgs) (bool, *exec.Value) {
			s, ok := v.(string)
			_, found := filters[s]
			return ok && found, nil
		},
		"test": func(v any, _ *exec.VarArgs) (bool, *exec.Value) {
			s, ok := v.(string)
			_, found := tests[s]
			return ok && found, nil
		},
	}
}

func isLowerRune(r rune) bool { return strings.ToUpper(string(r)) != string(r) }
func isUpperRune(r rune) bool { return strings.ToLower(string(r)) != string(r) }

func cmpTest(op string) testFunc {
	return func(v any, va *exec.VarArgs) (bool, *exec.Value) {
		r := opCompare(op, v, arg(va, 0))
		if r.IsError() {
			return false, r
		}
		return truthy(fromGonja(r)), nil
	}
}

func testSequence(v any, _ *exec.VarArgs) (bool, *exec.Value) {
	switch v.(type) {
	case nil, string, pyList, pyTuple, pyDict:
		return true, nil
	}
	return false, nil
}

func testMod(v any, by, want int) (bool, *exec.Value) {
	r := opMod(v, by)
	if r.IsError() {
		return false, r
	}
	return pyEqual(fromGonja(r), want), nil
}

func testDivisible(v any, va *exec.VarArgs) (bool, *exec.Value) {
	r := opMod(v, arg(va, 0))
	if r.IsError() {
		return false, r
	}
	return pyEqual(fromGonja(r), 0), nil
}

func testIn(v any, va *exec.VarArgs) (bool, *exec.Value) {
	r := opContains(arg(va, 0), v)
	if r.IsError() {
		return false, r
	}
	return truthy(fromGonja(r)), nil
}

// testSameAs approximates Python's `is`: singletons and scalars by value and
// type, containers by identity.
func testSameAs(v any, va *exec.VarArgs) (bool, *exec.Value) {
	o := arg(va, 0)
	switch x := v.(type) {
	case nil, noneType, bool, int, float64, string:
		return typeName(v) == typeName(o) && pyEqual(v, o), nil
	case pyList:
		y, ok := o.(pyList)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0]), nil
	case pyTuple:
		y, ok := o.(pyTuple)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0]), nil
	case pyDict:
		y, ok := o.(pyDict)
		return ok && len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0]), nil
	}
	return pyEqual(v, o), nil
}

// ---- filters -------------------------------------------------------------

func filterAbs(v any, _ *exec.VarArgs) *exec.Value {
	switch x := v.(type) {
	case int:
		if x < 0 {
			return ret(-x)
		}
		return ret(x)
	case bool:
		n, _ := toInt(x)
		return ret(n)
	case float64:
		return ret(math.Abs(x))
	case nil:
		return undefinedError("abs() of an undefined value")
	}
	return typeError("bad operand type for abs(): '%s'", typeName(v))
}

func filterAttr(v any, va *exec.VarArgs) *exec.Value {
	name, ok := arg(va, 0).(string)
	if !ok {
		return typeError("attribute name must be string")
	}
	if v == nil {
		return undefinedError("attribute '" + name + "' of an undefined value")
	}
	if m := method(v, name); m != nil {
		return ret(m)
	}
	if ns, ok := v.(*pyNamespace); ok {
		val, _ := ns.attrs.lookup(name)
		return ret(val)
	}
	return ret(nil)
}

func filterBatch(v any, va *exec.VarArgs) *exec.Value {
	n, ok := toInt(param(va, 0, "linecount", nil))
	if !ok || n <= 0 {
		return typeError("batch linecount must be a positive integer")
	}
	fill, hasFill := param(va, 1, "fill_with", pyNone), false
	if _, isNone := fill.(noneType); !isNone {
		hasFill = true
	}
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	gen := &pyGen{}
	var cur pyList
	for _, e := range items {
		if len(cur) == n {
			gen.items = append(gen.items, cur)
			cur = nil
		}
		cur = append(cur, e)
	}
	if len(cur) > 0 {
		for hasFill && len(cur) < n {
			cur = append(cur, fill)
		}
		gen.items = append(gen.items, cur)
	}
	return ret(gen)
}

func filterCenter(v any, va *exec.VarArgs) *exec.Value {
	w := param(va, 0, "width", 80)
	return strPad(pyStr(v), &exec.VarArgs{Args: []*exec.Value{exec.AsValue(w)}, KwArgs: map[string]*exec.Value{}}, 'c')
}

func filterDefault(v any, va *exec.VarArgs) *exec.Value {
	def := param(va, 0, "default_value", "")
	boolean := truthy(param(va, 1, "boolean", false))
	if v == nil || (boolean && !truthy(v)) {
		return ret(def)
	}
	return ret(v)
}

func filterDictsort(v any, va *exec.VarArgs) *exec.Value {
	d, ok := v.(pyDict)
	if !ok {
		return typeError("dictsort requires a mapping, got %s", typeName(v))
	}
	caseSensitive := truthy(param(va, 0, "case_sensitive", false))
	by, _ := param(va, 1, "by", "key").(string)
	reverse := truthy(param(va, 2, "reverse", false))
	pos := 0
	switch by {
	case "key":
	case "value":
		pos = 1
	default:
		return fail("FilterArgumentError: You can only sort by either \"key\" or \"value\"")
	}
	items := dictItems(d)
	return sortValues(items, func(e any) any {
		k := e.(pyTuple)[pos]
		if s, ok := k.(string); ok && !caseSensitive {
			return strings.ToLower(s)
		}
		return k
	}, reverse)
}

// sortValues sorts items by key(item) with Python ordering (stable).
func sortValues(items []any, key func(any) any, reverse bool) *exec.Value {
	out := append(pyList(nil), items...)
	keys := make([]any, len(out))
	for i, e := range out {
		keys[i] = key(e)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	var sortErr *exec.Value
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := keys[idx[i]], keys[idx[j]]
		if reverse {
			a, b = b, a
		}
		c, err := pyCompare(a, b, "<")
		if err != nil && sortErr == nil {
			sortErr = err
		}
		return c < 0
	})
	if sortErr != nil {
		return sortErr
	}
	sorted := make(pyList, len(out))
	for i, k := range idx {
		sorted[i] = out[k]
	}
	return ret(sorted)
}

// markupFilters receive Markup values as such (the others see plain strings).
var markupFilters = map[string]bool{"safe": true, "e": true, "escape": true, "forceescape": true, "string": true}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")

// htmlEscape is markupsafe.escape.
func htmlEscape(s string) string { return htmlEscaper.Replace(s) }

func filterEscape(v any, _ *exec.VarArgs) *exec.Value {
	if m, ok := v.(pyMarkup); ok {
		return ret(m)
	}
	return ret(pyMarkup(htmlEscape(pyStr(v))))
}

func filterSafe(v any, _ *exec.VarArgs) *exec.Value {
	return ret(pyMarkup(pyStr(v)))
}

func filterString(v any, _ *exec.VarArgs) *exec.Value {
	if m, ok := v.(pyMarkup); ok {
		return ret(m)
	}
	return ret(pyStr(v))
}

func filterFirst(v any, _ *exec.VarArgs) *exec.Value {
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return ret(nil)
	}
	return ret(items[0])
}

func filterLast(v any, _ *exec.VarArgs) *exec.Value {
	if _, ok := v.(*pyGen); ok {
		return typeError("'generator' object is not reversible")
	}
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return ret(nil)
	}
	return ret(items[len(items)-1])
}

func parsePyFloat(s string) (float64, bool) {
	t := strings.TrimFunc(s, isPySpace)
	t = strings.ReplaceAll(t, "_", "")
	switch strings.ToLower(strings.TrimLeft(t, "+-")) {
	case "inf", "infinity", "nan":
	default:
		if strings.ContainsAny(t, "xXpP") {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil && !strings.Contains(err.Error(), "range") {
		return 0, false
	}
	return f, true
}

func filterFloat(v any, va *exec.VarArgs) *exec.Value {
	def := param(va, 0, "default", 0.0)
	switch x := v.(type) {
	case float64:
		return ret(x)
	case int, bool:
		f, _ := toFloat(x)
		return ret(f)
	case string:
		if f, ok := parsePyFloat(x); ok {
			return ret(f)
		}
	}
	return ret(def)
}

func filterInt(v any, va *exec.VarArgs) *exec.Value {
	def := param(va, 0, "default", 0)
	base, ok := toInt(param(va, 1, "base", 10))
	if !ok {
		base = 10
	}
	switch x := v.(type) {
	case int:
		return ret(x)
	case bool:
		n, _ := toInt(x)
		return ret(n)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return ret(def)
		}
		return ret(int(x))
	case string:
		t := strings.ReplaceAll(strings.TrimFunc(x, isPySpace), "_", "")
		b := base
		if b == 0 || b == 16 || b == 8 || b == 2 {
			lower := strings.ToLower(strings.TrimLeft(t, "+-"))
			prefix := map[string]int{"0x": 16, "0o": 8, "0b": 2}
			for p, pb := range prefix {
				if strings.HasPrefix(lower, p) && (b == 0 || b == pb) {
					sign := ""
					if strings.HasPrefix(t, "-") {
						sign = "-"
					}
					t = sign + lower[2:]
					b = pb
				}
			}
			if b == 0 {
				b = 10
			}
		}
		if n, err := strconv.ParseInt(t, b, 64); err == nil {
			return ret(int(n))
		}
		if f, ok := parsePyFloat(x); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return ret(int(f))
		}
	}
	return ret(def)
}

func filterFormat(v any, va *exec.VarArgs) *exec.Value {
	s := pyStr(v)
	if len(va.KwArgs) > 0 {
		keys := make([]string, 0, len(va.KwArgs))
		for k := range va.KwArgs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := pyDict{}
		for _, k := range keys {
			d = append(d, dictItem{k, fromGonja(va.KwArgs[k])})
		}
		return percentFormat(s, d)
	}
	args := make(pyTuple, len(va.Args))
	for i := range va.Args {
		args[i] = arg(va, i)
	}
	return percentFormat(s, args)
}

func filterIndent(v any, va *exec.VarArgs) *exec.Value {
	s, ok := v.(string)
	if !ok {
		if v == nil {
			return undefinedError("indent of an undefined value")
		}
		return typeError("unsupported operand type(s) for +=: '%s' and 'str'", typeName(v))
	}
	width := param(va, 0, "width", 4)
	first := truthy(param(va, 1, "first", false))
	blank := truthy(param(va, 2, "blank", false))
	indention := ""
	switch w := width.(type) {
	case string:
		indention = w
	default:
		n, ok := toInt(w)
		if !ok {
			return typeError("can't multiply sequence by non-int of type '%s'", typeName(w))
		}
		indention = strings.Repeat(" ", max(n, 0))
	}
	s += "\n"
	lines := splitLines(s, false)
	var rv string
	if blank {
		rv = strings.Join(lines, "\n"+indention)
	} else {
		rv = lines[0]
		if len(lines) > 1 {
			rest := make([]string, len(lines)-1)
			for i, l := range lines[1:] {
				if l != "" {
					l = indention + l
				}
				rest[i] = l
			}
			rv += "\n" + strings.Join(rest, "\n")
		}
	}
	if first {
		rv = indention + rv
	}
	return ret(rv)
}

func filterItems(v any, _ *exec.VarArgs) *exec.Value {
	switch x := v.(type) {
	case nil:
		return ret(&pyGen{})
	case pyDict:
		return ret(&pyGen{items: dictItems(x)})
	}
	return ret(&pyGen{err: &pyError{Msg: "TypeError: Can only get item pairs from a mapping."}})
}

func filterJoin(v any, va *exec.VarArgs) *exec.Value {
	sep := pyStr(param(va, 0, "d", ""))
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	if attr, ok := param(va, 1, "attribute", pyNone).(string); ok {
		getter := attrGetter(attr, nil)
		mapped := make([]any, len(items))
		for i, e := range items {
			r := getter(e)
			if r.IsError() {
				return r
			}
			mapped[i] = fromGonja(r)
		}
		items = mapped
	}
	parts := make([]string, len(items))
	for i, e := range items {
		parts[i] = pyStr(e)
	}
	return ret(strings.Join(parts, sep))
}

func filterLength(v any, _ *exec.VarArgs) *exec.Value {
	n, err := pyLen(v)
	if err != nil {
		return err
	}
	return ret(n)
}

func filterList(v any, _ *exec.VarArgs) *exec.Value {
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	return ret(append(pyList{}, items...))
}

// attrGetter is jinja2's make_attrgetter: a dotted path of items/attributes
// (numeric parts index sequences), with an optional default for Undefined.
func attrGetter(path string, def any) func(any) *exec.Value {
	parts := strings.Split(path, ".")
	return func(item any) *exec.Value {
		cur := item
		for _, p := range parts {
			var key any = p
			if n, err := strconv.Atoi(p); err == nil && allRunes(p, func(r rune) bool { return r >= '0' && r <= '9' }) {
				key = n
			}
			r := getItem(cur, key)
			if r.IsError() {
				return r
			}
			cur = fromGonja(r)
		}
		if cur == nil && def != nil {
			cur = def
		}
		return ret(cur)
	}
}

func restArgs(va *exec.VarArgs, from int) *exec.VarArgs {
	out := &exec.VarArgs{KwArgs: map[string]*exec.Value{}}
	if from < len(va.Args) {
		out.Args = va.Args[from:]
	}
	return out
}

func filterMap(v any, va *exec.VarArgs) *exec.Value {
	if !truthy(v) {
		// jinja2: `if value:` guards the loop, so None maps to nothing.
		return ret(&pyGen{})
	}
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	var fn func(any) *exec.Value
	if len(va.Args) == 0 {
		attr, ok := kwarg(va, "attribute")
		if !ok {
			return ret(&pyGen{items: items})
		}
		name, _ := attr.(string)
		def, _ := kwarg(va, "default")
		fn = attrGetter(name, def)
	} else {
		name, _ := arg(va, 0).(string)
		f, ok := filters[name]
		if !ok {
			return ret(&pyGen{err: &pyError{Msg: "TemplateRuntimeError: No filter named '" + name + "' found."}})
		}
		rest := restArgs(va, 1)
		rest.KwArgs = va.KwArgs
		fn = func(e any) *exec.Value { return f(e, rest) }
	}
	gen := &pyGen{}
	for _, e := range items {
		r := fn(e)
		if r.IsError() {
			gen.err = r.Interface().(error)
			break
		}
		gen.items = append(gen.items, fromGonja(r))
	}
	return ret(gen)
}

func filterSelect(v any, va *exec.VarArgs, byAttr, keep bool) *exec.Value {
	if !truthy(v) {
		// jinja2: `if value:` guards the loop, so None selects nothing.
		return ret(&pyGen{})
	}
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	off := 0
	transform := func(e any) *exec.Value { return ret(e) }
	if byAttr {
		name, _ := arg(va, 0).(string)
		transform = attrGetter(name, nil)
		off = 1
	}
	check := func(e any) (bool, *exec.Value) { return truthy(e), nil }
	if len(va.Args) > off {
		name, _ := arg(va, off).(string)
		t, ok := tests[name]
		if !ok {
			return ret(&pyGen{err: &pyError{Msg: "TemplateRuntimeError: No test named '" + name + "' found."}})
		}
		rest := restArgs(va, off+1)
		rest.KwArgs = va.KwArgs
		check = func(e any) (bool, *exec.Value) { return t(e, rest) }
	}
	gen := &pyGen{}
	for _, e := range items {
		tv := transform(e)
		if tv.IsError() {
			gen.err = tv.Interface().(error)
			break
		}
		ok, terr := check(fromGonja(tv))
		if terr != nil {
			gen.err = terr.Interface().(error)
			break
		}
		if ok == keep {
			gen.items = append(gen.items, e)
		}
	}
	return ret(gen)
}

func filterMinMax(v any, va *exec.VarArgs, sign int) *exec.Value {
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return ret(nil)
	}
	caseSensitive := truthy(param(va, 0, "case_sensitive", false))
	key := func(e any) *exec.Value { return ret(e) }
	if attr, ok := param(va, 1, "attribute", pyNone).(string); ok {
		key = attrGetter(attr, nil)
	}
	keyOf := func(e any) (any, *exec.Value) {
		r := key(e)
		if r.IsError() {
			return nil, r
		}
		k := fromGonja(r)
		if s, ok := k.(string); ok && !caseSensitive {
			k = strings.ToLower(s)
		}
		return k, nil
	}
	best := items[0]
	bestKey, kerr := keyOf(best)
	if kerr != nil {
		return kerr
	}
	for _, e := range items[1:] {
		k, kerr := keyOf(e)
		if kerr != nil {
			return kerr
		}
		c, cerr := pyCompare(k, bestKey, map[int]string{1: ">", -1: "<"}[sign])
		if cerr != nil {
			return cerr
		}
		if c == sign {
			best, bestKey = e, k
		}
	}
	return ret(best)
}

func filterReplace(v any, va *exec.VarArgs) *exec.Value {
	old := pyStr(param(va, 0, "old", ""))
	repl := pyStr(param(va, 1, "new", ""))
	n := -1
	if c, ok := toInt(param(va, 2, "count", pyNone)); ok {
		n = c
	}
	return ret(strings.Replace(pyStr(v), old, repl, n))
}

func filterReverse(v any, _ *exec.VarArgs) *exec.Value {
	if s, ok := v.(string); ok {
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return ret(string(r))
	}
	items, err := pyIter(v)
	if err != nil {
		return fail("FilterArgumentError: argument must be iterable")
	}
	out := make([]any, len(items))
	for i, e := range items {
		out[len(items)-1-i] = e
	}
	if _, ok := v.(*pyGen); ok {
		return ret(pyList(out))
	}
	return ret(&pyGen{items: out})
}

func filterRound(v any, va *exec.VarArgs) *exec.Value {
	f, ok := toFloat(v)
	if !ok {
		return typeError("type %s doesn't define __round__ method", typeName(v))
	}
	prec, _ := toInt(param(va, 0, "precision", 0))
	methodName, _ := param(va, 1, "method", "common").(string)
	scale := math.Pow(10, float64(prec))
	switch methodName {
	case "common":
		return ret(roundHalfEven(f, prec))
	case "ceil":
		return ret(math.Ceil(f*scale) / scale)
	case "floor":
		return ret(math.Floor(f*scale) / scale)
	}
	return fail("FilterArgumentError: method must be common, ceil or floor")
}

// roundHalfEven is Python's round(x, ndigits): correctly rounded decimal with
// ties to even.
func roundHalfEven(f float64, prec int) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return f
	}
	if prec < 0 {
		scale := math.Pow(10, float64(-prec))
		return math.RoundToEven(f/scale) * scale
	}
	s := strconv.FormatFloat(f, 'f', prec, 64)
	r, _ := strconv.ParseFloat(s, 64)
	return r
}

func filterSlice(v any, va *exec.VarArgs) *exec.Value {
	n, ok := toInt(param(va, 0, "slices", nil))
	if !ok || n <= 0 {
		return typeError("slice count must be a positive integer")
	}
	fill := param(va, 1, "fill_with", pyNone)
	_, noFill := fill.(noneType)
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	length := len(items)
	per, extra := length/n, length%n
	offset := 0
	gen := &pyGen{}
	for i := range n {
		start := offset + i*per
		if i < extra {
			offset++
		}
		end := offset + (i+1)*per
		tmp := append(pyList{}, items[start:end]...)
		if !noFill && i >= extra {
			tmp = append(tmp, fill)
		}
		gen.items = append(gen.items, tmp)
	}
	return ret(gen)
}

func filterSort(v any, va *exec.VarArgs) *exec.Value {
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	reverse := truthy(param(va, 0, "reverse", false))
	caseSensitive := truthy(param(va, 1, "case_sensitive", false))
	getter := func(e any) *exec.Value { return ret(e) }
	if attr, ok := param(va, 2, "attribute", pyNone).(string); ok {
		getter = attrGetter(attr, nil)
	}
	var keyErr *exec.Value
	r := sortValues(items, func(e any) any {
		k := getter(e)
		if k.IsError() {
			keyErr = k
			return nil
		}
		kv := fromGonja(k)
		if s, ok := kv.(string); ok && !caseSensitive {
			return strings.ToLower(s)
		}
		return kv
	}, reverse)
	if keyErr != nil {
		return keyErr
	}
	return r
}

var (
	tagRe   = regexp.MustCompile(`(?s)<!--.*?-->|<[^>]*>`)
	spaceRe = regexp.MustCompile(`\s+`)
	wordRe  = regexp.MustCompile(`\w+`)
	titleRe = regexp.MustCompile(`([-\s({\[<]+)`)
)

func filterStriptags(v any, _ *exec.VarArgs) *exec.Value {
	s := tagRe.ReplaceAllString(pyStr(v), "")
	s = strings.TrimSpace(spaceRe.ReplaceAllString(s, " "))
	return ret(html.UnescapeString(s))
}

func filterSum(v any, va *exec.VarArgs) *exec.Value {
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	total := param(va, 1, "start", 0)
	getter := func(e any) *exec.Value { return ret(e) }
	if attr, ok := param(va, 0, "attribute", pyNone).(string); ok {
		getter = attrGetter(attr, nil)
	}
	for _, e := range items {
		g := getter(e)
		if g.IsError() {
			return g
		}
		r := opAdd(total, fromGonja(g))
		if r.IsError() {
			return r
		}
		total = fromGonja(r)
	}
	return ret(total)
}

// jinjaTitle is jinja2's title filter (not str.title): words start after
// whitespace or one of -({[<.
func jinjaTitle(s string) string {
	var b strings.Builder
	last := 0
	for _, loc := range titleRe.FindAllStringIndex(s, -1) {
		titleWord(&b, s[last:loc[0]])
		b.WriteString(s[loc[0]:loc[1]])
		last = loc[1]
	}
	titleWord(&b, s[last:])
	return b.String()
}

func titleWord(b *strings.Builder, w string) {
	if w == "" {
		return
	}
	r, n := utf8.DecodeRuneInString(w)
	b.WriteString(strings.ToUpper(string(r)))
	b.WriteString(strings.ToLower(w[n:]))
}

func filterToJSON(v any, va *exec.VarArgs) *exec.Value {
	o := jsonOptions{
		ensureASCII: truthy(param(va, -1, "ensure_ascii", false)),
		sortKeys:    truthy(param(va, -1, "sort_keys", false)),
	}
	indent := param(va, 0, "indent", pyNone)
	switch x := indent.(type) {
	case noneType, nil:
	case string:
		o.indent = &x
	default:
		n, ok := toInt(x)
		if !ok {
			return typeError("indent must be an int or a string, not %s", typeName(x))
		}
		s := strings.Repeat(" ", max(n, 0))
		o.indent = &s
	}
	o.itemSep, o.keySep = ", ", ": "
	if o.indent != nil {
		o.itemSep = ","
	}
	if seps := param(va, 1, "separators", pyNone); seps != nil {
		if _, isNone := seps.(noneType); !isNone {
			items, err := pyIter(seps)
			if err != nil || len(items) != 2 {
				return fail("ValueError: separators must be an (item_separator, key_separator) pair")
			}
			a, ok1 := items[0].(string)
			b, ok2 := items[1].(string)
			if !ok1 || !ok2 {
				return typeError("separators must be strings")
			}
			o.itemSep, o.keySep = a, b
		}
	}
	s, err := pyJSONDumps(v, o)
	if err != nil {
		return exec.AsValue(&pyError{Msg: err.Error()})
	}
	return ret(s)
}

func filterTrim(v any, va *exec.VarArgs) *exec.Value {
	f, err := stripChars(va, 0, "chars")
	if err != nil {
		return err
	}
	return ret(strings.TrimFunc(pyStr(v), f))
}

func filterTruncate(v any, va *exec.VarArgs) *exec.Value {
	s := pyStr(v)
	length, _ := toInt(param(va, 0, "length", 255))
	killwords := truthy(param(va, 1, "killwords", false))
	end := pyStr(param(va, 2, "end", "..."))
	leeway, ok := toInt(param(va, 3, "leeway", pyNone))
	if !ok {
		leeway = 5
	}
	endLen := utf8.RuneCountInString(end)
	if length < endLen {
		return fail("AssertionError: expected length >= %d, got %d", endLen, length)
	}
	r := []rune(s)
	if len(r) <= length+leeway {
		return ret(s)
	}
	if killwords {
		return ret(string(r[:length-endLen]) + end)
	}
	cut := string(r[:length-endLen])
	if i := strings.LastIndex(cut, " "); i >= 0 {
		cut = cut[:i]
	}
	return ret(cut + end)
}

func filterUnique(v any, va *exec.VarArgs) *exec.Value {
	items, err := pyIter(v)
	if err != nil {
		return err
	}
	caseSensitive := truthy(param(va, 0, "case_sensitive", false))
	getter := func(e any) *exec.Value { return ret(e) }
	if attr, ok := param(va, 1, "attribute", pyNone).(string); ok {
		getter = attrGetter(attr, nil)
	}
	var seen []any
	gen := &pyGen{}
	for _, e := range items {
		k := getter(e)
		if k.IsError() {
			gen.err = k.Interface().(error)
			break
		}
		key := fromGonja(k)
		if s, ok := key.(string); ok && !caseSensitive {
			key = strings.ToLower(s)
		}
		if !hashable(key) {
			gen.err = &pyError{Msg: "TypeError: unhashable type: '" + typeName(key) + "'"}
			break
		}
		dup := false
		for _, s := range seen {
			if pyEqual(s, key) {
				dup = true
				break
			}
		}
		if !dup {
			seen = append(seen, key)
			gen.items = append(gen.items, e)
		}
	}
	return ret(gen)
}
