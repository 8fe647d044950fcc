//go:build !amd64 || purego

package quant

// dgemmTileDims returns the rows and columns of dgemmTile's tile.
func dgemmTileDims() (int, int) { return 4, 8 }

// dgemmTile adds alpha times the tile Σ_{p<k} a[p·lda + ii]·b[p·ldb + jj]
// to c[ii·ldc + jj], ii < 4, jj < 8.
func dgemmTile(c []float64, ldc int, a []float64, lda int, b []float64, ldb int, k int, alpha float64) {
	dgemmTileGo(c, ldc, a, lda, b, ldb, k, alpha, 4, 8)
}
