//go:build amd64 && !purego

package trellis

import (
	"golang.org/x/sys/cpu"

	"github.com/marlin-llm/marlin/quant"
)

// dotAVX512 multiplies ntiles consecutive trellis tiles (K ≤ 4) of one
// tile column by x, leaving per trellis position e the sum over the tiles
// of value·x[row(e)] in acc[e] (dot_amd64.s), prefetching each tile's
// successor pf bytes on.
//
//go:noescape
func dotAVX512(acc *float32, tiles *byte, stride int, ntiles int, x *float32, tab *int32, rows *int32, nwMask int, cb int, pf int)

// trellisAhead is the prefetch distance of the one-row kernel in tile
// columns (each call reads one tile column of a chunk of tile rows; the
// call ahead reads the next column).
var trellisAhead = 4

// dotAVX2 is dotAVX512 for CPUs with AVX2, FMA and F16C but no AVX-512
// (dot2_amd64.s): the same sums, bit for bit, 8 positions an instruction.
//
//go:noescape
func dotAVX2(acc *float32, tiles *byte, stride int, ntiles int, x *float32, tab *int32, rows *int32, consts *uint32, wmask *int32, mul1 bool)

// avx2Consts[cb] are dotAVX2's constants of codebook cb, eight copies
// each: 3INST and MCG multiplier, addend, mask, xor, then the bit moves'
// 0x80000000, 0x01FFE000, 0x3E000000; MUL1 multiplier, 0x00FF00FF,
// 0xFFFF, 1024.0, k and b (dot_amd64.s has the same values).
var avx2Consts = func() (t [3][7 * 8]uint32) {
	rows := [3][7]uint32{
		{89226354, 64248484, 0x8FFF8FFF, 0x3B603B60, 0x80000000, 0x01FFE000, 0x3E000000},
		{0xCBAC1FED, 0, 0x8FFF8FFF, 0x3B603B60, 0x80000000, 0x01FFE000, 0x3E000000},
		{0x83DCD12D, 0x00FF00FF, 0xFFFF, 0x44800000, 0x3bddc000, 0xc1262000, 0},
	}
	for cb, r := range rows {
		for i, v := range r {
			for l := 0; l < 8; l++ {
				t[cb][8*i+l] = v
			}
		}
	}
	return
}()

// avx2Masks[K] are dotAVX2's load masks of a K-bit tile's 8·K words, in
// four vectors of eight.
var avx2Masks = func() (t [5][32]int32) {
	for K := 1; K <= 4; K++ {
		for i := 0; i < 8*K; i++ {
			t[K][i] = -1
		}
	}
	return
}()

var (
	hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	// useAVX512 lets the tests run the AVX2 kernel where AVX-512 is there.
	useAVX512 = true
)

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

// ktChunk is how many tile rows one kernel call walks down a tile column.
// The tiles are stored row by row ([In'/16][Out'/16]), so one column's
// tiles lie a whole row (Out'/16 tiles: 16–64 KB) apart: walking each
// column through all of K, as the kernel alone would, reads 32·K bytes per
// page and waits on memory for each (about 1 G weights/s a core on the
// 1B shape's matrices). With the columns of a range taken one after the
// other for each chunk of ktChunk rows, the reads are ktChunk forward
// streams that the prefetchers follow.
const ktChunk = 16

// stripsSIMD adds to y[16·(nt−nt0) + c] the sums of output column c of
// tile columns nt0 ≤ nt < nt1 (Σ value·x') with the AVX-512 kernel, or
// the AVX2 one, when it applies (K ≤ 4).
func stripsSIMD(y []float32, w *quant.Weight, nt0, nt1 int, xh []float32) bool {
	K := w.Bits
	wide := hasAVX512 && useAVX512
	if !wide && !hasAVX2 || K > 4 {
		return false
	}
	in, out := w.PaddedDims()
	tiles := in / 16
	stride := out / 16 * 32 * K
	mask := 1<<uint(8*K) - 1
	_ = w.Data[(tiles-1)*stride+(nt1-1)*32*K+32*K-1]
	_ = xh[in-1]
	_ = y[(nt1-nt0)*16-1]
	var acc [quant.TileLen]float32
	for kt0 := 0; kt0 < tiles; kt0 += ktChunk {
		n := min(ktChunk, tiles-kt0)
		for nt := nt0; nt < nt1; nt++ {
			if wide {
				dotAVX512(&acc[0], &w.Data[kt0*stride+nt*32*K], stride, n, &xh[kt0*16], &windowTab[K][0], &rowTab[0], mask, int(w.Codebook), trellisAhead*32*K)
			} else {
				dotAVX2(&acc[0], &w.Data[kt0*stride+nt*32*K], stride, n, &xh[kt0*16], &windowTab[K][0], &rowTab[0], &avx2Consts[w.Codebook][0], &avx2Masks[K][0], w.Codebook == quant.CodebookMUL1)
			}
			addColumns((*[16]float32)(y[(nt-nt0)*16:]), &acc)
		}
	}
	return true
}
