//go:build amd64 && !purego

package qkernels

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// hasAVX512 reports whether the AVX-512 kernels (qkernels512_amd64.s) can
// run: AVX-512 F, BW, VL and DQ (x/sys/cpu sets them only when the OS saves
// the zmm and opmask state) on top of what the AVX2 kernels need.
var hasAVX512 = hasSIMD && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ

// useAVX512 selects the AVX-512 kernels where they exist; the tests switch
// it off to cover the AVX2 ones.
var useAVX512 = hasAVX512

// gptqPrepTab describes the fields of a unit for gptqPrepZ: field f
// multiplies x[32u + k[f]] by coef[f] (k and coef padded to 48 entries),
// mask3 is the lane mask of fields 32..47 (0 when there are 32 fields).
type gptqPrepTab struct {
	k     [48]int32
	coef  [48]float32
	mask3 uint16
}

// gptqPrepTabs[bits] are the field tables of the bit widths.
var gptqPrepTabs = func() map[int]*gptqPrepTab {
	m := map[int]*gptqPrepTab{}
	for bits, fk := range gptqFieldK {
		t := &gptqPrepTab{}
		for f, k := range fk {
			t.k[f] = int32(k)
			t.coef[f] = gptqCoef[bits][f]
		}
		t.mask3 = uint16(1)<<uint(len(fk)-32) - 1
		m[bits] = t
	}
	return m
}()

// gptqPrepZ computes the x coefficients [unit][row][field] and the
// per-unit sums of one x row (prep512_amd64.s).
//
//go:noescape
func gptqPrepZ(xf *float32, xfStride int, x *float32, sx *float32, sxStride int, tab *gptqPrepTab, units int, negOff float32)

// hasVNNI reports whether the 2-, 4- and 8-bit GPTQ kernels (3-bit: also
// hasVBMI) and the e2m1 formats' can take their integer form
// (AVX512_VNNI: VPDPBUSD), and useVNNI selects it (the tests switch it
// off to cover the float kernels; GODEBUG=cpu.avx512vnni=off does for a
// process). On Zen 4 it prefills 30–35% faster and decodes batches of 2–4
// rows 20–35% faster; one-row decode streams level with the float form in
// one process but measured ~7% lower end to end (docs/perf.md).
var (
	hasVNNI = hasAVX512 && cpu.X86.HasAVX512VNNI
	useVNNI = hasVNNI
	// hasVBMI: the 3-bit VNNI kernels' VPMULTISHIFTQB and VPSHRDD
	hasVBMI = hasVNNI && cpu.X86.HasAVX512VBMI && cpu.X86.HasAVX512VBMI2
)

// gptqVPrepZ computes the x blocks [unit][row] of one x row for the VNNI
// kernels, byte p of each digit array holding input order[p] of its unit
// (gptqVOrders), and the per-unit sums (prep512_amd64.s).
//
//go:noescape
func gptqVPrepZ(xd *byte, xdStride int, x *float32, order *[32]int32, sx *float32, sxStride int, units int, negOff float32)

// gptqVOrders[bits] is the codes' order in a unit's qweight rows, the
// order of the VNNI kernels' x digits: byte p = 4q + b of a digit array is
// byte b of dword q = P·r + j, plane j (the j-th code of each byte, P =
// 8/bits planes) of qweight row r, which holds input (32/bits)·r +
// (8/bits)·b + j. For 4 bits: the even inputs 8r, 8r+2, 8r+4, 8r+6 (the
// low nibbles of the code bytes), then the odd ones.
//
// For 3 bits the planes hold codes 4q … 4q+3 (gen: gptq3Planes), and
// for 8 bits dword q of a row's column is inputs 4q … 4q+3, so the order
// is the inputs' own.
var gptqVOrders = func() map[int]*[32]int32 {
	m := map[int]*[32]int32{}
	var id [32]int32
	for p := range id {
		id[p] = int32(p)
	}
	m[3], m[8] = &id, &id
	for _, bits := range []int32{2, 4} {
		var o [32]int32
		P := 8 / bits
		for p := range int32(32) {
			q, b := p/4, p%4
			r, j := q/P, q%P
			o[p] = 32/bits*r + 8/bits*b + j
		}
		m[int(bits)] = &o
	}
	return m
}()

// gptqVRowChunk picks the x rows of one VNNI kernel pass (1–4).
func gptqVRowChunk(left int) int { return min(left, 4) }

// sum64 returns float32(Σ float64(v)) for len(v) a multiple of 32, each 32
// summed in the order of gptqPrepZ (for sub-groups of 64 or 128 rows, an
// experiment of the benchmarks).
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

