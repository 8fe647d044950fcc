//go:build amd64 && !purego

package quant

import "golang.org/x/sys/cpu"

// dgemm4x8AVX2 is dgemmTileGo on a 4 × 8 tile in AVX2 + FMA assembly: eight ymm
// accumulators (4 rows × 8 columns), each term a broadcast of a[p·lda + ii]
// times the two vectors of b[p·ldb …], fused.
//
//go:noescape
func dgemm4x8AVX2(c *float64, ldc int, a *float64, lda int, b *float64, ldb int, k int, alpha float64)

// dgemm8x16AVX512 is the same on an 8 × 16 tile with sixteen zmm
// accumulators.
//
//go:noescape
func dgemm8x16AVX512(c *float64, ldc int, a *float64, lda int, b *float64, ldb int, k int, alpha float64)

var (
	hasDgemmAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasDgemmAVX512 = hasDgemmAVX2 && cpu.X86.HasAVX512F
)

// dgemmTileDims returns the rows and columns of dgemmTile's tile.
func dgemmTileDims() (int, int) {
	if hasDgemmAVX512 {
		return 8, 16
	}
	return 4, 8
}

// dgemmTile adds alpha times the tile Σ_{p<k} a[p·lda + ii]·b[p·ldb + jj]
// to c[ii·ldc + jj], ii and jj within dgemmTileDims.
func dgemmTile(c []float64, ldc int, a []float64, lda int, b []float64, ldb int, k int, alpha float64) {
	tr, tc := dgemmTileDims()
	// the last elements the kernel touches, checked once
	_ = c[(tr-1)*ldc+tc-1]
	_ = a[(k-1)*lda+tr-1]
	_ = b[(k-1)*ldb+tc-1]
	switch {
	case hasDgemmAVX512:
		dgemm8x16AVX512(&c[0], ldc, &a[0], lda, &b[0], ldb, k, alpha)
	case hasDgemmAVX2:
		dgemm4x8AVX2(&c[0], ldc, &a[0], lda, &b[0], ldb, k, alpha)
	default:
		dgemmTileGo(c, ldc, a, lda, b, ldb, k, alpha, tr, tc)
	}
}
