// Package kernels holds the dense matrix kernels of the CPU backend:
// matrix products of float32 activations with float32, float16 or bfloat16
// weight matrices, and the small vector kernels attention needs.
//
// On amd64 CPUs with AVX2, FMA and F16C (and an OS that saves the ymm state)
// the kernels run hand-written assembly, AVX-512 (matmul512_amd64.s) when
// the CPU also has AVX-512 F/BW/VL/DQ, AVX2 (matmul_amd64.s) otherwise;
// everywhere else, and with the purego build tag, they run a portable Go
// implementation with the same results up to float32 rounding. HasSIMD and
// HasAVX512 report which one is active. GODEBUG=cpu.avx512f=off selects
// the AVX2 assembly and GODEBUG=cpu.avx2=off the portable code
// (golang.org/x/sys/cpu honours both).
//
// Batch invariance: on the AVX-512 path every output element is computed
// with the same sequence of float32 operations whatever the number of x
// rows M (the matrix-vector and the blocked prefill kernels share one
// summation order, see matmul512_amd64.s), so a request's results do not
// depend on the batch it is in. The AVX2 path sums differently for M < 4
// and M ≥ 4; the portable code is M-independent.
//
// Layout: all matrices are row-major and dense. Weight matrices are stored
// [N, K] (one row per output feature, as in PyTorch's nn.Linear and in
// safetensors files), activations [M, K], so every output element is a
// dot product of two contiguous K-vectors.
//
// Concurrency: every function only reads its inputs and writes exactly the
// documented part of dst, so calls on disjoint output ranges (for instance
// the backend's split of [0, N) over one goroutine per core) may run
// concurrently. The kernels do not allocate in steady state (scratch
// panels come from a sync.Pool).
package kernels

import (
	"fmt"

	"github.com/marlin-llm/marlin/dtype"
)

// useSIMD selects the assembly path. It starts as hasSIMD (the CPU and OS
// support it) and is switched off by the tests to cover the Go fallback.
var useSIMD = hasSIMD

// HasSIMD reports whether the assembly (AVX2+FMA+F16C, or AVX-512) kernels
// are in use.
func HasSIMD() bool { return useSIMD }

// weight element kinds
type wkind uint8

const (
	kF32 wkind = iota
	kF16
	kBF16
)

func (k wkind) String() string {
	switch k {
	case kF32:
		return "F32"
	case kF16:
		return "F16"
	}
	return "BF16"
}

// MatMulF32 computes
//
//	dst[m*ldd+n] = Σ_k x[m*K+k]·w[n*K+k]   for 0 ≤ m < M and n0 ≤ n < n1.
//
// w is a row-major weight matrix [N, K] with N ≥ n1, x is row-major [M, K].
// Only those M·(n1−n0) elements of dst are written; the rest of dst is not
// touched, so goroutines may fill disjoint [n0, n1) ranges of the same dst
// concurrently. Sums are accumulated in float32.
//
// Preconditions (violations panic with a message naming the argument):
// M, K ≥ 0; 0 ≤ n0 ≤ n1; len(x) ≥ M·K; len(w) ≥ n1·K; ldd ≥ n1 when M > 1;
// len(dst) ≥ (M−1)·ldd + n1 when M > 0 and n1 > n0.
func MatMulF32(dst []float32, ldd int, x []float32, M, K int, w []float32, n0, n1 int) {
	checkArgs("MatMulF32", len(dst), ldd, len(x), M, K, len(w), n0, n1)
	if M == 0 || n0 == n1 {
		return
	}
	if K == 0 {
		zeroRange(dst, ldd, M, n0, n1)
		return
	}
	if useSIMD {
		matmulF32SIMD(dst, ldd, x, M, K, w, n0, n1)
		return
	}
	matmulF32Generic(dst, ldd, x, M, K, w, n0, n1)
}

// MatMulF16 is MatMulF32 with w given as IEEE 754 binary16 bit patterns.
// Each weight is converted exactly to float32 (subnormals included); the
// products and sums are float32.
func MatMulF16(dst []float32, ldd int, x []float32, M, K int, w []uint16, n0, n1 int) {
	checkArgs("MatMulF16", len(dst), ldd, len(x), M, K, len(w), n0, n1)
	if M == 0 || n0 == n1 {
		return
	}
	if K == 0 {
		zeroRange(dst, ldd, M, n0, n1)
		return
	}
	if useSIMD {
		matmul16SIMD(kF16, dst, ldd, x, M, K, w, n0, n1)
		return
	}
	matmul16Generic(kF16, dst, ldd, x, M, K, w, n0, n1)
}

