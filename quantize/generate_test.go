package quantize_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
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
	c, err := quantize.GenerateCalibration(src, rows, ctx, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tokens) != rows*(ctx-1) || c.Rows != rows || c.Ctx != ctx {
		t.Fatalf("%d tokens, rows %d, ctx %d; want %d, %d, %d", len(c.Tokens), c.Rows, c.Ctx, rows*(ctx-1), rows, ctx)
	}
	for _, id := range c.Tokens {
		if id < 0 || int(id) >= info.Vocab {
			t.Fatalf("token %d outside the vocabulary of %d", id, info.Vocab)
		}
	}
	again, err := quantize.GenerateCalibration(src, rows, ctx, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	other, err := quantize.GenerateCalibration(src, rows, ctx, 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Tokens, c.Tokens) || slices.Equal(other.Tokens, c.Tokens) {
		t.Errorf("seed 7 twice equal: %v; seeds 7 and 8 equal: %v", slices.Equal(again.Tokens, c.Tokens), slices.Equal(other.Tokens, c.Tokens))
	}
	rep, err := quantize.Run(src, filepath.Join(t.TempDir(), "q"), quantize.Options{Method: quantize.GPTQ,
		Spec: quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 16, Sym: true}, Calib: c})
	if err != nil {
		t.Fatal(err)
	}
	if rep.CalibRows != rows || rep.CalibTokens != rows*ctx {
		t.Errorf("calibrated on %d rows, %d tokens; want %d, %d", rep.CalibRows, rep.CalibTokens, rows, rows*ctx)
	}
}