// directKey is the key of gptqDKernels and gptqTwoStreams for bits-bit
// codes (fp: e2m1 codes) with zero points of their own or not, or "" where
// there is no direct form.
func directKey(bits int, fp, zeros bool) string {
	switch {
	case fp:
		return "f4"
	case bits == 4 && zeros:
		return "z4"
	case bits == 4:
		return "v4"
	case bits == 8 && zeros:
		return "z8"
	case bits == 8:
		return "v8"
	case bits == 2 && !zeros:
		return "v2"
	case bits == 3 && !zeros:
		return "v3"
	}
	return ""
}

// gptqUseDirect selects the direct form of the VNNI kernels
// on the packed copy (gptqDKernels, gptqTwoStreams; tests and benchmarks
// compare without).
var gptqUseDirect = true

// gptqZ runs the AVX-512 fast GPTQ kernels on the 8-aligned columns
// [a0, a1) (no act-order, K and the group size multiples of 32).
//
// Every x row and every column is computed by the same sequence of float32
// operations whichever kernel takes it (the kernels differ only in how many
// rows and columns share each decoded weight vector), so the results do not
// depend on M. 2-, 3-, 4- and 8-bit weights on CPUs with VNNI take the
// integer kernels (gptqVKernels, x blocks from gptqVPrepZ) at every M,
// which keep that property: their digit sums are exact integers (8-bit:
// combined in float32 in a fixed order). On the packed copy they take
// the direct form (gptqDKernels), two column tiles at once for one x row
// where the tiles are 32 columns wide (gptqTwoStreams).
//
// FP4, MXFP4 and NVFP4 weights (fp4VNNI) run here too, from their packed
// copy in this layout (newGptqPacked), on the e2m1 VNNI kernels
// (gptqFKernels; NVFP4 gptqNKernels): no zero points, and each x block's
// factor halved (NVFP4: times the global scale too) and its sums of X
// multiplied by 12 as those kernels expect (gen/gptq512.go).
func gptqZ(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, a0, a1 int) {
	K, N, bits := w.In, w.Out, packedBits(w)
	fp := isE2M1(w.Format)
	nvfp4 := w.Format == quant.NVFP4
	group := packedGroup(w)
	sub := gptqSubRows
	for group%sub != 0 {
		sub /= 2
	}
	nsub := K / sub
	fk := gptqFieldK[bits]
	F := len(fk)
	units := K / 32
	coef := gptqCoef[bits]

	var pk *gptqPacked
	pkpf, pkspf := 0, 0
	if gptqUsePack || fp {
		pk = gptqPackOf(w)
		pkpf, pkspf = pk.ahead()
	}
	var zp unsafe.Pointer
	var zstride int
	var off float32
	uniform := 1
	if !fp {
		zp, zstride, off, uniform = zeroPoints(sc, w, pk, a0, a1)
	}
	for m := 0; m < M; m++ {
		clear(dst[m*ldd+a0 : m*ldd+a1])
	}
	nv := (a1 - a0) / 16
	half := (a1-a0)%16 != 0
	pf := gptqZPrefetch(sub/32*bits, N, a1-a0)
	vnni := (bits == 4 || bits == 8 || bits == 2 || bits == 3 && hasVBMI) && useVNNI || fp
	for m0 := 0; m0 < M; {
		var mc int
		var ks, ds gptqZSet
		var dkey string
		var buf, xf, sx []float32
		if vnni {
			// x blocks of 128 bytes a unit and row (gptqVPrepZ), the
			// unit sums after them
			mc = gptqVRowChunk(M - m0)
			switch {
			case nvfp4:
				ks = gptqNKernels[mc]
			case fp:
				ks = gptqFKernels[mc]
			default:
				ks = gptqVKernels[bits][mc]
			}
			dkey = directKey(bits, fp, uniform == 0)
			if pk != nil && gptqUseDirect && sub == 32 && !nvfp4 && dkey != "" {
				ds = gptqDKernels[dkey][mc]
			}
			buf = sc.floats(34 * units * mc)
			xf, sx = buf[:32*units*mc], buf[32*units*mc:]
			for m := 0; m < mc; m++ {
				xr := x[(m0+m)*K : (m0+m+1)*K]
				gptqVPrepZ((*byte)(unsafe.Pointer(&xf[32*m])), 128*mc, &xr[0], gptqVOrders[bits], &sx[2*m], 8*mc, units, -off)
				if fp {
					// the kernels sum 12 + 2·v: half the factor, 12·ΣX off
					// (NVFP4: of each half; the global scale in the factor)
					f := float32(0.5)
					if nvfp4 {
						f *= w.GlobalScale
					}
					for i := 32 * m; i < len(xf); i += 32 * mc {
						xf[i+24] *= f
						for s := 25; s < 28; s++ {
							sum := (*int32)(unsafe.Pointer(&xf[i+s]))
							*sum *= 12
						}
					}
				}
			}
		} else {
			mc = gptqRowChunk(M - m0)
			ks = gptqZKernels[bits][mc]
			buf = sc.floats(units*F*mc + 2*nsub*mc)
			xf, sx = buf[:units*F*mc], buf[units*F*mc:]
			for m := 0; m < mc; m++ {
				xr := x[(m0+m)*K : (m0+m+1)*K]
				if sub == 32 {
					gptqPrepZ(&xf[m*F], 4*F*mc, &xr[0], &sx[2*m], 8*mc, gptqPrepTabs[bits], units, -off)
					continue
				}
				for u := 0; u < units; u++ {
					xu := (*[32]float32)(xr[32*u : 32*u+32])
					d := xf[(u*mc+m)*F : (u*mc+m+1)*F]
					for f, k := range fk {
						d[f] = xu[k&31] * coef[f]
					}
				}
			}
		}
		if sub != 32 {
			// sums of the longer sub-groups (over the VNNI prep's unit
			// sums: there are no more sub-groups than units)
			for m := 0; m < mc; m++ {
				xr := x[(m0+m)*K : (m0+m+1)*K]
				for s := 0; s < nsub; s++ {
					t := sum64(xr[s*sub : (s+1)*sub])
					sx[2*(s*mc+m)] = -off * t
					sx[2*(s*mc+m)+1] = t
				}
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
				ncb: ncb, nsub: nsub, upsub: sub / 32, subPerGroup: group / sub,
				pfdist: pf,
				spf:    2 * N, zpf: zstride, ntiles: 1,
			}
			f(a)
		}
		if pk != nil {
			// one call per column tile (and kernel width): each reads its
			// tile's stream from the first group to the last
			pk.runs(a0, a1, N, func(r tileRun) {
				// runP calls f on the run's columns from col, ncb blocks;
				// h ≥ 1: a two-stream kernel, the second stream h tiles on
				runP := func(f func(*gptqArgs), col, ncb, h int) {
					*a = gptqArgs{
						xf: uintptr(unsafe.Pointer(&xf[0])), sx: uintptr(unsafe.Pointer(&sx[0])), uniform: uniform,
						y: uintptr(unsafe.Pointer(&dst[m0*ldd+col])), ystride: 4 * ldd,
						ncb: ncb, nsub: nsub, upsub: sub / 32, subPerGroup: group / sub,
						pfdist: pkpf, spf: pkspf, zpf: pkspf, ngroups: nsub / (group / sub),
						qdelta: h * pk.G * pk.full, ydelta: 4 * h * pk.T,
					}
					r.layout(a, col, bits)
					f(a)
				}
				if two := gptqTwoStreams[dkey]; mc == 1 && ds.f != nil && two != nil && pk.T == 32 && r.nt >= 2 {
					// two streams (gptqTwoStreams): tiles t … t+h−1 beside
					// t+h … t+2h−1, then the odd one out alone
					h, nt := r.nt/2, r.nt
					r.nt = h
					runP(two, r.c0, 1, h)
					if nt%2 == 0 {
						return
					}
					r.t0 += 2 * h * pk.T
					r.c0, r.c1, r.nt = r.t0, r.t0+pk.T, 1
					r.base += uintptr(2 * h * pk.G * pk.full)
				}
				col, left := r.c0, (r.c1-r.c0)/16
				for i, c := range ks.c {
					if n := left / c; n > 0 {
						f := ks.f[i]
						if ds.f != nil {
							f = ds.f[i]
						}
						runP(f, col, n, 0)
						col += 16 * c * n
						left -= c * n
					}
				}
				if (r.c1-r.c0)%16 != 0 {
					runP(ks.half, col, 1, 0)
				}
			})
		} else {
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
		}
		runtime.KeepAlive(buf)
		m0 += mc
	}
	runtime.KeepAlive(w)
	runtime.KeepAlive(pk)
	runtime.KeepAlive(dst)
	runtime.KeepAlive(sc)
}

