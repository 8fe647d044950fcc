// Package vkernels holds the vector kernels of the CPU backend: the
// element-wise work of a transformer layer (e^x, SiLU gating, softmax,
// RMS normalisation) and the inner loops of attention over one block of
// the KV cache.
//
// Each kernel has three implementations, chosen once at start-up:
//
//   - AVX-512 (F, BW, DQ, VL; with the OS saving the zmm state): 16-lane
//     loops with masked tails, so no element is ever handled by scalar code;
//   - AVX2 + FMA: 8-lane loops (VEX-encoded only), masked loads and stores
//     (VMASKMOVPS) for the element-wise tails, a scalar Go fix-up for the
//     last dim mod 8 columns of the attention kernels;
//   - portable Go: on other CPUs and architectures and with the purego build
//     tag, also the reference the SIMD paths are tested against.
//
// ISA reports which one runs. GODEBUG=cpu.avx512f=off (or cpu.avx2=off)
// switches the assembly off at run time, as golang.org/x/sys/cpu honours
// those settings.
//
// Results of the three paths agree to the tolerances documented on each
// function (a few float32 ulp, or the rounding of a float32 sum); they are
// not bit-identical, as the SIMD paths fuse multiply-adds and sum in a
// different order. Every kernel is deterministic for given inputs on a
// given path.
//
// Attention. BlockScores, BlockScoresT and BlockValues work on one block
// of the KV cache for a group of g query heads that share one KV head
// (grouped-query attention; g = 1 is plain multi-head attention, MLA's
// absorbed form has all heads in one group). All matrices are row-major
// float32; q rows and out rows are contiguous (row stride dim).
//
// Sums are float32: each output is a sum of k products (k = dim for
// scores, n for values), split over SIMD lanes and chains, so its error is
// at most (k + 6)·2⁻²⁴ times the sum of the absolute products in the worst
// case and ≈ √k·2⁻²⁴ of it in practice.
//
// A typical decode step for one (sequence, KV head), with the positions
// [0, n) spread over blocks of BS slots and a score buffer of g rows of
// stride S ≥ n (positions past n in the last block are simply not passed):
//
//	for each block b: BlockScores(sc[b*BS:], S, q, g, keys(b), min(BS, n−b*BS), dk)
//	for each head h:  SoftmaxScaled(sc[h*S:h*S+n], scale)
//	clear(out)
//	for each block b: BlockValues(out, sc[b*BS:], S, g, vals(b), dv, min(BS, n−b*BS), dv)
//
// Layouts. Keys stay [slot][dim] (the backend's layout): BlockScores
// handles them with register tiles whose horizontal sums are shared,
// close to the FMA peak (200–235 GFLOP/s on one Zen 5 core with AVX-512
// for g ≥ 4, dim ≥ 128). Values should be stored [slot][dim] too (today
// the backend stores them transposed, [dim][slot], which makes every
// output a dot product of length BS): BlockValues then
// accumulates whole rows with no horizontal sums. MLA passes the keys
// themselves as values with ldv = the key dim. BlockScoresT takes keys
// stored [dim][slot]; it is only faster than BlockScores for blocks of 64
// slots or more (at 16 slots it is 5–35% slower on AVX-512 and equal or
// slower on AVX2), so keys need not be transposed.
//
// Concurrency: the kernels only read their inputs and write exactly the
// documented outputs, and do not allocate, so calls on disjoint outputs may
// run concurrently. Lengths are checked (a violation panics with a message
// naming the argument); those checks are O(1).
package vkernels

import "fmt"

// Instruction-set levels of the implementations.
const (
	levelGo = iota
	levelAVX2
	levelAVX512
)

// level is the path in use. It starts as the best one the CPU and the OS
// support (detectLevel) and is lowered by the tests to cover the others.
var level = detectLevel()

