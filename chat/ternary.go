package chat

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// gonja only parses a conditional expression (`a if c else b`) at the top
// of a {{ }} or {% set %}; jinja2 accepts one anywhere an expression goes,
// e.g. `'x' + (a if c else b)` or `f(a if c else b)`, and chains them
// (`a if c else b if d else e`). Where gonja would fail (or, in a filter's
// argument list, silently misparse), rewriteTagExpr rewrites the tag text:
//
//	A if C else B   ->   ((C) and [A] or [B])[0]
//
// which gonja parses and which evaluates like the original: `and`/`or`
// short-circuit, so only the chosen branch is evaluated, and a one-element
// list is always true. Without `else` the value is Undefined. Adjacent
// string literals ('a' 'b', implicit concatenation in jinja2) become
// ('a' ~ 'b').

// tagToken is a lexical token of tag content.
type tagToken struct {
	text  string
	kind  byte // 'w' whitespace, 's' string, 'n' name, '(' / '[' / '{' group, 'o' other
	inner []tagToken
	close string
}

// lexTag splits tag content into tokens, nesting bracket groups. ok is
// false when the brackets do not balance (gonja then reports the error).
func lexTag(s string) (toks []tagToken, ok bool) {
	toks, rest, ok := lexTagUntil(s, 0)
	return toks, ok && rest == len(s)
}

func lexTagUntil(s string, i int) ([]tagToken, int, bool) {
	var toks []tagToken
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r') {
				j++
			}
			toks = append(toks, tagToken{text: s[i:j], kind: 'w'})
			i = j
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, i, false
			}
			toks = append(toks, tagToken{text: s[i : j+1], kind: 's'})
			i = j + 1
		case c == '(' || c == '[' || c == '{':
			inner, j, ok := lexTagUntil(s, i+1)
			want := map[byte]byte{'(': ')', '[': ']', '{': '}'}[c]
			if !ok || j >= len(s) || s[j] != want {
				return nil, i, false
			}
			toks = append(toks, tagToken{text: string(c), kind: c, inner: inner, close: string(want)})
			i = j + 1
		case c == ')' || c == ']' || c == '}':
			return toks, i, true
		default:
			r, w := utf8.DecodeRuneInString(s[i:])
			if r == '_' || unicode.IsLetter(r) {
				j := i + w
				for j < len(s) {
					r2, w2 := utf8.DecodeRuneInString(s[j:])
					if r2 != '_' && !unicode.IsLetter(r2) && !unicode.IsDigit(r2) {
						break
					}
					j += w2
				}
				toks = append(toks, tagToken{text: s[i:j], kind: 'n'})
				i = j
				continue
			}
			toks = append(toks, tagToken{text: s[i : i+w], kind: 'o'})
			i += w
		}
	}
	return toks, i, true
}

func joinTokens(toks []tagToken) string {
	var b strings.Builder
	writeTokens(&b, toks)
	return b.String()
}

func writeTokens(b *strings.Builder, toks []tagToken) {
	for _, t := range toks {
		b.WriteString(t.text)
		if t.inner != nil || t.close != "" {
			writeTokens(b, t.inner)
			b.WriteString(t.close)
		}
	}
}

// hasWord reports whether a name token if/else occurs anywhere in toks.
func needsRewrite(toks []tagToken) bool {
	prevString := false
	for _, t := range toks {
		switch t.kind {
		case 'n':
			if t.text == "if" || t.text == "else" {
				return true
			}
		case 's':
			if prevString {
				return true
			}
		}
		if t.kind != 'w' {
			prevString = t.kind == 's'
		}
		if t.inner != nil && needsRewrite(t.inner) {
			return true
		}
	}
	return false
}

// rewriteTagExpr rewrites the content of a tag. tagName is the block tag's
// name ("" for {{ }}); in a for tag the top-level `if` is the loop filter
// and stays.
func rewriteTagExpr(content, tagName string) string {
	toks, ok := lexTag(content)
	if !ok {
		return content
	}
	escaped := fixStringEscapes(toks)
	if !needsRewrite(toks) {
		if escaped {
			return joinTokens(toks)
		}
		return content
	}
	skipName := tagName != ""
	var out []tagToken
	if skipName {
		// Keep everything up to and including the tag name.
		for i, t := range toks {
			if t.kind == 'n' {
				out = append(out, toks[:i+1]...)
				toks = toks[i+1:]
				break
			}
		}
	}
	toks = rewriteGroups(toks)
	if tagName == "for" {
		return joinTokens(append(out, toks...))
	}
	return joinTokens(append(out, rewriteSeq(toks)...))
}

// rewriteGroups rewrites the inside of every bracket group.
func rewriteGroups(toks []tagToken) []tagToken {
	out := make([]tagToken, len(toks))
	for i, t := range toks {
		if t.kind == '(' || t.kind == '[' || t.kind == '{' {
			t.inner = rewriteSeq(rewriteGroups(t.inner))
		}
		out[i] = t
	}
	return mergeStrings(out)
}

