//go:build amd64 && !purego

package qkernels

//go:generate go run ./gen

import (
	"math"
	"runtime"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/marlin-llm/marlin/quant"
)

var hasSIMD = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

type gptqKernelSet struct {
	wide    func(*gptqArgs) // c column vectors per block
	c       int
	one     func(*gptqArgs) // one column vector per block
	actWide func(*gptqActArgs)
	actOne  func(*gptqActArgs)
}

// gptqAligned reports whether the assembly runs w: always (the list-based
// kernel takes act-order and groups that are not whole units of 32 input
// rows).
func gptqAligned(w *quant.Weight) bool { return true }

// gptqFast reports whether the fixed-mask kernels apply: no act-order
// permutation, and K and the group size multiples of 32 (so that groups
// are whole units of 32 input rows). Otherwise the list-based kernel runs.
func gptqFast(w *quant.Weight) bool {
	return w.GIdx == nil && w.In%32 == 0 && w.Group%32 == 0
}

// rowChunk picks how many x rows one kernel pass handles: up to 4 (the
// register budget); 5..8 rows are split evenly.
func rowChunk(left int) int {
	switch {
	case left <= 4:
		return left
	case left <= 6:
		return 3
	case left == 8 || left == 7:
		return 4
	}
	return 4
}

// gptqRowChunk picks the x rows of one fast GPTQ kernel pass (1–4 or 8).
func gptqRowChunk(left int) int {
	switch {
	case left >= 8:
		return 8
	case left == 7:
		return 4
	}
	return rowChunk(left)
}

// fpRowChunk picks the x rows of one row-major kernel pass (1–4, 6 or 8).
func fpRowChunk(left int) int {
	switch {
	case left <= 4:
		return left
	case left == 5:
		return 3
	case left <= 7:
		return 6
	}
	return 8
}

func gptqSIMD(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) bool {
	a0, a1 := (n0+7)&^7, n1&^7
	if a1 <= a0 {
		return false
	}
	if !gptqFast(w) {
		if ap := actPermOf(w); ap != nil && (ap.wp.Data != nil || useAVX512 && gptqUsePack) {
			// act-order sorted by group: the fast kernels on x gathered
			xp := sc.gathered(M * w.In)
			ap.gather(xp, x, M)
			gptqFastSIMD(sc, dst, ldd, xp, M, ap.wp, a0, a1)
		} else {
			gptqActSIMD(sc, dst, ldd, x, M, w, a0, a1)
		}
		if n0 < a0 {
			gptqGeneric(sc, dst, ldd, x, M, w, n0, a0)
		}
		if a1 < n1 {
			gptqGeneric(sc, dst, ldd, x, M, w, a1, n1)
		}
		return true
	}
	gptqFastSIMD(sc, dst, ldd, x, M, w, a0, a1)
	if n0 < a0 {
		gptqGeneric(sc, dst, ldd, x, M, w, n0, a0)
	}
	if a1 < n1 {
		gptqGeneric(sc, dst, ldd, x, M, w, a1, n1)
	}
	return true
}

// gptqFastSIMD runs the fixed-mask kernels (gptqFast) on the 8-aligned
// columns [a0, a1).
func gptqFastSIMD(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, a0, a1 int) {
	if useAVX512 {
		gptqZ(sc, dst, ldd, x, M, w, a0, a1)
	} else {
		gptqY(sc, dst, ldd, x, M, w, a0, a1)
	}
}

// fp4VNNI reports whether the FP4, MXFP4 or NVFP4 weight w runs on the
// e2m1 VNNI kernels of the GPTQ layout (AVX512_VNNI, groups of whole units
// of 32, at least one 8-column block; MXFP4 when every scale is an fp16
// value, mxfp4Fits; NVFP4 with its two blocks of 16 a unit scaled inside
// the kernels, gptqNKernels): it then decodes about as fast as INT4, where
// the row-major float kernels decode its codes to float32 first.
func fp4VNNI(w *quant.Weight) bool {
	if !useAVX512 || !useVNNI || w.In%32 != 0 || w.Out < 8 {
		return false
	}
	switch w.Format {
	case quant.FP4:
		return w.Group%32 == 0
	case quant.MXFP4:
		return mxfp4Fits(w)
	case quant.NVFP4:
		return true // e4m3 scales are fp16 values
	}
	return false
}

