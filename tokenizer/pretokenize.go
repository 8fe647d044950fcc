package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// emitFunc receives one piece; first reports whether the piece starts at
// the very beginning of the input text.
type emitFunc func(piece string, first bool)

// preStep is one pre-tokenizer of a chain.
type preStep interface {
	split(s string, first bool, emit emitFunc)
}

// preTokenizer cuts normalized text into pieces for the model.
type preTokenizer struct {
	steps []preStep
	// byteLevel reports that the pieces are raw bytes that the model must
	// map to byte-level characters (a trailing ByteLevel pre-tokenizer).
	byteLevel bool
}

// run calls fn for each piece of s.
func (p *preTokenizer) run(s string, first bool, fn func(string)) {
	if len(p.steps) == 0 {
		fn(s)
		return
	}
	p.runFrom(0, s, first, fn)
}

func (p *preTokenizer) runFrom(i int, s string, first bool, fn func(string)) {
	if i == len(p.steps)-1 {
		p.steps[i].split(s, first, func(piece string, _ bool) {
			if piece != "" {
				fn(piece)
			}
		})
		return
	}
	p.steps[i].split(s, first, func(piece string, f bool) {
		if piece != "" {
			p.runFrom(i+1, piece, f, fn)
		}
	})
}

// splitBehavior is what a split does with the matched delimiters.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

// splitStep is Hugging Face's Split pre-tokenizer.
type splitStep struct {
	m        matcher
	behavior splitBehavior
	invert   bool
}

type span struct {
	start, end int
	match      bool
}

func (p *splitStep) split(s string, first bool, emit emitFunc) {
	if p.behavior == splitIsolated && !p.invert {
		// Fast path: every gap and every match is its own piece.
		prev := 0
		p.m.findAll(s, func(start, end int) {
			if prev < start {
				emit(s[prev:start], first && prev == 0)
			}
			emit(s[start:end], first && start == 0)
			prev = end
		})
		if prev < len(s) {
			emit(s[prev:], first && prev == 0)
		}
		return
	}
	var spans []span
	prev := 0
	p.m.findAll(s, func(start, end int) {
		if prev < start {
			spans = append(spans, span{prev, start, p.invert})
		}
		spans = append(spans, span{start, end, !p.invert})
		prev = end
	})
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), p.invert})
	}
	var out []span
	switch p.behavior {
	case splitIsolated:
		out = spans
	case splitRemoved:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case splitContiguous:
		prevMatch := false
		for i, sp := range spans {
			if i > 0 && sp.match == prevMatch {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	case splitMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = sp.end
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	case splitMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = sp.start
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	for _, sp := range out {
		emit(s[sp.start:sp.end], first && sp.start == 0)
	}
}

// byteLevelStep is the ByteLevel pre-tokenizer: optional prefix space,
// optional GPT-2 regex split, then the byte-to-character mapping. When it
// is the last step the mapping is left to the model (mapped is false).
type byteLevelStep struct {
	addPrefixSpace bool
	re             matcher // nil when use_regex is false
	mapped         bool
}

func (p *byteLevelStep) split(s string, first bool, emit emitFunc) {
	if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	out := emit
	if p.mapped {
		out = func(piece string, f bool) {
			emit(string(byteLevelEncode(nil, piece)), f)
		}
	}
	if p.re == nil {
		out(s, first)
		return
	}
	(&splitStep{m: p.re, behavior: splitIsolated}).split(s, first, out)
}

// Metaspace prepend schemes.
const (
	prependAlways = iota
	prependFirst
	prependNever
)

// metaspaceStep is the Metaspace pre-tokenizer: spaces become the
// replacement character, which is prepended and split on.
type metaspaceStep struct {
	replacement string
	prepend     int
	doSplit     bool
}

func (p *metaspaceStep) split(s string, first bool, emit emitFunc) {
	s = strings.ReplaceAll(s, " ", p.replacement)
	if !strings.HasPrefix(s, p.replacement) &&
		(p.prepend == prependAlways || (p.prepend == prependFirst && first)) {
		s = p.replacement + s
	}
	if !p.doSplit {
		emit(s, first)
		return
	}
	(&splitStep{m: literalMatcher(p.replacement), behavior: splitMergedWithNext}).split(s, first, emit)
}

// Predicates for the simple pre-tokenizers.
func isPunct(r rune) bool {
	if r < utf8.RuneSelf {
		return ('!' <= r && r <= '/') || (':' <= r && r <= '@') || ('[' <= r && r <= '`') || ('{' <= r && r <= '~')
	}
	return unicode.IsPunct(r)
}

// whitespaceMatcher matches \w+|[^\w\s]+ (the Whitespace pre-tokenizer).
type whitespaceMatcher struct{}

func (whitespaceMatcher) findAll(s string, fn func(start, end int)) {
	kind := func(r rune) int {
		switch {
		case isWordRune(r):
			return 1
		case unicode.IsSpace(r):
			return 0
		}
		return 2
	}
	start, cur := -1, 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		k := kind(r)
		if start >= 0 && k != cur {
			fn(start, i)
			start = -1
		}
		if start < 0 && k != 0 {
			start, cur = i, k
		}
		i += n
	}
	if start >= 0 {
		fn(start, len(s))
	}
}
