package model_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/model"
)

// TestGPTQCheckpoints loads GPTQ checkpoints packed by an independent
// implementation of AutoGPTQ's layout (scripts/make_gptq_fixtures.py: sym
// and asym, 2/3/4/8 bits, groups and per-channel, with and without
// act-order g_idx) and requires the same logits as the dense checkpoint of
// the dequantized weights: max|Δ| ≤ 1e-5 · max|logit| (the same float32
// values enter both; only the order of the sums differs).
func TestGPTQCheckpoints(t *testing.T) {
	ids := []int32{3, 14, 15, 92, 65, 35, 89, 79, 32, 38}
	dirs, _ := filepath.Glob("../testdata/gptq/*-dequant")
	if len(dirs) == 0 {
		t.Fatal("no GPTQ fixtures in testdata/gptq")
	}
	for _, dense := range dirs {
		q := dense[:len(dense)-len("-dequant")]
		t.Run(filepath.Base(q), func(t *testing.T) {
			be := cpu.New(0)
			mq, err := model.Load(q, be)
			if err != nil {
				t.Fatal(err)
			}
			defer mq.Close()
			md, err := model.Load(dense, be)
			if err != nil {
				t.Fatal(err)
			}
			defer md.Close()
			if mq.Info().WeightBytes >= md.Info().WeightBytes {
				t.Errorf("quantized weights %d bytes, dense %d", mq.Info().WeightBytes, md.Info().WeightBytes)
			}
			a, b := forwardAll(t, mq, be, ids), forwardAll(t, md, be, ids)
			for p := range a {
				var maxAbs, maxDiff float64
				for j := range a[p] {
					maxAbs = math.Max(maxAbs, math.Abs(float64(b[p][j])))
					maxDiff = math.Max(maxDiff, math.Abs(float64(a[p][j]-b[p][j])))
				}
				if maxDiff > 1e-5*maxAbs {
					t.Fatalf("position %d: max |Δ| %.3g > 1e-5 × %.3g", p, maxDiff, maxAbs)
				}
			}
		})
	}
}