// mxfp4Fit records whether an MXFP4 weight's scales are all fp16 values.
type mxfp4Fit struct {
	scales unsafe.Pointer
	ok     bool
}

var mxfp4FitCache perWeight[mxfp4Fit]

// mxfp4Fits reports whether every e8m0 scale of the MXFP4 weight w is a
// power of two fp16 holds (2^-24 … 2^15), as the packed layout stores
// them; it looks once per weight.
func mxfp4Fits(w *quant.Weight) bool {
	return mxfp4FitCache.get(w, func(w *quant.Weight) *mxfp4Fit {
		f := &mxfp4Fit{scales: unsafe.Pointer(unsafe.SliceData(w.Scales)), ok: true}
		for _, e := range w.Scales {
			if _, ok := e8m0ToF16(e); !ok {
				f.ok = false
				break
			}
		}
		return f
	}, func(f *mxfp4Fit, w *quant.Weight) bool { return f.scales == unsafe.Pointer(unsafe.SliceData(w.Scales)) }).ok
}

// e8m0ToF16 returns the fp16 bits of the e8m0 scale e (2^(e−127)) and
// whether fp16 holds it exactly.
func e8m0ToF16(e uint8) (uint16, bool) {
	k := int(e) - 127
	switch {
	case e == 0xff || k < -24 || k > 15:
		return 0, false
	case k < -14:
		return 1 << uint(k+24), true // subnormal
	}
	return uint16(k+15) << 10, true
}

// preparePacked makes the kernels' copies of a GPTQ or FP4 weight w now:
// an act-order weight's sorted form, and the packed copy when the kernels
// will read it (the fast kernels, AVX-512 or AVX2, at least one 8-column
// block; FP4 on the e2m1 VNNI kernels).
func preparePacked(w *quant.Weight) bool {
	copied := false
	if ap := actPermOf(w); ap != nil {
		w, copied = ap.wp, true
	}
	if fp4VNNI(w) {
		gptqPackOf(w)
		return true
	}
	if w.Format != quant.GPTQ {
		return false
	}
	if gptqPackable(w) {
		gptqPackOf(w)
		return true
	}
	return copied
}

