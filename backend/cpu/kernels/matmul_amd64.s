//go:build amd64 && !purego

// Dense matrix kernels for amd64 with AVX2 + FMA + F16C.
//
// Conventions shared by every routine in this file:
//
//   - ABI0, NOSPLIT, no local frame: arguments are read from the caller's
//     frame with name+offset(FP); nothing is written to the stack.
//   - Only VEX-encoded instructions are used on vector registers (VMOVUPS,
//     VMOVSD, VMOVSS, VINSERTPS, VEXTRACTPS, ...). A single legacy-SSE
//     instruction (MOVSS, ADDPS, ...) executed while the upper halves of the
//     ymm registers are dirty triggers the AVX/SSE transition penalty
//     (golang/go#80835), so there are none. Every routine ends with
//     VZEROUPPER before RET so that SSE code in the Go runtime after us is
//     not penalised either.
//   - The registers used are AX BX CX DX SI DI R8-R13 and Y0-Y15. BP (frame
//     pointer), R14 (g) and R15 (GOT pointer under -dynlink) are never
//     touched.
//   - Vector lengths (k of the matrix kernels, n of cvt*/axpyF32) are
//     multiples of 8 (one ymm of float32); the Go wrappers handle the
//     remaining 0..7 elements. That keeps the assembly free of masked loads
//     and of reads past the end of a row. Row/group counts may be anything
//     ≥ 0.
//   - Horizontal sums use VHADDPS trees; see the reduction comments.
//
// The matrices are "dot-product form": both x rows and w rows are
// contiguous along K, so every output is a dot product of two K-vectors and
// the kernels keep 8-lane accumulators per output (one in the 4×3
// micro-kernel, which has 12 independent outputs anyway; two or four
// chains in the matrix-vector kernels, to hide the FMA latency), reducing
// the lanes horizontally once per output at the end.
//
// Routines:
//
//	gemm4x3F32      prefill micro-kernel, 4 x rows × 3 float32 w rows
//	gemv1{F32,F16,BF16}  decode: 1 x row against w rows streamed from DRAM
//	gemv4F32        1 x row × 4 float32 w rows (prefill leftover rows)
//	dotF32          one dot product (Dot, prefill leftover columns)
//	cvt{F16,BF16}   weight panel conversion to float32 (prefill)
//	axpyF32         y += alpha·x

#include "textflag.h"

// Software prefetch distance of the decode kernels (gemv1*), in bytes ahead
// of the current position in the weight row. The weights are read exactly
// once, so each core's stream must be kept far enough ahead of its loads to
// cover the DRAM latency at full bandwidth; the hardware prefetchers do not
// cross 4 KiB pages (the Go heap is not on huge pages here). PREFETCHNTA
// keeps the streamed lines from displacing x and other reused data.
// Measured on the 2-core EPYC (BF16, K = 8192 is the sensitive shape, as
// x is re-read from L1 for every 16 KB weight row): 512 B → 62% of the read
// bandwidth, 1 KiB → 72%, 2 KiB → 87%, 4 KiB → 87-97%, 8 KiB → no better.
// Prefetching past the end of a row (into the next rows, or past the
// array) is harmless: prefetches never fault.
#define PREFETCH_DIST 4096

// ---- macros (defined up front so that go vet's asmdecl, which does not expand
// macros, does not attribute their argument references to the wrong TEXT) ----

// Reduce the 4 row accumulators Y0..Y3 to [Σ0 Σ1 Σ2 Σ3] in X0 (Y1 is
// clobbered):
//   hadd(Y0, Y1) = [r0 r0 r1 r1 | r0 r0 r1 r1] (pair sums),
//   hadd(Y2, Y3) likewise, hadd of the two = [r0 r1 r2 r3 | r0 r1 r2 r3],
//   then add the two 128-bit lanes.
#define REDUCE4 \
	VHADDPS	Y1, Y0, Y0; \
	VHADDPS	Y3, Y2, Y2; \
	VHADDPS	Y2, Y0, Y0; \
	VEXTRACTF128	$1, Y0, X1; \
	VADDPS	X1, X0, X0

