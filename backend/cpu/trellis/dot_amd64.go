//go:build amd64 && !purego

package trellis

import (
	"golang.org/x/sys/cpu"

	"github.com/marlin-llm/marlin/quant"
)

// dotAVX512 multiplies ntiles consecutive trellis tiles (K ≤ 4) of one
// tile column by x, leaving per trellis position e the sum over the tiles
// of value·x[row(e)] in acc[e] (dot_amd64.s).
//
//go:noescape
func dotAVX512(acc *float32, tiles *byte, stride int, ntiles int, x *float32, tab *int32, rows *int32, nwMask int, cb int)

var hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// windowTab[K] holds, for each chunk m of 16 trellis positions, four
// vectors of 16 int32: the index of the 32-bit word holding the first bit
// of each position's window, the index of the next word (circularly), and
// the left and right shift amounts that bring the window to the top 16
// bits of (first << left) | (second >> right).
var windowTab = func() (t [5][16 * 4 * 16]int32) {
	for K := 1; K <= 4; K++ {
		nw := 8 * K
		total := quant.TileLen * K
		for e := 0; e < quant.TileLen; e++ {
			m, l := e/16, e%16
			start := ((e+1)*K - 16 + total) % total
			i0 := start / 32
			off := start % 32
			t[K][m*64+l] = int32(i0)
			t[K][m*64+16+l] = int32((i0 + 1) % nw)
			t[K][m*64+32+l] = int32(off)
			t[K][m*64+48+l] = int32(32 - off)
		}
	}
	return
}()

var rowTab = func() (r [quant.TileLen]int32) {
	for e := range r {
		r[e] = int32(tileRow[e])
	}
	return
}()

// stripSIMD computes, for the tiles of tile column nt, the 16 sums of the
// output columns (acc16[c] += Σ value·x over the column) with the AVX-512
// kernel, when it applies (K ≤ 4).
func stripSIMD(acc16 *[16]float32, w *quant.Weight, nt int, xh []float32) bool {
	K := w.Bits
	if !hasAVX512 || K > 4 {
		return false
	}
	in, out := w.PaddedDims()
	tiles := in / 16
	stride := out / 16 * 32 * K
	var acc [quant.TileLen]float32
	mask := 1<<uint(8*K) - 1
	_ = w.Data[(tiles-1)*stride+nt*32*K+32*K-1]
	_ = xh[in-1]
	dotAVX512(&acc[0], &w.Data[nt*32*K], stride, tiles, &xh[0], &windowTab[K][0], &rowTab[0], mask, int(w.Codebook))
	for e, v := range acc {
		acc16[tileCol[e]&15] += v
	}
	return true
}