// gptqY runs the AVX2 fast GPTQ kernels on the 8-aligned columns [a0, a1),
// on the packed copy (one forward stream a column tile; with AVX-512 off on
// dev-cpu INT4 g32 decode +25%, g128 +20%, docs/perf.md) or, with
// gptqUseYPack off, the checkpoint layout.
func gptqY(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, a0, a1 int) {
	K, N, bits := w.In, w.Out, w.Bits
	// Sub-groups of gptqSubRows input rows (bits qweight rows per 32): each
	// column block reads sub·bits/32 rows, which are the concurrent streams
	// of the walk; few streams keep the prefetchers and DRAM pages effective
	// (measured: 32 rows beat 128 for int4 and int8 once the weights come
	// from DRAM), at the price of one epilogue per sub-group.
	sub := gptqSubRows
	for w.Group%sub != 0 {
		sub /= 2
	}
	nsub := K / sub
	fk := gptqFieldK[bits]
	F := len(fk)
	units := K / 32

	pk := gptqPackY(w)
	zp, zstride, off, uniform := zeroPoints(sc, w, pk, a0, a1)
	for m := 0; m < M; m++ {
		clear(dst[m*ldd+a0 : m*ldd+a1])
	}
	ncv := (a1 - a0) / 8
	for m0 := 0; m0 < M; {
		mc := gptqRowChunk(M - m0)
		ks := gptqKernels[bits][mc]
		bc := 1 // floats per coefficient: 8 when pre-broadcast (mc > 4)
		if mc > 4 {
			bc = 8
		}
		buf := sc.floats(units*F*mc*bc + 2*nsub*mc)
		xf, sx := buf[:units*F*mc*bc], buf[units*F*mc*bc:]
		coef := gptqCoef[bits]
		for m := 0; m < mc; m++ {
			xr := x[(m0+m)*K : (m0+m+1)*K]
			for u := 0; u < units; u++ {
				xu := (*[32]float32)(xr[32*u : 32*u+32])
				d := xf[u*F*mc*bc:]
				if mc == 1 {
					d = d[:F]
					for f, k := range fk[:len(d)] {
						d[f] = xu[k&31] * coef[f]
					}
					continue
				}
				for f := 0; f < F; f++ {
					v := xu[fk[f]&31] * coef[f]
					if bc == 1 {
						d[f*mc+m] = v
						continue
					}
					e := d[(f*mc+m)*8 : (f*mc+m)*8+8]
					for i := range e {
						e[i] = v
					}
				}
			}
			for s := 0; s < nsub; s++ {
				var t float64
				for _, v := range xr[s*sub : (s+1)*sub] {
					t += float64(v)
				}
				sx[2*(s*mc+m)] = -off * float32(t)
				sx[2*(s*mc+m)+1] = float32(t)
			}
		}
		a := &sc.ga
		if pk != nil {
			// the packed copy (pack512_amd64.go), walked as gptqZ walks it
			pf, spf := pk.ahead()
			pk.runs(a0, a1, N, func(r tileRun) {
				nv := (r.c1 - r.c0) / 8
				nw := nv / ks.c
				col := r.c0
				for _, part := range []struct {
					f   func(*gptqArgs)
					ncb int
					c   int
				}{{ks.wide, nw, ks.c}, {ks.one, nv - nw*ks.c, 1}} {
					if part.ncb == 0 {
						continue
					}
					*a = gptqArgs{
						xf: uintptr(unsafe.Pointer(&xf[0])), sx: uintptr(unsafe.Pointer(&sx[0])), uniform: uniform,
						y: uintptr(unsafe.Pointer(&dst[m0*ldd+col])), ystride: 4 * ldd,
						ncb: part.ncb, nsub: nsub, upsub: sub / 32, subPerGroup: w.Group / sub,
						pfdist: pf, spf: spf, zpf: spf,
					}
					r.layout(a, col, bits)
					part.f(a)
					col += 8 * part.ncb * part.c
				}
			})
			runtime.KeepAlive(pk)
		} else {
			nwide := ncv / ks.c
			done := 0
			for _, part := range []struct {
				f   func(*gptqArgs)
				ncb int
				c   int
			}{{ks.wide, nwide, ks.c}, {ks.one, ncv - nwide*ks.c, 1}} {
				if part.ncb == 0 {
					continue
				}
				col := a0 + 8*done
				*a = gptqArgs{
					q: uintptr(unsafe.Pointer(&w.Data[4*col])), qstride: 4 * N,
					z: uintptr(zp) + uintptr((col-a0)*bits/8), zstride: zstride,
					s: uintptr(unsafe.Pointer(&w.Scales[2*col])), sstride: 2 * N,
					xf: uintptr(unsafe.Pointer(&xf[0])), sx: uintptr(unsafe.Pointer(&sx[0])), uniform: uniform,
					y: uintptr(unsafe.Pointer(&dst[m0*ldd+col])), ystride: 4 * ldd,
					ncb: part.ncb, nsub: nsub, upsub: sub / 32, subPerGroup: w.Group / sub,
					pfdist: gptqPrefetchDist(sub / 32 * bits * 4 * N), ntiles: 1,
				}
				part.f(a)
				done += part.ncb * part.c
			}
		}
		runtime.KeepAlive(xf)
		m0 += mc
	}
	runtime.KeepAlive(w)
	runtime.KeepAlive(dst)
	runtime.KeepAlive(sc)
}

// gptqSubRows is the sub-group size (input rows) of the fast GPTQ kernels.
var gptqSubRows = 32

