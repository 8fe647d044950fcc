package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// roundTrip describes what Decode(Encode(x)) gives for one tokenizer.
type roundTrip struct {
	name string
	// allowed tells whether x is in the lossless domain.
	opts genOptions
	// want is what decoding gives back for x (x itself when nil).
	want func(string) string
	// alphabetOnly keeps only characters the vocabulary has (TinyStories
	// has 78 characters and no byte fallback tokens).
	alphabetOnly bool
}

// The lossless domains:
//   - byte-level BPE (Llama 3, GPT-2): every byte string, invalid UTF-8 included;
//   - Qwen3 (byte-level after an NFC normalizer): gives back NFC(x);
//   - Mistral (Prepend "▁" + Replace " "→"▁", byte fallback): every text
//     without special-token text (after a special token the next text gets
//     its own "▁", so "a<s>b" decodes as "a<s> b") and without a literal
//     "▁" (it decodes as a space); invalid UTF-8 survives through byte
//     fallback;
//   - TinyStories (same normalizer, its added tokens are matched in the
//     normalized text and decode to their normalized form): text made of
//     its 78 characters (no byte fallback tokens exist, the rest is
//     <unk>), without a literal "▁";
//   - Llama 2 tokenizer.model: like Mistral, but valid UTF-8 only (the
//     SentencePiece normalizer turns each invalid byte into U+FFFD).
var roundTrips = []roundTrip{
	{name: "llama3", opts: genOptions{invalid: true, special: true, meta: true}},
	{name: "gpt2", opts: genOptions{invalid: true, special: true, meta: true}},
	{name: "qwen3", opts: genOptions{invalid: true, special: true, meta: true}, want: norm.NFC.String},
	{name: "mistral", opts: genOptions{invalid: true}},
	{name: "tinystories", opts: genOptions{special: true}, alphabetOnly: true},
	{name: "llama2", opts: genOptions{}},
}

func checkRoundTrip(t *testing.T, tk *Tokenizer, rt roundTrip, label, x string) {
	t.Helper()
	if rt.alphabetOnly {
		x = inAlphabet(tk, x)
	}
	want := x
	if rt.want != nil {
		want = rt.want(x)
	}
	ids := tk.Encode(x, false)
	if got := tk.Decode(ids, false); got != want {
		t.Errorf("%s: %s: Decode(Encode(x)) differs at byte %d:\n got %q\nwant %q",
			rt.name, label, commonPrefix(got, want), clip(tail(got, commonPrefix(got, want)), 80), clip(tail(want, commonPrefix(got, want)), 80))
		return
	}
	// With BOS/EOS added, skipping special tokens gives the same text.
	if len(x) < 1<<16 && !strings.ContainsAny(x, "<") {
		ids = tk.Encode(x, true)
		if got := tk.Decode(ids, true); got != want {
			t.Errorf("%s: %s: Decode(Encode(x, true), true) = %q, want %q", rt.name, label, clip(got, 80), clip(want, 80))
		}
	}
}

// inAlphabet keeps the characters of x that are tokens by themselves,
// spaces, and text of added tokens matched before normalization.
func inAlphabet(tk *Tokenizer, x string) string {
	var b strings.Builder
	for len(x) > 0 {
		if tok, _ := tk.rawMatch.longestAt(x, 0); tok != nil {
			b.WriteString(tok.content)
			x = x[len(tok.content):]
			continue
		}
		r, n := utf8.DecodeRuneInString(x)
		if _, ok := tk.TokenID(x[:n]); (ok && r != '▁') || r == ' ' {
			b.WriteString(x[:n])
		}
		x = x[n:]
	}
	return b.String()
}

func commonPrefix(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func tail(s string, i int) string { return s[max(0, i-20):] }

func TestRoundTripSharedText(t *testing.T) {
	files := []string{
		"wikitext-2-raw/wiki.test.raw",
		"tinyshakespeare/input.txt",
		"tinystories/TinyStories-valid.excerpt.txt",
		"ptb/ptb.test.txt",
	}
	for _, rt := range roundTrips {
		t.Run(rt.name, func(t *testing.T) {
			tk := sharedTokenizer(t, rt.name)
			for _, f := range files {
				x := sharedText(t, f)
				if !rt.opts.special {
					for _, s := range genSpecial {
						x = strings.ReplaceAll(x, s, "")
					}
				}
				checkRoundTrip(t, tk, rt, f, x)
			}
		})
	}
}

func TestRoundTripGenerated(t *testing.T) {
	for _, rt := range roundTrips {
		t.Run(rt.name, func(t *testing.T) {
			tk := sharedTokenizer(t, rt.name)
			r := rand.New(rand.NewPCG(1, uint64(len(rt.name))))
			for i := range 400 {
				x := genText(r, 1+r.IntN(60), rt.opts)
				checkRoundTrip(t, tk, rt, "generated", x)
				if t.Failed() {
					t.Fatalf("stopping after case %d", i)
				}
			}
		})
	}
}

// TestRoundTripEffects pins down the documented lossy cases.
func TestRoundTripEffects(t *testing.T) {
	cases := []struct{ tok, in, out string }{
		{"mistral", "a<s>b", "a<s> b"},            // a text after a special token gets its own "▁"
		{"mistral", "a\u2581b", "a b"},            // a literal "▁" comes back as a space
		{"llama2", "a\xffb", "a\ufffdb"},          // SentencePiece turns invalid UTF-8 into U+FFFD
		{"llama2", "<s>x", "<s> x"},               // same "▁" effect after a control token
		{"qwen3", "e\u0301", "\u00e9"},            // NFC
		{"tinystories", "a <unk> b", "a <unk> b"}, // normalized added tokens keep their space
	}
	for _, c := range cases {
		tk := sharedTokenizer(t, c.tok)
		if got := tk.Decode(tk.Encode(c.in, false), false); got != c.out {
			t.Errorf("%s: %q -> %q, want %q", c.tok, c.in, got, c.out)
		}
	}
}

func TestDecodeOutOfRange(t *testing.T) {
	for _, name := range []string{"llama3", "mistral", "llama2", "gpt2"} {
		tk := sharedTokenizer(t, name)
		ids := tk.Encode("Hello world", false)
		bad := append([]int32{-1, int32(tk.VocabSize()), 1 << 30, -1 << 31}, ids...)
		bad = append(bad, int32(tk.VocabSize())+7)
		if got, want := tk.Decode(bad, false), tk.Decode(ids, false); got != want {
			t.Errorf("%s: Decode with bad ids = %q, want %q", name, got, want)
		}
		if tk.Token(-5) != "" || tk.Token(int32(tk.VocabSize())) != "" || tk.TokenBytes(-1) != nil || tk.IsSpecial(-3) {
			t.Errorf("%s: out-of-range lookups should be empty", name)
		}
	}
}

func TestInvalidUTF8ByteLevel(t *testing.T) {
	tk := sharedTokenizer(t, "llama3")
	for _, x := range []string{"\xff", "a\x80b", "\xe2\x82", "\xed\xa0\x80", "😀"[:3] + "x"} {
		ids := tk.Encode(x, false)
		if got := tk.Decode(ids, false); got != x {
			t.Errorf("%q -> %v -> %q", x, ids, got)
		}
		if utf8.ValidString(tk.Decode(ids, false)) {
			t.Errorf("%q should stay invalid UTF-8", x)
		}
	}
}
