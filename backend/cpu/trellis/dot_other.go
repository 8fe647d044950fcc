//go:build !amd64 || purego

package trellis

import "github.com/marlin-llm/marlin/quant"

var (
	hasAVX512, hasAVX2 = false, false
	useAVX512          = true
)

func stripsSIMD(y []float32, w *quant.Weight, nt0, nt1 int, xh []float32) bool { return false }