// ISA names the implementation in use: "avx512", "avx2" or "go".
func ISA() string {
	switch level {
	case levelAVX512:
		return "avx512"
	case levelAVX2:
		return "avx2"
	}
	return "go"
}

func sameLen(fn, a, b string, la, lb int) {
	if la != lb {
		panic(fmt.Sprintf("vkernels.%s: len(%s)=%d != len(%s)=%d", fn, a, la, b, lb))
	}
}

// Exp sets dst[i] = e^src[i] for every i. The result is within 2 ulp of the
// correctly rounded float32 e^x over the whole float32 range: e^x
// overflows to +Inf exactly where the rounded result does (x > 88.72284),
// results below 2^-126 are subnormal and correctly scaled, x < -103.97208
// (where e^x rounds to zero) gives +0, -Inf gives +0, +Inf gives +Inf and
// NaN gives NaN.
//
// Method (all paths): x = n·ln2 + r with n = round(x·log2 e), |r| ≤ ln2/2
// (Cody–Waite: ln2 split into a 16-bit head, so n·head is exact, and a
// tail); e^r by its degree-7 Taylor polynomial (truncation < 2e-9
// relative); then the product with 2^n, formed as 2^⌊n/2⌋·2^(n−⌊n/2⌋) so
// that only the last multiplication rounds (AVX-512: one VSCALEFPS).
//
// len(dst) must equal len(src); dst may be src itself (in place) but must
// not overlap it otherwise.
func Exp(dst, src []float32) {
	sameLen("Exp", "dst", "src", len(dst), len(src))
	if len(src) == 0 {
		return
	}
	switch level {
	case levelAVX512:
		expZ(&dst[0], &src[0], len(src))
	case levelAVX2:
		expY(&dst[0], &src[0], len(src))
	default:
		expGo(dst, src)
	}
}

// SiLUMul sets dst[i] = gate[i]/(1+e^−gate[i]) · up[i] (the SwiGLU
// activation: SiLU of the gate times the up projection), evaluated in that
// order in float32 with e^x as in Exp and a true division, so the result
// is within 4 ulp of the exact value of the expression (e^x ≤ 2 ulp, the
// addition, division and product ½ ulp each). Gates below −88.72, where
// e^−gate overflows to +Inf, give ±0 instead of a magnitude below 1e-36,
// as the scalar float32 expression does.
//
// All three slices must have the same length; dst may be gate or up
// (in place) but must not overlap them otherwise.
func SiLUMul(dst, gate, up []float32) {
	sameLen("SiLUMul", "dst", "gate", len(dst), len(gate))
	sameLen("SiLUMul", "up", "gate", len(up), len(gate))
	if len(gate) == 0 {
		return
	}
	switch level {
	case levelAVX512:
		siluMulZ(&dst[0], &gate[0], &up[0], len(gate))
	case levelAVX2:
		siluMulY(&dst[0], &gate[0], &up[0], len(gate))
	default:
		siluMulGo(dst, gate, up)
	}
}

// MaxScaled returns max_i x[i]·scale (each product rounded to float32, so
// the result is exactly the largest element of the scaled vector). It
// returns -Inf for an empty x. If x holds a NaN the result is unspecified
// (ExpSum then propagates the NaN anyway).
func MaxScaled(x []float32, scale float32) float32 {
	if len(x) == 0 {
		return float32(negInf)
	}
	switch level {
	case levelAVX512:
		return maxScaledZ(&x[0], len(x), scale)
	case levelAVX2:
		return maxScaledY(&x[0], len(x), scale)
	}
	return maxScaledGo(x, scale)
}