// gptqNoPrefetch switches the GPTQ kernels' software prefetch of the next
// sub-group off (the prefetches then hit the rows being read); for
// benchmarks.
var gptqNoPrefetch = false

// gptqPrefetchSubs is how many sub-groups ahead the fast GPTQ kernels
// prefetch.
var gptqPrefetchSubs = 1

func gptqPrefetchDist(d int) int {
	if gptqNoPrefetch {
		return 0
	}
	return d * gptqPrefetchSubs
}

// gptqCoef[bits][f] = 2^gptqFieldExp[bits][f].
var gptqCoef = func() map[int][]float32 {
	m := map[int][]float32{}
	for bits, es := range gptqFieldExp {
		c := make([]float32, len(es))
		for i, e := range es {
			c[i] = float32(math.Ldexp(1, int(e)))
		}
		m[bits] = c
	}
	return m
}()

// zeroPoints returns what the fast GPTQ kernels take of w's zero points
// for the columns [a0, a1): with uniform zero points (uniform = 1) the
// initial sum is −off·Σx and the epilogue skips them (off includes
// ZeroOffset); else the zero-point rows (zeroRows; with the packed copy pk
// the kernels read its own, and the checkpoint's pages may have been
// released) and off the offset added to each.
func zeroPoints(sc *scratch, w *quant.Weight, pk *gptqPacked, a0, a1 int) (zp unsafe.Pointer, zstride int, off float32, uniform int) {
	if pk != nil {
		if !pk.zeros {
			uniform = 1
		}
		return nil, 0, pk.zero, uniform
	}
	zp, zstride, off = zeroRows(sc, w, a0, a1)
	if w.Zeros == nil || w.ZerosUniform {
		return zp, zstride, float32(zeroOf(w, 0, 0)), 1
	}
	return zp, zstride, off, 0
}

// zeroRows returns the qzeros bytes of column a0 (group 0), the stride
// between groups and the zero offset; for a symmetric weight without stored
// zero points it synthesizes one row holding 2^(bits−1) (stride 0, offset 0).
func zeroRows(sc *scratch, w *quant.Weight, a0, a1 int) (unsafe.Pointer, int, float32) {
	bits := w.Bits
	if w.Zeros != nil {
		return unsafe.Pointer(&w.Zeros[a0*bits/8]), 4 * ((w.Out*bits + 31) / 32), float32(w.ZeroOffset)
	}
	zb := sc.bytes(((a1-a0)*bits+7)/8 + 8)
	clear(zb)
	z := uint64(1) << uint(bits-1)
	for j := 0; j < a1-a0; j++ {
		p := j * bits
		for b := 0; b < bits; b++ {
			if z>>uint(b)&1 != 0 {
				zb[(p+b)/8] |= 1 << uint((p+b)%8)
			}
		}
	}
	return unsafe.Pointer(&zb[0]), 0, 0
}

