//go:build amd64 && !purego

package quant

import "golang.org/x/sys/cpu"

// dgemm4x8AVX2 is dgemm4x8Go in AVX2 + FMA assembly: eight ymm
// accumulators (4 rows × 8 columns), each term a broadcast of a[p·lda + ii]
// times the two vectors of b[p·ldb …], fused.
//
//go:noescape
func dgemm4x8AVX2(c *float64, ldc int, a *float64, lda int, b *float64, ldb int, k int, alpha float64)

var hasDgemmAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dgemm4x8 adds alpha times the 4×8 tile Σ_{p<k} a[p·lda + ii]·b[p·ldb +
// jj] to c[ii·ldc + jj].
func dgemm4x8(c []float64, ldc int, a []float64, lda int, b []float64, ldb int, k int, alpha float64) {
	if !hasDgemmAVX2 {
		dgemm4x8Go(c, ldc, a, lda, b, ldb, k, alpha)
		return
	}
	// the last elements the kernel touches, checked once
	_ = c[3*ldc+7]
	_ = a[(k-1)*lda+3]
	_ = b[(k-1)*ldb+7]
	dgemm4x8AVX2(&c[0], ldc, &a[0], lda, &b[0], ldb, k, alpha)
}