// ExpSum sets x[i] = e^(x[i]·scale − shift) and returns the sum of the new
// x[i] in float32. The argument x[i]·scale − shift is formed with one
// rounding on the SIMD paths (a fused multiply-add) and two in Go (x·scale
// first); e^ is Exp's. The sum runs in P independent partial sums (P = 32
// on AVX-512, 8 on AVX2, 4 in Go), so its relative error is at most about
// (len(x)/P + 6)·2⁻²⁴ (the terms are non-negative).
//
// With shift = MaxScaled(x, scale) every term is ≤ 1 (up to rounding) and
// at least one is ≈ 1, the usual safe softmax; ExpSum with a running
// maximum gives the blockwise ("online") softmax. -Inf arguments give 0;
// a NaN in x makes the sum NaN.
func ExpSum(x []float32, scale, shift float32) float32 {
	if len(x) == 0 {
		return 0
	}
	switch level {
	case levelAVX512:
		return expSumZ(&x[0], len(x), scale, shift)
	case levelAVX2:
		return expSumY(&x[0], len(x), scale, shift)
	}
	return expSumGo(x, scale, shift)
}

// Scale sets x[i] *= a.
func Scale(x []float32, a float32) {
	if len(x) == 0 {
		return
	}
	switch level {
	case levelAVX512:
		scaleZ(&x[0], len(x), a)
	case levelAVX2:
		scaleY(&x[0], len(x), a)
	default:
		scaleGo(x, a)
	}
}

// SoftmaxScaled replaces x by softmax(x·scale), in place:
//
//	m = max_i x[i]·scale,  e[i] = e^(x[i]·scale − m),  x[i] = e[i] · (1/Σ e)
//
// that is MaxScaled, ExpSum and Scale by the reciprocal of the sum. The
// relative error of each output is about (6 + |arg|)·2⁻²⁴ plus the sum's
// (see ExpSum): Exp's 2 ulp, the reciprocal and the product, and the
// rounding of the argument arg = x·scale − m, an absolute error in the
// exponent (in Go, x·scale is rounded first, adding up to |x·scale|·2⁻²⁴).
// The tests hold every output of rows up to 4101 long to
// (12 + |x·scale| + |arg| + 4√n)·2⁻²⁴. An empty x is left alone; -Inf
// elements become 0; a NaN makes every element NaN; so does a row that is
// all -Inf (m = -Inf), as in the reference formula.
func SoftmaxScaled(x []float32, scale float32) {
	if len(x) == 0 {
		return
	}
	m := MaxScaled(x, scale)
	s := ExpSum(x, scale, m)
	Scale(x, 1/s)
}

// RMSNorm sets dst[i] = x[i]·r·w[i] with r = 1/√(Σx²/n + eps), n = len(x):
// the RMS normalisation of LLaMA-style models, one row of x. Each square
// x[i]² is exact in float64 and the sum is accumulated in float64 (4 to 32
// independent partial sums), so ss/n has a relative error below
// (n/4+6)·2⁻⁵³, far under float32 resolution for any real n; r is then
// computed in float64 and rounded once to float32, and each output is
// (x[i]·r)·w[i] rounded twice in float32, exactly the order of the
// backend's scalar loop, whose results this matches except when the two
// float64 sums round r differently (rare, and then by 1 ulp).
//
// x, w and dst must have the same length; dst may be x (in place) but must
// not overlap it otherwise. An empty x is a no-op.
func RMSNorm(dst, x, w []float32, eps float32) {
	sameLen("RMSNorm", "dst", "x", len(dst), len(x))
	sameLen("RMSNorm", "w", "x", len(w), len(x))
	n := len(x)
	if n == 0 {
		return
	}
	var ss float64
	switch level {
	case levelAVX512:
		ss = sumSquaresZ(&x[0], n)
	case levelAVX2:
		ss = sumSquaresY(&x[0], n)
	default:
		ss = sumSquaresGo(x)
	}
	r := float32(1 / sqrt(ss/float64(n)+float64(eps)))
	switch level {
	case levelAVX512:
		scaleMulZ(&dst[0], &x[0], &w[0], n, r)
	case levelAVX2:
		scaleMulY(&dst[0], &x[0], &w[0], n, r)
	default:
		scaleMulGo(dst, x, w, r)
	}
}
