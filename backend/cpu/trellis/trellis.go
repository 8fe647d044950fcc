// Package trellis is the CPU kernel of EXL3 (exllamav3 trellis) weights:
// a matrix product that decodes the trellis on the fly, with the Hadamard
// rotations of the format applied to the activations:
//
//	x' = H128(pad(x) ⊙ suh)            (blocks of 128 inputs, orthonormal)
//	y' = x'·Ŵ                           (Ŵ decoded tile by tile)
//	y  = H128(y') ⊙ svh                 (blocks of 128 outputs)
//
// which is x·W for W = diag(suh)·H·Ŵ·H·diag(svh), the weight
// quant.Weight.DequantizeRow defines. Output features are computed in
// blocks of 128 (the rotation's extent). One row of x: each tile column
// is decoded and multiplied in one pass (AVX-512 assembly for K ≤ 4,
// 16 trellis positions per instruction, about 5 G weights/s per core
// from cache and, with a software prefetch of the tiles ahead, as much
// from memory, walking chunks of tile rows so that the tiles are read in
// address order; AVX2 assembly where there is no AVX-512, 8 positions per
// instruction, about 1.3; otherwise a Go loop, about 0.4). Several rows: the block's tiles are
// decoded into a float32 panel [128, In'] that the dense kernels of
// backend/cpu/kernels multiply with all rows at once, so the decoding is
// paid once per call whatever the number of rows.
package trellis

