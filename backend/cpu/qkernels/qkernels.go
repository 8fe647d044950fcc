// Package qkernels holds the CPU's fused dequantize + matmul kernels for
// the quantized weight formats of package quant: GPTQ integers (2, 3, 4, 8
// bits, any group size, act-order), FP8 e4m3 with per-row scales, FP4 e2m1
// with fp16 group scales, MXFP4 and NVFP4. They never expand the weight
// matrix in memory: each weight is decoded in registers and used at once
// (for every row of a small batch) by fused multiply-adds.
//
// On amd64 the kernels are generated assembly (gen/): AVX-512 (F, BW, VL,
// DQ; qkernels512_amd64.s) where the CPU has it, else AVX2 + FMA + F16C
// (qkernels_amd64.s); everywhere else, and for the few shapes the assembly
// does not cover (see Coverage; output columns outside the 8-aligned part
// of [n0, n1) of GPTQ weights always), a portable Go implementation with
// the same structure runs. GODEBUG=cpu.avx512f=off selects the AVX2
// kernels, GODEBUG=cpu.avx2=off the portable ones.
//
// Numerics: products are exact and sums are float32, in an order that
// differs from a plain dot product (GPTQ sums per group Σq·x and applies
// (Σq·x − z·Σx)·scale once per group), so results match the float64
// reference within a few float32 ulps of Σ|x·w|.
//
// AVX-512 (gen/gptq512.go, gen/fp512.go): GPTQ keeps the AVX2 algorithm
// on 16-column vectors, 32 registers and compact broadcast coefficients,
// for 1, 2, 3, 4 or 8 x rows per pass (prefill runs 8-row passes: the
// decode of a 16-weight vector is hidden behind its 8 FMAs). The
// row-major formats decode weights exactly to float32 and sum them in the
// order of the dense kernels of package kernels: matrix-vector kernels for
// up to 4 x rows, and for batches of fpPanelMinM rows or more, decoded
// weight panels fed to kernels.PanelGEMM (each weight decoded once per
// call, then the dense prefill micro-kernel).
//
// AVX-512 4-bit and 2-bit GPTQ kernels have an integer form for CPUs with
// AVX512_VNNI (gen/gptq512.go, gptq512VNNI; 3-bit ones too where the CPU
// also has AVX512_VBMI and VBMI2), used wherever it exists: x is
// rounded per 32 inputs to integers |X| ≤ 2^22 times a power of two, split
// into three byte digits, and VPDPBUSD multiplies the codes (as bytes) by
// the digits; the digit sums are exact integers, converted to float32 once a
// unit. On Zen 4 it decodes 1.8× the weights a cycle of the float form in
// cache, prefills 30–35% faster and decodes batches of 2–4 rows 20–35%
// faster; one-row decode, bound by memory, measured level in one process
// and ~7% lower end to end (docs/perf.md). It runs at every M, so batch
// invariance holds; GODEBUG=cpu.avx512vnni=off selects the float form.
//
// FP4 weights (fp16 group scales, groups of whole 32s), MXFP4 ones (when
// fp16 holds their scales) and NVFP4 ones (their two scales a unit applied
// inside it) take the same integer kernels on those CPUs (fp4VNNI): a packed copy puts their e2m1
// codes in the GPTQ layout, and a byte table (VPSHUFB) maps each code to
// 12 + 2·v before VPDPBUSD, the offset coming off with x's sum at the end
// of each unit. Hot, a core then decodes ~98 G FP4 weights/s where the
// row-major float kernels decoded 37, and FP4 decodes about as fast as
// INT4 (docs/perf.md). These kernels too run at every M.
//
// Act-order GPTQ weights (g_idx) of 2, 4 or 8 bits whose groups all hold
// Group rows run on the same fast kernels: a copy of their codes has the
// input rows sorted by group, and each call gathers x into that order
// (actorder.go); 3-bit ones and other shapes take the list-based kernels.
//
// AVX-512 GPTQ weights without act-order are read from a packed copy
// made on their first call (pack512_amd64.go): per tile of output columns,
// group after group, the group's codes then its scales (and zero points),
// so that a decode pass reads one forward stream per core instead of the
// checkpoint layout's qweight rows and scale rows. Same kernels and the
// same operations: the results are bitwise those of the checkpoint layout.
// The copy costs the size of the codes and scales again (the checkpoint's
// pages, usually a file mapping, are no longer read afterwards).
//
// Batch invariance: the AVX-512 kernels (GPTQ, act-order sorted by group
// included, and the row-major formats) and the portable code compute every
// output element with the same sequence of operations whatever the number
// of rows M of the call, so a request's results do not depend on the batch
// it is in.
// The AVX2 kernels do not promise this (with one x row, GPTQ alternates
// two accumulators and the row-major formats scale block sums; with
// several, neither), nor does the list-based act-order GPTQ kernel (AVX2 on
// every machine).
//
// Concurrency: MatMul only reads its inputs and writes the documented part
// of dst, so calls on disjoint [n0, n1) ranges may run at once. Scratch
// buffers come from a sync.Pool: no allocation in steady state.
package qkernels

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// useSIMD selects the assembly; tests switch it off to cover the Go path.
var useSIMD = hasSIMD

