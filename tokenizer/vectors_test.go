package tokenizer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readVectors reads llama.cpp's ggml-vocab-*.gguf.inp/.out pair. The .inp
// file is every text followed by "\n__ggml_vocab_test__\n"; the .out file
// has one line of space-separated ids per text (no BOS).
func readVectors(t *testing.T, name string) (texts []string, ids [][]int32) {
	t.Helper()
	base := filepath.Join(sharedData(t), "tokenizer-vectors", "ggml-vocab-"+name+".gguf")
	inp, err := os.ReadFile(base + ".inp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(base + ".out")
	if err != nil {
		t.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	texts = strings.Split(string(inp), sep)
	if texts[len(texts)-1] != "" {
		t.Fatalf("%s.inp does not end with the separator", name)
	}
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d texts but %d id lines", name, len(texts), len(lines))
	}
	for i, line := range lines {
		var row []int32
		for _, f := range strings.Fields(line) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", name, i+1, err)
			}
			row = append(row, int32(v))
		}
		ids = append(ids, row)
	}
	return texts, ids
}

func TestLlamaCppVectors(t *testing.T) {
	cases := []struct{ vectors, tokenizer string }{
		{"llama-bpe", "llama3"},
		{"qwen2", "qwen3"},
		{"llama-spm", "llama2"},
		{"gpt-2", "gpt2"},
	}
	total := 0
	for _, c := range cases {
		t.Run(c.vectors, func(t *testing.T) {
			tk := sharedTokenizer(t, c.tokenizer)
			texts, want := readVectors(t, c.vectors)
			ok := 0
			for i, text := range texts {
				got := tk.Encode(text, false)
				if !equalIDs(got, want[i]) {
					t.Errorf("text %d %q:\n got %v\nwant %v", i, text, got, want[i])
					continue
				}
				ok++
			}
			total += ok
			t.Logf("%s: %d/%d vectors match", c.vectors, ok, len(texts))
		})
	}
	t.Logf("total vectors matched: %d", total)
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