import (
	"fmt"
	"sync"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// prepared holds the float32 sign/scale vectors of one weight.
type prepared struct {
	suh, svh []float32
	lut      []float32
}

var cache sync.Map // *quant.Weight → *prepared

func prepare(w *quant.Weight) *prepared {
	if p, ok := cache.Load(w); ok {
		return p.(*prepared)
	}
	in, out := w.PaddedDims()
	p := &prepared{suh: make([]float32, in), svh: make([]float32, out), lut: w.Codebook.Table()}
	for i := range p.suh {
		p.suh[i] = dtype.F16ToF32(uint16(w.Scales[2*i]) | uint16(w.Scales[2*i+1])<<8)
	}
	for i := range p.svh {
		p.svh[i] = dtype.F16ToF32(uint16(w.Zeros[2*i]) | uint16(w.Zeros[2*i+1])<<8)
	}
	v, _ := cache.LoadOrStore(w, p)
	return v.(*prepared)
}

// Forget drops the cached vectors of w (for callers that discard many
// weights; the cache holds (In'+Out')·4 bytes per weight).
func Forget(w *quant.Weight) { cache.Delete(w) }

// useSIMD lets the tests switch the assembly off.
var useSIMD = true

// tileRow and tileCol give the row (input) and column (output) within the
// 16×16 tile of trellis position e (quant.TensorCoreOrder).
var tileRow, tileCol = func() (r, c [quant.TileLen]uint8) {
	for e, p := range quant.TensorCoreOrder {
		r[e], c[e] = p/16, p%16
	}
	return
}()

// addColumns adds the 256 per-position sums acc of a tile column to the
// sums of its 16 output columns: position e = 32a + 8b + j is in column
// a + 8·(j ≥ 4) (quant.TensorCoreOrder: lane e/8, col = lane/4 + 8·(j/4);
// TestAddColumns checks it against tileCol).
func addColumns(y *[16]float32, acc *[quant.TileLen]float32) {
	for a := range 8 {
		blk := acc[32*a : 32*a+32]
		var lo, hi float32
		for b := range 4 {
			q := blk[8*b : 8*b+8]
			lo += q[0] + q[1] + q[2] + q[3]
			hi += q[4] + q[5] + q[6] + q[7]
		}
		y[a] += lo
		y[a+8] += hi
	}
}

// DecodeTile decodes the packed tile src (32·K bytes) to its 256 values
// in trellis order, dst[e] = lut[state_e], reading the bit stream once
// (state_t = ((state_{t−1} << K) | next K bits) & 0xFFFF, starting from the
// stream's last 16 bits).
func DecodeTile(dst *[quant.TileLen]float32, src []byte, K int, lut []float32) {
	nw := 8 * K
	src = src[:4*nw]
	lut = lut[:1<<16]
	word := func(i int) uint64 {
		b := src[4*i : 4*i+4]
		return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	}
	state := uint32(word(nw-1)) & 0xffff
	mask := uint64(1)<<uint(K) - 1
	var buf uint64
	nbits, wi := 0, 0
	for t := range dst {
		if nbits < K {
			buf = buf<<32 | word(wi)
			wi++
			nbits += 32
		}
		nbits -= K
		c := uint32(buf >> uint(nbits) & mask)
		state = (state<<uint(K) | c) & 0xffff
		dst[t] = lut[state]
	}
}

type scratch struct {
	xh    []float32 // x' [M, In']
	xs    []float32 // pad(x) ⊙ suh [M, In'] (several rows)
	panel []float32 // decoded Ŵ of one output block, transposed: [128, In']
	yb    []float32 // y' of one block [M, 128]
	yr    []float32 // H128(y') of one block [M, 128] (several rows)
}

var pool = sync.Pool{New: func() any { return new(scratch) }}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// MatMul computes dst[m·ldd + n] = Σ_k x[m·In + k]·W[n][k] for 0 ≤ m < M
// and n0 ≤ n < n1, W the [Out, In] matrix of the EXL3 weight w (which must
// have passed Validate). Only those elements of dst are written.
// Output blocks of 128 that straddle n0 or n1 are computed whole, so
// callers splitting [0, Out) at multiples of 128 do no extra work.
func MatMul(dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) {
	if w.Format != quant.EXL3 {
		panic(fmt.Sprintf("trellis: MatMul of a %v weight", w.Format))
	}
	if M <= 0 || n0 >= n1 {
		return
	}
	in, _ := w.PaddedDims()
	K := w.Bits
	if n0 < 0 || n1 > w.Out || len(x) < M*w.In || (M > 1 && ldd < n1) || len(dst) < (M-1)*ldd+n1 {
		panic(fmt.Sprintf("trellis: MatMul of %v: M %d, n [%d, %d), ldd %d, len(x) %d, len(dst) %d", w, M, n0, n1, ldd, len(x), len(dst)))
	}
	p := prepare(w)
	s := pool.Get().(*scratch)
	defer pool.Put(s)
	// x' = H128(pad(x) ⊙ suh)
	s.xh = grow(s.xh, M*in)
	for m := 0; m < M; m++ {
		xr := x[m*w.In : (m+1)*w.In]
		hr := s.xh[m*in : (m+1)*in]
		for k, v := range xr {
			hr[k] = v * p.suh[k]
		}
		clear(hr[w.In:])
	}
	if M == 1 {
		quant.HadamardBlocks(s.xh, quant.EXL3Block)
		matVec(dst, s.xh, w, p, n0, n1, s)
		return
	}
	s.xs = grow(s.xs, M*in)
	hadamardRows(s.xs, s.xh, M*in/quant.EXL3Block)
	s.xh, s.xs = s.xs, s.xh
	s.panel = grow(s.panel, quant.EXL3Block*in)
	s.yb = grow(s.yb, M*quant.EXL3Block)
	s.yr = grow(s.yr, M*quant.EXL3Block)
	var tile [quant.TileLen]float32
	tilesK := in / 16
	for b := n0 / quant.EXL3Block; b*quant.EXL3Block < n1; b++ {
		// decode the block's tiles into the panel [128 outputs, In']
		for nt := 0; nt < quant.EXL3Block/16; nt++ {
			for kt := 0; kt < tilesK; kt++ {
				DecodeTile(&tile, w.EXL3Tile(kt, b*quant.EXL3Block/16+nt), K, p.lut)
				base := nt*16*in + kt*16
				for e, v := range tile {
					s.panel[base+int(tileCol[e])*in+int(tileRow[e])] = v
				}
			}
		}
		kernels.MatMulF32(s.yb, quant.EXL3Block, s.xh, M, in, s.panel, 0, quant.EXL3Block)
		hadamardRows(s.yr, s.yb, M)
		lo, hi := max(n0, b*quant.EXL3Block), min(n1, (b+1)*quant.EXL3Block)
		for m := 0; m < M; m++ {
			yr := s.yr[m*quant.EXL3Block : (m+1)*quant.EXL3Block]
			d := dst[m*ldd:]
			for n := lo; n < hi; n++ {
				d[n] = yr[n-b*quant.EXL3Block] * p.svh[n]
			}
		}
	}
}

// h128 is the orthonormal Hadamard matrix of order 128 (Sylvester,
// natural order, entries ±1/√128) as a row-major float32 weight.
var h128 = func() []float32 {
	const n = quant.EXL3Block
	h := make([]float32, n*n)
	for i := range n {
		row := h[i*n : (i+1)*n]
		row[i] = 1
		quant.HadamardBlocks(row, n) // row i of H (H is symmetric)
	}
	return h
}()

// hadamardRows sets dst = src·H128 for rows rows of 128 contiguous values
// (H128 is symmetric: each row is rotated). For a batch the product runs
// on the dense GEMM kernels: 256 flops a value where the fast transform
// needs 14, but on the FMA units rather than in scalar Go, several times
// faster (the scalar transforms were a quarter of an EXL3 prefill).
func hadamardRows(dst, src []float32, rows int) {
	kernels.MatMulF32(dst, quant.EXL3Block, src, rows, quant.EXL3Block, h128, 0, quant.EXL3Block)
}

// matVec is MatMul for one row: each tile's values are decoded and
// multiplied straight into the 16 sums of its output columns, without the
// panel, for all the tile columns of the output blocks [n0, n1) touches,
// then each block is rotated.
func matVec(dst, xh []float32, w *quant.Weight, p *prepared, n0, n1 int, s *scratch) {
	in, _ := w.PaddedDims()
	K := w.Bits
	nw := 8 * K
	mask := uint32(1)<<uint(K) - 1
	lut := p.lut[:1<<16]
	const bt = quant.EXL3Block / 16 // tile columns of a block
	b0, b1 := n0/quant.EXL3Block, (n1+quant.EXL3Block-1)/quant.EXL3Block
	nt0, nt1 := b0*bt, b1*bt
	s.yb = grow(s.yb, (nt1-nt0)*16)
	y := s.yb
	clear(y)
	if !useSIMD || !stripsSIMD(y, w, nt0, nt1, xh) {
		for nt := nt0; nt < nt1; nt++ {
			acc := (*[16]float32)(y[(nt-nt0)*16:])
			for kt := 0; kt < in/16; kt++ {
				src := w.EXL3Tile(kt, nt)[:4*nw]
				xr := (*[16]float32)(xh[kt*16 : kt*16+16])
				last := src[4*nw-4:]
				state := uint32(last[0]) | uint32(last[1])<<8
				var buf uint64
				nbits, wi := 0, 0
				for t := 0; t < quant.TileLen; t++ {
					if nbits < K {
						ws := src[4*wi : 4*wi+4]
						buf = buf<<32 | uint64(uint32(ws[0])|uint32(ws[1])<<8|uint32(ws[2])<<16|uint32(ws[3])<<24)
						wi++
						nbits += 32
					}
					nbits -= K
					state = (state<<uint(K) | uint32(buf>>uint(nbits))&mask) & 0xffff
					acc[tileCol[t]&15] += xr[tileRow[t]&15] * lut[state]
				}
			}
		}
	}
	for b := b0; b < b1; b++ {
		yb := y[(b-b0)*quant.EXL3Block : (b-b0+1)*quant.EXL3Block]
		quant.HadamardBlocks(yb, quant.EXL3Block)
		for n := max(n0, b*quant.EXL3Block); n < min(n1, (b+1)*quant.EXL3Block); n++ {
			dst[n] = yb[n-b*quant.EXL3Block] * p.svh[n]
		}
	}
}
