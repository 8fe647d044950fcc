//go:build amd64 && !purego

package kernels

import (
	"math"
	"sync"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/marlin-llm/marlin/dtype"
)

// hasSIMD: the assembly needs AVX2 (integer ymm ops), FMA, F16C and OS
// support for the ymm state. x/sys/cpu sets HasAVX and HasAVX2 only when
// OSXSAVE is set and XGETBV reports the XMM and YMM state enabled, so the
// OS check is included; FMA and F16C are plain CPUID.1:ECX bits (12, 29)
// and are meaningful once AVX is usable.
var hasSIMD = cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

// Assembly kernels (matmul_amd64.s; each is documented there). Vector
// lengths (k, and n of cvt*/axpyF32) must be multiples of 8, row and group
// counts are arbitrary; the pointers must address every element the
// kernel reads or writes, which the callers below guarantee.

//go:noescape
func gemm4x3F32(x *float32, ldx int, w *float32, ldw int, k int, dst *float32, ldd int, ngroups int, accum bool)

//go:noescape
func gemv1F32(x *float32, w *float32, ldw int, k int, dst *float32, n int)

//go:noescape
func gemv1F16(x *float32, w *uint16, ldw int, k int, dst *float32, n int)

//go:noescape
func gemv1BF16(x *float32, w *uint16, ldw int, k int, dst *float32, n int)

//go:noescape
func gemv4F32(x *float32, w *float32, ldw int, k int, dst *float32, ngroups int, accum bool)

//go:noescape
func dotF32(x, w *float32, k int) float32

//go:noescape
func cvtF16(dst *float32, src *uint16, n int)

//go:noescape
func cvtBF16(dst *float32, src *uint16, n int)

//go:noescape
func axpyF32(alpha float32, x, y *float32, n int)

// Blocking parameters of the prefill (M ≥ prefillMinM) path; variables so
// that the tests can shrink them to exercise every block edge with small
// matrices.
var (
	// prefillMinM is the smallest M that uses the packed, register-blocked
	// path; smaller M streams the weights with the matrix-vector kernels.
	prefillMinM = 4

	// blockK is the largest K block. The 4 x rows of a micro-tile
	// (4·blockK·4 bytes = 16 KiB) stay in the 48 KiB L1 while all the w
	// rows of a panel stream past them. K is split into equal multiples
	// of 8 no larger than this.
	blockK = 1024

	// blockN is the number of weight rows per panel, a multiple of 12
	// (so groups of 3 and of 4 divide it). One converted panel is
	// blockN·blockK·4 bytes = 480 KiB, about half of the 1 MiB L2, and is
	// reused by all M rows of x.
	blockN = 120

	// gemvBlockBytes bounds the weight block that the small-M path keeps
	// in L2 while it runs each of the (2 or 3) rows of x over it.
	gemvBlockBytes = 256 << 10
)

// panelPool holds *[]float32 scratch panels for converted weights.
var panelPool sync.Pool

// getPanel returns a scratch panel of length n from panelPool (or a new
// one); the caller puts it back.
func getPanel(n int) *[]float32 {
	if p, ok := panelPool.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float32, n)
	return &s
}

func esize(kind wkind) int {
	if kind == kF32 {
		return 4
	}
	return 2
}

func matmulF32SIMD(dst []float32, ldd int, x []float32, M, K int, w []float32, n0, n1 int) {
	wp := unsafe.Pointer(unsafe.SliceData(w))
	if useAVX512 {
		if M < prefillMinM {
			gemvPathZ(kF32, dst, ldd, x, M, K, wp, n0, n1)
		} else {
			prefillPathZ(kF32, dst, ldd, x, M, K, wp, n0, n1)
		}
		return
	}
	if M < prefillMinM {
		gemvPath(kF32, dst, ldd, x, M, K, wp, n0, n1)
	} else {
		prefillPath(kF32, dst, ldd, x, M, K, wp, n0, n1)
	}
}