// Zero the eight accumulators.
#define ZERO8 \
	VXORPS	Y0, Y0, Y0; \
	VXORPS	Y1, Y1, Y1; \
	VXORPS	Y2, Y2, Y2; \
	VXORPS	Y3, Y3, Y3; \
	VXORPS	Y4, Y4, Y4; \
	VXORPS	Y5, Y5, Y5; \
	VXORPS	Y6, Y6, Y6; \
	VXORPS	Y7, Y7, Y7

// Fold the second set of accumulators into the first.
#define FOLD8 \
	VADDPS	Y4, Y0, Y0; \
	VADDPS	Y5, Y1, Y1; \
	VADDPS	Y6, Y2, Y2; \
	VADDPS	Y7, Y3, Y3

// Store (or, when the flags say accum != 0, add to) the 4 sums in X0 at DX,
// then move to the next group: DX += 4 floats, R10 = R13 + ldw
// (= old R10 + 4·ldw). The caller does the CMPB of accum right before, in
// its own TEXT block, so that vet checks the argument offset.
#define GEMV4_STORE(skip) \
	JEQ	skip; \
	VADDPS	(DX), X0, X0; \
skip: \
	VMOVUPS	X0, (DX); \
	ADDQ	$16, DX; \
	LEAQ	(R13)(BX*1), R10

// Load the group's four w row pointers from R10 and BX.
#define GEMV4_ROWS \
	LEAQ	(R10)(BX*1), R11; \
	LEAQ	(R10)(BX*2), R12; \
	LEAQ	(R11)(BX*2), R13

// One 8-element step of the one-row kernels: convert 8 weights at
// woff(R10)(AX*1) into tmp and accumulate tmp·x, x read from
// xoff(SI)(AX*2) as the FMA's memory operand.
#define F16X(woff, xoff, tmp, acc) \
	VCVTPH2PS	woff(R10)(AX*1), tmp; \
	VFMADD231PS	xoff(SI)(AX*2), tmp, acc

#define BF16X(woff, xoff, tmp, acc) \
	VPMOVZXWD	woff(R10)(AX*1), tmp; \
	VPSLLD	$16, tmp, tmp; \
	VFMADD231PS	xoff(SI)(AX*2), tmp, acc

// Store the scalar in X0 at DX, then move to the next row: DX += 1 float,
// R10 += ldw.
#define GEMV1_STORE \
	VMOVSS	X0, (DX); \
	ADDQ	$4, DX; \
	ADDQ	BX, R10

// Final reduction of Y0..Y3 to a scalar in X0: add the four chains, fold
// the high 128-bit lane onto the low one, then two VHADDPS.
#define REDUCE1 \
	VADDPS	Y1, Y0, Y0; \
	VADDPS	Y3, Y2, Y2; \
	VADDPS	Y2, Y0, Y0; \
	VEXTRACTF128	$1, Y0, X1; \
	VADDPS	X1, X0, X0; \
	VHADDPS	X0, X0, X0; \
	VHADDPS	X0, X0, X0

#define ZERO4 \
	VXORPS	Y0, Y0, Y0; \
	VXORPS	Y1, Y1, Y1; \
	VXORPS	Y2, Y2, Y2; \
	VXORPS	Y3, Y3, Y3

