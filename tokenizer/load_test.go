package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSharedTokenizerSpecials(t *testing.T) {
	cases := []struct {
		name      string
		vocabSize int
		bos, eos  int32 // -1: none
		prefix    []int32
	}{
		// This Llama 3 tokenizer.json has only a ByteLevel post-processor and
		// its tokenizer_config.json no add_bos_token: nothing is added.
		{"llama3", 128256, 128000, 128001, nil},
		{"qwen3", 151669, -1, 151645, nil},
		{"mistral", 32000, 1, 2, []int32{1}},
		{"tinystories", 2048, 1, 2, []int32{1}},
		{"llama2", 32000, 1, 2, []int32{1}},
		{"gpt2", 50257, 50256, 50256, nil},
	}
	for _, c := range cases {
		tk := sharedTokenizer(t, c.name)
		if tk.VocabSize() != c.vocabSize {
			t.Errorf("%s: VocabSize = %d, want %d", c.name, tk.VocabSize(), c.vocabSize)
		}
		bos, ok := tk.BOS()
		if (c.bos < 0) == ok || (ok && bos != c.bos) {
			t.Errorf("%s: BOS = %d, %v; want %d", c.name, bos, ok, c.bos)
		}
		eos, ok := tk.EOS()
		if (c.eos < 0) == ok || (ok && eos != c.eos) {
			t.Errorf("%s: EOS = %d, %v; want %d", c.name, eos, ok, c.eos)
		}
		plain := tk.Encode("Hello world", false)
		if got := tk.Encode("Hello world", true); !equalIDs(got, append(append([]int32(nil), c.prefix...), plain...)) {
			t.Errorf("%s: Encode(addSpecial) = %v, plain %v", c.name, got, plain)
		}
		if ok && !tk.IsSpecial(eos) {
			t.Errorf("%s: EOS %d is not special", c.name, eos)
		}
		if got := tk.Decode(append(plain, eos), true); got != "Hello world" {
			t.Errorf("%s: Decode skipping EOS = %q", c.name, got)
		}
	}
	// Special-token text is always recognised.
	l3 := sharedTokenizer(t, "llama3")
	if got := l3.Encode("<|begin_of_text|>Hi<|eot_id|>", false); !equalIDs(got, []int32{128000, 13347, 128009}) {
		t.Errorf("llama3 specials: %v", got)
	}
	if id, ok := l3.TokenID("<|eot_id|>"); !ok || id != 128009 || l3.Token(128009) != "<|eot_id|>" {
		t.Errorf("TokenID(<|eot_id|>) = %d, %v", id, ok)
	}
}

func TestLoadPaths(t *testing.T) {
	data := sharedData(t)
	// A file path works as well as its folder.
	for _, p := range []string{"tokenizers/mistral/tokenizer.json", "tokenizers/llama2/tokenizer.model"} {
		tk, err := Load(filepath.Join(data, p))
		if err != nil {
			t.Fatalf("Load(%s): %v", p, err)
		}
		if got := tk.Encode("Hello", true); len(got) != 2 || got[0] != 1 {
			t.Errorf("%s: %v", p, got)
		}
	}
	gpt2, err := LoadGPT2(filepath.Join(data, "tokenizers/gpt2/encoder.json"), filepath.Join(data, "tokenizers/gpt2/vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	if got := gpt2.Encode("Hello world<|endoftext|>", false); !equalIDs(got, []int32{15496, 995, 50256}) {
		t.Errorf("gpt2: %v", got)
	}
	// A folder that holds only tokenizer files (copied), with a config
	// whose tokens are objects.
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(data, "tokenizers/mistral/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), raw, 0o644)
	cfg := `{"add_bos_token": true, "add_eos_token": true, "bos_token": {"content": "<s>"}, "eos_token": {"content": "</s>", "lstrip": false},
		"added_tokens_decoder": {"32000": {"content": "<|im_start|>", "special": true, "normalized": false}}}`
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644)
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode("<|im_start|>Hello", true); !equalIDs(got, []int32{1, 32000, 22557, 2}) {
		t.Errorf("config flags and added_tokens_decoder: %v", got)
	}
	if tk.VocabSize() != 32001 || !tk.IsSpecial(32000) {
		t.Errorf("VocabSize = %d", tk.VocabSize())
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no tokenizer.json") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := Load("/nonexistent/dir"); err == nil {
		t.Error("missing folder: no error")
	}
	base := func() map[string]any {
		var m map[string]any
		if err := json.Unmarshal(synthJSON(t, false), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	model := func(m map[string]any) map[string]any { return m["model"].(map[string]any) }
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"wordpiece", func(m map[string]any) { model(m)["type"] = "WordPiece" }, `model type "WordPiece" is not supported`},
		{"unigram", func(m map[string]any) { model(m)["type"] = "Unigram"; model(m)["vocab"] = []any{[]any{"a", -1.0}} }, `"Unigram" is not supported`},
		{"no model", func(m map[string]any) { delete(m, "model") }, `no "model"`},
		{"merge token missing", func(m map[string]any) { model(m)["merges"] = []any{"q x", "h e"} }, "merges[0]"},
		{"merge without space", func(m map[string]any) { model(m)["merges"] = []any{"he"} }, "merges[0]"},
		{"merge pair of three", func(m map[string]any) { model(m)["merges"] = []any{[]any{"h", "e", "l"}} }, "merges[0]"},
		{"merged token missing", func(m map[string]any) { model(m)["merges"] = []any{"x y"} }, `merged token "xy"`},
		{"negative id", func(m map[string]any) { model(m)["vocab"].(map[string]any)["zz"] = -4 }, "out of range"},
		{"unk not in vocab", func(m map[string]any) { model(m)["unk_token"] = "<nope>" }, "unk_token"},
		{"normalizer", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "BertNormalizer"} }, `normalizer type "BertNormalizer"`},
		{"precompiled", func(m map[string]any) {
			m["normalizer"] = map[string]any{"type": "Precompiled", "precompiled_charsmap": "AAAA"}
		}, "Precompiled"},
		{"pre-tokenizer", func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "UnicodeScripts"} }, `"UnicodeScripts" is not supported`},
		{"bad regex", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(("}, "behavior": "Isolated"}
		}, "bad regular expression"},
		{"bad behavior", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Sideways"}
		}, "split behavior"},
		{"decoder", func(m map[string]any) { m["decoder"] = map[string]any{"type": "CTC"} }, `decoder type "CTC"`},
		{"post-processor", func(m map[string]any) {
			m["post_processor"] = map[string]any{"type": "TemplateProcessing", "single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<x>"}}}}
		}, `"<x>" is not in special_tokens`},
		{"added token without id", func(m map[string]any) { m["added_tokens"] = []any{map[string]any{"content": "x"}} }, "added_tokens[0]"},
		{"pre-tokenizer not an object", func(m map[string]any) { m["pre_tokenizer"] = 3 }, "not a JSON object"},
	}
	for _, c := range cases {
		m := base()
		c.edit(m)
		b, _ := json.Marshal(m)
		_, err := LoadHFJSON(b)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tokenizer.json") {
			t.Errorf("%s: error %q should mention %q", c.name, err, c.want)
		}
	}
	if _, err := LoadHFJSON([]byte("{not json")); err == nil || !strings.Contains(err.Error(), "not valid tokenizer JSON") {
		t.Errorf("garbage: %v", err)
	}
	// A malformed file on disk names its path.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tokenizer.json")) {
		t.Errorf("error should name the file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), synthJSON(t, true), 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"bos_token": 7}`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "bos_token") {
		t.Errorf("bad config: %v", err)
	}
}
