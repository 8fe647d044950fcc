package tokenizer

import (
	"math/rand/v2"
	"strings"
)

// Building blocks for generated test text.
var (
	genWords = []string{
		"the", "The", " the", "hello", " world", "don't", "it's", "I'm", "they'LL", "HTTP",
		"naïve", "café", "Zürich", "ſ", "İstanbul", "ß", "x86_64", "3.14159", "1,000,000",
		"2026-11-25", "user@example.com", "https://example.com/a?b=c&d=e#f",
	}
	genCode = []string{
		"func main() {\n\tfmt.Println(\"hi\")\n}\n",
		"def f(x):\n    return x ** 2  # square\n",
		"for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
		"<div class=\"x\">&amp;</div>",
		"SELECT * FROM t WHERE a >= 10 AND b <> 'x';",
		"{\"k\": [1, 2.5e-3, null, true]}",
		"#!/bin/sh\nset -eu\necho \"$HOME\" | tr a-z A-Z\n",
	}
	genEmoji = []string{
		"😀", "🚀", "👍🏽", "👩\u200d👩\u200d👧\u200d👦", "🇯🇵", "🏳️\u200d🌈", "❤️", "🦙", "🧑\u200d💻", "✅",
	}
	genCJK = []string{
		"中文文本", "我们的模型", "日本語の文です", "カタカナ", "ひらがな", "한국어", "안녕하세요", "繁體中文", "𠀀𠀁",
	}
	genSpace = []string{
		" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n ", "\u00a0", "\u3000",
		"\u2028", "\u0085", "\u200b", "\ufeff", "\v", "\f",
	}
	genOther = []string{
		"!", "?", "...", "---", "===", "'", "\"", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\",
		"αβγ", "Привет", "مرحبا", "नमस्ते", "ไทย", "e\u0301", "\u0301", "½", "²", "Ⅻ", "٣", "①",
		"\x00", "\x1b[0m", "\x7f", "\ufffd", "\U0010fffd", "'s", "'RE", "<0x0A>", "<|", "|>",
	}
	genInvalid = []string{
		"\xff", "\x80", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf", "\xfe\xfe",
	}
	genSpecial = []string{
		"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>",
		"<|endoftext|>", "<s>", "</s>", "<unk>", "<|start_story|>", "<think>",
	}
)

// genOptions chooses what generated text may contain.
type genOptions struct {
	invalid bool // invalid UTF-8
	special bool // special-token text such as "<s>"
	meta    bool // the SentencePiece space "▁"
}

// genText makes a random mix of words, code, emoji, CJK, whitespace runs
// and other characters, about n pieces long.
func genText(r *rand.Rand, n int, o genOptions) string {
	var b strings.Builder
	for range n {
		switch k := r.IntN(20); {
		case k < 6:
			b.WriteString(genWords[r.IntN(len(genWords))])
		case k < 7:
			b.WriteString(genCode[r.IntN(len(genCode))])
		case k < 9:
			b.WriteString(genEmoji[r.IntN(len(genEmoji))])
		case k < 11:
			b.WriteString(genCJK[r.IntN(len(genCJK))])
		case k < 14:
			s := genSpace[r.IntN(len(genSpace))]
			b.WriteString(strings.Repeat(s, 1+r.IntN(3)))
		case k < 16:
			b.WriteString(genOther[r.IntN(len(genOther))])
		case k < 17:
			// A random code point from a few interesting ranges.
			ranges := [][2]rune{{0x20, 0x7e}, {0xa0, 0x24f}, {0x300, 0x36f}, {0x370, 0x52f},
				{0x900, 0x97f}, {0x3040, 0x30ff}, {0x4e00, 0x9fff}, {0xac00, 0xd7a3}, {0x1f300, 0x1faff}, {0x10000, 0x10ffff}}
			rg := ranges[r.IntN(len(ranges))]
			c := rg[0] + rune(r.IntN(int(rg[1]-rg[0]+1)))
			if c >= 0xd800 && c <= 0xdfff {
				c = 'x'
			}
			b.WriteRune(c)
		case k < 18:
			b.WriteString(strings.Repeat(string(rune('0'+r.IntN(10))), 1+r.IntN(7)))
		case k < 19 && o.invalid:
			b.WriteString(genInvalid[r.IntN(len(genInvalid))])
		case k < 19 && o.special:
			b.WriteString(genSpecial[r.IntN(len(genSpecial))])
		case o.meta:
			b.WriteString("\u2581")
		default:
			b.WriteString(" ")
		}
	}
	return b.String()
}
