package cpu

import (
	"github.com/marlin-llm/marlin/backend/cpu/qkernels"
	"github.com/marlin-llm/marlin/backend/cpu/trellis"
	"github.com/marlin-llm/marlin/quant"
)

// quantSupported reports whether a quantized weight has a CPU kernel.
func quantSupported(w *quant.Weight) bool {
	switch w.Format {
	case quant.GPTQ, quant.FP8, quant.FP4, quant.MXFP4, quant.NVFP4, quant.EXL3:
		return true
	}
	return false
}

// quantMatMul runs the fused dequantize+matmul kernel of w's format.
func quantMatMul(dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) {
	if w.Format == quant.EXL3 {
		trellis.MatMul(dst, ldd, x, M, w, n0, n1)
		return
	}
	qkernels.MatMul(dst, ldd, x, M, w, n0, n1)
}
