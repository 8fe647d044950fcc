//go:build linux && !nocuda

package cuda

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/internal/fixture"
	"github.com/marlin-llm/marlin/model"
)

func fixtureDirs(t *testing.T) []string {
	dirs, err := fixture.Dirs(testdata(t))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
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

// greedy generates n tokens after prompt with the engine (greedy sampling).
func greedy(t *testing.T, m model.Model, be backend.Backend, prompts [][]int32, n, maxSeqs int) [][]int32 {
	t.Helper()
	e, err := engine.New(m, be, engine.Config{MaxSeqs: maxSeqs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var chans []<-chan engine.Event
	for _, p := range prompts {
		ch, err := e.Submit(context.Background(), engine.Request{Prompt: p, MaxTokens: n, Logprobs: -1})
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	out := make([][]int32, len(prompts))
	for i, ch := range chans {
		for ev := range ch {
			if ev.Err != nil {
				t.Fatalf("generation: %v", ev.Err)
			}
			if !ev.Done {
				out[i] = append(out[i], ev.Token)
			}
		}
	}
	return out
}

// TestFixtures runs every model of testdata/models on the GPU: at every
// position max|Δlogit| ≤ 1e-3 · max|logit| against transformers'
// reference, and the identical greedy continuation.
func TestFixtures(t *testing.T) {
	be := gpu(t)
	for _, dir := range fixtureDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ref, err := fixture.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(dir, be)
			if err != nil {
				t.Fatal(err)
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
				if !(maxDiff <= 1e-3*maxAbs) {
					t.Errorf("position %d: max |Δ| = %.3g > 1e-3 × %.3g", p, maxDiff, maxAbs)
				}
				worst = math.Max(worst, maxDiff/maxAbs)
			}
			t.Logf("worst position: max |Δ| / max |logit| = %.2g", worst)
			gen := greedy(t, m, be, [][]int32{ref.IDs}, len(ref.Greedy), 1)[0]
			if !slices.Equal(gen, ref.Greedy) {
				t.Errorf("greedy continuation %v, transformers %v", gen, ref.Greedy)
			}
		})
	}
}

// TestBatchedGeneration runs several prompts at once through the engine
// (continuous batching: mixed prefill and decode rows, several sequences
// in the paged cache) and requires each continuation to equal the one
// generated alone. Every kernel computes a row independently of the
// others in the batch, with the same order of operations, so the logits
// are bitwise equal and greedy decoding must agree exactly.
func TestBatchedGeneration(t *testing.T) {
	be := gpu(t)
	for _, name := range []string{"llama-gqa-bf16-tied-llama3rope", "glm4moelite-bf16", "qwen3moe-bf16-sparsestep"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(testdata(t), "models", name)
			m, err := model.Load(dir, be)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			prompts := [][]int32{{1, 2, 3}, {5, 9, 2, 7, 7, 3, 1, 4, 12, 8, 6}, {42}, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4}}
			batched := greedy(t, m, be, prompts, 10, 4)
			for i, p := range prompts {
				alone := greedy(t, m, be, [][]int32{p}, 10, 1)[0]
				if !slices.Equal(batched[i], alone) {
					t.Errorf("prompt %d: batched %v, alone %v", i, batched[i], alone)
				}
			}
		})
	}
}

// TestGPTQCheckpoints loads the GPTQ checkpoints of testdata/gptq (2/3/4/8
// bits, sym and asym, act-order) on the GPU: their logits must equal the
// CPU's and the GPU logits of the dense checkpoint of the dequantized
// weights within 2e-3 · max|logit|. Every GPTQ product on the GPU rounds x
// to fp16 — the decode kernels of qmm.cu (4-bit packed, 8-bit qmv8) and
// dequantize + cuBLAS for the rest (2- and 3-bit, act-order 8-bit, at
// every size) — so a product is off by up to ~2^-11 relatively (the
// checkpoints measured up to 1.2e-3 · max|logit|, H100, 2026-11-27);
// the float32 tile kernels they ran on before met 1e-4.
func TestGPTQCheckpoints(t *testing.T) {
	be := gpu(t)
	c := cpu.New(2)
	ids := []int32{3, 14, 15, 92, 65, 35, 89, 79, 32, 38}
	dirs, _ := filepath.Glob(filepath.Join(testdata(t), "gptq", "*-dequant"))
	if len(dirs) == 0 {
		t.Fatal("no GPTQ fixtures in testdata/gptq")
	}
	for _, dense := range dirs {
		q := dense[:len(dense)-len("-dequant")]
		t.Run(filepath.Base(q), func(t *testing.T) {
			load := func(dir string, b backend.Backend) model.Model {
				m, err := model.Load(dir, b)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close() })
				return m
			}
			gq, gd, cq := forwardAll(t, load(q, be), be, ids), forwardAll(t, load(dense, be), be, ids), forwardAll(t, load(q, c), c, ids)
			const tol = 2e-3
			for p := range gq {
				for _, other := range []struct {
					name string
					v    []float32
				}{{"GPU dense", gd[p]}, {"CPU", cq[p]}} {
					var maxAbs, maxDiff float64
					for j := range gq[p] {
						maxAbs = math.Max(maxAbs, math.Abs(float64(other.v[j])))
						maxDiff = math.Max(maxDiff, math.Abs(float64(gq[p][j]-other.v[j])))
					}
					if !(maxDiff <= tol*maxAbs) {
						t.Errorf("position %d vs %s: max |Δ| %.3g > %g × %.3g", p, other.name, maxDiff, tol, maxAbs)
					}
				}
			}
		})
	}
}