// Prefetch plan of the AVX-512 GPTQ kernels on the checkpoint layout
// (the packed copy prefetches gptqPackAhead bytes along its stream), which
// read the qweight rows of one sub-group (rows of them) at a time, sweeping
// the core's columns.
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

// fpPrepZ stores one x row in the element order of the AVX-512 e2m1
// kernels (prep512_amd64.s): for each span s of 128 inputs,
// xp[128s + 16j + l] = x[128s + 8l + j].
//
//go:noescape
func fpPrepZ(xp *float32, x *float32, nspans int)

// fpUnit returns the inputs a unit of the AVX-512 row-major kernels
// covers: a span of 128 for the e2m1 formats, a chunk of 64 for FP8.
func fpUnit(w *quant.Weight) int {
	if w.Format == quant.FP8 {
		return 64
	}
	return 128
}

// fpPanelMinM is the smallest M that packs decoded weight panels for
// kernels.PanelGEMM (the prefill path: each weight is decoded once per
// call); smaller batches use the matrix-vector kernels, which decode each
// chunk once per 4 x rows. Both add in the same order, so it is a speed
// choice only.
var fpPanelMinM = 8

// fpZBlock returns the units (fpUnit) per K block of the AVX-512
// row-major kernels: nu units are cut into equal blocks of at most 1024
// inputs (the dense kernels' blocks), each starting on a new FP4 scale
// (groups of 64·j: a multiple of the scale's length). It depends only on
// the weight.
func fpZBlock(w *quant.Weight, nu int) int {
	unit := fpUnit(w)
	m := 1 // units per block must be a multiple of m
	if w.Format == quant.FP4 && w.Group%64 == 0 {
		m = w.Group / gcd(w.Group, unit)
	}
	nkb := (nu*unit + 1023) / 1024
	b := (nu + nkb - 1) / nkb
	return (b + m - 1) / m * m
}

