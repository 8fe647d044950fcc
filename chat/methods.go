package chat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/exec"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// Python methods of str, dict and list values, as the jinja2 immutable
// sandbox exposes them: methods that would modify a list or dict are unsafe
// and fail when called.

var unsafeMethods = map[string]map[string]bool{
	"list": {"append": true, "extend": true, "insert": true, "pop": true, "remove": true, "reverse": true, "sort": true, "clear": true, "__setitem__": true, "__delitem__": true},
	"dict": {"clear": true, "pop": true, "popitem": true, "setdefault": true, "update": true, "__setitem__": true, "__delitem__": true},
}

// method returns the bound method name of obj, or nil when obj has none.
func method(obj any, name string) pyFunc {
	if strings.HasPrefix(name, "_") {
		return nil
	}
	switch x := obj.(type) {
	case string:
		if m, ok := strMethods[name]; ok {
			return func(va *exec.VarArgs) *exec.Value { return m(x, va) }
		}
	case pyDict:
		if unsafeMethods["dict"][name] {
			return unsafe("dict", name)
		}
		if m, ok := dictMethods[name]; ok {
			return func(va *exec.VarArgs) *exec.Value { return m(x, va) }
		}
	case pyList:
		if unsafeMethods["list"][name] {
			return unsafe("list", name)
		}
		if m, ok := seqMethods[name]; ok {
			return func(va *exec.VarArgs) *exec.Value { return m(x, va) }
		}
		if name == "copy" {
			return func(*exec.VarArgs) *exec.Value { return ret(append(pyList(nil), x...)) }
		}
	case pyTuple:
		if m, ok := seqMethods[name]; ok {
			return func(va *exec.VarArgs) *exec.Value { return m(x, va) }
		}
	}
	return nil
}

func unsafe(typ, name string) pyFunc {
	return func(*exec.VarArgs) *exec.Value {
		return fail("SecurityError: access to attribute '%s' of '%s' object is unsafe.", name, typ)
	}
}

var dictMethods = map[string]func(pyDict, *exec.VarArgs) *exec.Value{
	"get": func(d pyDict, va *exec.VarArgs) *exec.Value {
		key := arg(va, 0)
		def := param(va, 1, "default", pyNone)
		if !hashable(key) {
			return typeError("unhashable type: '%s'", typeName(key))
		}
		if v, ok := d.lookup(key); ok {
			return ret(v)
		}
		return ret(def)
	},
	"keys": func(d pyDict, _ *exec.VarArgs) *exec.Value {
		out := make(pyKeys, len(d))
		for i, it := range d {
			out[i] = it.Key
		}
		return ret(out)
	},
	"values": func(d pyDict, _ *exec.VarArgs) *exec.Value {
		out := make(pyValues, len(d))
		for i, it := range d {
			out[i] = it.Value
		}
		return ret(out)
	},
	"items": func(d pyDict, _ *exec.VarArgs) *exec.Value {
		return ret(pyItems(dictItems(d)))
	},
	"copy": func(d pyDict, _ *exec.VarArgs) *exec.Value {
		return ret(append(pyDict(nil), d...))
	},
}

func dictItems(d pyDict) pyList {
	out := make(pyList, len(d))
	for i, it := range d {
		out[i] = pyTuple{it.Key, it.Value}
	}
	return out
}

var seqMethods = map[string]func([]any, *exec.VarArgs) *exec.Value{
	"index": func(s []any, va *exec.VarArgs) *exec.Value {
		x := arg(va, 0)
		for i, e := range s {
			if pyEqual(e, x) {
				return ret(i)
			}
		}
		return fail("ValueError: %s is not in list", pyRepr(x))
	},
	"count": func(s []any, va *exec.VarArgs) *exec.Value {
		x := arg(va, 0)
		n := 0
		for _, e := range s {
			if pyEqual(e, x) {
				n++
			}
		}
		return ret(n)
	},
}

