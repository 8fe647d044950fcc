package qkernels

import (
	"math"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// Portable kernels. They are the only path without AVX2 and the fallback
// for the shapes the assembly does not cover (act-order GPTQ, In or group
// not a multiple of 32, unaligned column edges, In mod 64 tails of the
// row-major formats). They keep the kernels' structure: every decoded
// weight is used for all M rows of x before the next is decoded, and the
// weight bytes are read row by row (contiguously).

// gptqGeneric: for each quantization group, accumulate Σ q·x over the
// group's input rows (in g_idx order when act-order) for every column, then
// apply dst += scale·(Σq·x − z·Σx).
func gptqGeneric(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) {
	K, N, bits := w.In, w.Out, w.Bits
	groups := w.In / w.Group
	nc := n1 - n0
	buf := sc.floats(M*groups + M*nc + M)
	sx, acc, xk := buf[:M*groups], buf[M*groups:M*groups+M*nc], buf[M*groups+M*nc:]
	// k lists: group g's rows are klist[start[g]:start[g+1]]
	klist := sc.ints(K + groups + 1)
	start, list := klist[K:], klist[:K]
	for g := range start {
		start[g] = 0
	}
	for k := 0; k < K; k++ {
		start[groupOf(w, k)+1]++
	}
	for g := 1; g <= groups; g++ {
		start[g] += start[g-1]
	}
	for k := 0; k < K; k++ {
		g := groupOf(w, k)
		list[start[g]] = int32(k)
		start[g]++
	}
	for g := groups; g > 0; g-- {
		start[g] = start[g-1]
	}
	start[0] = 0
	for i := range sx {
		sx[i] = 0
	}
	for m := 0; m < M; m++ {
		for k := 0; k < K; k++ {
			sx[m*groups+groupOf(w, k)] += x[m*K+k]
		}
	}
	for m := 0; m < M; m++ {
		clear(dst[m*ldd+n0 : m*ldd+n1])
	}
	mask := uint32(1)<<uint(bits) - 1
	data := w.Data
	for g := 0; g < groups; g++ {
		clear(acc)
		for _, k32 := range list[start[g]:start[g+1]] {
			k := int(k32)
			for m := 0; m < M; m++ {
				xk[m] = x[m*K+k]
			}
			p := k * bits
			r, off := p>>5, uint(p&31)
			row := data[4*r*N : 4*(r+1)*N]
			var next []byte
			if int(off)+bits > 32 {
				next = data[4*(r+1)*N : 4*(r+2)*N]
			}
			for j := 0; j < nc; j++ {
				n := n0 + j
				v := le32(row, n) >> off
				if next != nil {
					v |= le32(next, n) << (32 - off)
				}
				q := float32(v & mask)
				for m := 0; m < M; m++ {
					acc[m*nc+j] += q * xk[m]
				}
			}
		}
		for j := 0; j < nc; j++ {
			n := n0 + j
			z := float32(zeroOf(w, g, n))
			s := dtype.F16ToF32(uint16(w.Scales[2*(g*N+n)]) | uint16(w.Scales[2*(g*N+n)+1])<<8)
			for m := 0; m < M; m++ {
				dst[m*ldd+n] += s * (acc[m*nc+j] - z*sx[m*groups+g])
			}
		}
	}
}

func le32(b []byte, i int) uint32 {
	b = b[4*i : 4*i+4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func groupOf(w *quant.Weight, k int) int {
	if w.GIdx != nil {
		return int(w.GIdx[k])
	}
	return k / w.Group
}

// zeroOf returns the effective zero point of column n in group g.
func zeroOf(w *quant.Weight, g, n int) int32 {
	bits := w.Bits
	if w.Zeros == nil {
		return 1 << uint(bits-1)
	}
	zcols := (w.Out*bits + 31) / 32
	return int32(field(w.Zeros, g*zcols, 1, n*bits, bits)) + int32(w.ZeroOffset)
}

// field returns the bits-bit field at bit pos of a stream of
// little-endian 32-bit words whose word i is word w0 + i·stride of b (a
// field may straddle two words): a code of a qweight column (stride: the
// words of a row), a zero point of a qzeros row (stride 1).
func field(b []byte, w0, stride, pos, bits int) uint32 {
	r, off := pos>>5, uint(pos&31)
	v := le32(b, w0+r*stride) >> off
	if int(off)+bits > 32 {
		v |= le32(b, w0+(r+1)*stride) << (32 - off)
	}
	return v & (1<<uint(bits) - 1)
}

var e2m1 = [16]float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6}

// fpGeneric computes the row-major formats over inputs [k0, K) (k0 a
// multiple of the block size): with k0 = 0 it sets dst, otherwise it adds
// to it (the assembly did [0, k0)). Each block of a row is decoded once
// (value·block scale, exact) and dotted with every x row.
func fpGeneric(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1, k0 int) {
	K := w.In
	bs := w.Group
	if w.Format == quant.FP8 {
		bs = 64
	}
	buf := sc.floats(bs + M)
	wb, acc := buf[:bs], buf[bs:]
	for n := n0; n < n1; n++ {
		clear(acc)
		for b0 := k0; b0 < K; b0 += bs {
			cnt := min(bs, K-b0)
			switch w.Format {
			case quant.FP8:
				row := w.Data[n*K+b0 : n*K+b0+cnt]
				for i, c := range row {
					wb[i] = dtype.E4M3ToF32(c)
				}
			default:
				var s float32
				switch w.Format {
				case quant.FP4:
					i := n*(K/bs) + b0/bs
					s = dtype.F16ToF32(uint16(w.Scales[2*i]) | uint16(w.Scales[2*i+1])<<8)
				case quant.MXFP4:
					s = dtype.E8M0ToF32(w.Scales[n*(K/32)+b0/32])
				case quant.NVFP4:
					s = dtype.E4M3ToF32(w.Scales[n*(K/16)+b0/16])
				}
				row := w.Data[(n*K+b0)/2 : (n*K+b0+cnt)/2]
				for i, c := range row {
					wb[2*i] = e2m1[c&15] * s
					wb[2*i+1] = e2m1[c>>4] * s
				}
			}
			for m := 0; m < M; m++ {
				xr := x[m*K+b0 : m*K+b0+cnt]
				var s0, s1, s2, s3 float32
				i := 0
				for ; i+4 <= cnt; i += 4 {
					s0 += wb[i] * xr[i]
					s1 += wb[i+1] * xr[i+1]
					s2 += wb[i+2] * xr[i+2]
					s3 += wb[i+3] * xr[i+3]
				}
				for ; i < cnt; i++ {
					s0 += wb[i] * xr[i]
				}
				acc[m] += (s0 + s1) + (s2 + s3)
			}
		}
		post := float32(1)
		switch w.Format {
		case quant.FP8:
			post = le32f(w.Scales, n)
		case quant.NVFP4:
			post = w.GlobalScale
		}
		for m := 0; m < M; m++ {
			if k0 == 0 {
				dst[m*ldd+n] = acc[m] * post
			} else {
				dst[m*ldd+n] += acc[m] * post
			}
		}
	}
}

func le32f(b []byte, i int) float32 { return math.Float32frombits(le32(b, i)) }