// fpZ runs the AVX-512 row-major kernels on rows [n0, n1): the weights are
// decoded exactly and summed in the order of the dense AVX-512 kernels
// (K blocks of fpZBlock units, two chains per block), then the inputs
// past the last whole unit are added and the row's factor applied, the
// same way for every M (see gen/fp512.go).
func fpZ(sc *scratch, dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) bool {
	kind := fpKind(w)
	K := w.In
	unit := fpUnit(w)
	if kind == "" || K < unit {
		return false
	}
	nu := K / unit
	rowBytes := K / 2
	sstride, sPerUnit := 0, 0 // scale bytes per row, per unit (FP4 g64·j: see soff)
	switch w.Format {
	case quant.FP8:
		rowBytes = K
	case quant.FP4:
		sstride, sPerUnit = 2*(K/w.Group), 8
	case quant.MXFP4:
		sstride, sPerUnit = K/32, 4
	case quant.NVFP4:
		sstride, sPerUnit = K/16, 8
	}
	cpg := 0 // FP4 with groups of 64·j: spans (f4b) or half spans (f4h) a scale
	if kind == "f4b" {
		cpg = w.Group / 64
		if w.Group%128 == 0 {
			cpg = w.Group / 128
		} else {
			kind = "f4h"
		}
	}
	bu := fpZBlock(w, nu)
	nr := n1 - n0
	wp := unsafe.Pointer(&w.Data[n0*rowBytes])
	sp := unsafe.Pointer(&w.Scales[0])
	if w.Format != quant.FP8 {
		sp = unsafe.Pointer(&w.Scales[n0*sstride])
	}
	// x in the kernels' element order (e2m1: see fpPrepZ)
	xz, ldx := x, K
	if w.Format != quant.FP8 {
		xz = sc.floats2(M * unit * nu)
		ldx = unit * nu
		for m := 0; m < M; m++ {
			fpPrepZ(&xz[m*ldx], &x[m*K], nu)
		}
	}
	if M < fpPanelMinM {
		for m0 := 0; m0 < M; {
			mc := min(4, M-m0)
			a := &sc.ga2
			*a = fpgArgs{
				w: uintptr(wp), wstride: rowBytes, s: uintptr(sp), sstride: sstride,
				x: uintptr(unsafe.Pointer(&xz[m0*ldx])), xstride: 4 * ldx,
				y: uintptr(unsafe.Pointer(&dst[m0*ldd+n0])), ystride: 4 * ldd,
				nrows: nr, nchunks: nu, bchunks: bu, cpg: cpg,
			}
			if mc == 1 && nr >= 2 {
				// two weight rows at a time, then the odd one
				a.nrows = nr / 2
				fpgKernels[kind][-2](a)
				if nr%2 != 0 {
					*a = fpgArgs{
						w: uintptr(wp) + uintptr((nr-1)*rowBytes), wstride: rowBytes,
						s: uintptr(sp) + uintptr((nr-1)*sstride), sstride: sstride,
						x: uintptr(unsafe.Pointer(&xz[m0*ldx])), xstride: 4 * ldx,
						y: uintptr(unsafe.Pointer(&dst[m0*ldd+n1-1])), ystride: 4 * ldd,
						nrows: 1, nchunks: nu, bchunks: bu, cpg: cpg,
					}
					fpgKernels[kind][1](a)
				}
			} else {
				fpgKernels[kind][mc](a)
			}
			m0 += mc
		}
	} else {
		// panels of up to fpPanelRows weight rows, one K block at a time
		const fpPanelRows = 120
		panel := sc.floats(fpPanelRows * unit * bu)
		zero := sc.bytes(64*bu + 64)
		clear(zero)
		a := &sc.pa
		for u0 := 0; u0 < nu; u0 += bu {
			bc := min(bu, nu-u0)
			gfl := 4 * unit * bc // floats per panel group of 4 rows: PanelGEMM's [⌈k/16⌉][4][16] for this block's k
			soff := u0 * sPerUnit
			if cpg > 0 {
				soff = 2 * (u0 * unit / w.Group) // blocks start on a new scale
			}
			for jc := 0; jc < nr; jc += fpPanelRows {
				nb := min(fpPanelRows, nr-jc)
				for g := 0; 4*g < nb; g++ {
					*a = fppArgs{panel: uintptr(unsafe.Pointer(&panel[g*gfl])), nchunks: bc, cpg: cpg}
					for j := range a.w {
						r := jc + 4*g + j
						if r < nb+jc {
							a.w[j] = uintptr(wp) + uintptr(r*rowBytes+u0*unit*rowBytes/K)
							a.s[j] = uintptr(sp) + uintptr(r*sstride+soff)
						} else {
							a.w[j] = uintptr(unsafe.Pointer(&zero[0]))
							a.s[j] = uintptr(unsafe.Pointer(&zero[0]))
						}
					}
					fppKernels[kind](a)
				}
				kernels.PanelGEMM(dst[n0+jc:], ldd, xz[u0*unit:], ldx, M, unit*bc, panel, nb, u0 > 0)
			}
		}
		runtime.KeepAlive(zero)
		runtime.KeepAlive(panel)
	}
	runtime.KeepAlive(w)
	runtime.KeepAlive(xz)
	runtime.KeepAlive(dst)
	fpZFinish(dst, ldd, x, M, w, n0, n1, unit*nu)
	return true
}

