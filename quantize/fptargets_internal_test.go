package quantize

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestFPTargetsMemoryBound: when the full-precision inputs of every layer
// group would not fit maxFPInputBytes, the run falls back to the classic
// fit and says so.
func TestFPTargetsMemoryBound(t *testing.T) {
	defer func(v int64) { maxFPInputBytes = v }(maxFPInputBytes)
	maxFPInputBytes = 1 << 10
	toks := make([]int32, 4*32)
	for i := range toks {
		toks[i] = int32(i*7%250 + 1)
	}
	var notes []string
	rep, err := Run("../testdata/models/llama-mqa-f32-bias", filepath.Join(t.TempDir(), "q"), Options{Method: GPTQ,
		Spec: quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 16, Sym: true}, FPTargets: true,
		Calib: &Calibration{Tokens: toks, Rows: 4, Ctx: 32}, Warn: func(m string) { notes = append(notes, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.FPTargets || rep.Passes != 1 || len(notes) != 1 || !strings.Contains(notes[0], "more than") {
		t.Errorf("FPTargets %v, %d passes, notes %q", rep.FPTargets, rep.Passes, notes)
	}
}
