package cpu

import "github.com/marlin-llm/marlin/quant"

// quantSupported reports whether a quantized weight has a CPU kernel.
// (Wired to backend/cpu/qkernels once that package lands.)
func quantSupported(w *quant.Weight) bool { return false }

func quantMatMul(dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) {
	panic("cpu: quantized matmul not available")
}