func matmul16SIMD(kind wkind, dst []float32, ldd int, x []float32, M, K int, w []uint16, n0, n1 int) {
	wp := unsafe.Pointer(unsafe.SliceData(w))
	if useAVX512 {
		if M < prefillMinM {
			gemvPathZ(kind, dst, ldd, x, M, K, wp, n0, n1)
		} else {
			prefillPathZ(kind, dst, ldd, x, M, K, wp, n0, n1)
		}
		return
	}
	if M < prefillMinM {
		gemvPath(kind, dst, ldd, x, M, K, wp, n0, n1)
	} else {
		prefillPath(kind, dst, ldd, x, M, K, wp, n0, n1)
	}
}

// wAt returns the address of element i of the weight array at wp.
func wAt(kind wkind, wp unsafe.Pointer, i int) unsafe.Pointer {
	return unsafe.Add(wp, i*esize(kind))
}

// wLoad returns weight element i (converted to float32); used for the
// 0..7 elements of a row that the assembly leaves over.
func wLoad(kind wkind, wp unsafe.Pointer, i int) float32 {
	switch kind {
	case kF32:
		return *(*float32)(wAt(kind, wp, i))
	case kF16:
		return dtype.F16ToF32(*(*uint16)(wAt(kind, wp, i)))
	}
	return math.Float32frombits(uint32(*(*uint16)(wAt(kind, wp, i))) << 16)
}

// gemv1 dispatches to the one-row-at-a-time kernel of the weight kind.
func gemv1(kind wkind, x *float32, w unsafe.Pointer, ldw, k int, dst *float32, n int) {
	switch kind {
	case kF32:
		gemv1F32(x, (*float32)(w), ldw, k, dst, n)
	case kF16:
		gemv1F16(x, (*uint16)(w), ldw, k, dst, n)
	default:
		gemv1BF16(x, (*uint16)(w), ldw, k, dst, n)
	}
}

// gemvPath handles small M (decode): the weights are read straight from
// memory exactly once, one row after the other, and converted in
// registers (gemv1*). For M > 1 the N range is cut into blocks of about
// gemvBlockBytes so that each block is read from DRAM once and from L2 for
// the other rows of x.
func gemvPath(kind wkind, dst []float32, ldd int, x []float32, M, K int, wp unsafe.Pointer, n0, n1 int) {
	K8 := K &^ 7 // elements done by the assembly, the rest in Go
	nb := n1 - n0
	if M > 1 {
		nb = max(1, gemvBlockBytes/(K*esize(kind)))
	}
	for jc := n0; jc < n1; jc += nb {
		n := min(nb, n1-jc)
		wblk := wAt(kind, wp, jc*K)
		for m := 0; m < M; m++ {
			xr := x[m*K : m*K+K]
			d := dst[m*ldd+jc : m*ldd+jc+n]
			gemv1(kind, &xr[0], wblk, K, K8, &d[0], n)
			if K8 < K {
				for j := range d {
					row := wAt(kind, wblk, j*K)
					var s float32
					for k := K8; k < K; k++ {
						s += xr[k] * wLoad(kind, row, k)
					}
					d[j] += s
				}
			}
		}
	}
}

