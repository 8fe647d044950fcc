package engine_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/internal/shared"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/tokenizer"
)

// sharedData returns ../shared/data, or skips the test when it is absent.
func sharedData(t *testing.T) string { return shared.Data(t) }

// TestTinyStoriesPerplexity: a real pretrained Llama (TinyStories-656K)
// gives transformers' perplexity on the TinyStories excerpt within 0.1%, for
// the same tokens and windows (scripts/device/make_references.py).
func TestTinyStoriesPerplexity(t *testing.T) {
	data := sharedData(t)
	var ref struct {
		BOS  int32   `json:"bos"`
		IDs  []int32 `json:"ids"`
		Runs []struct {
			Ctx    int     `json:"ctx"`
			PPL    float64 `json:"ppl"`
			Tokens int     `json:"tokens"`
		} `json:"runs"`
	}
	b, err := os.ReadFile("../testdata/tinystories-ppl.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "models", "tinystories-656k")
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(data, "text", "tinystories", "TinyStories-valid.excerpt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(string(text), false)
	if len(ids) != len(ref.IDs) {
		t.Fatalf("%d tokens, transformers %d", len(ids), len(ref.IDs))
	}
	for i := range ids {
		if ids[i] != ref.IDs[i] {
			t.Fatalf("token %d: %d, transformers %d", i, ids[i], ref.IDs[i])
		}
	}
	be := cpu.New(0)
	m, err := model.Load(dir, be)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, run := range ref.Runs {
		res, err := engine.Perplexity(context.Background(), m, be, ids, run.Ctx, ref.BOS, nil)
		if err != nil {
			t.Fatal(err)
		}
		rel := math.Abs(res.PPL-run.PPL) / run.PPL
		t.Logf("ctx %d: ppl %.6f, transformers %.6f (relative difference %.2g)", run.Ctx, res.PPL, run.PPL, rel)
		if res.Tokens != run.Tokens || rel > 1e-3 {
			t.Errorf("ctx %d: ppl %.6f over %d tokens, transformers %.6f over %d", run.Ctx, res.PPL, res.Tokens, run.PPL, run.Tokens)
		}
	}
}
