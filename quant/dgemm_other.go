//go:build !amd64 || purego

package quant

// dgemm4x8 adds alpha times the 4×8 tile Σ_{p<k} a[p·lda + ii]·b[p·ldb +
// jj] to c[ii·ldc + jj].
func dgemm4x8(c []float64, ldc int, a []float64, lda int, b []float64, ldb int, k int, alpha float64) {
	dgemm4x8Go(c, ldc, a, lda, b, ldb, k, alpha)
}