// isPySpace is Python's str.isspace for one character.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// stripChars returns the rune predicate of str.strip(chars).
func stripChars(va *exec.VarArgs, i int, name string) (func(rune) bool, *exec.Value) {
	c := param(va, i, name, pyNone)
	switch x := c.(type) {
	case noneType, nil:
		return isPySpace, nil
	case string:
		return func(r rune) bool { return strings.ContainsRune(x, r) }, nil
	}
	return nil, typeError("%s arg must be None or str", name)
}

func strArg(va *exec.VarArgs, i int, name, method string) (string, *exec.Value) {
	v := param(va, i, name, nil)
	s, ok := v.(string)
	if !ok {
		if v == nil {
			return "", undefinedError("undefined argument to str." + method + "()")
		}
		return "", typeError("must be str, not %s", typeName(v))
	}
	return s, nil
}

func intArg(va *exec.VarArgs, i int, name string, def int) (int, *exec.Value) {
	v := param(va, i, name, def)
	if _, ok := v.(noneType); ok {
		return def, nil
	}
	n, ok := toInt(v)
	if !ok {
		return 0, typeError("'%s' object cannot be interpreted as an integer", typeName(v))
	}
	return n, nil
}

var strMethods map[string]func(string, *exec.VarArgs) *exec.Value

