package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/shared"
)

// TestPerplexityKLBase: `marlin perplexity --kl-base` on TinyStories-656K
// reports the base model's perplexity, the mean KL and top-1 agreement in
// its JSON: against the model itself KL 0 and full agreement; an RTN int4
// copy scores a positive KL against the 16-bit model; a base of another
// vocabulary is refused.
func TestPerplexityKLBase(t *testing.T) {
	data := shared.Data(t)
	src := filepath.Join(data, "models", "tinystories-656k")
	text := filepath.Join(data, "text", "tinystories", "TinyStories-valid.excerpt.txt")
	q := filepath.Join(t.TempDir(), "q")
	if out, code := capture(t, "quantize", src, q, "--format", "int4", "--group", "32"); code != 0 {
		t.Fatalf("quantize exited %d: %s", code, out)
	}
	type result struct {
		PPL     float64 `json:"ppl"`
		BasePPL float64 `json:"base_ppl"`
		KL      float64 `json:"kl"`
		Top1    float64 `json:"top1"`
		Tokens  int     `json:"tokens"`
	}
	run := func(model string) result {
		t.Helper()
		out, code := capture(t, "perplexity", model, "--file", text, "--ctx", "64", "--limit", "600", "--kl-base", src, "--json", "--device", "cpu")
		if code != 0 {
			t.Fatalf("perplexity %s exited %d", model, code)
		}
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		return r
	}
	self := run(src)
	if self.KL != 0 || self.Top1 != 1 || self.PPL != self.BasePPL || self.Tokens != 600 {
		t.Errorf("model against itself: %+v", self)
	}
	r := run(q)
	t.Logf("int4 g32 against 16-bit: %+v", r)
	if r.BasePPL != self.PPL || r.KL <= 0 || r.KL > 1 || r.Top1 <= 0.5 || r.Top1 >= 1 {
		t.Errorf("int4 against 16-bit: %+v (16-bit perplexity %v)", r, self.PPL)
	}
	fixture := "../../testdata/models/llama-mqa-f32-bias" // vocabulary 256
	if _, code := capture(t, "perplexity", src, "--file", text, "--limit", "100", "--ctx", "64", "--kl-base", fixture, "--device", "cpu"); code == 0 {
		t.Error("a base of another vocabulary was accepted")
	}
}
