package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func addTextSeeds(f *testing.F) {
	for _, s := range streamTexts {
		f.Add(s)
	}
	r := rand.New(rand.NewPCG(9, 9))
	for range 20 {
		f.Add(genText(r, 1+r.IntN(20), genOptions{invalid: true, special: true, meta: true}))
	}
	for _, s := range []string{"", " ", "\xff", "'s'S'll", "a<s>b", "<|begin_of_text|>", "\u2581x", "  \n\t\r\n ", "1234567"} {
		f.Add(s)
	}
}

func hasSpecialText(s string) bool {
	for _, sp := range genSpecial {
		if strings.Contains(s, sp) {
			return true
		}
	}
	return strings.Contains(s, "<unk>") || strings.Contains(s, "<s>") || strings.Contains(s, "</s>")
}

// FuzzEncodeDecode checks that encoding never panics and that decoding
// gives the text back wherever the tokenizer is lossless.
func FuzzEncodeDecode(f *testing.F) {
	addTextSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, name := range []string{"llama3", "gpt2"} {
			tk := sharedTokenizer(t, name)
			if got := tk.Decode(tk.Encode(s, false), false); got != s {
				t.Fatalf("%s: round trip of %q gave %q", name, s, got)
			}
			tk.Encode(s, true)
		}
		qwen := sharedTokenizer(t, "qwen3")
		if got, want := qwen.Decode(qwen.Encode(s, false), false), norm.NFC.String(s); got != want {
			t.Fatalf("qwen3: round trip of %q gave %q, want %q", s, got, want)
		}
		plain := !hasSpecialText(s) && !strings.Contains(s, "\u2581")
		mis := sharedTokenizer(t, "mistral")
		if got := mis.Decode(mis.Encode(s, true), true); plain && got != s {
			t.Fatalf("mistral: round trip of %q gave %q", s, got)
		}
		l2 := sharedTokenizer(t, "llama2")
		if got := l2.Decode(l2.Encode(s, true), true); plain && utf8.ValidString(s) && got != s {
			t.Fatalf("llama2: round trip of %q gave %q", s, got)
		}
		ts := sharedTokenizer(t, "tinystories")
		if x := inAlphabet(ts, s); !strings.Contains(x, "\u2581") {
			if got := ts.Decode(ts.Encode(x, false), false); got != x {
				t.Fatalf("tinystories: round trip of %q gave %q", x, got)
			}
		}
	})
}

// FuzzStreamDecode feeds arbitrary ids (out-of-range ones included) to
// Decode and to a StreamDecoder.
func FuzzStreamDecode(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 200, 7, 255, 255}, false)
	f.Add([]byte("some bytes to turn into ids"), true)
	f.Fuzz(func(t *testing.T, data []byte, skip bool) {
		for _, name := range []string{"llama3", "qwen3", "mistral", "tinystories", "llama2", "gpt2"} {
			tk := sharedTokenizer(t, name)
			ids := make([]int32, 0, len(data)/2)
			for i := 0; i+1 < len(data); i += 2 {
				v := int(data[i])<<8 | int(data[i+1])
				ids = append(ids, int32(v*(tk.VocabSize()+8)/65536)-4)
			}
			checkStream(t, tk, name, ids, skip)
		}
	})
}

// FuzzLoadHFJSON feeds damaged tokenizer.json files: an error is fine, a
// panic is not, and what loads must work.
func FuzzLoadHFJSON(f *testing.F) {
	f.Add(synthJSON(f, false))
	f.Add(synthJSON(f, true))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first"},"decoder":{"type":"Metaspace"}}`))
	f.Add([]byte(`{"model":{"vocab":{"a":0,"<0x61>":1},"merges":[],"byte_fallback":true,"unk_token":"a","fuse_unk":true},"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Replace","pattern":{"Regex":"\\s+"},"content":"a"}]},"decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":"a","start":2,"stop":1}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := LoadHFJSON(data)
		if err != nil {
			return
		}
		exercise(t, tk)
	})
}

// FuzzLoadSentencePiece does the same for tokenizer.model files.
func FuzzLoadSentencePiece(f *testing.F) {
	f.Add(synthSPM(synthPieces, spmOptions{addDummyPrefix: true, removeExtraWS: true}))
	f.Add(synthSPM(synthPieces, spmOptions{byteFallback: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := LoadSentencePiece(data)
		if err != nil {
			return
		}
		exercise(t, tk)
	})
}

// exercise runs a loaded tokenizer over awkward text and ids.
func exercise(t *testing.T, tk *Tokenizer) {
	for _, s := range []string{"", "Hello <mask> wörld 😀 \xff\n\n  a<s>b ab abc ccc", "\u2581\u2581 x"} {
		ids := tk.Encode(s, true)
		tk.Decode(ids, false)
		checkStream(t, tk, "fuzzed", ids, false)
	}
	checkStream(t, tk, "fuzzed", []int32{-1, 0, 1, 2, 3, int32(tk.VocabSize()), 5}, true)
	tk.Token(0)
	tk.TokenBytes(1)
	tk.BOS()
	tk.EOS()
}

// FuzzHandMatchers compares the hand-written pre-tokenizer matchers with
// regexp2 running the original patterns.
func FuzzHandMatchers(f *testing.F) {
	addTextSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range handPatterns {
			hand, _ := compilePattern(p.expr)
			re, err := compileRegexp2(p.expr)
			if err != nil {
				t.Fatal(err)
			}
			compareMatchers(t, p.name, hand, re, s)
		}
	})
}