// func gemm4x3F32(x *float32, ldx int, w *float32, ldw int, k int, dst *float32, ldd int, ngroups int, accum bool)
//
// Register-blocked micro-kernel for prefill. It computes a 4 × (3·ngroups)
// tile of outputs:
//
//	dst[r*ldd + 3g + c] (+)= Σ_{i<k} x[r*ldx + i] · w[(3g+c)*ldw + i]
//
// for r < 4, c < 3, g < ngroups, where x and w are float32 (w is either an
// F32 weight matrix used in place or a panel of converted F16/BF16 weights,
// see matmul_amd64.go). With accum the sums are added to dst, otherwise
// they overwrite it. k must be a multiple of 8 (k = 0 is allowed).
//
// Register plan:
//
//	SI, DI, R8, R9   x rows 0..3 (fixed for the whole call)
//	R10, R11, R12    w rows 3g, 3g+1, 3g+2 of the current group
//	BX               ldw in bytes
//	AX               byte offset along K, shared by all seven row pointers
//	CX               k in bytes (loop bound)
//	DX               dst of row 0 for the current group; R13 = ldd in bytes
//	Y0..Y11          accumulators: Y(3r+c) holds 8 partial sums of (r, c)
//	Y12..Y14         the 8 w values of rows c = 0, 1, 2 at this k
//	Y15              the 8 x values of the row being processed
//
// Per 8-wide step the loop issues 7 loads and 12 independent FMAs, so the
// 2 FMA pipes, not the load ports, are the bottleneck, and 12 independent
// accumulators cover the FMA latency (4 cycles × 2 pipes = 8 needed). The
// 4 x rows (4·k·4 bytes) are reused across all groups and stay in L1 when
// the caller blocks K (kc ≤ 1024); each w row is streamed once per call.
// The group count lives in the argument slot and is decremented in memory,
// which frees a register (the loop is long, the extra µop is negligible).
TEXT ·gemm4x3F32(SB), NOSPLIT, $0-65
	MOVQ	x+0(FP), SI
	MOVQ	ldx+8(FP), BX
	SHLQ	$2, BX                  // ldx in bytes
	LEAQ	(SI)(BX*1), DI          // x row 1
	LEAQ	(SI)(BX*2), R8          // x row 2
	LEAQ	(DI)(BX*2), R9          // x row 3
	MOVQ	w+16(FP), R10
	MOVQ	ldw+24(FP), BX
	SHLQ	$2, BX                  // ldw in bytes
	MOVQ	k+32(FP), CX
	SHLQ	$2, CX                  // k in bytes
	MOVQ	dst+40(FP), DX
	MOVQ	ldd+48(FP), R13
	SHLQ	$2, R13                 // ldd in bytes
	CMPQ	ngroups+56(FP), $0
	JLE	g43done

g43group:
	LEAQ	(R10)(BX*1), R11        // w row 3g+1
	LEAQ	(R10)(BX*2), R12        // w row 3g+2
	VXORPS	Y0, Y0, Y0
	VXORPS	Y1, Y1, Y1
	VXORPS	Y2, Y2, Y2
	VXORPS	Y3, Y3, Y3
	VXORPS	Y4, Y4, Y4
	VXORPS	Y5, Y5, Y5
	VXORPS	Y6, Y6, Y6
	VXORPS	Y7, Y7, Y7
	VXORPS	Y8, Y8, Y8
	VXORPS	Y9, Y9, Y9
	VXORPS	Y10, Y10, Y10
	VXORPS	Y11, Y11, Y11
	XORQ	AX, AX
	TESTQ	CX, CX
	JZ	g43reduce

g43loop:
	// Load the three w vectors once; each x row is loaded once and
	// multiplied into the three accumulators of its row. Y15 is reused
	// for every x row: register renaming makes the four loads independent.
	VMOVUPS	(R10)(AX*1), Y12
	VMOVUPS	(R11)(AX*1), Y13
	VMOVUPS	(R12)(AX*1), Y14
	VMOVUPS	(SI)(AX*1), Y15
	VFMADD231PS	Y12, Y15, Y0
	VFMADD231PS	Y13, Y15, Y1
	VFMADD231PS	Y14, Y15, Y2
	VMOVUPS	(DI)(AX*1), Y15
	VFMADD231PS	Y12, Y15, Y3
	VFMADD231PS	Y13, Y15, Y4
	VFMADD231PS	Y14, Y15, Y5
	VMOVUPS	(R8)(AX*1), Y15
	VFMADD231PS	Y12, Y15, Y6
	VFMADD231PS	Y13, Y15, Y7
	VFMADD231PS	Y14, Y15, Y8
	VMOVUPS	(R9)(AX*1), Y15
	VFMADD231PS	Y12, Y15, Y9
	VFMADD231PS	Y13, Y15, Y10
	VFMADD231PS	Y14, Y15, Y11
	ADDQ	$32, AX
	CMPQ	AX, CX
	JB	g43loop

