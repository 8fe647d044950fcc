//go:build amd64 && !purego

package qkernels

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/marlin-llm/marlin/quant"
)

// hasAVX512 reports whether the AVX-512 kernels (qkernels512_amd64.s) can
// run: AVX-512 F, BW, VL and DQ (x/sys/cpu sets them only when the OS saves
// the zmm and opmask state) on top of what the AVX2 kernels need.
var hasAVX512 = hasSIMD && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ

// useAVX512 selects the AVX-512 kernels where they exist; the tests switch
// it off to cover the AVX2 ones.
var useAVX512 = hasAVX512

// gptqPrepZ computes the x coefficients [unit][row][field] and the
// per-unit sums of one x row (prep512_amd64.s).
//
//go:noescape
func gptqPrepZ(xf *float32, xfStride int, x *float32, sx *float32, sxStride int, coef *float32, units int, negOff float32)

// sum64 returns float32(Σ float64(v)) for len(v) a multiple of 32, in the
// order of gptqPrepZ (so that 3-bit weights, whose coefficients are built
// in Go, get the same sums).
func sum64(v []float32) float32 {
	var t float64
	for len(v) >= 32 {
		var a [4][8]float64
		for q := 0; q < 4; q++ {
			for i := 0; i < 8; i++ {
				a[q][i] = float64(v[8*q+i])
			}
		}
		var s [8]float64
		for i := range s {
			s[i] = (a[0][i] + a[1][i]) + (a[2][i] + a[3][i])
		}
		h := [4]float64{s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]}
		t += (h[0] + h[2]) + (h[1] + h[3])
		v = v[32:]
	}
	return float32(t)
}

// gptqZSet lists the AVX-512 GPTQ kernels of one bit width and number of x
// rows: c[i] column vectors (of 16) per block for f[i], widest first, and
// the 8-column kernel half.
type gptqZSet struct {
	c    []int
	f    []func(*gptqArgs)
	half func(*gptqArgs)
}

// gptqZ runs the AVX-512 fast GPTQ kernels on the 8-aligned columns
// [a0, a1) (no act-order, K and the group size multiples of 32).
//
// Every x row and every column is computed by the same sequence of float32
// operations whichever kernel takes it (the kernels differ only in how many
// rows and columns share each decoded weight vector), so the results do not
// depend on M.
func gptqZ(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, a0, a1 int) {
	K, N, bits := w.In, w.Out, w.Bits
	sub := gptqSubRows
	for w.Group%sub != 0 {
		sub /= 2
	}
	nsub := K / sub
	fk := gptqFieldK[bits]
	F := len(fk)
	units := K / 32
	coef := gptqCoef[bits]

	zp, zstride, off := zeroRows(sc, w, a0, a1)
	uniform := 0
	if w.Zeros == nil || w.ZerosUniform {
		uniform = 1
		off = float32(zeroOf(w, 0, 0))
	}
	for m := 0; m < M; m++ {
		clear(dst[m*ldd+a0 : m*ldd+a1])
	}
	nv := (a1 - a0) / 16
	half := (a1-a0)%16 != 0
	pf := gptqZPrefetch(sub/32*bits, N, a1-a0)
	for m0 := 0; m0 < M; {
		mc := gptqRowChunk(M - m0)
		ks := gptqZKernels[bits][mc]
		buf := sc.floats(units*F*mc + 2*nsub*mc)
		xf, sx := buf[:units*F*mc], buf[units*F*mc:]
		for m := 0; m < mc; m++ {
			xr := x[(m0+m)*K : (m0+m+1)*K]
			if F == 32 && sub == 32 {
				gptqPrepZ(&xf[m*F], 4*F*mc, &xr[0], &sx[2*m], 8*mc, &coef[0], units, -off)
				continue
			}
			for u := 0; u < units; u++ {
				xu := (*[32]float32)(xr[32*u : 32*u+32])
				d := xf[(u*mc+m)*F : (u*mc+m+1)*F]
				for f, k := range fk {
					d[f] = xu[k&31] * coef[f]
				}
			}
			for s := 0; s < nsub; s++ {
				t := sum64(xr[s*sub : (s+1)*sub])
				sx[2*(s*mc+m)] = -off * t
				sx[2*(s*mc+m)+1] = t
			}
		}
		a := &sc.ga
		run := func(f func(*gptqArgs), col, ncb int) {
			*a = gptqArgs{
				q: uintptr(unsafe.Pointer(&w.Data[4*col])), qstride: 4 * N,
				z: uintptr(zp) + uintptr((col-a0)*bits/8), zstride: zstride,
				s: uintptr(unsafe.Pointer(&w.Scales[2*col])), sstride: 2 * N,
				xf: uintptr(unsafe.Pointer(&xf[0])), sx: uintptr(unsafe.Pointer(&sx[0])), uniform: uniform,
				y: uintptr(unsafe.Pointer(&dst[m0*ldd+col])), ystride: 4 * ldd,
				ncb: ncb, nsub: nsub, upsub: sub / 32, subPerGroup: w.Group / sub,
				pfdist: pf,
			}
			f(a)
		}
		col, left := a0, nv
		for i, c := range ks.c {
			if n := left / c; n > 0 {
				run(ks.f[i], col, n)
				col += 16 * c * n
				left -= c * n
			}
		}
		if half {
			run(ks.half, col, 1)
		}
		runtime.KeepAlive(buf)
		m0 += mc
	}
	runtime.KeepAlive(w)
	runtime.KeepAlive(dst)
	runtime.KeepAlive(sc)
}

// Prefetch plan of the AVX-512 GPTQ kernels, which read the qweight rows
// of one sub-group (rows of them) at a time, sweeping the core's columns.
// When one sweep is small (≤ gptqZSweep bytes), the kernel prefetches the
// same columns of the next sub-group, one sweep ahead; when it is large
// (the output head: 4 rows × 64128 columns × 4 bytes = 1 MiB per core, as
// much as the L2), that would be too far ahead, and it prefetches
// gptqZAhead bytes ahead along the rows being read instead.
var (
	gptqZSweep = 64 << 10
	gptqZAhead = 2048
)

func gptqZPrefetch(rows, N, ncols int) int {
	if gptqNoPrefetch {
		return 0
	}
	if rows*4*ncols <= gptqZSweep {
		return gptqPrefetchSubs * rows * 4 * N
	}
	return gptqZAhead
}