func init() {
	strMethods = map[string]func(string, *exec.VarArgs) *exec.Value{
		"strip": func(s string, va *exec.VarArgs) *exec.Value {
			f, err := stripChars(va, 0, "chars")
			if err != nil {
				return err
			}
			return ret(strings.TrimFunc(s, f))
		},
		"lstrip": func(s string, va *exec.VarArgs) *exec.Value {
			f, err := stripChars(va, 0, "chars")
			if err != nil {
				return err
			}
			return ret(strings.TrimLeftFunc(s, f))
		},
		"rstrip": func(s string, va *exec.VarArgs) *exec.Value {
			f, err := stripChars(va, 0, "chars")
			if err != nil {
				return err
			}
			return ret(strings.TrimRightFunc(s, f))
		},
		"split":  func(s string, va *exec.VarArgs) *exec.Value { return strSplit(s, va, false) },
		"rsplit": func(s string, va *exec.VarArgs) *exec.Value { return strSplit(s, va, true) },
		"splitlines": func(s string, va *exec.VarArgs) *exec.Value {
			return ret(toList(splitLines(s, truthy(param(va, 0, "keepends", false)))))
		},
		"startswith": func(s string, va *exec.VarArgs) *exec.Value { return strAffix(s, va, "startswith", strings.HasPrefix) },
		"endswith":   func(s string, va *exec.VarArgs) *exec.Value { return strAffix(s, va, "endswith", strings.HasSuffix) },
		"upper":      func(s string, _ *exec.VarArgs) *exec.Value { return ret(pyUpper(s)) },
		"lower":      func(s string, _ *exec.VarArgs) *exec.Value { return ret(pyLower(s)) },
		"casefold":   func(s string, _ *exec.VarArgs) *exec.Value { return ret(cases.Fold().String(s)) },
		"swapcase": func(s string, _ *exec.VarArgs) *exec.Value {
			return ret(strings.Map(func(r rune) rune {
				if unicode.IsUpper(r) {
					return unicode.ToLower(r)
				}
				return unicode.ToUpper(r)
			}, s))
		},
		"title":      func(s string, _ *exec.VarArgs) *exec.Value { return ret(pyTitle(s)) },
		"capitalize": func(s string, _ *exec.VarArgs) *exec.Value { return ret(pyCapitalize(s)) },
		"replace": func(s string, va *exec.VarArgs) *exec.Value {
			old, err := strArg(va, 0, "old", "replace")
			if err != nil {
				return err
			}
			repl, err := strArg(va, 1, "new", "replace")
			if err != nil {
				return err
			}
			n, err := intArg(va, 2, "count", -1)
			if err != nil {
				return err
			}
			return ret(strings.Replace(s, old, repl, n))
		},
		"find":   func(s string, va *exec.VarArgs) *exec.Value { return strFind(s, va, "find", false, false) },
		"rfind":  func(s string, va *exec.VarArgs) *exec.Value { return strFind(s, va, "rfind", true, false) },
		"index":  func(s string, va *exec.VarArgs) *exec.Value { return strFind(s, va, "index", false, true) },
		"rindex": func(s string, va *exec.VarArgs) *exec.Value { return strFind(s, va, "rindex", true, true) },
		"count": func(s string, va *exec.VarArgs) *exec.Value {
			sub, err := strArg(va, 0, "sub", "count")
			if err != nil {
				return err
			}
			if sub == "" {
				return ret(utf8.RuneCountInString(s) + 1)
			}
			return ret(strings.Count(s, sub))
		},
		"join": func(s string, va *exec.VarArgs) *exec.Value {
			items, err := pyIter(arg(va, 0))
			if err != nil {
				return err
			}
			parts := make([]string, len(items))
			for i, e := range items {
				str, ok := asStr(e)
				if !ok {
					return typeError("sequence item %d: expected str instance, %s found", i, typeName(e))
				}
				parts[i] = str
			}
			return ret(strings.Join(parts, s))
		},
		"isdigit":   func(s string, _ *exec.VarArgs) *exec.Value { return ret(allRunes(s, unicode.IsDigit)) },
		"isdecimal": func(s string, _ *exec.VarArgs) *exec.Value { return ret(allRunes(s, unicode.IsDigit)) },
		"isnumeric": func(s string, _ *exec.VarArgs) *exec.Value { return ret(allRunes(s, unicode.IsNumber)) },
		"isalpha":   func(s string, _ *exec.VarArgs) *exec.Value { return ret(allRunes(s, unicode.IsLetter)) },
		"isalnum": func(s string, _ *exec.VarArgs) *exec.Value {
			return ret(allRunes(s, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }))
		},
		"isspace": func(s string, _ *exec.VarArgs) *exec.Value { return ret(allRunes(s, isPySpace)) },
		"isupper": func(s string, _ *exec.VarArgs) *exec.Value { return ret(isCased(s, unicode.IsUpper, unicode.IsLower)) },
		"islower": func(s string, _ *exec.VarArgs) *exec.Value { return ret(isCased(s, unicode.IsLower, unicode.IsUpper)) },
		"zfill": func(s string, va *exec.VarArgs) *exec.Value {
			w, err := intArg(va, 0, "width", 0)
			if err != nil {
				return err
			}
			n := utf8.RuneCountInString(s)
			if n >= w {
				return ret(s)
			}
			pad := strings.Repeat("0", w-n)
			if s != "" && (s[0] == '+' || s[0] == '-') {
				return ret(s[:1] + pad + s[1:])
			}
			return ret(pad + s)
		},
		"center": func(s string, va *exec.VarArgs) *exec.Value { return strPad(s, va, 'c') },
		"ljust":  func(s string, va *exec.VarArgs) *exec.Value { return strPad(s, va, 'l') },
		"rjust":  func(s string, va *exec.VarArgs) *exec.Value { return strPad(s, va, 'r') },
		"partition": func(s string, va *exec.VarArgs) *exec.Value {
			sep, err := strArg(va, 0, "sep", "partition")
			if err != nil {
				return err
			}
			if sep == "" {
				return fail("ValueError: empty separator")
			}
			if i := strings.Index(s, sep); i >= 0 {
				return ret(pyTuple{s[:i], sep, s[i+len(sep):]})
			}
			return ret(pyTuple{s, "", ""})
		},
		"rpartition": func(s string, va *exec.VarArgs) *exec.Value {
			sep, err := strArg(va, 0, "sep", "rpartition")
			if err != nil {
				return err
			}
			if sep == "" {
				return fail("ValueError: empty separator")
			}
			if i := strings.LastIndex(s, sep); i >= 0 {
				return ret(pyTuple{s[:i], sep, s[i+len(sep):]})
			}
			return ret(pyTuple{"", "", s})
		},
		"removeprefix": func(s string, va *exec.VarArgs) *exec.Value {
			p, err := strArg(va, 0, "prefix", "removeprefix")
			if err != nil {
				return err
			}
			return ret(strings.TrimPrefix(s, p))
		},
		"removesuffix": func(s string, va *exec.VarArgs) *exec.Value {
			p, err := strArg(va, 0, "suffix", "removesuffix")
			if err != nil {
				return err
			}
			return ret(strings.TrimSuffix(s, p))
		},
		"format": func(s string, va *exec.VarArgs) *exec.Value { return strFormat(s, va) },
	}
}

