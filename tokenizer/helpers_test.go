package tokenizer

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's working directory")
		}
		dir = parent
	}
}

// sharedDataPath returns ../shared/data next to the repository, or "".
func sharedDataPath(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "data")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}

// sharedData returns ../shared/data next to the repository, or skips.
func sharedData(t testing.TB) string {
	t.Helper()
	dir := sharedDataPath(t)
	if dir == "" {
		t.Skip("tokenizer: ../shared/data not found")
	}
	return dir
}

// Paths of the shared tokenizers, relative to ../shared/data.
var sharedTokenizers = map[string]string{
	"llama3":      "tokenizers/llama3",
	"qwen3":       "tokenizers/qwen3",
	"mistral":     "tokenizers/mistral",
	"llama2":      "tokenizers/llama2",
	"gpt2":        "tokenizers/gpt2",
	"tinystories": "models/tinystories-656k",
}

var (
	loadedMu sync.Mutex
	loaded   = map[string]*Tokenizer{}
)

// sharedTokenizer loads (once per test binary) one of the shared tokenizers.
func sharedTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	dir := filepath.Join(sharedData(t), sharedTokenizers[name])
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if tk, ok := loaded[name]; ok {
		return tk
	}
	tk, err := Load(dir)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	loaded[name] = tk
	return tk
}

// sharedText reads a file under ../shared/data/text.
func sharedText(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedData(t), "text", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