// prefillPath handles M ≥ prefillMinM with the 4×3 register-blocked
// micro-kernel:
//
//	for each K block [pc, pc+kb)                    (kb ≤ blockK)
//	  for each panel of weight rows [jc, jc+nb)     (nb ≤ blockN)
//	    F16/BF16: convert the panel once into a float32 scratch buffer
//	              (F32 weights are used in place)
//	    for each 4 rows of x: gemm4x3F32 over all groups of 3 panel rows
//	    leftover rows of x (M mod 4): gemv4F32 against the panel
//	    leftover panel rows (nb mod 3): dotF32
//	    leftover k (kb mod 8, last K block only): scalar Go
//
// Each weight is converted exactly once per call, however large M is. The
// first K block stores into dst, later ones add to it. The order of the
// additions is fixed, so a given call is deterministic (the rounding of an
// output can depend on where it falls relative to n0, i.e. on the split).
func prefillPath(kind wkind, dst []float32, ldd int, x []float32, M, K int, wp unsafe.Pointer, n0, n1 int) {
	nkb := (K + blockK - 1) / blockK
	kc := ((K+nkb-1)/nkb + 7) &^ 7
	var buf *[]float32
	if kind != kF32 {
		buf = getPanel(min(blockN, n1-n0) * kc)
		defer panelPool.Put(buf)
	}
	for pc := 0; pc < K; pc += kc {
		kb := min(kc, K-pc)
		kb8 := kb &^ 7
		accum := pc > 0
		for jc := n0; jc < n1; jc += blockN {
			nb := min(blockN, n1-jc)
			var panel []float32
			var ldp int
			if kind == kF32 {
				ldp = K
				panel = unsafe.Slice((*float32)(wAt(kind, wp, jc*K+pc)), (nb-1)*K+kb)
			} else {
				ldp = kb
				panel = (*buf)[:nb*kb]
				packPanel(kind, panel, wAt(kind, wp, jc*K+pc), K, nb, kb)
			}
			g3 := nb / 3
			m := 0
			for ; m+4 <= M; m += 4 {
				if g3 > 0 {
					gemm4x3F32(&x[m*K+pc], K, &panel[0], ldp, kb8, &dst[m*ldd+jc], ldd, g3, accum)
				}
				for j := 3 * g3; j < nb; j++ {
					for r := m; r < m+4; r++ {
						s := dotF32(&x[r*K+pc], &panel[j*ldp], kb8)
						if accum {
							s += dst[r*ldd+jc+j]
						}
						dst[r*ldd+jc+j] = s
					}
				}
			}
			for ; m < M; m++ {
				g4 := nb / 4
				if g4 > 0 {
					gemv4F32(&x[m*K+pc], &panel[0], ldp, kb8, &dst[m*ldd+jc], g4, accum)
				}
				for j := 4 * g4; j < nb; j++ {
					s := dotF32(&x[m*K+pc], &panel[j*ldp], kb8)
					if accum {
						s += dst[m*ldd+jc+j]
					}
					dst[m*ldd+jc+j] = s
				}
			}
			if kb8 < kb {
				for m := 0; m < M; m++ {
					xt := x[m*K+pc+kb8 : m*K+pc+kb]
					d := dst[m*ldd+jc : m*ldd+jc+nb]
					for j := range d {
						wt := panel[j*ldp+kb8 : j*ldp+kb]
						var s float32
						for i, v := range xt {
							s += v * wt[i]
						}
						d[j] += s
					}
				}
			}
		}
	}
}

// packPanel converts nb weight rows of kb elements (row stride K, starting
// at src) into panel (row stride kb).
func packPanel(kind wkind, panel []float32, src unsafe.Pointer, K, nb, kb int) {
	kb8 := kb &^ 7
	for r := 0; r < nb; r++ {
		row := wAt(kind, src, r*K)
		out := panel[r*kb : r*kb+kb]
		if kb8 > 0 {
			if kind == kF16 {
				cvtF16(&out[0], (*uint16)(row), kb8)
			} else {
				cvtBF16(&out[0], (*uint16)(row), kb8)
			}
		}
		for k := kb8; k < kb; k++ {
			out[k] = wLoad(kind, row, k)
		}
	}
}

func dotSIMD(a, b []float32) float32 {
	n := len(a)
	if n == 0 {
		return 0
	}
	n8 := n &^ 7
	s := dotF32(&a[0], &b[0], n8)
	for i := n8; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func axpySIMD(alpha float32, x, y []float32) {
	n := len(x)
	if n == 0 {
		return
	}
	n8 := n &^ 7
	axpyF32(alpha, &x[0], &y[0], n8)
	for i := n8; i < n; i++ {
		y[i] += alpha * x[i]
	}
}

func cvt16SIMD(dst []float32, src []uint16, bf bool) int {
	n := len(src) &^ 7
	if n == 0 {
		return 0
	}
	if bf {
		cvtBF16(&dst[0], &src[0], n)
	} else {
		cvtF16(&dst[0], &src[0], n)
	}
	return n
}