g43reduce:
	// Horizontal sums, one x row (three accumulators a, b, c) at a time:
	//   hadd(a, b) = [a01 a23 b01 b23 | a45 a67 b45 b67]   (per 128-bit lane)
	//   hadd(c, c) = [c01 c23 c01 c23 | c45 c67 c45 c67]
	//   hadd(both) = [a0-3 b0-3 c0-3 c0-3 | a4-7 b4-7 c4-7 c4-7]
	//   low + high = [Σa Σb Σc Σc] in the xmm half of a's register.
	// The lane pairing is fixed, so results are deterministic.
	VHADDPS	Y1, Y0, Y0
	VHADDPS	Y2, Y2, Y2
	VHADDPS	Y2, Y0, Y0
	VEXTRACTF128	$1, Y0, X1
	VADDPS	X1, X0, X0              // row 0: [Σ0 Σ1 Σ2 -]
	VHADDPS	Y4, Y3, Y3
	VHADDPS	Y5, Y5, Y5
	VHADDPS	Y5, Y3, Y3
	VEXTRACTF128	$1, Y3, X4
	VADDPS	X4, X3, X3              // row 1
	VHADDPS	Y7, Y6, Y6
	VHADDPS	Y8, Y8, Y8
	VHADDPS	Y8, Y6, Y6
	VEXTRACTF128	$1, Y6, X7
	VADDPS	X7, X6, X6              // row 2
	VHADDPS	Y10, Y9, Y9
	VHADDPS	Y11, Y11, Y11
	VHADDPS	Y11, Y9, Y9
	VEXTRACTF128	$1, Y9, X10
	VADDPS	X10, X9, X9             // row 3

	LEAQ	(DX)(R13*2), AX         // dst row 2; rows 1 and 3 are +R13
	CMPB	accum+64(FP), $0
	JEQ	g43store
	// Accumulate: load the 3 existing outputs of each row as
	// [d0 d1 d2 0] (VMOVSD loads 2 floats and zeroes the rest, VINSERTPS
	// puts the third in lane 2) and add.
	VMOVSD	(DX), X12
	VINSERTPS	$0x20, 8(DX), X12, X12
	VADDPS	X12, X0, X0
	VMOVSD	(DX)(R13*1), X12
	VINSERTPS	$0x20, 8(DX)(R13*1), X12, X12
	VADDPS	X12, X3, X3
	VMOVSD	(AX), X12
	VINSERTPS	$0x20, 8(AX), X12, X12
	VADDPS	X12, X6, X6
	VMOVSD	(AX)(R13*1), X12
	VINSERTPS	$0x20, 8(AX)(R13*1), X12, X12
	VADDPS	X12, X9, X9

g43store:
	// Store exactly 3 floats per row: lanes 0-1 with VMOVSD, lane 2 with
	// VEXTRACTPS. (A masked store would be slow on AMD and a 4-float store
	// would write outside the tile.)
	VMOVSD	X0, (DX)
	VEXTRACTPS	$2, X0, 8(DX)
	VMOVSD	X3, (DX)(R13*1)
	VEXTRACTPS	$2, X3, 8(DX)(R13*1)
	VMOVSD	X6, (AX)
	VEXTRACTPS	$2, X6, 8(AX)
	VMOVSD	X9, (AX)(R13*1)
	VEXTRACTPS	$2, X9, 8(AX)(R13*1)

	ADDQ	$12, DX                 // next 3 output columns
	LEAQ	(R12)(BX*1), R10        // w row 3(g+1)
	DECQ	ngroups+56(FP)
	JNZ	g43group

g43done:
	VZEROUPPER
	RET