// DequantizeRow writes output feature row of w (In values) into dst, as
// w.DequantizeRow does, bit for bit; from the kernels' packed copy of a
// GPTQ weight where there is one (the row is one contiguous run of it,
// where the checkpoint layout spreads it over every qweight row). It is
// the lookup of a tied embedding whose table is the quantized output
// head.
func DequantizeRow(dst []float32, w *quant.Weight, row int) {
	if row >= 0 && row < w.Out && len(dst) >= w.In && packedRow(dst, w, row) {
		return
	}
	w.DequantizeRow(dst, row)
}

// HasSIMD reports whether the assembly kernels are in use.
func HasSIMD() bool { return useSIMD }

// MatMul computes dst[m*ldd+n] = Σ_k x[m*K+k]·W[n][k] for 0 ≤ m < M and
// n0 ≤ n < n1, where W (Out = N rows, In = K columns) is stored quantized in
// w. Only those M·(n1−n0) elements of dst are written. w must have passed
// Validate (LoadWeight and QuantizeRTN guarantee it); Dense weights are
// passed on to package kernels.
//
// It panics, naming the argument, if M < 0, the range is not within
// [0, Out], x is shorter than M·K or dst too short for row M−1 and column
// n1−1 (with ldd ≥ n1 when M > 1).
func MatMul(dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) {
	K := w.In
	switch {
	case M < 0:
		panic(fmt.Sprintf("qkernels.MatMul: M = %d", M))
	case n0 < 0 || n1 < n0 || n1 > w.Out:
		panic(fmt.Sprintf("qkernels.MatMul: %s: column range [%d, %d) not within [0, %d)", w.Name, n0, n1, w.Out))
	case len(x) < M*K:
		panic(fmt.Sprintf("qkernels.MatMul: %s: len(x) = %d < M·K = %d", w.Name, len(x), M*K))
	case M > 1 && ldd < n1:
		panic(fmt.Sprintf("qkernels.MatMul: ldd = %d < n1 = %d", ldd, n1))
	}
	if M == 0 || n0 == n1 {
		return
	}
	if need := (M-1)*ldd + n1; len(dst) < need {
		panic(fmt.Sprintf("qkernels.MatMul: len(dst) = %d < %d", len(dst), need))
	}
	switch w.Format {
	case quant.Dense:
		denseMatMul(dst, ldd, x, M, w, n0, n1)
	case quant.GPTQ:
		sc := getScratch()
		if !useSIMD || !gptqSIMD(sc, dst, ldd, x, M, w, n0, n1) {
			gptqGeneric(sc, dst, ldd, x, M, w, n0, n1)
		}
		putScratch(sc)
	case quant.FP8, quant.FP4, quant.MXFP4, quant.NVFP4:
		sc := getScratch()
		if !useSIMD || !fpSIMD(sc, dst, ldd, x, M, w, n0, n1) {
			fpGeneric(sc, dst, ldd, x, M, w, n0, n1, 0)
		}
		putScratch(sc)
	default:
		panic(fmt.Sprintf("qkernels.MatMul: %s: format %v not supported", w.Name, w.Format))
	}
}

