//go:build !amd64 || purego

package trellis

import "github.com/marlin-llm/marlin/quant"

var hasAVX512 = false

func stripSIMD(acc16 *[16]float32, w *quant.Weight, nt int, xh []float32) bool { return false }