// fpZFinish adds the inputs [k0, K) (the part of K past the last whole
// chunk) and applies each row's factor: the same code for every M.
func fpZFinish(dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1, k0 int) {
	K := w.In
	post := float32(1)
	switch w.Format {
	case quant.FP8:
		post = 256 // the kernels decode e4m3 values times 2^-8
	case quant.NVFP4:
		post = w.GlobalScale
	}
	var wt [128]float32
	for n := n0; n < n1; n++ {
		f := post
		if w.Format == quant.FP8 {
			f *= le32f(w.Scales, n)
		}
		tail := wt[:K-k0]
		if k0 < K {
			fpTailWeights(tail, w, n, k0)
		}
		if k0 == K && f == 1 {
			continue
		}
		for m := 0; m < M; m++ {
			v := dst[m*ldd+n]
			if k0 < K {
				xr := x[m*K+k0 : m*K+K]
				var s float32
				for i, t := range tail {
					s += xr[i] * t
				}
				v += s
			}
			if f != 1 {
				v *= f
			}
			dst[m*ldd+n] = v
		}
	}
}

// fpTailWeights decodes inputs [k0, K) of row n as the AVX-512 kernels do
// (exact; FP8 times 2^-8).
func fpTailWeights(dst []float32, w *quant.Weight, n, k0 int) {
	K := w.In
	if w.Format == quant.FP8 {
		for i := range dst {
			dst[i] = dtype.E4M3ToF32(w.Data[n*K+k0+i]) * (1.0 / 256)
		}
		return
	}
	for i := range dst {
		k := k0 + i
		c := w.Data[(n*K+k)/2] >> (4 * uint(k&1)) & 15
		var s float32
		switch w.Format {
		case quant.FP4:
			j := n*(K/w.Group) + k/w.Group
			s = dtype.F16ToF32(uint16(w.Scales[2*j]) | uint16(w.Scales[2*j+1])<<8)
		case quant.MXFP4:
			s = dtype.E8M0ToF32(w.Scales[n*(K/32)+k/32])
		case quant.NVFP4:
			s = dtype.E4M3ToF32(w.Scales[n*(K/16)+k/16])
		}
		dst[i] = e2m1[c] * s
	}
}
