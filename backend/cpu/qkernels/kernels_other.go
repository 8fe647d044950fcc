//go:build !amd64 || purego

package qkernels

import "github.com/marlin-llm/marlin/quant"

const hasSIMD = false

const hasAVX512 = false

var useAVX512 = false

func gptqAligned(w *quant.Weight) bool { return false }
func fpKind(w *quant.Weight) string    { return "" }
func fpMinK(w *quant.Weight) int       { return 64 }

func gptqSIMD(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) bool {
	return false
}

func fpSIMD(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) bool {
	return false
}

// preparePacked: the portable kernels read the checkpoint layout.
func preparePacked(w *quant.Weight) bool { return false }

// fp4VNNI: FP4 takes the row-major kernels here.
func fp4VNNI(w *quant.Weight) bool { return false }

// packSorted: no packed copies here.
func packSorted(wp *quant.Weight) {}

// packedRow: no packed copies here.
func packedRow(dst []float32, w *quant.Weight, row int) bool { return false }
