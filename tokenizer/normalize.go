package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a piece of text before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type seqNormalizer []normalizer

func (q seqNormalizer) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// unicodeNormalizer applies one of the Unicode normalization forms.
type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(s string) string {
	if isASCII(s) {
		return s
	}
	return u.form.String(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// lowercaseNormalizer lowercases with Unicode's full mapping.
type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string {
	if !strings.ContainsRune(s, 'İ') {
		return strings.ToLower(s)
	}
	// U+0130 lowercases to two characters (i + combining dot above).
	var b strings.Builder
	for _, r := range s {
		if r == 'İ' {
			b.WriteString("i\u0307")
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// prependNormalizer adds a prefix to any non-empty text.
type prependNormalizer struct{ prefix string }

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.prefix + s
}

// appendNormalizer adds a suffix to any non-empty text.
type appendNormalizer struct{ suffix string }

func (p appendNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return s + p.suffix
}

// replaceNormalizer replaces every match of a literal or regex pattern.
type replaceNormalizer struct {
	pattern matcher
	content string
}

func (r replaceNormalizer) normalize(s string) string {
	if lit, ok := r.pattern.(literalMatcher); ok {
		if lit == "" {
			return s
		}
		return strings.ReplaceAll(s, string(lit), r.content)
	}
	var b strings.Builder
	prev := 0
	r.pattern.findAll(s, func(start, end int) {
		b.WriteString(s[prev:start])
		b.WriteString(r.content)
		prev = end
	})
	if prev == 0 {
		return s
	}
	b.WriteString(s[prev:])
	return b.String()
}

// stripNormalizer removes leading and/or trailing whitespace.
type stripNormalizer struct{ left, right bool }

func (p stripNormalizer) normalize(s string) string {
	if p.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if p.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

// stripAccentsNormalizer removes combining marks (category M).
type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(s string) string {
	if isASCII(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsMark(r) {
			return -1
		}
		return r
	}, s)
}
