package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamAll feeds ids one at a time and returns the chunks.
func streamAll(tk *Tokenizer, ids []int32, skipSpecial bool) []string {
	d := tk.NewStreamDecoder(skipSpecial)
	var chunks []string
	for _, id := range ids {
		chunks = append(chunks, d.Next(id))
	}
	return append(chunks, d.Flush())
}

// checkStream checks that the chunks add up to Decode and, when the whole
// text is valid UTF-8, that every chunk is.
func checkStream(t *testing.T, tk *Tokenizer, name string, ids []int32, skipSpecial bool) {
	t.Helper()
	want := tk.Decode(ids, skipSpecial)
	chunks := streamAll(tk, ids, skipSpecial)
	if got := strings.Join(chunks, ""); got != want {
		t.Errorf("%s: stream = %q\n   Decode = %q\n(ids %v)", name, clip(got, 200), clip(want, 200), ids[:min(len(ids), 30)])
		return
	}
	if utf8.ValidString(want) {
		for i, c := range chunks {
			if !utf8.ValidString(c) {
				t.Errorf("%s: chunk %d %q is not valid UTF-8", name, i, c)
				return
			}
		}
	}
}

var streamTexts = []string{
	"中文：我们的模型可以处理中文文本，包括标点符号。日本語：これは日本語の文です。한국어: 안녕하세요, 세계!",
	"Emoji: 😀😃😄😁 👩\u200d👩\u200d👧\u200d👦 🇯🇵 🏳️\u200d🌈 ❤️ 👍🏽 and text 🚀🚀🚀 𠀀𠀁",
	" leading space, then\n\nnew lines\tand tabs    and runs of spaces ",
	"  two leading spaces",
	"Once upon a time, there was a little girl named Lily.",
	"Ελληνικά, Русский текст, العربية, हिन्दी, ไทย, e\u0301 ½ ² Ⅻ",
}

func TestStreamDecoder(t *testing.T) {
	for _, name := range []string{"llama3", "qwen3", "gpt2", "mistral", "tinystories", "llama2"} {
		t.Run(name, func(t *testing.T) {
			tk := sharedTokenizer(t, name)
			r := rand.New(rand.NewPCG(7, uint64(len(name))))
			texts := append([]string(nil), streamTexts...)
			for range 100 {
				texts = append(texts, genText(r, 1+r.IntN(40), genOptions{special: true}))
			}
			for i, text := range texts {
				for _, addSpecial := range []bool{false, true} {
					ids := tk.Encode(text, addSpecial)
					checkStream(t, tk, name, ids, false)
					checkStream(t, tk, name, ids, true)
				}
				if t.Failed() {
					t.Fatalf("stopping at text %d %q", i, text)
				}
			}
			// Random ids, byte tokens and special tokens included: the chunks
			// still add up to Decode.
			for range 300 {
				ids := make([]int32, 1+r.IntN(20))
				for j := range ids {
					ids[j] = int32(r.IntN(tk.VocabSize() + 3))
				}
				checkStream(t, tk, name, ids, r.IntN(2) == 0)
			}
		})
	}
}

// TestStreamDecoderByteFallback feeds byte-fallback tokens one by one: no
// chunk may hold half a character.
func TestStreamDecoderByteFallback(t *testing.T) {
	tk := sharedTokenizer(t, "mistral")
	var ids []int32
	for _, b := range []byte("▁é中😀") {
		id, ok := tk.TokenID(byteFallbackName(b))
		if !ok {
			t.Fatalf("no byte token for %#x", b)
		}
		ids = append(ids, id)
	}
	chunks := streamAll(tk, ids, false)
	// Byte tokens bypass the "▁" → " " replacement, as in Hugging Face.
	want := []string{"", "", "▁", "", "é", "", "", "中", "", "", "", "😀", ""}
	if strings.Join(chunks, "|") != strings.Join(want, "|") {
		t.Errorf("chunks = %q, want %q", chunks, want)
	}
	// The leading space is stripped only at the very start.
	d := tk.NewStreamDecoder(false)
	hello, _ := tk.TokenID("▁Hello")
	if got := d.Next(hello) + d.Next(hello); got != "Hello Hello" {
		t.Errorf("got %q", got)
	}
	d.Flush()
	if got := d.Next(hello); got != "Hello" {
		t.Errorf("after Flush got %q, want a new sequence", got)
	}
}

func TestIncompleteTail(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"", 0}, {"a", 0}, {"é", 0}, {"\xc3", 1}, {"a\xe4\xb8", 2}, {"\xe4", 1},
		{"\xf0\x9f\x98", 3}, {"\xf0\x9f", 2}, {"\xff", 0}, {"\x80", 0}, {"\xe0\x80", 0},
		{"\xed\xa0", 0}, {"\xf4\x90", 0}, {"\xc0", 0}, {"😀", 0}, {"\xf0\x9f\x98\x80\xe4", 1},
	}
	for _, c := range cases {
		if got := incompleteTail([]byte(c.in)); got != c.want {
			t.Errorf("incompleteTail(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
