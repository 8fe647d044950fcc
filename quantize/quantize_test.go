package quantize_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

const src = "../testdata/models/llama-mqa-f32-bias" // hidden 48, intermediate 96

func logits(t *testing.T, dir string, ids []int32) []float32 {
	t.Helper()
	be := cpu.New(1)
	m, err := model.Load(dir, be)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	spec := m.Info().KV
	spec.BlockSize, spec.Blocks = 16, 1
	cache, _ := be.NewKVCache(spec)
	b := &backend.Batch{Tokens: ids, Seqs: []backend.Seq{{Start: 0, Len: len(ids), Blocks: []int32{0}}}}
	for i := range ids {
		b.Pos = append(b.Pos, int32(i))
	}
	out := m.Forward(b, cache, []int32{int32(len(ids) - 1)})
	buf := make([]float32, m.Info().Vocab)
	if err := be.Read(buf, out); err != nil {
		t.Fatal(err)
	}
	return buf
}

// TestQuantizeFormats quantizes a fixture to every format, loads the result
// and checks it is smaller and still computes nearly the same logits. A
// random-weight network with weights drawn wide amplifies rounding through
// its layers, so the bounds are loose (measured: int8 2–3%, fp8 14%, 4-bit
// 30–40% relative RMS) but far below the ~100% a wrong layout gives; the
// quality of each format on real models is in docs/perf.md.
func TestQuantizeFormats(t *testing.T) {
	ids := []int32{5, 17, 99, 3, 250, 42}
	ref := logits(t, src, ids)
	for _, c := range []struct {
		format string
		group  int
		tol    float64
	}{{"int8", 16, 0.05}, {"int8", 0, 0.05}, {"fp8", 0, 0.25}, {"int4", 16, 0.6}, {"fp4", 16, 0.6}, {"mxfp4", 0, 0.6}, {"nvfp4", 0, 0.6}} {
		t.Run(c.format, func(t *testing.T) {
			spec, err := quant.ParseSpec(c.format, c.group, true)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "q")
			var warned []string
			rep, err := quantize.Run(src, out, quantize.Options{Spec: spec, Warn: func(m string) { warned = append(warned, m) }})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Quantized == 0 || rep.OutBytes >= rep.InBytes {
				t.Fatalf("report %+v, warnings %v", rep, warned)
			}
			for _, f := range []string{"config.json", "model.safetensors", "generation_config.json"} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Error(err)
				}
			}
			got := logits(t, out, ids)
			var num, den float64
			for i := range ref {
				num += math.Pow(float64(got[i]-ref[i]), 2)
				den += math.Pow(float64(ref[i]), 2)
			}
			if rel := math.Sqrt(num / den); rel > c.tol {
				t.Errorf("relative RMS logit error %.3g > %g", rel, c.tol)
			} else {
				t.Logf("relative RMS logit error %.3g", rel)
			}
		})
	}
}

// TestQuantizeRefusals: an existing output is kept unless forced, a
// quantized source is refused; a broken source, a format no weight can take
// and a cancelled run leave no output and no temporary folder behind.
func TestQuantizeRefusals(t *testing.T) {
	spec, _ := quant.ParseSpec("int8", 16, true)
	dir := t.TempDir()
	out := filepath.Join(dir, "q")
	if _, err := quantize.Run(src, out, quantize.Options{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Run(src, out, quantize.Options{Spec: spec}); err == nil {
		t.Error("overwrote an existing folder without Force")
	}
	if _, err := quantize.Run(src, out, quantize.Options{Spec: spec, Force: true}); err != nil {
		t.Errorf("with Force: %v", err)
	}
	if _, err := quantize.Run(out, filepath.Join(dir, "qq"), quantize.Options{Spec: spec}); err == nil || !strings.Contains(err.Error(), "already quantized") {
		t.Errorf("quantized source: %v", err)
	}
	// a truncated source
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(bad, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, _ := os.ReadFile(filepath.Join(src, f))
		if f == "model.safetensors" {
			b = b[:len(b)-1000]
		}
		os.WriteFile(filepath.Join(bad, f), b, 0o644)
	}
	if _, err := quantize.Run(bad, filepath.Join(dir, "out2"), quantize.Options{Spec: spec}); err == nil {
		t.Error("quantized a truncated checkpoint")
	}
	// a group that divides no input dimension (48, 96): every weight would
	// be kept, and the folder would claim a quantization it lacks
	g40, _ := quant.ParseSpec("int4", 40, true)
	if _, err := quantize.Run(src, filepath.Join(dir, "out3"), quantize.Options{Spec: g40}); err == nil || !strings.Contains(err.Error(), "no weight can be quantized") {
		t.Errorf("group 40: %v", err)
	}
	// the same refused before calibrating (no journal left behind either)
	calib := &quantize.Calibration{Text: []byte("the king is dead, long live the king")}
	if _, err := quantize.Run(src, filepath.Join(dir, "out5"), quantize.Options{Method: quantize.GPTQ, Spec: g40, Calib: calib}); err == nil || !strings.Contains(err.Error(), "no weight can be quantized") {
		t.Errorf("gptq, group 40: %v", err)
	}
	// a cancelled run (Ctrl-C) writes nothing
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := quantize.Run(src, filepath.Join(dir, "out4"), quantize.Options{Spec: spec, Context: ctx}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "q" && e.Name() != "bad" {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

// TestHeadBits: a head quantized to other bits than the body is recorded as
// a GPTQModel-style dynamic override and loads back.
func TestHeadBits(t *testing.T) {
	spec, _ := quant.ParseSpec("int8", 16, true)
	head, _ := quant.ParseSpec("int4", 16, true)
	out := filepath.Join(t.TempDir(), "q")
	if _, err := quantize.Run(src, out, quantize.Options{Spec: spec, Head: &head}); err != nil {
		t.Fatal(err)
	}
	ids := []int32{5, 17, 99}
	ref, got := logits(t, src, ids), logits(t, out, ids)
	var num, den float64
	for i := range ref {
		num += math.Pow(float64(got[i]-ref[i]), 2)
		den += math.Pow(float64(ref[i]), 2)
	}
	if rel := math.Sqrt(num / den); rel > 0.6 {
		t.Errorf("relative RMS logit error %.3g", rel)
	}
}
