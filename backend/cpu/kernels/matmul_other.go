//go:build !amd64 || purego

package kernels

// No assembly on this architecture (or with the purego tag): the portable
// Go kernels are always used, and the SIMD entry points below are never
// reached because useSIMD stays false.
const hasSIMD = false

// No AVX-512 kernels either.
const hasAVX512 = false

var useAVX512 = false

// HasAVX512 reports whether the AVX-512 kernels are in use.
func HasAVX512() bool { return false }

func matmulF32SIMD(dst []float32, ldd int, x []float32, M, K int, w []float32, n0, n1 int) {
	matmulF32Generic(dst, ldd, x, M, K, w, n0, n1)
}

func matmul16SIMD(kind wkind, dst []float32, ldd int, x []float32, M, K int, w []uint16, n0, n1 int) {
	matmul16Generic(kind, dst, ldd, x, M, K, w, n0, n1)
}

func dotSIMD(a, b []float32) float32 { return dotGeneric(a, b) }

func axpySIMD(alpha float32, x, y []float32) { axpyGeneric(alpha, x, y) }

// PanelGEMM needs AVX-512; it is never called on this build.
func PanelGEMM(dst []float32, ldd int, x []float32, ldx, M, k int, panel []float32, n int, accum bool) {
	panic("kernels.PanelGEMM: no AVX-512")
}

// HasAVX512Hardware reports whether the CPU supports the AVX-512 kernels.
func HasAVX512Hardware() bool { return false }

func cvt16SIMD(dst []float32, src []uint16, bf bool) int { return 0 }
