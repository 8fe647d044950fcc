package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// matcher finds the non-overlapping, non-empty matches of a pattern, left
// to right, and reports them as byte offsets.
type matcher interface {
	findAll(s string, fn func(start, end int))
}

// The pre-tokenizer regular expressions that have hand-written matchers.
const (
	patternGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	patternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// compilePattern returns a matcher for a regular expression: a
// hand-written one for the well-known pre-tokenizer patterns, regexp2
// otherwise.
func compilePattern(expr string) (matcher, error) {
	switch expr {
	case patternGPT2:
		return &handMatcher{}, nil
	case patternLlama3:
		return &handMatcher{llama3: true, foldCase: true, maxDigits: 3}, nil
	case patternQwen2:
		return &handMatcher{llama3: true, foldCase: true, maxDigits: 1}, nil
	}
	return compileRegexp2(expr)
}

func compileRegexp2(expr string) (*regexpMatcher, error) {
	re, err := regexp2.Compile(adaptRegex(expr), regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression %q: %w", expr, err)
	}
	return &regexpMatcher{re: re}, nil
}

// regexpMatcher runs a regexp2 expression. regexp2 works on runes; invalid
// UTF-8 bytes are each seen as one U+FFFD, like the hand-written matchers.
type regexpMatcher struct{ re *regexp2.Regexp }

func (m *regexpMatcher) findAll(s string, fn func(start, end int)) {
	if s == "" {
		return
	}
	runes := make([]rune, 0, len(s))
	offs := make([]int, 0, len(s)+1)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		runes = append(runes, r)
		offs = append(offs, i)
		i += n
	}
	offs = append(offs, len(s))
	mt, err := m.re.FindRunesMatch(runes)
	for err == nil && mt != nil {
		if mt.Length > 0 {
			fn(offs[mt.Index], offs[mt.Index+mt.Length])
		}
		mt, err = m.re.FindNextMatch(mt)
	}
}

// literalMatcher finds a literal string.
type literalMatcher string

func (m literalMatcher) findAll(s string, fn func(start, end int)) {
	if m == "" {
		return
	}
	i := 0
	for {
		k := strings.Index(s[i:], string(m))
		if k < 0 {
			return
		}
		fn(i+k, i+k+len(m))
		i += k + len(m)
	}
}

// runMatcher matches each maximal run of characters satisfying a
// predicate (or each single one when single is set).
type runMatcher struct {
	pred   func(rune) bool
	single bool
}

func (m runMatcher) findAll(s string, fn func(start, end int)) {
	start := -1
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if m.pred(r) {
			if m.single {
				fn(i, i+n)
			} else if start < 0 {
				start = i
			}
		} else if start >= 0 {
			fn(start, i)
			start = -1
		}
		i += n
	}
	if start >= 0 {
		fn(start, len(s))
	}
}

// Character classes of the pre-tokenizer patterns.
const (
	clsOther  = iota // [^\s\p{L}\p{N}]
	clsLetter        // \p{L}
	clsNumber        // \p{N}
	clsSpace         // \s
)

var asciiClass [utf8.RuneSelf]uint8

func init() {
	for c := 0; c < utf8.RuneSelf; c++ {
		asciiClass[c] = runeClassSlow(rune(c))
	}
}

func runeClassSlow(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// classAt returns the class and size of the character at s[i]; an invalid
// byte counts as one character of class other (like U+FFFD).
func classAt(s string, i int) (cls uint8, r rune, n int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], rune(c), 1
	}
	r, n = utf8.DecodeRuneInString(s[i:])
	return runeClassSlow(r), r, n
}

// handMatcher implements the GPT-2 pattern and, with llama3 set, the
// Llama 3 (maxDigits 3) and Qwen2 (maxDigits 1) patterns without a regex
// engine. It gives the same pieces as the regular expressions.
type handMatcher struct {
	llama3    bool
	foldCase  bool // contractions match case-insensitively
	maxDigits int  // 0 means unlimited
}

func (m *handMatcher) findAll(s string, fn func(start, end int)) {
	for i := 0; i < len(s); {
		e := m.matchAt(s, i)
		fn(i, e)
		i = e
	}
}

