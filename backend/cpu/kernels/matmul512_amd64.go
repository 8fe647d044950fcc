//go:build amd64 && !purego

package kernels

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasAVX512: the AVX-512 kernels (matmul512_amd64.s) need AVX-512 F, BW
// (VPMOVZXWD to zmm), VL (EVEX ymm/xmm forms) and DQ (VEXTRACTF32X8), on top
// of what the AVX2 kernels need. x/sys/cpu reports them only when the OS
// saves the opmask and zmm state.
var hasAVX512 = hasSIMD && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ

// useAVX512 selects the AVX-512 kernels; the tests switch it off to cover
// the AVX2 ones.
var useAVX512 = hasAVX512

// HasAVX512 reports whether the AVX-512 kernels are in use.
func HasAVX512() bool { return useSIMD && useAVX512 }

// Assembly (matmul512_amd64.s; see there for the summation order that all
// of them share). k is any length ≥ 0; tail is the lane mask of the last,
// partial 16-element step of a row (tailMask).

//go:noescape
func gemmZ3x4(x *float32, ldx int, panel *float32, k int, tail uint16, dst *float32, ldd int, ngroups int, lastMask uint8, accum bool)

//go:noescape
func gemvZ4p(x *float32, panel *float32, k int, tail uint16, dst *float32, ngroups int, lastMask uint8, accum bool)

//go:noescape
func gemvZ1F32(x *float32, w *float32, ldw int, k int, kc int, tail uint16, dst *float32, n int)

//go:noescape
func gemvZ1F16(x *float32, w *uint16, ldw int, k int, kc int, tail uint16, dst *float32, n int)

//go:noescape
func gemvZ1BF16(x *float32, w *uint16, ldw int, k int, kc int, tail uint16, dst *float32, n int)

//go:noescape
func packZF32(panel *float32, r0, r1, r2, r3 *float32, m1, m2, m3 uint16, k int, tail uint16)

//go:noescape
func packZF16(panel *float32, r0, r1, r2, r3 *uint16, m1, m2, m3 uint16, k int, tail uint16)

//go:noescape
func packZBF16(panel *float32, r0, r1, r2, r3 *uint16, m1, m2, m3 uint16, k int, tail uint16)

// tailMask returns the lane mask of the partial last 16-step of k elements.
func tailMask(k int) uint16 { return uint16(1)<<uint(k&15) - 1 }

// zKC returns the K block length of the AVX-512 paths: K is cut into equal
// blocks of at most blockK elements, rounded up to a multiple of 16. It
// depends only on K, so that every path (and every M) sums in the same
// blocks.
func zKC(K int) int {
	nkb := (K + blockK - 1) / blockK
	return ((K+nkb-1)/nkb + 15) &^ 15
}

// gemvZ1 dispatches the matrix-vector kernel of the weight kind.
func gemvZ1(kind wkind, x *float32, w unsafe.Pointer, ldw, k, kc int, dst *float32, n int) {
	tail := tailMask(k)
	switch kind {
	case kF32:
		gemvZ1F32(x, (*float32)(w), ldw, k, kc, tail, dst, n)
	case kF16:
		gemvZ1F16(x, (*uint16)(w), ldw, k, kc, tail, dst, n)
	default:
		gemvZ1BF16(x, (*uint16)(w), ldw, k, kc, tail, dst, n)
	}
}

// gemvPathZ is gemvPath with the AVX-512 kernels: the whole row, K tail
// included, is done in assembly.
func gemvPathZ(kind wkind, dst []float32, ldd int, x []float32, M, K int, wp unsafe.Pointer, n0, n1 int) {
	kc := zKC(K)
	nb := n1 - n0
	if M > 1 {
		nb = max(1, gemvBlockBytes/(K*esize(kind)))
	}
	for jc := n0; jc < n1; jc += nb {
		n := min(nb, n1-jc)
		wblk := wAt(kind, wp, jc*K)
		for m := 0; m < M; m++ {
			gemvZ1(kind, &x[m*K], wblk, K, K, kc, &dst[m*ldd+jc], n)
		}
	}
}

