//go:build !amd64 || purego

package vkernels

import "unsafe"

// No assembly on this architecture (or with the purego tag): the Go
// kernels always run. The SIMD entry points below keep the dispatch code
// portable and are never reached, as level stays levelGo.

func detectLevel() int { return levelGo }

func expZ(dst, src *float32, n int)                           { panic("vkernels: no SIMD") }
func expY(dst, src *float32, n int)                           { panic("vkernels: no SIMD") }
func siluMulZ(dst, gate, up *float32, n int)                  { panic("vkernels: no SIMD") }
func siluMulY(dst, gate, up *float32, n int)                  { panic("vkernels: no SIMD") }
func maxScaledZ(x *float32, n int, scale float32) float32     { panic("vkernels: no SIMD") }
func maxScaledY(x *float32, n int, scale float32) float32     { panic("vkernels: no SIMD") }
func expSumZ(x *float32, n int, scale, shift float32) float32 { panic("vkernels: no SIMD") }
func expSumY(x *float32, n int, scale, shift float32) float32 { panic("vkernels: no SIMD") }
func scaleZ(x *float32, n int, a float32)                     { panic("vkernels: no SIMD") }
func scaleY(x *float32, n int, a float32)                     { panic("vkernels: no SIMD") }
func sumSquaresZ(x *float32, n int) float64                   { panic("vkernels: no SIMD") }
func sumSquaresY(x *float32, n int) float64                   { panic("vkernels: no SIMD") }
func scaleMulZ(dst, x, w *float32, n int, r float32)          { panic("vkernels: no SIMD") }
func scaleMulY(dst, x, w *float32, n int, r float32)          { panic("vkernels: no SIMD") }

func scoresZ(scores []float32, lds int, q []float32, g int, keys []float32, n, dim int) {
	scoresGo(scores, lds, q, g, keys, n, dim)
}

func scoresY(scores []float32, lds int, q []float32, g int, keys []float32, n, dim int) {
	scoresGo(scores, lds, q, g, keys, n, dim)
}

func axpyRowsZ(out []float32, ldo int, p []float32, ldp, rows int, v []float32, ldv, n, width int) {
	axpyRowsGo(out, ldo, p, ldp, rows, v, ldv, n, width)
}

func axpyRowsY(out []float32, ldo int, p []float32, ldp, rows int, v []float32, ldv, n, width int) {
	axpyRowsGo(out, ldo, p, ldp, rows, v, ldv, n, width)
}

func prefetchLines(p unsafe.Pointer, n int) {}