// Prepare makes the kernels' working copy of w now rather than at its first
// MatMul: on AVX-512 CPUs the packed layout of a GPTQ weight (after which
// the pages of a memory-mapped checkpoint are released). Loaders call it, so
// that the one-time copy happens while the model loads, not inside the
// first forward pass; on CPUs with AVX512_VNNI, the same for FP4, MXFP4
// and NVFP4 weights.
// Other weights need nothing; calling it is optional.
// It reports whether the kernels read a copy from now on (not w's bytes).
func Prepare(w *quant.Weight) (copied bool) {
	if useSIMD && (w.Format == quant.GPTQ || isE2M1(w.Format)) {
		return preparePacked(w)
	}
	return false
}

// isE2M1 reports whether f stores e2m1 codes (FP4, MXFP4, NVFP4).
func isE2M1(f quant.Format) bool {
	return f == quant.FP4 || f == quant.MXFP4 || f == quant.NVFP4
}

// Coverage says whether MatMul runs w with assembly (true) or with the
// portable Go code (false) on this machine.
func Coverage(w *quant.Weight) bool {
	if !useSIMD {
		return false
	}
	switch w.Format {
	case quant.GPTQ:
		return gptqAligned(w)
	case quant.FP8, quant.FP4, quant.MXFP4, quant.NVFP4:
		return fp4VNNI(w) || fpKind(w) != "" && w.In >= fpMinK(w)
	case quant.Dense:
		return kernels.HasSIMD()
	}
	return false
}

func denseMatMul(dst []float32, ldd int, x []float32, M int, w *quant.Weight, n0, n1 int) {
	K := w.In
	switch w.DType {
	case dtype.F32:
		kernels.MatMulF32(dst, ldd, x, M, K, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/4), n0, n1)
	case dtype.F16:
		kernels.MatMulF16(dst, ldd, x, M, K, unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2), n0, n1)
	case dtype.BF16:
		kernels.MatMulBF16(dst, ldd, x, M, K, unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2), n0, n1)
	default:
		panic(fmt.Sprintf("qkernels.MatMul: %s: dense dtype %v", w.Name, w.DType))
	}
}

// scratch holds the per-call buffers.
type scratch struct {
	f   []float32 // coefficients, sums, accumulators; AVX-512 FP: weight panels
	f2  []float32 // AVX-512 FP: x rows in decode order
	i   []int32   // k lists
	b   []byte    // synthesized zero points; AVX-512 FP: zero rows
	o   []int32   // act-order: list position → input row
	xg  []float32 // act-order sorted by group: x gathered
	ga  gptqArgs
	aa  gptqActArgs
	fa  fpArgs
	ga2 fpgArgs // AVX-512 row-major matrix-vector kernels
	pa  fppArgs // AVX-512 panel packing
}

var pool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch  { return pool.Get().(*scratch) }
func putScratch(s *scratch) { pool.Put(s) }

// floats2 returns a second float32 buffer of length n, independent of
// floats (contents undefined).
func (s *scratch) floats2(n int) []float32 {
	if cap(s.f2) < n {
		s.f2 = make([]float32, n+n/4)
	}
	return s.f2[:n]
}

// gathered returns the buffer of x gathered for a sorted act-order weight
// (length n, contents undefined), independent of the others.
func (s *scratch) gathered(n int) []float32 {
	if cap(s.xg) < n {
		s.xg = make([]float32, n+n/4)
	}
	return s.xg[:n]
}

// floats returns a float32 buffer of length n (contents undefined).
func (s *scratch) floats(n int) []float32 {
	if cap(s.f) < n {
		s.f = make([]float32, n+n/4)
	}
	return s.f[:n]
}

func (s *scratch) ints(n int) []int32 {
	if cap(s.i) < n {
		s.i = make([]int32, n+n/4)
	}
	return s.i[:n]
}

// intsAux returns a second int32 buffer of length n, independent of ints.
func (s *scratch) intsAux(n int) []int32 {
	if cap(s.o) < n {
		s.o = make([]int32, n+n/4)
	}
	return s.o[:n]
}

func (s *scratch) bytes(n int) []byte {
	if cap(s.b) < n {
		s.b = make([]byte, n+n/4)
	}
	return s.b[:n]
}