// func gemv4F32(x *float32, w *float32, ldw int, k int, dst *float32, ngroups int, accum bool)
//
//	dst[4g + j] (+)= Σ_{i<k} x[i] · w[(4g+j)*ldw + i]   for g < ngroups, j < 4
//
// One x row against groups of 4 w rows. The prefill path uses it for the
// M mod 4 leftover rows of x against a weight panel that is already in L2
// (so no prefetching): sharing each x load across 4 rows makes it about
// twice as fast as one row at a time there. k must be a multiple of 8.
//
// Register plan:
//
//	SI               x
//	R10..R13         w rows 4g .. 4g+3
//	BX               ldw in bytes
//	AX               byte offset along K, shared by x and the w rows
//	CX               k in bytes; DI = CX rounded down to 16 floats
//	DX               dst of the current group
//	Y0..Y3, Y4..Y7   accumulators of rows 0..3: two chains per row (even
//	                 and odd 8-float chunks) so the FMA latency never
//	                 limits the loop
//	Y8, Y9           x[i:i+8], x[i+8:i+16]; the w operands are folded into
//	                 the FMAs as memory operands
TEXT ·gemv4F32(SB), NOSPLIT, $0-49
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$2, BX
	MOVQ	k+24(FP), CX
	SHLQ	$2, CX
	MOVQ	CX, DI
	ANDQ	$-64, DI                // whole 16-float steps, in bytes
	MOVQ	dst+32(FP), DX
	CMPQ	ngroups+40(FP), $0
	JLE	gf32done

gf32group:
	GEMV4_ROWS
	ZERO8
	XORQ	AX, AX
	TESTQ	DI, DI
	JZ	gf32tail

gf32loop:
	VMOVUPS	(SI)(AX*1), Y8
	VMOVUPS	32(SI)(AX*1), Y9
	VFMADD231PS	(R10)(AX*1), Y8, Y0
	VFMADD231PS	32(R10)(AX*1), Y9, Y4
	VFMADD231PS	(R11)(AX*1), Y8, Y1
	VFMADD231PS	32(R11)(AX*1), Y9, Y5
	VFMADD231PS	(R12)(AX*1), Y8, Y2
	VFMADD231PS	32(R12)(AX*1), Y9, Y6
	VFMADD231PS	(R13)(AX*1), Y8, Y3
	VFMADD231PS	32(R13)(AX*1), Y9, Y7
	ADDQ	$64, AX
	CMPQ	AX, DI
	JB	gf32loop

gf32tail:
	// At most one 8-float step remains (k is a multiple of 8).
	CMPQ	AX, CX
	JAE	gf32reduce
	VMOVUPS	(SI)(AX*1), Y8
	VFMADD231PS	(R10)(AX*1), Y8, Y0
	VFMADD231PS	(R11)(AX*1), Y8, Y1
	VFMADD231PS	(R12)(AX*1), Y8, Y2
	VFMADD231PS	(R13)(AX*1), Y8, Y3

gf32reduce:
	FOLD8
	REDUCE4
	CMPB	accum+48(FP), $0
	GEMV4_STORE(gf32store)
	DECQ	ngroups+40(FP)
	JNZ	gf32group

gf32done:
	VZEROUPPER
	RET

// Matrix-vector strips, one weight row at a time (the decode kernels).
//
// func gemv1F32(x *float32, w *float32, ldw int, k int, dst *float32, n int)
// func gemv1F16(x *float32, w *uint16, ldw int, k int, dst *float32, n int)
// func gemv1BF16(x *float32, w *uint16, ldw int, k int, dst *float32, n int)
//
//	dst[j] = Σ_{i<k} x[i] · float32(w[j*ldw + i])   for j < n
//
// The weights are streamed from memory exactly once and converted in
// registers; x (at most a few tens of KB) stays in L1/L2 and is re-read
// for every row. Working through one row at a time keeps each core on a
// single sequential stream of addresses (consecutive rows are adjacent
// when ldw == k), which the memory system serves better than several
// interleaved streams: measured on the 2-core EPYC (BF16, same prefetch),
// 4 rows at a time (the classic way to share the x loads) reached ~72% of
// the read bandwidth, 2 rows at a time ~73%, one row at a time ~90%. Each
// iteration consumes 128 bytes (two cache lines)
// of w and prefetches the two lines PREFETCH_DIST bytes ahead, which also
// runs ahead into the next row and across 4 KiB page boundaries, where the
// hardware prefetchers stop. k must be a multiple of 8.
//
// (Tried and dropped: a BF16 variant that loads 16 weights at once and
// converts even/odd halves with VPSLLD/VPAND against a pre-permuted x is
// ~16% faster from L2 but made no measurable difference from DRAM.)
//
// Register plan:
//
//	SI               x
//	R10              the current w row; BX = ldw in bytes
//	AX               byte offset into the w row; the x offset is AX (F32)
//	                 or 2·AX (16-bit formats, scaled index)
//	CX               k in bytes of w; DI = CX rounded down to 128 bytes
//	DX               dst[j]; R8 = rows left
//	Y0..Y3           four accumulator chains (8-element chunks i mod 4)
//	Y4..Y11          x (F32) or converted w (16-bit) vectors; the other
//	                 operand is folded into the FMA as a memory operand
//
// Conversions (16-bit formats):
//
//	F16:  VCVTPH2PS m128 -> ymm converts 8 halves exactly (F16C), including
//	      subnormals, infinities and NaNs.
//	BF16: a bfloat16 is the high half of a float32, so VPMOVZXWD (zero-extend
//	      8 words to 8 dwords) followed by VPSLLD $16 is an exact conversion.
TEXT ·gemv1F32(SB), NOSPLIT, $0-48
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$2, BX
	MOVQ	k+24(FP), CX
	SHLQ	$2, CX
	MOVQ	CX, DI
	ANDQ	$-128, DI               // whole 32-float (two-line) steps
	MOVQ	dst+32(FP), DX
	MOVQ	n+40(FP), R8
	TESTQ	R8, R8
	JLE	g1f32done