// MatMulBF16 is MatMulF32 with w given as bfloat16 bit patterns (the high
// 16 bits of a float32). The conversion to float32 is exact.
func MatMulBF16(dst []float32, ldd int, x []float32, M, K int, w []uint16, n0, n1 int) {
	checkArgs("MatMulBF16", len(dst), ldd, len(x), M, K, len(w), n0, n1)
	if M == 0 || n0 == n1 {
		return
	}
	if K == 0 {
		zeroRange(dst, ldd, M, n0, n1)
		return
	}
	if useSIMD {
		matmul16SIMD(kBF16, dst, ldd, x, M, K, w, n0, n1)
		return
	}
	matmul16Generic(kBF16, dst, ldd, x, M, K, w, n0, n1)
}

// Dot returns Σ a[i]·b[i], accumulated in float32. It panics if the
// lengths differ.
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("kernels.Dot: len(a)=%d != len(b)=%d", len(a), len(b)))
	}
	if useSIMD {
		return dotSIMD(a, b)
	}
	return dotGeneric(a, b)
}

// Axpy computes y[i] += alpha·x[i] for all i (one fused multiply-add per
// element on the SIMD path). It panics if the lengths differ.
func Axpy(alpha float32, x, y []float32) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("kernels.Axpy: len(x)=%d != len(y)=%d", len(x), len(y)))
	}
	if useSIMD {
		axpySIMD(alpha, x, y)
		return
	}
	axpyGeneric(alpha, x, y)
}

// checkArgs validates the MatMul arguments; all checks are O(1).
func checkArgs(fn string, ldst, ldd, lx, M, K, lw, n0, n1 int) {
	switch {
	case M < 0 || K < 0:
		panic(fmt.Sprintf("kernels.%s: negative size M=%d K=%d", fn, M, K))
	case n0 < 0 || n1 < n0:
		panic(fmt.Sprintf("kernels.%s: bad output range [%d, %d)", fn, n0, n1))
	case M == 0 || n0 == n1:
		return
	case M > 1 && ldd < n1:
		panic(fmt.Sprintf("kernels.%s: ldd=%d < n1=%d (rows of dst would overlap)", fn, ldd, n1))
	case lx < M*K:
		panic(fmt.Sprintf("kernels.%s: len(x)=%d < M*K=%d*%d", fn, lx, M, K))
	case lw < n1*K:
		panic(fmt.Sprintf("kernels.%s: len(w)=%d < n1*K=%d*%d", fn, lw, n1, K))
	case ldst < (M-1)*ldd+n1:
		panic(fmt.Sprintf("kernels.%s: len(dst)=%d < (M-1)*ldd+n1=%d", fn, ldst, (M-1)*ldd+n1))
	}
}

func zeroRange(dst []float32, ldd, M, n0, n1 int) {
	for m := 0; m < M; m++ {
		clear(dst[m*ldd+n0 : m*ldd+n1])
	}
}

// F16ToF32 sets dst[i] to the IEEE half-precision number src[i], exactly,
// for every i < len(src); dst must be at least as long.
func F16ToF32(dst []float32, src []uint16) { to32(dst, src, false) }

// BF16ToF32 sets dst[i] to the bfloat16 number src[i], exactly, for every
// i < len(src); dst must be at least as long.
func BF16ToF32(dst []float32, src []uint16) { to32(dst, src, true) }

func to32(dst []float32, src []uint16, bf bool) {
	if len(dst) < len(src) {
		panic(fmt.Sprintf("kernels: converting %d 16-bit numbers into %d", len(src), len(dst)))
	}
	i := 0
	if useSIMD {
		i = cvt16SIMD(dst, src, bf)
	}
	for ; i < len(src); i++ {
		if bf {
			dst[i] = dtype.BF16ToF32(src[i])
		} else {
			dst[i] = dtype.F16ToF32(src[i])
		}
	}
}
