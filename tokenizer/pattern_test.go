package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

type span2 struct{ start, end int }

func allMatches(m matcher, s string) []span2 {
	var out []span2
	m.findAll(s, func(a, b int) { out = append(out, span2{a, b}) })
	return out
}

// compareMatchers checks that the hand-written matcher cuts s exactly like
// regexp2 running the pattern itself.
func compareMatchers(t *testing.T, name string, hand, re matcher, s string) bool {
	t.Helper()
	a, b := allMatches(hand, s), allMatches(re, s)
	for i := 0; i < len(a) || i < len(b); i++ {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			var ga, gb string
			if i < len(a) {
				ga = fmt.Sprintf("%q", s[a[i].start:a[i].end])
			}
			if i < len(b) {
				gb = fmt.Sprintf("%q", s[b[i].start:b[i].end])
			}
			ctx := s[max(0, min(len(s), spanStart(a, b, i))-20):min(len(s), spanStart(a, b, i)+20)]
			t.Errorf("%s: match %d differs: hand %s, regexp2 %s (around %q)", name, i, ga, gb, ctx)
			return false
		}
	}
	return true
}

func spanStart(a, b []span2, i int) int {
	if i < len(a) {
		return a[i].start
	}
	if i < len(b) {
		return b[i].start
	}
	return 0
}

var handPatterns = []struct{ name, expr string }{
	{"gpt2", patternGPT2},
	{"llama3", patternLlama3},
	{"qwen2", patternQwen2},
}

func TestHandMatchersAgainstRegexp2(t *testing.T) {
	var texts []string
	if sharedDataPath(t) != "" {
		for _, f := range []string{"wikitext-2-raw/wiki.test.raw", "tinyshakespeare/input.txt"} {
			s := sharedText(t, f)
			texts = append(texts, s[:min(len(s), 300000)])
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	var gen strings.Builder
	for range 3000 {
		gen.WriteString(genText(r, 1+r.IntN(30), genOptions{invalid: true, special: true, meta: true}))
	}
	texts = append(texts, gen.String(), trickyText(r, 200000))
	for _, p := range handPatterns {
		hand, err := compilePattern(p.expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := hand.(*handMatcher); !ok {
			t.Fatalf("%s: pattern did not get the hand-written matcher", p.name)
		}
		re, err := compileRegexp2(p.expr)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range texts {
			if !compareMatchers(t, fmt.Sprintf("%s text %d", p.name, i), hand, re, s) {
				break
			}
		}
	}
}

// trickyText strings together characters that exercise every branch of
// the patterns.
func trickyText(r *rand.Rand, n int) string {
	atoms := []string{
		"a", "Z", "é", "ſ", "İ", "中", "1", "٣", "½", "Ⅻ", "²", "'", "'s", "'S", "'re", "'RE", "'Ve",
		"'ll", "'LL", "'d", "'m", "'t", "'x", " ", " ", " ", "\t", "\n", "\r", "\r\n", "\v", "\f",
		"\u00a0", "\u0085", "\u1680", "\u2000", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
		"\u180e", "\u200b", "\ufeff", "\x1c", "\x1f", "!", ".", "-", "_", "😀", "\u0301", "\u0903",
		"\xff", "\xe2\x82", "\ufffd", "\x00",
	}
	var b strings.Builder
	for range n {
		b.WriteString(atoms[r.IntN(len(atoms))])
	}
	return b.String()
}

// TestHandMatchersEveryRune puts every code point of the BMP (every fifth
// one of planes 1 and 2, a thin sample of the mostly unassigned planes
// above) in the contexts where its class matters and compares with
// regexp2.
func TestHandMatchersEveryRune(t *testing.T) {
	var b strings.Builder
	for c := rune(0); c <= utf8.MaxRune; c++ {
		if !utf8.ValidRune(c) || (c > 0xffff && c%5 != 0) || (c >= 0x32000 && c%97 != 0) {
			continue
		}
		s := string(c)
		b.WriteString("x" + s + "1" + s + " " + s + "\n" + s + "'" + s + "  " + s + "!")
	}
	text := b.String()
	for _, p := range handPatterns {
		hand, _ := compilePattern(p.expr)
		re, err := compileRegexp2(p.expr)
		if err != nil {
			t.Fatal(err)
		}
		compareMatchers(t, p.name, hand, re, text)
	}
}