// spanClass returns the end of the run of characters of class cls that
// starts at i.
func spanClass(s string, i int, cls uint8) int {
	for i < len(s) {
		c, _, n := classAt(s, i)
		if c != cls {
			break
		}
		i += n
	}
	return i
}

// spanNewlines skips [\r\n]*.
func spanNewlines(s string, i int) int {
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d after the apostrophe at
// s[i-1]; it returns the end or 0.
func (m *handMatcher) contraction(s string, i int) int {
	lower := func(j int) byte {
		if j >= len(s) {
			return 0
		}
		c := s[j]
		if m.foldCase && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c
	}
	switch lower(i) {
	case 's', 't', 'm', 'd':
		return i + 1
	case 'r', 'v':
		if lower(i+1) == 'e' {
			return i + 2
		}
	case 'l':
		if lower(i+1) == 'l' {
			return i + 2
		}
	}
	return 0
}

// matchAt returns the end of the match that starts at i (every position
// starts a match with these patterns).
func (m *handMatcher) matchAt(s string, i int) int {
	cls, r, n := classAt(s, i)
	if r == '\'' {
		if e := m.contraction(s, i+1); e > 0 {
			return e
		}
	}
	j := i + n
	var ncls uint8 = 255
	var nr rune
	if j < len(s) {
		ncls, nr, _ = classAt(s, j)
	}
	_ = nr
	if m.llama3 {
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if cls == clsLetter {
			return spanClass(s, j, clsLetter)
		}
		if cls != clsNumber && r != '\r' && r != '\n' && ncls == clsLetter {
			return spanClass(s, j, clsLetter)
		}
		// \p{N}{1,3}
		if cls == clsNumber {
			k := 1
			for j < len(s) && (m.maxDigits == 0 || k < m.maxDigits) {
				c, _, nn := classAt(s, j)
				if c != clsNumber {
					break
				}
				j += nn
				k++
			}
			return j
		}
		// ?[^\s\p{L}\p{N}]+[\r\n]*
		if r == ' ' && ncls == clsOther {
			return spanNewlines(s, spanClass(s, j, clsOther))
		}
		if cls == clsOther {
			return spanNewlines(s, spanClass(s, j, clsOther))
		}
	} else {
		// ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
		if r == ' ' && ncls <= clsNumber {
			return spanClass(s, j, ncls)
		}
		if cls != clsSpace {
			return spanClass(s, j, cls)
		}
	}
	// Whitespace: find the run [i, end) and the start of its last character.
	end, last, lastNL := i, i, -1
	for end < len(s) {
		c, rr, nn := classAt(s, end)
		if c != clsSpace {
			break
		}
		if rr == '\r' || rr == '\n' {
			lastNL = end
		}
		last = end
		end += nn
	}
	if m.llama3 && lastNL >= 0 {
		// \s*[\r\n]+
		return lastNL + 1
	}
	// \s+(?!\S) then \s+
	if end == len(s) || last == i {
		return end
	}
	return last
}

// unicodeWord is what \w matches in Oniguruma and Rust's regex crate
// (letters, marks, decimal digits, connector punctuation, letter numbers,
// joiners); regexp2 follows .NET, where \w leaves out most marks.
const unicodeWord = `\p{L}\p{M}\p{Nd}\p{Pc}\p{Nl}\u200C\u200D`

// adaptRegex rewrites \w and \W so that regexp2 matches them like the
// regex engines tokenizers are written for.
func adaptRegex(expr string) string {
	if !strings.Contains(expr, `\w`) && !strings.Contains(expr, `\W`) {
		return expr
	}
	var b strings.Builder
	inClass := false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '\\' && i+1 < len(expr):
			n := expr[i+1]
			i++
			switch {
			case n == 'w' && inClass:
				b.WriteString(unicodeWord)
			case n == 'w':
				b.WriteString("[" + unicodeWord + "]")
			case n == 'W' && !inClass:
				b.WriteString("[^" + unicodeWord + "]")
			default:
				b.WriteByte(c)
				b.WriteByte(n)
			}
			continue
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal.
			if i+1 < len(expr) && expr[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(expr) && expr[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
			continue
		case c == ']' && inClass:
			inClass = false
		}
		b.WriteByte(c)
	}
	return b.String()
}