// packGroupZ converts rows [r, r+rows) (rows ≤ 4) of a weight block (row
// stride K, columns [pc, pc+kb)) into one panel group.
func packGroupZ(kind wkind, panel []float32, wp unsafe.Pointer, K, r, rows, pc, kb int) {
	var p [4]unsafe.Pointer
	var m [4]uint16
	for j := range p {
		if j < rows {
			p[j], m[j] = wAt(kind, wp, (r+j)*K+pc), 0xffff
		} else {
			p[j] = p[0]
		}
	}
	tail := tailMask(kb)
	switch kind {
	case kF32:
		packZF32(&panel[0], (*float32)(p[0]), (*float32)(p[1]), (*float32)(p[2]), (*float32)(p[3]), m[1], m[2], m[3], kb, tail)
	case kF16:
		packZF16(&panel[0], (*uint16)(p[0]), (*uint16)(p[1]), (*uint16)(p[2]), (*uint16)(p[3]), m[1], m[2], m[3], kb, tail)
	default:
		packZBF16(&panel[0], (*uint16)(p[0]), (*uint16)(p[1]), (*uint16)(p[2]), (*uint16)(p[3]), m[1], m[2], m[3], kb, tail)
	}
}

// prefillPathZ is prefillPath with the AVX-512 kernels:
//
//	for each K block [pc, pc+kb)                   (kb = zKC(K) but the last)
//	  for each panel of weight rows [jc, jc+nb)    (nb ≤ blockN)
//	    pack the rows into groups of 4 interleaved by 16 (float32)
//	    for each 3 rows of x: gemmZ3x4 over all the groups
//	    leftover rows of x: gemvZ4p
//
// The first K block stores into dst, later ones add to it: the order of
// the matrix-vector kernels, so the results do not depend on M.
func prefillPathZ(kind wkind, dst []float32, ldd int, x []float32, M, K int, wp unsafe.Pointer, n0, n1 int) {
	kc := zKC(K)
	buf := getPanel((blockN + 3) / 4 * 64 * ((kc + 15) / 16))
	defer panelPool.Put(buf)
	for pc := 0; pc < K; pc += kc {
		kb := min(kc, K-pc)
		tail := tailMask(kb)
		gsize := 64 * ((kb + 15) / 16) // floats per panel group
		accum := pc > 0
		for jc := n0; jc < n1; jc += blockN {
			nb := min(blockN, n1-jc)
			ng := (nb + 3) / 4
			last := uint8(1)<<uint(nb-4*(ng-1)) - 1
			panel := *buf
			for g := 0; g < ng; g++ {
				packGroupZ(kind, panel[g*gsize:], wp, K, jc+4*g, min(4, nb-4*g), pc, kb)
			}
			m := 0
			for ; m+3 <= M; m += 3 {
				gemmZ3x4(&x[m*K+pc], K, &panel[0], kb, tail, &dst[m*ldd+jc], ldd, ng, last, accum)
			}
			for ; m < M; m++ {
				gemvZ4p(&x[m*K+pc], &panel[0], kb, tail, &dst[m*ldd+jc], ng, last, accum)
			}
		}
	}
}

// PanelGEMM is the prefill kernel for weights that another package
// decodes itself (the quantized formats of package qkernels): it computes
//
//	dst[m*ldd + j] (+)= Σ_{i<k} x[m*ldx + i] · W[j][i]   for m < M, j < n
//
// where the n weight rows W come packed in panel: groups of 4 rows (the
// last one zero-padded), each group [⌈k/16⌉][4][16] float32, i.e. step t
// (elements 16t..16t+15) of row 4g+c at panel[(g·⌈k/16⌉ + t)·64 + c·16],
// zero beyond k. With accum the sums are added to dst. The order of the
// additions is that of the AVX-512 matrix-vector kernels for one K block
// (see matmul512_amd64.s), so a caller that feeds the same K blocks to its
// own matrix-vector kernel in that order gets the same results for every
// M. It needs AVX-512 (HasAVX512Hardware) and panics without it.
func PanelGEMM(dst []float32, ldd int, x []float32, ldx, M, k int, panel []float32, n int, accum bool) {
	if !hasAVX512 {
		panic("kernels.PanelGEMM: no AVX-512")
	}
	if M <= 0 || n <= 0 || k <= 0 {
		return
	}
	ng := (n + 3) / 4
	switch {
	case M > 1 && ldd < n, len(x) < (M-1)*ldx+k, len(dst) < (M-1)*ldd+n,
		len(panel) < ng*64*((k+15)/16):
		panic("kernels.PanelGEMM: slice too short")
	}
	tail := tailMask(k)
	last := uint8(1)<<uint(n-4*(ng-1)) - 1
	m := 0
	for ; m+3 <= M; m += 3 {
		gemmZ3x4(&x[m*ldx], ldx, &panel[0], k, tail, &dst[m*ldd], ldd, ng, last, accum)
	}
	for ; m < M; m++ {
		gemvZ4p(&x[m*ldx], &panel[0], k, tail, &dst[m*ldd], ng, last, accum)
	}
}

// HasAVX512Hardware reports whether the CPU and OS support the AVX-512
// kernels (whether or not they are selected, see HasAVX512).
func HasAVX512Hardware() bool { return hasAVX512 }