g1f32row:
	ZERO4
	XORQ	AX, AX
	TESTQ	DI, DI
	JZ	g1f32tail

g1f32loop:
	PREFETCHNTA	PREFETCH_DIST(R10)(AX*1)
	PREFETCHNTA	(PREFETCH_DIST+64)(R10)(AX*1)
	VMOVUPS	0(SI)(AX*1), Y4
	VFMADD231PS	0(R10)(AX*1), Y4, Y0
	VMOVUPS	32(SI)(AX*1), Y5
	VFMADD231PS	32(R10)(AX*1), Y5, Y1
	VMOVUPS	64(SI)(AX*1), Y6
	VFMADD231PS	64(R10)(AX*1), Y6, Y2
	VMOVUPS	96(SI)(AX*1), Y7
	VFMADD231PS	96(R10)(AX*1), Y7, Y3
	ADDQ	$128, AX
	CMPQ	AX, DI
	JB	g1f32loop

g1f32tail:
	CMPQ	AX, CX
	JAE	g1f32reduce
	VMOVUPS	(SI)(AX*1), Y4
	VFMADD231PS	(R10)(AX*1), Y4, Y0
	ADDQ	$32, AX
	JMP	g1f32tail

g1f32reduce:
	REDUCE1
	GEMV1_STORE
	DECQ	R8
	JNZ	g1f32row

g1f32done:
	VZEROUPPER
	RET

TEXT ·gemv1F16(SB), NOSPLIT, $0-48
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$1, BX                  // ldw in bytes
	MOVQ	k+24(FP), CX
	SHLQ	$1, CX                  // k in bytes of w
	MOVQ	CX, DI
	ANDQ	$-128, DI               // whole 64-element (two-line) steps
	MOVQ	dst+32(FP), DX
	MOVQ	n+40(FP), R8
	TESTQ	R8, R8
	JLE	g1f16done

g1f16row:
	ZERO4
	XORQ	AX, AX
	TESTQ	DI, DI
	JZ	g1f16tail

g1f16loop:
	PREFETCHNTA	PREFETCH_DIST(R10)(AX*1)
	PREFETCHNTA	(PREFETCH_DIST+64)(R10)(AX*1)
	F16X(0, 0, Y4, Y0)
	F16X(16, 32, Y5, Y1)
	F16X(32, 64, Y6, Y2)
	F16X(48, 96, Y7, Y3)
	F16X(64, 128, Y8, Y0)
	F16X(80, 160, Y9, Y1)
	F16X(96, 192, Y10, Y2)
	F16X(112, 224, Y11, Y3)
	ADDQ	$128, AX
	CMPQ	AX, DI
	JB	g1f16loop

