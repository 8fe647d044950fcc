package model_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/internal/fixture"
	"github.com/marlin-llm/marlin/model"
)

func fixtures(t *testing.T) []string {
	dirs, err := fixture.Dirs("../testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func loadRef(t *testing.T, dir string) *fixture.Reference {
	r, err := fixture.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// forwardAll runs ids as one sequence and returns every position's logits.
func forwardAll(t *testing.T, m model.Model, be backend.Backend, ids []int32) [][]float32 {
	t.Helper()
	res, err := fixture.ForwardAll(m, be, ids)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestFixtures checks every architecture against transformers: at every
// position max|Δlogit| ≤ 1e-4 · max|logit| (fp32 math on both sides; the
// remaining differences are summation order, ~1e-6 relative), and the
// 12-token greedy continuation is identical.
func TestFixtures(t *testing.T) {
	for _, dir := range fixtures(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ref := loadRef(t, dir)
			be := cpu.New(0)
			m, err := model.Load(dir, be)
			if err != nil {
				t.Fatal(err) // every fixture's architecture is implemented
			}
			defer m.Close()
			got := forwardAll(t, m, be, ref.IDs)
			worst := 0.0
			for p, row := range ref.Logits {
				var maxAbs, maxDiff float64
				for j, v := range row {
					maxAbs = math.Max(maxAbs, math.Abs(v))
					maxDiff = math.Max(maxDiff, math.Abs(float64(got[p][j])-v))
				}
				if maxDiff > 1e-4*maxAbs {
					t.Errorf("position %d: max |Δ| = %.3g > 1e-4 × %.3g", p, maxDiff, maxAbs)
				}
				worst = math.Max(worst, maxDiff/maxAbs)
			}
			t.Logf("worst position: max |Δ| / max |logit| = %.2g", worst)

			e, err := engine.New(m, be, engine.Config{MaxSeqs: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ch, err := e.Submit(context.Background(), engine.Request{Prompt: ref.IDs, MaxTokens: len(ref.Greedy), Logprobs: -1})
			if err != nil {
				t.Fatal(err)
			}
			var gen []int32
			for ev := range ch {
				if !ev.Done {
					gen = append(gen, ev.Token)
				}
			}
			if !equal(gen, ref.Greedy) {
				t.Errorf("greedy continuation %v, transformers %v", gen, ref.Greedy)
			}
		})
	}
}

func equal(a, b []int32) bool {
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