// pyUpper is str.upper(): full Unicode case mapping ("ß" -> "SS").
func pyUpper(s string) string {
	if isASCII(s) {
		return strings.ToUpper(s)
	}
	return cases.Upper(language.Und).String(s)
}

// pyLower is str.lower().
func pyLower(s string) string {
	if isASCII(s) {
		return strings.ToLower(s)
	}
	return cases.Lower(language.Und).String(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func toList(ss []string) pyList {
	out := make(pyList, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func allRunes(s string, f func(rune) bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !f(r) {
			return false
		}
	}
	return true
}

func isCased(s string, want, reject func(rune) bool) bool {
	found := false
	for _, r := range s {
		if reject(r) {
			return false
		}
		if want(r) {
			found = true
		}
	}
	return found
}

// strSplit is str.split / str.rsplit.
func strSplit(s string, va *exec.VarArgs, right bool) *exec.Value {
	sepV := param(va, 0, "sep", pyNone)
	n, err := intArg(va, 1, "maxsplit", -1)
	if err != nil {
		return err
	}
	switch sep := sepV.(type) {
	case noneType, nil:
		return ret(toList(splitWhitespace(s, n, right)))
	case string:
		if sep == "" {
			return fail("ValueError: empty separator")
		}
		if n < 0 {
			return ret(toList(strings.Split(s, sep)))
		}
		if !right {
			return ret(toList(strings.SplitN(s, sep, n+1)))
		}
		var parts []string
		rest := s
		for range n {
			i := strings.LastIndex(rest, sep)
			if i < 0 {
				break
			}
			parts = append(parts, rest[i+len(sep):])
			rest = rest[:i]
		}
		parts = append(parts, rest)
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		return ret(toList(parts))
	}
	return typeError("must be str or None, not %s", typeName(sepV))
}

// splitWhitespace is str.split() / str.rsplit() without a separator.
func splitWhitespace(s string, n int, right bool) []string {
	if !right {
		var out []string
		rest := strings.TrimLeftFunc(s, isPySpace)
		for rest != "" {
			if n >= 0 && len(out) == n {
				out = append(out, rest)
				return out
			}
			i := strings.IndexFunc(rest, isPySpace)
			if i < 0 {
				out = append(out, rest)
				break
			}
			out = append(out, rest[:i])
			rest = strings.TrimLeftFunc(rest[i:], isPySpace)
		}
		return out
	}
	var rev []string
	rest := strings.TrimRightFunc(s, isPySpace)
	for rest != "" {
		if n >= 0 && len(rev) == n {
			rev = append(rev, rest)
			break
		}
		i := strings.LastIndexFunc(rest, isPySpace)
		if i < 0 {
			rev = append(rev, rest)
			break
		}
		_, w := utf8.DecodeRuneInString(rest[i:])
		rev = append(rev, rest[i+w:])
		rest = strings.TrimRightFunc(rest[:i], isPySpace)
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}

// isLineBreak reports the characters Python's str.splitlines splits on.
func isLineBreak(r rune) bool {
	switch r {
	case '\n', '\r', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
		return true
	}
	return false
}

// splitLines is Python's str.splitlines.
func splitLines(s string, keepEnds bool) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !isLineBreak(r) {
			i += w
			continue
		}
		end := i + w
		if r == '\r' && end < len(s) && s[end] == '\n' {
			end++
		}
		if keepEnds {
			out = append(out, s[start:end])
		} else {
			out = append(out, s[start:i])
		}
		start = end
		i = end
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// runeSlice converts Python start/end indices of s into a byte range.
func runeSlice(s string, va *exec.VarArgs, from int) (string, int, *exec.Value) {
	st := param(va, from, "start", pyNone)
	en := param(va, from+1, "end", pyNone)
	if _, ok := st.(noneType); ok {
		if _, ok := en.(noneType); ok {
			return s, 0, nil
		}
	}
	runes := []rune(s)
	n := len(runes)
	b, hasB := toInt(st)
	e, hasE := toInt(en)
	lo, hi := sliceBounds(n, b, hasB, e, hasE, 1)
	if hi < lo {
		hi = lo
	}
	if lo > n {
		return "", -1, nil
	}
	return string(runes[lo:hi]), len(string(runes[:lo])), nil
}

func strAffix(s string, va *exec.VarArgs, name string, has func(string, string) bool) *exec.Value {
	sub, _, err := runeSlice(s, va, 1)
	if err != nil {
		return err
	}
	switch p := arg(va, 0).(type) {
	case string:
		return ret(has(sub, p))
	case pyTuple:
		for _, e := range p {
			str, ok := e.(string)
			if !ok {
				return typeError("tuple for %s must only contain str, not %s", name, typeName(e))
			}
			if has(sub, str) {
				return ret(true)
			}
		}
		return ret(false)
	case nil:
		return undefinedError("undefined argument to str." + name + "()")
	default:
		return typeError("%s first arg must be str or a tuple of str, not %s", name, typeName(p))
	}
}

func strFind(s string, va *exec.VarArgs, name string, right, raise bool) *exec.Value {
	sub, err := strArg(va, 0, "sub", name)
	if err != nil {
		return err
	}
	window, offset, err := runeSlice(s, va, 1)
	if err != nil {
		return err
	}
	i := -1
	if offset >= 0 {
		if right {
			i = strings.LastIndex(window, sub)
		} else {
			i = strings.Index(window, sub)
		}
	}
	if i < 0 {
		if raise {
			return fail("ValueError: substring not found")
		}
		return ret(-1)
	}
	return ret(utf8.RuneCountInString(s[:offset+i]))
}

func strPad(s string, va *exec.VarArgs, mode byte) *exec.Value {
	w, err := intArg(va, 0, "width", 0)
	if err != nil {
		return err
	}
	fill := " "
	if f, ok := param(va, 1, "fillchar", " ").(string); ok && utf8.RuneCountInString(f) == 1 {
		fill = f
	} else {
		return typeError("The fill character must be exactly one character long")
	}
	n := utf8.RuneCountInString(s)
	if w <= n {
		return ret(s)
	}
	total := w - n
	switch mode {
	case 'l':
		return ret(s + strings.Repeat(fill, total))
	case 'r':
		return ret(strings.Repeat(fill, total) + s)
	}
	// CPython's centering: extra padding goes left when total and width are odd.
	left := total/2 + (total & w & 1)
	return ret(strings.Repeat(fill, left) + s + strings.Repeat(fill, total-left))
}

// pyTitle is Python's str.title().
func pyTitle(s string) string {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		switch {
		case unicode.IsUpper(r) || unicode.IsTitle(r):
			if prevCased {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(r)
			}
			prevCased = true
		case unicode.IsLower(r):
			if prevCased {
				b.WriteRune(r)
			} else {
				b.WriteRune(unicode.ToTitle(r))
			}
			prevCased = true
		default:
			b.WriteRune(r)
			prevCased = false
		}
	}
	return b.String()
}

// pyCapitalize is Python's str.capitalize().
func pyCapitalize(s string) string {
	if s == "" {
		return s
	}
	r, w := utf8.DecodeRuneInString(s)
	return string(unicode.ToTitle(r)) + strings.ToLower(s[w:])
}

// strFormat is a subset of str.format: {} / {0} / {name} fields with an
// optional !s / !r conversion and simple format specs.
func strFormat(s string, va *exec.VarArgs) *exec.Value {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '}' {
			if i+1 < len(s) && s[i+1] == '}' {
				b.WriteByte('}')
				i++
				continue
			}
			return fail("ValueError: Single '}' encountered in format string")
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			b.WriteByte('{')
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return fail("ValueError: Single '{' encountered in format string")
		}
		field := s[i+1 : i+end]
		i += end
		spec := ""
		if k := strings.IndexByte(field, ':'); k >= 0 {
			field, spec = field[:k], field[k+1:]
		}
		conv := ""
		if k := strings.IndexByte(field, '!'); k >= 0 {
			field, conv = field[:k], field[k+1:]
		}
		var v any
		switch {
		case field == "":
			v = arg(va, auto)
			if auto >= len(va.Args) {
				return fail("IndexError: Replacement index %d out of range for positional args tuple", auto)
			}
			auto++
		default:
			if n, err := strconv.Atoi(field); err == nil {
				if n >= len(va.Args) {
					return fail("IndexError: Replacement index %d out of range for positional args tuple", n)
				}
				v = arg(va, n)
			} else {
				kv, ok := kwarg(va, field)
				if !ok {
					return fail("KeyError: %s", quoteRepr(field))
				}
				v = kv
			}
		}
		if conv == "r" {
			v = pyRepr(v)
		} else if conv == "s" {
			v = pyStr(v)
		}
		out, err := formatSpec(v, spec)
		if err != nil {
			return err
		}
		b.WriteString(out)
	}
	return ret(b.String())
}

// formatSpec applies a (simple) Python format spec: [[fill]align][width][.precision][type].
func formatSpec(v any, spec string) (string, *exec.Value) {
	if spec == "" {
		return pyStr(v), nil
	}
	fill, align := " ", byte(0)
	rs := []rune(spec)
	if len(rs) >= 2 && strings.ContainsRune("<>^", rs[1]) {
		fill, align = string(rs[0]), byte(rs[1])
		spec = string(rs[2:])
	} else if len(spec) > 0 && strings.IndexByte("<>^", spec[0]) >= 0 {
		align = spec[0]
		spec = spec[1:]
	}
	typ := byte(0)
	if n := len(spec); n > 0 && strings.IndexByte("sdfeEgG%", spec[n-1]) >= 0 {
		typ = spec[n-1]
		spec = spec[:n-1]
	}
	prec := -1
	if k := strings.IndexByte(spec, '.'); k >= 0 {
		p, err := strconv.Atoi(spec[k+1:])
		if err != nil {
			return "", fail("ValueError: Invalid format specifier")
		}
		prec = p
		spec = spec[:k]
	}
	width := 0
	if spec != "" {
		w, err := strconv.Atoi(spec)
		if err != nil {
			return "", fail("ValueError: Invalid format specifier")
		}
		width = w
	}
	var out string
	switch typ {
	case 'd':
		n, ok := toInt(v)
		if !ok {
			return "", fail("ValueError: Unknown format code 'd' for object of type '%s'", typeName(v))
		}
		out = strconv.Itoa(n)
	case 'f', 'e', 'E', 'g', 'G', '%':
		f, ok := toFloat(v)
		if !ok {
			return "", fail("ValueError: Unknown format code '%c' for object of type '%s'", typ, typeName(v))
		}
		if prec < 0 {
			prec = 6
		}
		if typ == '%' {
			out = strconv.FormatFloat(f*100, 'f', prec, 64) + "%"
		} else {
			out = strconv.FormatFloat(f, typ, prec, 64)
		}
	default:
		out = pyStr(v)
		if prec >= 0 && typ != 0 || (prec >= 0 && !isNumber(v)) {
			if r := []rune(out); len(r) > prec {
				out = string(r[:prec])
			}
		} else if prec >= 0 {
			if f, ok := v.(float64); ok {
				out = strconv.FormatFloat(f, 'g', prec, 64)
			}
		}
	}
	n := utf8.RuneCountInString(out)
	if width > n {
		if align == 0 {
			align = '<'
			if isNumber(v) {
				align = '>'
			}
		}
		pad := width - n
		switch align {
		case '<':
			out += strings.Repeat(fill, pad)
		case '>':
			out = strings.Repeat(fill, pad) + out
		case '^':
			out = strings.Repeat(fill, pad/2) + out + strings.Repeat(fill, pad-pad/2)
		}
	}
	return out, nil
}

// percentFormat is Python's printf-style `str % args` for the conversions
// templates use (%s %r %d %i %f %x %%).
func percentFormat(s string, args any) *exec.Value {
	var list []any
	var mapping pyDict
	switch x := args.(type) {
	case pyTuple:
		list = x
	case pyDict:
		mapping = x
		list = []any{x}
	default:
		list = []any{args}
	}
	var b strings.Builder
	next := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i >= len(s) {
			return fail("ValueError: incomplete format")
		}
		var v any
		key := ""
		if s[i] == '(' {
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return fail("ValueError: incomplete format key")
			}
			key = s[i+1 : i+end]
			i += end + 1
		}
		j := i
		for j < len(s) && strings.IndexByte("-+ #0123456789.", s[j]) >= 0 {
			j++
		}
		flags := s[i:j]
		if j >= len(s) {
			return fail("ValueError: incomplete format")
		}
		conv := s[j]
		i = j
		if conv == '%' {
			b.WriteByte('%')
			continue
		}
		if key != "" {
			if mapping == nil {
				return typeError("format requires a mapping")
			}
			mv, ok := mapping.lookup(key)
			if !ok {
				return fail("KeyError: %s", quoteRepr(key))
			}
			v = mv
		} else {
			if next >= len(list) {
				return typeError("not enough arguments for format string")
			}
			v = list[next]
			next++
		}
		var out string
		switch conv {
		case 's':
			out = pyStr(v)
		case 'r', 'a':
			out = pyRepr(v)
		case 'd', 'i', 'u':
			f, ok := toFloat(v)
			if !ok {
				return typeError("%%%c format: a real number is required, not %s", conv, typeName(v))
			}
			out = strconv.Itoa(int(f))
		case 'f', 'F', 'e', 'E', 'g', 'G':
			f, ok := toFloat(v)
			if !ok {
				return typeError("must be real number, not %s", typeName(v))
			}
			prec := 6
			if k := strings.IndexByte(flags, '.'); k >= 0 {
				if p, err := strconv.Atoi(flags[k+1:]); err == nil {
					prec = p
				}
				flags = flags[:k]
			}
			c := conv
			if c == 'F' {
				c = 'f'
			}
			out = strconv.FormatFloat(f, c, prec, 64)
		case 'x', 'X', 'o':
			n, ok := toInt(v)
			if !ok {
				return typeError("%%%c format: an integer is required, not %s", conv, typeName(v))
			}
			out = fmt.Sprintf("%"+string(conv), n)
		default:
			return fail("ValueError: unsupported format character '%c'", conv)
		}
		if w, err := strconv.Atoi(strings.TrimLeft(flags, "-+ #0")); err == nil && w > utf8.RuneCountInString(out) {
			pad := strings.Repeat(" ", w-utf8.RuneCountInString(out))
			if strings.Contains(flags, "-") {
				out += pad
			} else {
				out = pad + out
			}
		}
		b.WriteString(out)
	}
	if mapping == nil && next < len(list) {
		return typeError("not all arguments converted during string formatting")
	}
	return ret(b.String())
}