g1f16tail:
	// 0..7 remaining 8-element steps.
	CMPQ	AX, CX
	JAE	g1f16reduce
	F16X(0, 0, Y4, Y0)
	ADDQ	$16, AX
	JMP	g1f16tail

g1f16reduce:
	REDUCE1
	GEMV1_STORE
	DECQ	R8
	JNZ	g1f16row

g1f16done:
	VZEROUPPER
	RET

TEXT ·gemv1BF16(SB), NOSPLIT, $0-48
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$1, BX                  // ldw in bytes
	MOVQ	k+24(FP), CX
	SHLQ	$1, CX                  // k in bytes of w
	MOVQ	CX, DI
	ANDQ	$-128, DI               // whole 64-element (two-line) steps
	MOVQ	dst+32(FP), DX
	MOVQ	n+40(FP), R8
	TESTQ	R8, R8
	JLE	g1bf16done

g1bf16row:
	ZERO4
	XORQ	AX, AX
	TESTQ	DI, DI
	JZ	g1bf16tail

g1bf16loop:
	PREFETCHNTA	PREFETCH_DIST(R10)(AX*1)
	PREFETCHNTA	(PREFETCH_DIST+64)(R10)(AX*1)
	BF16X(0, 0, Y4, Y0)
	BF16X(16, 32, Y5, Y1)
	BF16X(32, 64, Y6, Y2)
	BF16X(48, 96, Y7, Y3)
	BF16X(64, 128, Y8, Y0)
	BF16X(80, 160, Y9, Y1)
	BF16X(96, 192, Y10, Y2)
	BF16X(112, 224, Y11, Y3)
	ADDQ	$128, AX
	CMPQ	AX, DI
	JB	g1bf16loop

g1bf16tail:
	// 0..7 remaining 8-element steps.
	CMPQ	AX, CX
	JAE	g1bf16reduce
	BF16X(0, 0, Y4, Y0)
	ADDQ	$16, AX
	JMP	g1bf16tail

g1bf16reduce:
	REDUCE1
	GEMV1_STORE
	DECQ	R8
	JNZ	g1bf16row

g1bf16done:
	VZEROUPPER
	RET

// func dotF32(x, w *float32, k int) float32
//
// Σ_{i<k} x[i]·w[i] for k a multiple of 8 (Dot, and the leftover weight
// columns of the prefill path). Four independent accumulators Y0..Y3 over
// 32-float steps (x in Y4..Y7, w folded into the FMAs as memory operands),
// then single 8-float steps into Y0.
// Register plan: SI = x, R10 = w, AX = byte offset, CX = k in bytes,
// DI = CX rounded down to 32 floats.

TEXT ·dotF32(SB), NOSPLIT, $0-28
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	k+16(FP), CX
	SHLQ	$2, CX
	MOVQ	CX, DI
	ANDQ	$-128, DI
	ZERO4
	XORQ	AX, AX
	TESTQ	DI, DI
	JZ	df32tail

df32loop:
	VMOVUPS	(SI)(AX*1), Y4
	VMOVUPS	32(SI)(AX*1), Y5
	VMOVUPS	64(SI)(AX*1), Y6
	VMOVUPS	96(SI)(AX*1), Y7
	VFMADD231PS	(R10)(AX*1), Y4, Y0
	VFMADD231PS	32(R10)(AX*1), Y5, Y1
	VFMADD231PS	64(R10)(AX*1), Y6, Y2
	VFMADD231PS	96(R10)(AX*1), Y7, Y3
	ADDQ	$128, AX
	CMPQ	AX, DI
	JB	df32loop

df32tail:
	CMPQ	AX, CX
	JAE	df32reduce
	VMOVUPS	(SI)(AX*1), Y4
	VFMADD231PS	(R10)(AX*1), Y4, Y0
	ADDQ	$32, AX
	JMP	df32tail

df32reduce:
	REDUCE1
	VMOVSS	X0, ret+24(FP)
	VZEROUPPER
	RET

// Weight panel conversion for the prefill path.
//
// func cvtF16(dst *float32, src *uint16, n int)
// func cvtBF16(dst *float32, src *uint16, n int)
//
// dst[i] = float32(src[i]) for i < n, n a multiple of 8. AX is the byte
// offset into src, the dst offset is 2·AX. Two independent 8-element
// conversions per iteration when possible.

