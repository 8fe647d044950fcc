package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

// TestSynthetic writes the small Llama (also tied, with a quantized head),
// GLM-4-MoE-Lite and Mixtral shapes in BF16, INT4 g32 and EXL3 3-bit, loads
// them and generates: the writer's tensor list must be exactly what the
// loader wants (every tensor present, every shape right, padded EXL3
// layers with their logical shapes), and the quantized layers must be
// smaller than BF16.
func TestSynthetic(t *testing.T) {
	int4, err := quant.ParseSpec("int4", 32, true)
	if err != nil {
		t.Fatal(err)
	}
	tied := map[string]any{}
	for k, v := range shapes["tiny"] {
		tied[k] = v
	}
	tied["tie_word_embeddings"] = true
	shapes["tiny-tied"] = tied
	defer delete(shapes, "tiny-tied")
	exl3, err := syntheticSpec("exl3", 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, shape := range []string{"tiny", "tiny-tied", "tiny-glm", "tiny-mixtral"} {
		var bf16Bytes int64
		for _, spec := range []*quant.Spec{nil, &int4, &exl3} {
			dir := filepath.Join(t.TempDir(), "m")
			opt, quantized := quantize.Options{}, spec != nil
			if quantized {
				opt.Spec = *spec
				if shape == "tiny-tied" {
					opt.Head = spec
				}
			}
			if err := writeSynthetic(dir, shapes[shape], opt, quantized); err != nil {
				t.Fatalf("%s %v: %v", shape, spec, err)
			}
			be := cpu.New(2)
			m, err := model.Load(dir, be)
			if err != nil {
				t.Fatalf("%s %v: %v", shape, spec, err)
			}
			if info := m.Info(); shape == "tiny-mixtral" && spec == nil {
				// BF16: the untied embedding (512×128) and half of the
				// experts (2 of 4 per token; 2 layers × 4 × 3 × 256×128) are
				// not read by a decode step
				idle := int64(512*128*2) + int64(2*4*3*256*128*2)/2
				if info.DecodeBytes != info.WeightBytes-idle {
					t.Errorf("tiny-mixtral: decode bytes %d, want %d − %d", info.DecodeBytes, info.WeightBytes, idle)
				}
			}
			if wb := m.Info().WeightBytes; spec == nil {
				bf16Bytes = wb
			} else if wb > bf16Bytes*7/10 { // the experts and projections at ~4.5 bits (EXL3 3 + padding), embeddings and head 16
				t.Errorf("%s %v: %d weight bytes, BF16 %d", shape, spec, wb, bf16Bytes)
			}
			e, err := engine.New(m, be, engine.Config{MaxSeqs: 1})
			if err != nil {
				t.Fatal(err)
			}
			ch, err := e.Submit(context.Background(), engine.Request{Prompt: []int32{1, 5, 9, 200}, MaxTokens: 4, Logprobs: 0})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ev := range ch {
				if ev.Err != nil {
					t.Fatalf("%s %v: %v", shape, spec, ev.Err)
				}
				if !ev.Done {
					n++
					if math.IsNaN(float64(ev.Logprob)) || math.IsInf(float64(ev.Logprob), 0) {
						t.Errorf("%s %v: log-probability %g", shape, spec, ev.Logprob)
					}
				}
			}
			if n != 4 {
				t.Errorf("%s %v: %d tokens", shape, spec, n)
			}
			e.Close()
			m.Close()
		}
	}
}

// TestEXL3WithoutLogicalShapes loads an EXL3 checkpoint whose padded
// layers have no logical_shapes record (as exllamav3 writes them): the
// model loader takes the logical shapes from config.json, and the logits
// equal those of the same checkpoint with the record.
func TestEXL3WithoutLogicalShapes(t *testing.T) {
	spec, err := syntheticSpec("exl3", 4)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "m")
	if err := writeSynthetic(dir, shapes["tiny-glm"], quantize.Options{Spec: spec}, true); err != nil {
		t.Fatal(err)
	}
	logits := func() []float32 {
		t.Helper()
		s := cpuSession(t, dir)
		defer s.Close()
		out, err := allLogits(s, []int32{1, 7, 42, 300}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var flat []float32
		for _, r := range out {
			flat = append(flat, r...)
		}
		return flat
	}
	want := logits()
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	qc := cfg["quantization_config"].(map[string]any)
	if len(qc["logical_shapes"].(map[string]any)) == 0 {
		t.Fatal("tiny-glm has no padded layer: the test needs one")
	}
	delete(qc, "logical_shapes")
	if raw, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	got := logits()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logit %d: %g without logical_shapes, %g with", i, got[i], want[i])
		}
	}
}

// cpuSession loads the model in dir on a CPU backend of two threads.
func cpuSession(t *testing.T, dir string) *session {
	t.Helper()
	be := cpu.New(2)
	m, err := model.Load(dir, be)
	if err != nil {
		be.Close()
		t.Fatal(err)
	}
	return &session{dir: dir, be: be, m: m}
}

// TestLogitsDecode checks `marlin logits --decode N`: the last N ids fed
// one at a time (one-row passes, the decode path) give the logits of one
// pass over them all, on the CPU, within 1e-4 · max|logit| (the same
// products in another order of rows: float32 rounding only).
func TestLogitsDecode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := writeSynthetic(dir, shapes["tiny"], quantize.Options{}, false); err != nil {
		t.Fatal(err)
	}
	s := cpuSession(t, dir)
	defer s.Close()
	ids := []int32{1, 7, 42, 300, 5, 9, 17, 2, 64, 33, 11, 12, 13, 14, 15, 16, 18, 19}
	whole, err := allLogits(s, ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(ids), 5} { // every id a step; a prefill of the first ones, then steps
		steps, err := allLogits(s, ids, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != len(ids) {
			t.Fatalf("%d rows of logits for %d ids", len(steps), len(ids))
		}
		for p := range ids {
			var maxAbs, maxDiff float64
			for j, v := range whole[p] {
				maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
				maxDiff = math.Max(maxDiff, math.Abs(float64(v-steps[p][j])))
			}
			if !(maxDiff <= 1e-4*maxAbs) || maxAbs == 0 {
				t.Errorf("%d steps, position %d: differs from the whole pass by %.3g (max |logit| %.3g)", n, p, maxDiff, maxAbs)
			}
		}
	}
}

// TestLogitsJSON checks `marlin logits --json`'s writer: every finite value
// reads back as the same float32, NaN and ±Inf print as null, and the
// ids and the first position are there.
func TestLogitsJSON(t *testing.T) {
	rows := [][]float32{{1.5, float32(math.NaN()), -3.25e-7}, {float32(math.Inf(1)), 0.1, float32(math.Inf(-1))}}
	var b strings.Builder
	w := bufio.NewWriter(&b)
	if err := writeLogitsJSON(w, []int32{4, 5, 6}, 1, rows); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	var got struct {
		IDs    []int32      `json:"ids"`
		From   int          `json:"from"`
		Logits [][]*float64 `json:"logits"`
	}
	if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("%v in %q", err, b.String())
	}
	if !slices.Equal(got.IDs, []int32{4, 5, 6}) || got.From != 1 || len(got.Logits) != 2 {
		t.Fatalf("ids %v, from %d, %d rows", got.IDs, got.From, len(got.Logits))
	}
	for i, row := range rows {
		for j, v := range row {
			g := got.Logits[i][j]
			finite := !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0)
			if finite != (g != nil) || finite && float32(*g) != v {
				t.Errorf("logit [%d][%d] = %v printed as %v", i, j, v, g)
			}
		}
	}
}