// gptqActSIMD runs the act-order kernels on the 8-aligned columns [a0, a1).
func gptqActSIMD(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, a0, a1 int) {
	K, N, bits := w.In, w.Out, w.Bits
	groups := K / w.Group
	zp, zstride, off := zeroRows(sc, w, a0, a1)
	ints := sc.ints(4*K + 2*groups + 1)
	list, cnt, pos := ints[:4*K], ints[4*K:4*K+groups], ints[4*K+groups:]
	clear(cnt)
	for k := 0; k < K; k++ {
		cnt[groupOf(w, k)]++
	}
	pos[0] = 0
	for g := 1; g < groups; g++ {
		pos[g] = pos[g-1] + cnt[g-1]
	}
	order := sc.intsAux(K) // list position → k, as float32 bits of an int
	for k := 0; k < K; k++ {
		g := groupOf(w, k)
		i := pos[g]
		pos[g]++
		p := k * bits
		r, sh := p>>5, p&31
		r2 := r
		if sh+bits > 32 {
			r2 = r + 1
		}
		list[4*i], list[4*i+1], list[4*i+2], list[4*i+3] = int32(r), int32(sh), int32(r2), int32(32-sh)
		order[i] = int32(k)
	}
	for m := 0; m < M; m++ {
		clear(dst[m*ldd+a0 : m*ldd+a1])
	}
	ncv := (a1 - a0) / 8
	for m0 := 0; m0 < M; {
		mc := rowChunk(M - m0)
		ks := gptqKernels[bits][mc]
		buf := sc.floats(K*mc + 2*groups*mc)
		xl, sx := buf[:K*mc], buf[K*mc:]
		clear(sx)
		for i := 0; i < K; i++ {
			k := int(order[i])
			g := groupOf(w, k)
			for m := 0; m < mc; m++ {
				v := x[(m0+m)*K+k]
				xl[i*mc+m] = v
				sx[2*(g*mc+m)+1] += v
			}
		}
		for j := 0; j < groups*mc; j++ {
			sx[2*j] = -off * sx[2*j+1]
		}
		nwide := ncv / ks.c
		done := 0
		for _, part := range []struct {
			f   func(*gptqActArgs)
			ncb int
			c   int
		}{{ks.actWide, nwide, ks.c}, {ks.actOne, ncv - nwide*ks.c, 1}} {
			if part.ncb == 0 {
				continue
			}
			col := a0 + 8*done
			a := &sc.aa
			*a = gptqActArgs{
				q: uintptr(unsafe.Pointer(&w.Data[4*col])), qstride: 4 * N,
				z: uintptr(zp) + uintptr((col-a0)*bits/8), zstride: zstride,
				s: uintptr(unsafe.Pointer(&w.Scales[2*col])), sstride: 2 * N,
				list: uintptr(unsafe.Pointer(&list[0])), xl: uintptr(unsafe.Pointer(&xl[0])),
				sx: uintptr(unsafe.Pointer(&sx[0])), cnt: uintptr(unsafe.Pointer(&cnt[0])),
				y: uintptr(unsafe.Pointer(&dst[m0*ldd+col])), ystride: 4 * ldd,
				ncb: part.ncb, qrows: K * bits / 32, groups: groups,
				cnt0: uintptr(unsafe.Pointer(&cnt[0])),
			}
			part.f(a)
			done += part.ncb * part.c
		}
		runtime.KeepAlive(buf)
		m0 += mc
	}
	runtime.KeepAlive(ints)
	runtime.KeepAlive(order)
	runtime.KeepAlive(w)
	runtime.KeepAlive(dst)
}

// fpKind names the row-major kernel family for w, or "" if none applies.
func fpKind(w *quant.Weight) string {
	switch w.Format {
	case quant.FP8:
		return "f8"
	case quant.NVFP4:
		return "nv"
	case quant.MXFP4:
		return "mx"
	case quant.FP4:
		if w.Group == 32 {
			return "f4s"
		}
		if w.Group%64 == 0 {
			return "f4b"
		}
	}
	return ""
}

var one = float32(1)

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// fpMinK returns the smallest input count the row-major assembly takes:
// one unit of the AVX-512 kernels (fpUnit), 64 inputs for AVX2.
func fpMinK(w *quant.Weight) int {
	if useAVX512 {
		return fpUnit(w)
	}
	return 64
}

func fpSIMD(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) bool {
	if a0, a1 := (n0+7)&^7, n1&^7; fp4VNNI(w) && a0 < a1 {
		// the 8-aligned columns on the e2m1 VNNI kernels, the others
		// (also at every M) on the row-major ones
		gptqZ(sc, dst, ldd, x, M, w, a0, a1)
		for _, r := range [][2]int{{n0, a0}, {a1, n1}} {
			if r[0] < r[1] && !fpZ(sc, dst, ldd, x, M, w, r[0], r[1]) {
				fpGeneric(sc, dst, ldd, x, M, w, r[0], r[1], 0)
			}
		}
		return true
	}
	if useAVX512 {
		return fpZ(sc, dst, ldd, x, M, w, n0, n1)
	}
	return fpY(sc, dst, ldd, x, M, w, n0, n1)
}