TEXT ·cvtF16(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), CX
	SHLQ	$1, CX
	MOVQ	CX, DX
	ANDQ	$-32, DX
	XORQ	AX, AX
	TESTQ	DX, DX
	JZ	cf16tail

cf16loop:
	VCVTPH2PS	(SI)(AX*1), Y0
	VCVTPH2PS	16(SI)(AX*1), Y1
	VMOVUPS	Y0, (DI)(AX*2)
	VMOVUPS	Y1, 32(DI)(AX*2)
	ADDQ	$32, AX
	CMPQ	AX, DX
	JB	cf16loop

cf16tail:
	CMPQ	AX, CX
	JAE	cf16done
	VCVTPH2PS	(SI)(AX*1), Y0
	VMOVUPS	Y0, (DI)(AX*2)

cf16done:
	VZEROUPPER
	RET

TEXT ·cvtBF16(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), CX
	SHLQ	$1, CX
	MOVQ	CX, DX
	ANDQ	$-32, DX
	XORQ	AX, AX
	TESTQ	DX, DX
	JZ	cbf16tail

cbf16loop:
	VPMOVZXWD	(SI)(AX*1), Y0
	VPMOVZXWD	16(SI)(AX*1), Y1
	VPSLLD	$16, Y0, Y0
	VPSLLD	$16, Y1, Y1
	VMOVUPS	Y0, (DI)(AX*2)
	VMOVUPS	Y1, 32(DI)(AX*2)
	ADDQ	$32, AX
	CMPQ	AX, DX
	JB	cbf16loop

cbf16tail:
	CMPQ	AX, CX
	JAE	cbf16done
	VPMOVZXWD	(SI)(AX*1), Y0
	VPSLLD	$16, Y0, Y0
	VMOVUPS	Y0, (DI)(AX*2)

cbf16done:
	VZEROUPPER
	RET

// func axpyF32(alpha float32, x, y *float32, n int)
//
// y[i] += alpha·x[i] for i < n, n a multiple of 8. Y15 holds alpha
// broadcast to 8 lanes; 4 independent 8-wide load/FMA/store chains per
// 32-element step, then 8-element steps. x is folded into the FMA as a
// memory operand. SI = x, DI = y, AX = byte offset, CX = n in bytes,
// DX = CX rounded down to 32 elements.
TEXT ·axpyF32(SB), NOSPLIT, $0-32
	VBROADCASTSS	alpha+0(FP), Y15
	MOVQ	x+8(FP), SI
	MOVQ	y+16(FP), DI
	MOVQ	n+24(FP), CX
	SHLQ	$2, CX
	MOVQ	CX, DX
	ANDQ	$-128, DX
	XORQ	AX, AX
	TESTQ	DX, DX
	JZ	axtail

axloop:
	VMOVUPS	(DI)(AX*1), Y0
	VMOVUPS	32(DI)(AX*1), Y1
	VMOVUPS	64(DI)(AX*1), Y2
	VMOVUPS	96(DI)(AX*1), Y3
	VFMADD231PS	(SI)(AX*1), Y15, Y0
	VFMADD231PS	32(SI)(AX*1), Y15, Y1
	VFMADD231PS	64(SI)(AX*1), Y15, Y2
	VFMADD231PS	96(SI)(AX*1), Y15, Y3
	VMOVUPS	Y0, (DI)(AX*1)
	VMOVUPS	Y1, 32(DI)(AX*1)
	VMOVUPS	Y2, 64(DI)(AX*1)
	VMOVUPS	Y3, 96(DI)(AX*1)
	ADDQ	$128, AX
	CMPQ	AX, DX
	JB	axloop

axtail:
	CMPQ	AX, CX
	JAE	axdone
	VMOVUPS	(DI)(AX*1), Y0
	VFMADD231PS	(SI)(AX*1), Y15, Y0
	VMOVUPS	Y0, (DI)(AX*1)
	ADDQ	$32, AX
	JMP	axtail

axdone:
	VZEROUPPER
	RET
