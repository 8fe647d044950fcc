package quantize_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/internal/shared"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

// TestGenerateCalibration samples calibration text from the fixture model:
// rows × (ctx − 1) tokens after the BOS, all in the vocabulary, the same
// for the same seed and different for another, and GPTQ calibrates on them
// (every row seen by every layer).
func TestGenerateCalibration(t *testing.T) {
	be := cpu.New(2)
	m, err := model.Load(src, be)
	if err != nil {
		t.Fatal(err)
	}
	info := *m.Info()
	m.Close()
	be.Close()
	if info.BOS < 0 {
		t.Fatal("the fixture has no BOS token: the test expects one")
	}
	const rows, ctx = 3, 20
	var steps []int
	c, err := quantize.GenerateCalibration(src, quantize.GenerateOptions{Rows: rows, Ctx: ctx, Seed: 7, Threads: 2,
		Progress: func(done, total int) {
			if total != ctx-1 {
				t.Errorf("progress total %d, want %d", total, ctx-1)
			}
			steps = append(steps, done)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != ctx-1 || steps[0] != 1 || steps[len(steps)-1] != ctx-1 {
		t.Errorf("progress reported %v; want 1 … %d", steps, ctx-1)
	}
	if len(c.Tokens) != rows*(ctx-1) || c.Rows != rows || c.Ctx != ctx {
		t.Fatalf("%d tokens, rows %d, ctx %d; want %d, %d, %d", len(c.Tokens), c.Rows, c.Ctx, rows*(ctx-1), rows, ctx)
	}
	for _, id := range c.Tokens {
		if id < 0 || int(id) >= info.Vocab {
			t.Fatalf("token %d outside the vocabulary of %d", id, info.Vocab)
		}
	}
	again, err := quantize.GenerateCalibration(src, quantize.GenerateOptions{Rows: rows, Ctx: ctx, Seed: 7, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	other, err := quantize.GenerateCalibration(src, quantize.GenerateOptions{Rows: rows, Ctx: ctx, Seed: 8, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Tokens, c.Tokens) || slices.Equal(other.Tokens, c.Tokens) {
		t.Errorf("seed 7 twice equal: %v; seeds 7 and 8 equal: %v", slices.Equal(again.Tokens, c.Tokens), slices.Equal(other.Tokens, c.Tokens))
	}
	// a cancelled context stops the sampling with its error
	cctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = quantize.GenerateCalibration(src, quantize.GenerateOptions{Rows: rows, Ctx: ctx, Seed: 7, Threads: 2, Context: cctx,
		Progress: func(done, total int) {
			if n++; done == 3 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Errorf("cancelled after step 3: %d steps, error %v; want 3 and context.Canceled", n, err)
	}
	rep, err := quantize.Run("../defaultmodel/source", filepath.Join(t.TempDir(), "q"), quantize.Options{Method: quantize.GPTQ,
		Spec: quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 64, Sym: true}, Calib: c})
	if err != nil {
		t.Fatal(err)
	}
	if rep.CalibRows != rows || rep.CalibTokens != rows*ctx {
		t.Errorf("calibrated on %d rows, %d tokens; want %d, %d", rep.CalibRows, rep.CalibTokens, rows, rows*ctx)
	}
}

// TestDefaultCalibration: with no text given the quantizer calibrates on
// the built-in start of tiny Shakespeare (here the embedded default
// model's source, which has a tokenizer), every row asked for, and that
// text is the corpus's own first bytes (when ../shared is at hand).
func TestDefaultCalibration(t *testing.T) {
	const rows, ctx = 4, 32
	c := quantize.DefaultCalibration(rows, ctx)
	if len(c.Text) < 200_000 || c.Rows != rows || c.Ctx != ctx {
		t.Fatalf("%d bytes, rows %d, ctx %d", len(c.Text), c.Rows, c.Ctx)
	}
	rep, err := quantize.Run("../defaultmodel/source", filepath.Join(t.TempDir(), "q"), quantize.Options{Method: quantize.GPTQ,
		Spec: quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 64, Sym: true}, Calib: c})
	if err != nil {
		t.Fatal(err)
	}
	if rep.CalibRows != rows || rep.CalibName != c.Name {
		t.Errorf("calibrated on %d rows of %q; want %d of %q", rep.CalibRows, rep.CalibName, rows, c.Name)
	}
	corpus, err := os.ReadFile(filepath.Join(shared.Data(t), "text", "tinyshakespeare", "input.txt"))
	if err != nil {
		t.Skip(err)
	}
	if !bytes.HasPrefix(corpus, c.Text) {
		t.Error("the built-in calibration text is not the start of tiny Shakespeare")
	}
}