// fpY runs the AVX2 row-major kernels.
func fpY(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) bool {
	kind := fpKind(w)
	K := w.In
	if kind == "" || K < 64 {
		return false
	}
	nch := K / 64
	kc := 64 * nch
	elem := fpElem[kind]
	rowBytes := K / 2
	var sstride int
	var sp unsafe.Pointer
	rs, rsstride, post := unsafe.Pointer(&one), 0, float32(1)
	switch w.Format {
	case quant.FP8:
		rowBytes = K
		sp = unsafe.Pointer(&w.Scales[0])
		rs, rsstride, post = unsafe.Pointer(&w.Scales[4*n0]), 4, 256
	case quant.FP4:
		sstride = 2 * (K / w.Group)
	case quant.MXFP4:
		sstride = K / 32
	case quant.NVFP4:
		sstride = K / 16
		post = w.GlobalScale
	}
	if w.Format != quant.FP8 {
		sp = unsafe.Pointer(&w.Scales[n0*sstride])
	}
	// x in decode order, one block per row chunk: [chunk][vector][mc][8]
	xp := sc.floats(nch * 64 * M)
	type rowChunk struct{ m0, mc int }
	var chunksBuf [16]rowChunk
	chunks := chunksBuf[:0]
	for m0 := 0; m0 < M; {
		mc := fpRowChunk(M - m0)
		chunks = append(chunks, rowChunk{m0, mc})
		xc := xp[nch*64*m0 : nch*64*(m0+mc)]
		for m := 0; m < mc; m++ {
			xr := x[(m0+m)*K : (m0+m)*K+kc]
			for c := 0; c < nch; c++ {
				src := xr[64*c : 64*c+64]
				base := c * 64 * mc
				for v := 0; v < 8; v++ {
					o := base + (v*mc+m)*8
					e := elem[8*v : 8*v+8]
					d := xc[o : o+8]
					for i := range d {
						d[i] = src[e[i]]
					}
				}
			}
		}
		m0 += mc
	}
	// With several x rows the inputs are tiled (tile chunks of 64) so that
	// the x tile of a row chunk stays in L1 while all weight rows pass.
	tile := nch
	if M > 1 {
		cpg := max(1, w.Group/64)
		tile = 8 * cpg / gcd(8, cpg)
	}
	sPerChunk := 0 // scale bytes per chunk
	switch kind {
	case "nv":
		sPerChunk = 4
	case "mx":
		sPerChunk = 2
	case "f4s":
		sPerChunk = 4
	}
	for t0 := 0; t0 < nch; t0 += tile {
		for _, ch := range chunks {
			tc := min(tile, nch-t0)
			if ch.mc == 1 {
				// the one-row kernels store their sums (no accum): one call
				// over every chunk
				if t0 > 0 {
					continue
				}
				tc = nch
			}
			soff := uintptr(t0 * sPerChunk)
			if kind == "f4b" {
				soff = uintptr(2 * (t0 * 64 / w.Group))
			}
			a := &sc.fa
			*a = fpArgs{
				w: uintptr(unsafe.Pointer(&w.Data[n0*rowBytes])) + uintptr(t0*64*rowBytes/K), wstride: rowBytes,
				s: uintptr(sp) + soff, sstride: sstride,
				xp: uintptr(unsafe.Pointer(&xp[nch*64*ch.m0+t0*64*ch.mc])),
				y:  uintptr(unsafe.Pointer(&dst[ch.m0*ldd+n0])), ystride: 4 * ldd,
				nrows: n1 - n0, nchunks: tc,
				rs: uintptr(rs), rsstride: rsstride, post: post, cpg: max(1, w.Group/64),
			}
			if t0 > 0 {
				a.accum = 1
			}
			fpKernels[kind][ch.mc](a)
		}
	}
	runtime.KeepAlive(xp)
	runtime.KeepAlive(w)
	runtime.KeepAlive(dst)
	if kc < K {
		fpGeneric(sc, dst, ldd, x, M, w, n0, n1, kc)
	}
	return true
}
