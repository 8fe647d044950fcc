package chat

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// prepareSource applies, before gonja lexes the template, the parts of
// jinja2's lexer that gonja gets wrong:
//
//   - newlines are normalized to "\n" (as jinja2 does);
//   - lstrip_blocks: jinja2 strips the spaces and tabs before a {% or {# tag
//     only when nothing but whitespace precedes the tag on its line. gonja
//     also strips them after a {{ ... }} on the same line, so this package
//     turns gonja's lstrip off and does it here;
//   - trim_blocks does not apply to a {% raw %} tag in jinja2: its `%}`
//     becomes `+%}` so gonja keeps the newline after it.
//
// The scan knows the three tag kinds, string literals inside tags and raw
// blocks. It also rejects what Python never sees and gonja's lexer can hang
// on: invalid UTF-8 and unterminated tags.
func prepareSource(src string) (string, error) {
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, w := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && w == 1 {
				break
			}
			i += w
		}
		return "", fmt.Errorf("line %d: template is not valid UTF-8", 1+strings.Count(src[:i], "\n"))
	}
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	var b strings.Builder
	b.Grow(len(src))
	dataStart := 0
	i := 0
	for {
		j := nextTag(src, i)
		if j < 0 {
			b.WriteString(src[dataStart:])
			return b.String(), nil
		}
		kind := src[j+1]
		data := src[dataStart:j]
		if kind != '{' && (j+2 >= len(src) || (src[j+2] != '-' && src[j+2] != '+')) {
			data = lstripData(data, dataStart == 0)
		}
		b.WriteString(data)
		end := tagEnd(src, j)
		if end < 0 {
			what := map[byte]string{'{': "variable tag {{", '%': "block tag {%", '#': "comment {#"}[kind]
			return "", fmt.Errorf("line %d: unexpected end of template: unclosed %s", 1+strings.Count(src[:j], "\n"), what)
		}
		tag := src[j:end]
		if kind == '%' && isRawTag(tag) {
			if !strings.HasSuffix(tag, "-%}") && !strings.HasSuffix(tag, "+%}") {
				tag = tag[:len(tag)-2] + "+%}"
			}
			b.WriteString(tag)
			loc := endRawRe.FindStringIndex(src[end:])
			if loc == nil {
				return "", fmt.Errorf("line %d: unexpected end of template: missing {%% endraw %%}", 1+strings.Count(src[:j], "\n"))
			}
			content := src[end : end+loc[0]]
			endTag := src[end+loc[0] : end+loc[1]]
			if len(endTag) > 2 && endTag[2] != '-' && endTag[2] != '+' {
				content = lstripData(content, false)
			}
			b.WriteString(content)
			b.WriteString(endTag)
			i = end + loc[1]
			dataStart = i
			continue
		}
		b.WriteString(rewriteTag(tag, kind))
		i = end
		dataStart = end
	}
}

// rewriteTag applies rewriteTagExpr to the content of a {{ }} or {% %} tag.
func rewriteTag(tag string, kind byte) string {
	if kind == '#' {
		return tag
	}
	open := 2
	if len(tag) > 2 && (tag[2] == '-' || tag[2] == '+') {
		open = 3
	}
	closeAt := len(tag) - 2
	if closeAt-1 >= open && (tag[closeAt-1] == '-' || tag[closeAt-1] == '+') {
		closeAt--
	}
	if closeAt < open {
		return tag
	}
	content := tag[open:closeAt]
	name := ""
	if kind == '%' {
		trimmed := strings.TrimLeft(content, " \t\n")
		n := 0
		for n < len(trimmed) && (trimmed[n] == '_' || trimmed[n] >= 'a' && trimmed[n] <= 'z' || trimmed[n] >= 'A' && trimmed[n] <= 'Z') {
			n++
		}
		name = trimmed[:n]
	}
	return tag[:open] + rewriteTagExpr(content, name) + tag[closeAt:]
}

var (
	rawTagRe = regexp.MustCompile(`^\{%[-+]?\s*raw\s*[-+]?%\}$`)
	endRawRe = regexp.MustCompile(`\{%[-+]?\s*endraw\s*[-+]?%\}`)
)

func isRawTag(tag string) bool { return rawTagRe.MatchString(tag) }

// lstripData removes the whitespace after the last newline of data (or all
// of data when it starts a line) when only whitespace is there.
func lstripData(data string, lineStart bool) string {
	l := strings.LastIndexByte(data, '\n') + 1
	if l == 0 && !lineStart {
		return data
	}
	rest := data[l:]
	if rest == "" || strings.TrimLeftFunc(rest, isPySpace) != "" {
		return data
	}
	return data[:l]
}

// nextTag returns the index of the next "{{", "{%" or "{#" at or after i.
func nextTag(src string, i int) int {
	for {
		k := strings.IndexByte(src[i:], '{')
		if k < 0 {
			return -1
		}
		j := i + k
		if j+1 < len(src) && (src[j+1] == '{' || src[j+1] == '%' || src[j+1] == '#') {
			return j
		}
		i = j + 1
	}
}

// tagEnd returns the index just past the tag starting at j, or -1.
func tagEnd(src string, j int) int {
	kind := src[j+1]
	if kind == '#' {
		k := strings.Index(src[j+2:], "#}")
		if k < 0 {
			return -1
		}
		return j + 2 + k + 2
	}
	closer := byte('}')
	if kind == '%' {
		closer = '%'
	}
	var quote byte
	depth := 0
	for k := j + 2; k < len(src); k++ {
		c := src[k]
		switch {
		case quote != 0:
			if c == '\\' {
				k++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case depth == 0 && c == closer && k+1 < len(src) && src[k+1] == '}':
			return k + 2
		case c == '(' || c == '[' || c == '{':
			depth++
		case (c == ')' || c == ']' || c == '}') && depth > 0:
			depth--
		}
	}
	return -1
}
