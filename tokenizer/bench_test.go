package tokenizer

import "testing"

func benchmarkEncode(b *testing.B, name, text string) {
	tk := sharedTokenizer(b, name)
	src := sharedText(b, text)
	tk.Encode(src, false) // warm the word cache
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tk.Encode(src, false)
	}
}

// BenchmarkEncodeLlama3 encodes WikiText-2's test split with Llama 3.
func BenchmarkEncodeLlama3(b *testing.B) {
	benchmarkEncode(b, "llama3", "wikitext-2-raw/wiki.test.raw")
}

// BenchmarkEncodeLlama3Cold encodes with an empty word cache every time.
func BenchmarkEncodeLlama3Cold(b *testing.B) {
	tk := sharedTokenizer(b, "llama3")
	src := sharedText(b, "wikitext-2-raw/wiki.test.raw")
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		tk.cache = &wordCache{}
		tk.Encode(src, false)
	}
}

func BenchmarkEncodeQwen3(b *testing.B) {
	benchmarkEncode(b, "qwen3", "wikitext-2-raw/wiki.test.raw")
}

func BenchmarkEncodeGPT2(b *testing.B) {
	benchmarkEncode(b, "gpt2", "wikitext-2-raw/wiki.test.raw")
}

func BenchmarkEncodeMistral(b *testing.B) {
	benchmarkEncode(b, "mistral", "wikitext-2-raw/wiki.test.raw")
}

func BenchmarkEncodeLlama2SPM(b *testing.B) {
	benchmarkEncode(b, "llama2", "wikitext-2-raw/wiki.test.raw")
}

func BenchmarkDecodeLlama3(b *testing.B) {
	tk := sharedTokenizer(b, "llama3")
	src := sharedText(b, "wikitext-2-raw/wiki.test.raw")
	ids := tk.Encode(src, false)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		tk.Decode(ids, false)
	}
}

// BenchmarkLoadLlama3 measures reading the 9 MB tokenizer.json.
func BenchmarkLoadLlama3(b *testing.B) {
	dir := sharedData(b) + "/tokenizers/llama3"
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPreTokenizeHand runs only the hand-written Llama 3 matcher.
func BenchmarkPreTokenizeHand(b *testing.B) {
	benchmarkMatcher(b, func() (matcher, error) { return compilePattern(patternLlama3) })
}

// BenchmarkPreTokenizeRegexp2 runs the same pattern through regexp2.
func BenchmarkPreTokenizeRegexp2(b *testing.B) {
	benchmarkMatcher(b, func() (matcher, error) { return compileRegexp2(patternLlama3) })
}

func benchmarkMatcher(b *testing.B, mk func() (matcher, error)) {
	m, err := mk()
	if err != nil {
		b.Fatal(err)
	}
	src := sharedText(b, "wikitext-2-raw/wiki.test.raw")
	b.SetBytes(int64(len(src)))
	n := 0
	for b.Loop() {
		m.findAll(src, func(int, int) { n++ })
	}
}