// mergeStrings turns adjacent string literals into a ~ concatenation.
func mergeStrings(toks []tagToken) []tagToken {
	var out []tagToken
	for i := 0; i < len(toks); i++ {
		if toks[i].kind != 's' {
			out = append(out, toks[i])
			continue
		}
		j := i
		parts := []tagToken{toks[i]}
		for {
			k := j + 1
			for k < len(toks) && toks[k].kind == 'w' {
				k++
			}
			if k < len(toks) && toks[k].kind == 's' {
				parts = append(parts, toks[k])
				j = k
				continue
			}
			break
		}
		if len(parts) == 1 {
			out = append(out, toks[i])
			continue
		}
		var inner []tagToken
		for n, p := range parts {
			if n > 0 {
				inner = append(inner, tagToken{text: " ~ ", kind: 'o'})
			}
			inner = append(inner, p)
		}
		out = append(out, tagToken{text: "(", kind: '(', inner: inner, close: ")"})
		i = j
	}
	return out
}

// isSeparator reports the tokens that end an expression at one nesting
// level: commas, colons (dict pairs, slices) and single '='.
func isSeparator(toks []tagToken, i int) bool {
	t := toks[i]
	if t.kind != 'o' {
		return false
	}
	switch t.text {
	case ",", ":":
		return true
	case "=":
		prev := ""
		if i > 0 {
			prev = toks[i-1].text
		}
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1].text
		}
		return next != "=" && prev != "=" && prev != "!" && prev != "<" && prev != ">"
	}
	return false
}

// rewriteSeq rewrites the conditional expressions of each separated segment.
func rewriteSeq(toks []tagToken) []tagToken {
	var out []tagToken
	start := 0
	for i := 0; i <= len(toks); i++ {
		if i == len(toks) || isSeparator(toks, i) {
			out = append(out, rewriteCond(toks[start:i])...)
			if i < len(toks) {
				out = append(out, toks[i])
			}
			start = i + 1
		}
	}
	return out
}

func findName(toks []tagToken, name string) int {
	for i, t := range toks {
		if t.kind == 'n' && t.text == name {
			return i
		}
	}
	return -1
}

// rewriteCond rewrites `A if C else B` (B possibly another conditional).
func rewriteCond(seg []tagToken) []tagToken {
	i := findName(seg, "if")
	if i < 0 {
		return seg
	}
	a, rest := seg[:i], seg[i+1:]
	var c, b []tagToken
	if j := findName(rest, "else"); j >= 0 {
		c, b = rest[:j], rewriteCond(rest[j+1:])
	} else {
		c, b = rest, []tagToken{{text: hUndefVar, kind: 'n'}}
	}
	cond := tagToken{text: "(", kind: '(', inner: c, close: ")"}
	listA := tagToken{text: "[", kind: '[', inner: a, close: "]"}
	listB := tagToken{text: "[", kind: '[', inner: b, close: "]"}
	inner := []tagToken{cond, {text: " and ", kind: 'o'}, listA, {text: " or ", kind: 'o'}, listB}
	return []tagToken{
		{text: "(", kind: '(', inner: inner, close: ")"},
		{text: "[", kind: '[', inner: []tagToken{{text: "0", kind: 'o'}}, close: "]"},
	}
}

// fixStringEscapes rewrites the string literals of toks (in place) so that
// gonja, which only knows Go escapes, decodes them like Python: unknown
// escapes such as \d stay literal, octal escapes may have 1-3 digits, and a
// backslash-newline is a line continuation. It reports whether anything
// changed.
func fixStringEscapes(toks []tagToken) bool {
	changed := false
	for i := range toks {
		if toks[i].kind == 's' {
			if fixed, ok := pyEscapes(toks[i].text); ok {
				toks[i].text = fixed
				changed = true
			}
		}
		if toks[i].inner != nil && fixStringEscapes(toks[i].inner) {
			changed = true
		}
	}
	return changed
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// pyEscapes converts a quoted literal; ok is false when nothing changed.
func pyEscapes(lit string) (string, bool) {
	if !strings.Contains(lit, "\\") {
		return lit, false
	}
	body := lit[1 : len(lit)-1]
	var b strings.Builder
	changed := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' || i+1 >= len(body) {
			b.WriteByte(c)
			continue
		}
		n := body[i+1]
		switch {
		case strings.IndexByte("abfnrtv\\'\"", n) >= 0:
			b.WriteByte('\\')
			b.WriteByte(n)
			i++
		case n == 'x' && i+4 <= len(body) && isHex(body[i+2:i+4]):
			b.WriteString(body[i : i+4])
			i += 3
		case n == 'u' && i+6 <= len(body) && isHex(body[i+2:i+6]):
			b.WriteString(body[i : i+6])
			i += 5
		case n == 'U' && i+10 <= len(body) && isHex(body[i+2:i+10]):
			b.WriteString(body[i : i+10])
			i += 9
		case n >= '0' && n <= '7':
			j := i + 1
			v := 0
			for j < len(body) && j < i+4 && body[j] >= '0' && body[j] <= '7' {
				v = v*8 + int(body[j]-'0')
				j++
			}
			fmt.Fprintf(&b, "\\u%04x", v)
			i = j - 1
			changed = true
		case n == '\n':
			i++
			changed = true
		default:
			// Unknown escape: Python keeps the backslash.
			b.WriteString("\\\\")
			changed = true
		}
	}
	if !changed {
		return lit, false
	}
	return lit[:1] + b.String() + lit[len(lit)-1:], true
}
