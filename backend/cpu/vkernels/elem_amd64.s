//go:build amd64 && !purego

// Element-wise kernels: e^x, SiLU·up, the softmax pieces and RMSNorm's
// two passes, each for AVX-512 (suffix Z) and AVX2+FMA (suffix Y).
//
// Conventions shared by every routine in this file:
//
//   - ABI0, NOSPLIT, no local frame; arguments read with name+offset(FP).
//   - n ≥ 1 elements (the Go wrappers return early on empty slices).
//   - Registers: AX BX CX DX SI DI R8 R9 and vector registers; BP, R14 (g)
//     and R15 are never touched. BX is always the element index i, CX the
//     count of the masked tail (SHLL needs it in CL).
//   - The Y routines use only VEX-encoded instructions on Y0-Y15 (no
//     legacy SSE, so no AVX/SSE transition penalty). Their last n mod 8
//     elements go through VMASKMOVPS loads and stores with a lane mask
//     taken from ·tailMask, which never touch memory outside the slices.
//   - The Z routines are EVEX-encoded and use Z0-Z31; their last n mod 16
//     elements are processed under an opmask K1 = 2^(n mod 16) − 1
//     (zeroing loads, merging stores: masked-off lanes are neither read
//     nor written, so no fault past the end).
//   - Every routine ends with VZEROUPPER before RET.
//
// e^x, as in generic.go's exp1 (see Exp in vkernels.go): clamp x to
// [-104, 88.8] (NaN passes through: VMINPS/VMAXPS return their second
// source operand, x, when either is NaN), n = round(x·log2 e), r = x −
// n·ln2hi − n·ln2lo (two FMAs), p = Taylor polynomial of degree 7 by
// Horner (7 FMAs), result p·2^n: VSCALEFPS on AVX-512 (exact scaling with
// one rounding, subnormals and overflow included); on AVX2 p·2^n1·2^n2
// with n1 = n>>1, n2 = n − n1, whose factors are built in the exponent
// field ((k<<23) + 127<<23) and are normal for n ∈ [-150, 128].
//
// ·expTab rows (32 bytes each): 0 hi clamp, 1 lo clamp, 2 log2e, 3 -ln2hi,
// 4 -ln2lo, 5..10 the coefficients 1/7! .. 1/2!, 11 1.0 (also the integer
// 127<<23), 12 -Inf, 13 -0.0 (sign mask).

#include "textflag.h"

// ---- macros (defined up front so that go vet's asmdecl, which does not
// expand macros, does not attribute argument references to the wrong TEXT) ----

// AVX-512 e^x constants, kept in Z20..Z31 for the whole routine.
#define EXPZ_CONSTS \
	VBROADCASTSS	·expTab+0(SB), Z20; \
	VBROADCASTSS	·expTab+32(SB), Z21; \
	VBROADCASTSS	·expTab+64(SB), Z22; \
	VBROADCASTSS	·expTab+96(SB), Z23; \
	VBROADCASTSS	·expTab+128(SB), Z24; \
	VBROADCASTSS	·expTab+160(SB), Z25; \
	VBROADCASTSS	·expTab+192(SB), Z26; \
	VBROADCASTSS	·expTab+224(SB), Z27; \
	VBROADCASTSS	·expTab+256(SB), Z28; \
	VBROADCASTSS	·expTab+288(SB), Z29; \
	VBROADCASTSS	·expTab+320(SB), Z30; \
	VBROADCASTSS	·expTab+352(SB), Z31

// x ← e^x (16 lanes); t, p scratch. Uses Z20..Z31 (EXPZ_CONSTS).
#define EXPZ(x, t, p) \
	VMINPS	x, Z20, x; \
	VMAXPS	x, Z21, x; \
	VMULPS	Z22, x, t; \
	VRNDSCALEPS	$0, t, t; \
	VFMADD231PS	Z23, t, x; \
	VFMADD231PS	Z24, t, x; \
	VMOVAPS	Z26, p; \
	VFMADD231PS	Z25, x, p; \
	VFMADD213PS	Z27, x, p; \
	VFMADD213PS	Z28, x, p; \
	VFMADD213PS	Z29, x, p; \
	VFMADD213PS	Z30, x, p; \
	VFMADD213PS	Z31, x, p; \
	VFMADD213PS	Z31, x, p; \
	VSCALEFPS	t, p, x

// AVX2 e^x clamp bounds, kept in Y15 (hi) and Y14 (lo); the other
// constants are memory operands.
#define EXPY_CONSTS \
	VBROADCASTSS	·expTab+0(SB), Y15; \
	VBROADCASTSS	·expTab+32(SB), Y14

// x ← e^x (8 lanes); t, p, i, j scratch. Uses Y14, Y15 (EXPY_CONSTS).
#define EXPY(x, t, p, i, j) \
	VMINPS	x, Y15, x; \
	VMAXPS	x, Y14, x; \
	VMULPS	·expTab+64(SB), x, t; \
	VROUNDPS	$0, t, t; \
	VFMADD231PS	·expTab+96(SB), t, x; \
	VFMADD231PS	·expTab+128(SB), t, x; \
	VMOVUPS	·expTab+160(SB), p; \
	VFMADD213PS	·expTab+192(SB), x, p; \
	VFMADD213PS	·expTab+224(SB), x, p; \
	VFMADD213PS	·expTab+256(SB), x, p; \
	VFMADD213PS	·expTab+288(SB), x, p; \
	VFMADD213PS	·expTab+320(SB), x, p; \
	VFMADD213PS	·expTab+352(SB), x, p; \
	VFMADD213PS	·expTab+352(SB), x, p; \
	VCVTPS2DQ	t, i; \
	VPSRAD	$1, i, j; \
	VPSUBD	j, i, i; \
	VPSLLD	$23, j, j; \
	VPSLLD	$23, i, i; \
	VPADDD	·expTab+352(SB), j, j; \
	VPADDD	·expTab+352(SB), i, i; \
	VMULPS	j, p, p; \
	VMULPS	i, p, x

// K1 ← 2^CX − 1 (CX = tail count, 1..15); clobbers AX.
#define TAILK1 \
	MOVL	$1, AX; \
	SHLL	CX, AX; \
	DECL	AX; \
	KMOVW	AX, K1

// mask ← the AVX2 lane mask of the first CX lanes (CX = 1..7): the 8
// dwords of ·tailMask starting at index 8 − CX; clobbers AX and CX.
#define TAILMASKY(mask) \
	LEAQ	·tailMask+32(SB), AX; \
	NEGQ	CX; \
	VMOVUPS	(AX)(CX*4), mask

// X0 ← the sum of the 8 lanes of Y0 (in lane 0); clobbers Y1.
#define HSUMY \
	VEXTRACTF128	$1, Y0, X1; \
	VADDPS	X1, X0, X0; \
	VHADDPS	X0, X0, X0; \
	VHADDPS	X0, X0, X0

// X0 ← the maximum of the 8 lanes of Y0 (in lane 0); clobbers Y1.
#define HMAXY \
	VEXTRACTF128	$1, Y0, X1; \
	VMAXPS	X1, X0, X0; \
	VPERMILPS	$0x4E, X0, X1; \
	VMAXPS	X1, X0, X0; \
	VPERMILPS	$0xB1, X0, X1; \
	VMAXPS	X1, X0, X0

// ---------------------------------------------------------------- e^x

// func expZ(dst, src *float32, n int)
//
// dst[i] = e^src[i]. DI = dst, SI = src, DX = n, BX = i, R8 = i + step.
// Two independent 16-lane evaluations per iteration (Z0 with Z2, Z3 and
// Z1 with Z4, Z5), then one, then the masked tail.
TEXT ·expZ(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), DX
	EXPZ_CONSTS
	XORQ	BX, BX

ez32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	ez16
	VMOVUPS	(SI)(BX*4), Z0
	VMOVUPS	64(SI)(BX*4), Z1
	EXPZ(Z0, Z2, Z3)
	EXPZ(Z1, Z4, Z5)
	VMOVUPS	Z0, (DI)(BX*4)
	VMOVUPS	Z1, 64(DI)(BX*4)
	MOVQ	R8, BX
	JMP	ez32

ez16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	eztail
	VMOVUPS	(SI)(BX*4), Z0
	EXPZ(Z0, Z2, Z3)
	VMOVUPS	Z0, (DI)(BX*4)
	MOVQ	R8, BX

eztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	ezdone
	TAILK1
	VMOVUPS.Z	(SI)(BX*4), K1, Z0
	EXPZ(Z0, Z2, Z3)
	VMOVUPS	Z0, K1, (DI)(BX*4)

ezdone:
	VZEROUPPER
	RET

// func expY(dst, src *float32, n int)
//
// dst[i] = e^src[i]. DI = dst, SI = src, DX = n, BX = i, R8 = i + step.
// Two 8-lane evaluations per iteration (Y0..Y4 and Y5..Y9), then one,
// then the masked tail (mask in Y13).
TEXT ·expY(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), DX
	EXPY_CONSTS
	XORQ	BX, BX

ey16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	ey8
	VMOVUPS	(SI)(BX*4), Y0
	VMOVUPS	32(SI)(BX*4), Y5
	EXPY(Y0, Y1, Y2, Y3, Y4)
	EXPY(Y5, Y6, Y7, Y8, Y9)
	VMOVUPS	Y0, (DI)(BX*4)
	VMOVUPS	Y5, 32(DI)(BX*4)
	MOVQ	R8, BX
	JMP	ey16

ey8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	eytail
	VMOVUPS	(SI)(BX*4), Y0
	EXPY(Y0, Y1, Y2, Y3, Y4)
	VMOVUPS	Y0, (DI)(BX*4)
	MOVQ	R8, BX

eytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	eydone
	TAILMASKY(Y13)
	VMASKMOVPS	(SI)(BX*4), Y13, Y0
	EXPY(Y0, Y1, Y2, Y3, Y4)
	VMASKMOVPS	Y0, Y13, (DI)(BX*4)

eydone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------- SiLU·up

// func siluMulZ(dst, gate, up *float32, n int)
//
// dst[i] = gate[i]/(1+e^−gate[i])·up[i]. DI = dst, SI = gate, R9 = up,
// DX = n, BX = i. Z19 = sign mask (−x by VPXORD). Per 16 lanes: Z0 = g,
// Z1 = −g, then e^−g, 1+e^−g, g/(1+e^−g), ·up; the second vector of an
// iteration uses Z4..Z7.
TEXT ·siluMulZ(SB), NOSPLIT, $0-32
	MOVQ	dst+0(FP), DI
	MOVQ	gate+8(FP), SI
	MOVQ	up+16(FP), R9
	MOVQ	n+24(FP), DX
	EXPZ_CONSTS
	VBROADCASTSS	·expTab+416(SB), Z19
	XORQ	BX, BX

sz32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	sz16
	VMOVUPS	(SI)(BX*4), Z0
	VMOVUPS	64(SI)(BX*4), Z4
	VPXORD	Z19, Z0, Z1
	VPXORD	Z19, Z4, Z5
	EXPZ(Z1, Z2, Z3)
	EXPZ(Z5, Z6, Z7)
	VADDPS	Z31, Z1, Z1
	VADDPS	Z31, Z5, Z5
	VDIVPS	Z1, Z0, Z0
	VDIVPS	Z5, Z4, Z4
	VMULPS	(R9)(BX*4), Z0, Z0
	VMULPS	64(R9)(BX*4), Z4, Z4
	VMOVUPS	Z0, (DI)(BX*4)
	VMOVUPS	Z4, 64(DI)(BX*4)
	MOVQ	R8, BX
	JMP	sz32

sz16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	sztail
	VMOVUPS	(SI)(BX*4), Z0
	VPXORD	Z19, Z0, Z1
	EXPZ(Z1, Z2, Z3)
	VADDPS	Z31, Z1, Z1
	VDIVPS	Z1, Z0, Z0
	VMULPS	(R9)(BX*4), Z0, Z0
	VMOVUPS	Z0, (DI)(BX*4)
	MOVQ	R8, BX

sztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	szdone
	TAILK1
	VMOVUPS.Z	(SI)(BX*4), K1, Z0
	VMOVUPS.Z	(R9)(BX*4), K1, Z4
	VPXORD	Z19, Z0, Z1
	EXPZ(Z1, Z2, Z3)
	VADDPS	Z31, Z1, Z1
	VDIVPS	Z1, Z0, Z0
	VMULPS	Z4, Z0, Z0
	VMOVUPS	Z0, K1, (DI)(BX*4)

szdone:
	VZEROUPPER
	RET

// func siluMulY(dst, gate, up *float32, n int)
//
// As siluMulZ with 8 lanes: DI = dst, SI = gate, R9 = up, DX = n,
// BX = i. Per vector: Y0 = g, Y1 = −g → e^−g (scratch Y2..Y5); the second
// vector uses Y6..Y11. Y12 = masked up, Y13 = tail mask.
TEXT ·siluMulY(SB), NOSPLIT, $0-32
	MOVQ	dst+0(FP), DI
	MOVQ	gate+8(FP), SI
	MOVQ	up+16(FP), R9
	MOVQ	n+24(FP), DX
	EXPY_CONSTS
	XORQ	BX, BX

sy16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	sy8
	VMOVUPS	(SI)(BX*4), Y0
	VMOVUPS	32(SI)(BX*4), Y6
	VXORPS	·expTab+416(SB), Y0, Y1
	VXORPS	·expTab+416(SB), Y6, Y7
	EXPY(Y1, Y2, Y3, Y4, Y5)
	EXPY(Y7, Y8, Y9, Y10, Y11)
	VADDPS	·expTab+352(SB), Y1, Y1
	VADDPS	·expTab+352(SB), Y7, Y7
	VDIVPS	Y1, Y0, Y0
	VDIVPS	Y7, Y6, Y6
	VMULPS	(R9)(BX*4), Y0, Y0
	VMULPS	32(R9)(BX*4), Y6, Y6
	VMOVUPS	Y0, (DI)(BX*4)
	VMOVUPS	Y6, 32(DI)(BX*4)
	MOVQ	R8, BX
	JMP	sy16

sy8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	sytail
	VMOVUPS	(SI)(BX*4), Y0
	VXORPS	·expTab+416(SB), Y0, Y1
	EXPY(Y1, Y2, Y3, Y4, Y5)
	VADDPS	·expTab+352(SB), Y1, Y1
	VDIVPS	Y1, Y0, Y0
	VMULPS	(R9)(BX*4), Y0, Y0
	VMOVUPS	Y0, (DI)(BX*4)
	MOVQ	R8, BX

sytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	sydone
	TAILMASKY(Y13)
	VMASKMOVPS	(SI)(BX*4), Y13, Y0
	VMASKMOVPS	(R9)(BX*4), Y13, Y12
	VXORPS	·expTab+416(SB), Y0, Y1
	EXPY(Y1, Y2, Y3, Y4, Y5)
	VADDPS	·expTab+352(SB), Y1, Y1
	VDIVPS	Y1, Y0, Y0
	VMULPS	Y12, Y0, Y0
	VMASKMOVPS	Y0, Y13, (DI)(BX*4)

sydone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------- softmax pieces

// func maxScaledZ(x *float32, n int, scale float32) float32
//
// max_i x[i]·scale. SI = x, DX = n, BX = i; Z16 = scale; Z0, Z1 = two
// running maxima (started at -Inf), merged and reduced at the end. The
// masked tail updates only its valid lanes (merge-masked VMAXPS).
TEXT ·maxScaledZ(SB), NOSPLIT, $0-28
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VBROADCASTSS	scale+16(FP), Z16
	VBROADCASTSS	·expTab+384(SB), Z0
	VMOVAPS	Z0, Z1
	XORQ	BX, BX

mz32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	mz16
	VMULPS	(SI)(BX*4), Z16, Z2
	VMULPS	64(SI)(BX*4), Z16, Z3
	VMAXPS	Z2, Z0, Z0
	VMAXPS	Z3, Z1, Z1
	MOVQ	R8, BX
	JMP	mz32

mz16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	mztail
	VMULPS	(SI)(BX*4), Z16, Z2
	VMAXPS	Z2, Z0, Z0
	MOVQ	R8, BX

mztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	mzreduce
	TAILK1
	VMOVUPS.Z	(SI)(BX*4), K1, Z2
	VMULPS	Z16, Z2, Z2
	VMAXPS	Z2, Z1, K1, Z1

mzreduce:
	VMAXPS	Z1, Z0, Z0
	VEXTRACTF64X4	$1, Z0, Y1
	VMAXPS	Y1, Y0, Y0
	HMAXY
	VMOVSS	X0, ret+24(FP)
	VZEROUPPER
	RET

// func maxScaledY(x *float32, n int, scale float32) float32
//
// SI = x, DX = n, BX = i; Y15 = scale, Y4 = -Inf; Y0, Y1 = running maxima.
// Tail: masked load, scale, and lanes past the end replaced by -Inf
// (VBLENDVPS with the mask in Y13) before the max.
TEXT ·maxScaledY(SB), NOSPLIT, $0-28
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VBROADCASTSS	scale+16(FP), Y15
	VBROADCASTSS	·expTab+384(SB), Y4
	VMOVAPS	Y4, Y0
	VMOVAPS	Y4, Y1
	XORQ	BX, BX

my16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	my8
	VMULPS	(SI)(BX*4), Y15, Y2
	VMULPS	32(SI)(BX*4), Y15, Y3
	VMAXPS	Y2, Y0, Y0
	VMAXPS	Y3, Y1, Y1
	MOVQ	R8, BX
	JMP	my16

my8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	mytail
	VMULPS	(SI)(BX*4), Y15, Y2
	VMAXPS	Y2, Y0, Y0
	MOVQ	R8, BX

mytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	myreduce
	TAILMASKY(Y13)
	VMASKMOVPS	(SI)(BX*4), Y13, Y2
	VMULPS	Y15, Y2, Y2
	VBLENDVPS	Y13, Y2, Y4, Y2
	VMAXPS	Y2, Y1, Y1

myreduce:
	VMAXPS	Y1, Y0, Y0
	HMAXY
	VMOVSS	X0, ret+24(FP)
	VZEROUPPER
	RET

// func expSumZ(x *float32, n int, scale, shift float32) float32
//
// x[i] = e^(x[i]·scale − shift), returns Σ x[i]. SI = x, DX = n, BX = i;
// Z16 = scale, Z17 = shift, Z18 and Z19 = two 16-lane partial sums. The
// argument is one VFMSUB213PS (x·scale − shift, rounded once). Per
// iteration two vectors (Z0 with Z2, Z3; Z1 with Z4, Z5); the masked tail
// stores and adds its valid lanes only.
TEXT ·expSumZ(SB), NOSPLIT, $0-28
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VBROADCASTSS	scale+16(FP), Z16
	VBROADCASTSS	shift+20(FP), Z17
	EXPZ_CONSTS
	VPXORD	Z18, Z18, Z18
	VPXORD	Z19, Z19, Z19
	XORQ	BX, BX

xz32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	xz16
	VMOVUPS	(SI)(BX*4), Z0
	VMOVUPS	64(SI)(BX*4), Z1
	VFMSUB213PS	Z17, Z16, Z0
	VFMSUB213PS	Z17, Z16, Z1
	EXPZ(Z0, Z2, Z3)
	EXPZ(Z1, Z4, Z5)
	VMOVUPS	Z0, (SI)(BX*4)
	VMOVUPS	Z1, 64(SI)(BX*4)
	VADDPS	Z0, Z18, Z18
	VADDPS	Z1, Z19, Z19
	MOVQ	R8, BX
	JMP	xz32

xz16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	xztail
	VMOVUPS	(SI)(BX*4), Z0
	VFMSUB213PS	Z17, Z16, Z0
	EXPZ(Z0, Z2, Z3)
	VMOVUPS	Z0, (SI)(BX*4)
	VADDPS	Z0, Z18, Z18
	MOVQ	R8, BX

xztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	xzreduce
	TAILK1
	VMOVUPS.Z	(SI)(BX*4), K1, Z0
	VFMSUB213PS	Z17, Z16, Z0
	EXPZ(Z0, Z2, Z3)
	VMOVUPS	Z0, K1, (SI)(BX*4)
	VADDPS	Z0, Z19, K1, Z19

xzreduce:
	VADDPS	Z19, Z18, Z0
	VEXTRACTF64X4	$1, Z0, Y1
	VADDPS	Y1, Y0, Y0
	HSUMY
	VMOVSS	X0, ret+24(FP)
	VZEROUPPER
	RET

// func expSumY(x *float32, n int, scale, shift float32) float32
//
// As expSumZ with 8 lanes: SI = x, DX = n, BX = i; Y12 = scale,
// Y11 = shift, Y10 = the 8 partial sums. Per iteration two vectors
// (Y0..Y4, Y5..Y9). Tail: masked load and store, and the lanes past the
// end zeroed (VANDPS with the mask in Y13) before the sum.
TEXT ·expSumY(SB), NOSPLIT, $0-28
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VBROADCASTSS	scale+16(FP), Y12
	VBROADCASTSS	shift+20(FP), Y11
	EXPY_CONSTS
	VXORPS	Y10, Y10, Y10
	XORQ	BX, BX

xy16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	xy8
	VMOVUPS	(SI)(BX*4), Y0
	VMOVUPS	32(SI)(BX*4), Y5
	VFMSUB213PS	Y11, Y12, Y0
	VFMSUB213PS	Y11, Y12, Y5
	EXPY(Y0, Y1, Y2, Y3, Y4)
	EXPY(Y5, Y6, Y7, Y8, Y9)
	VMOVUPS	Y0, (SI)(BX*4)
	VMOVUPS	Y5, 32(SI)(BX*4)
	VADDPS	Y0, Y10, Y10
	VADDPS	Y5, Y10, Y10
	MOVQ	R8, BX
	JMP	xy16

xy8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	xytail
	VMOVUPS	(SI)(BX*4), Y0
	VFMSUB213PS	Y11, Y12, Y0
	EXPY(Y0, Y1, Y2, Y3, Y4)
	VMOVUPS	Y0, (SI)(BX*4)
	VADDPS	Y0, Y10, Y10
	MOVQ	R8, BX

xytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	xyreduce
	TAILMASKY(Y13)
	VMASKMOVPS	(SI)(BX*4), Y13, Y0
	VFMSUB213PS	Y11, Y12, Y0
	EXPY(Y0, Y1, Y2, Y3, Y4)
	VANDPS	Y13, Y0, Y0
	VMASKMOVPS	Y0, Y13, (SI)(BX*4)
	VADDPS	Y0, Y10, Y10

xyreduce:
	VMOVAPS	Y10, Y0
	HSUMY
	VMOVSS	X0, ret+24(FP)
	VZEROUPPER
	RET

// func scaleZ(x *float32, n int, a float32)
//
// x[i] *= a. SI = x, DX = n, BX = i, Z16 = a; 64 elements per iteration.
TEXT ·scaleZ(SB), NOSPLIT, $0-20
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VBROADCASTSS	a+16(FP), Z16
	XORQ	BX, BX

cz64:
	LEAQ	64(BX), R8
	CMPQ	R8, DX
	JA	cz16
	VMULPS	(SI)(BX*4), Z16, Z0
	VMULPS	64(SI)(BX*4), Z16, Z1
	VMULPS	128(SI)(BX*4), Z16, Z2
	VMULPS	192(SI)(BX*4), Z16, Z3
	VMOVUPS	Z0, (SI)(BX*4)
	VMOVUPS	Z1, 64(SI)(BX*4)
	VMOVUPS	Z2, 128(SI)(BX*4)
	VMOVUPS	Z3, 192(SI)(BX*4)
	MOVQ	R8, BX
	JMP	cz64

cz16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	cztail
	VMULPS	(SI)(BX*4), Z16, Z0
	VMOVUPS	Z0, (SI)(BX*4)
	MOVQ	R8, BX
	JMP	cz16

cztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	czdone
	TAILK1
	VMOVUPS.Z	(SI)(BX*4), K1, Z0
	VMULPS	Z16, Z0, Z0
	VMOVUPS	Z0, K1, (SI)(BX*4)

czdone:
	VZEROUPPER
	RET

// func scaleY(x *float32, n int, a float32)
//
// x[i] *= a. SI = x, DX = n, BX = i, Y15 = a, Y13 = tail mask; 32
// elements per iteration.
TEXT ·scaleY(SB), NOSPLIT, $0-20
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VBROADCASTSS	a+16(FP), Y15
	XORQ	BX, BX

cy32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	cy8
	VMULPS	(SI)(BX*4), Y15, Y0
	VMULPS	32(SI)(BX*4), Y15, Y1
	VMULPS	64(SI)(BX*4), Y15, Y2
	VMULPS	96(SI)(BX*4), Y15, Y3
	VMOVUPS	Y0, (SI)(BX*4)
	VMOVUPS	Y1, 32(SI)(BX*4)
	VMOVUPS	Y2, 64(SI)(BX*4)
	VMOVUPS	Y3, 96(SI)(BX*4)
	MOVQ	R8, BX
	JMP	cy32

cy8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	cytail
	VMULPS	(SI)(BX*4), Y15, Y0
	VMOVUPS	Y0, (SI)(BX*4)
	MOVQ	R8, BX
	JMP	cy8

cytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	cydone
	TAILMASKY(Y13)
	VMASKMOVPS	(SI)(BX*4), Y13, Y0
	VMULPS	Y15, Y0, Y0
	VMASKMOVPS	Y0, Y13, (SI)(BX*4)

cydone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------- RMSNorm

// func sumSquaresZ(x *float32, n int) float64
//
// Σ x[i]² in float64: each 8 floats are widened to doubles (VCVTPS2PD,
// exact), squared and added by one VFMADD231PD (the square is exact, only
// the addition rounds). SI = x, DX = n, BX = i; Z0..Z3 = four 8-lane
// partial sums (32 floats per iteration), then 8 at a time, then a masked
// tail of 1..7 (opmask on the 8 converted lanes; masked-off source
// elements are not read).
TEXT ·sumSquaresZ(SB), NOSPLIT, $0-24
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VPXORQ	Z0, Z0, Z0
	VPXORQ	Z1, Z1, Z1
	VPXORQ	Z2, Z2, Z2
	VPXORQ	Z3, Z3, Z3
	XORQ	BX, BX

qz32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	qz8
	VCVTPS2PD	(SI)(BX*4), Z4
	VCVTPS2PD	32(SI)(BX*4), Z5
	VCVTPS2PD	64(SI)(BX*4), Z6
	VCVTPS2PD	96(SI)(BX*4), Z7
	VFMADD231PD	Z4, Z4, Z0
	VFMADD231PD	Z5, Z5, Z1
	VFMADD231PD	Z6, Z6, Z2
	VFMADD231PD	Z7, Z7, Z3
	MOVQ	R8, BX
	JMP	qz32

qz8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	qztail
	VCVTPS2PD	(SI)(BX*4), Z4
	VFMADD231PD	Z4, Z4, Z0
	MOVQ	R8, BX
	JMP	qz8

qztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	qzreduce
	TAILK1
	VCVTPS2PD.Z	(SI)(BX*4), K1, Z4
	VFMADD231PD	Z4, Z4, Z1

qzreduce:
	VADDPD	Z1, Z0, Z0
	VADDPD	Z3, Z2, Z2
	VADDPD	Z2, Z0, Z0
	VEXTRACTF64X4	$1, Z0, Y1
	VADDPD	Y1, Y0, Y0
	VEXTRACTF128	$1, Y0, X1
	VADDPD	X1, X0, X0
	VPERMILPD	$1, X0, X1
	VADDSD	X1, X0, X0
	VMOVSD	X0, ret+16(FP)
	VZEROUPPER
	RET

// func sumSquaresY(x *float32, n int) float64
//
// As sumSquaresZ with 4 doubles per ymm: SI = x, DX = n, BX = i; Y0..Y3 =
// four partial sums (16 floats per iteration), then 4 at a time, then
// 1..3 through a masked xmm load (mask in X13).
TEXT ·sumSquaresY(SB), NOSPLIT, $0-24
	MOVQ	x+0(FP), SI
	MOVQ	n+8(FP), DX
	VXORPD	Y0, Y0, Y0
	VXORPD	Y1, Y1, Y1
	VXORPD	Y2, Y2, Y2
	VXORPD	Y3, Y3, Y3
	XORQ	BX, BX

qy16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	qy4
	VCVTPS2PD	(SI)(BX*4), Y4
	VCVTPS2PD	16(SI)(BX*4), Y5
	VCVTPS2PD	32(SI)(BX*4), Y6
	VCVTPS2PD	48(SI)(BX*4), Y7
	VFMADD231PD	Y4, Y4, Y0
	VFMADD231PD	Y5, Y5, Y1
	VFMADD231PD	Y6, Y6, Y2
	VFMADD231PD	Y7, Y7, Y3
	MOVQ	R8, BX
	JMP	qy16

qy4:
	LEAQ	4(BX), R8
	CMPQ	R8, DX
	JA	qytail
	VCVTPS2PD	(SI)(BX*4), Y4
	VFMADD231PD	Y4, Y4, Y0
	MOVQ	R8, BX
	JMP	qy4

qytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	qyreduce
	TAILMASKY(X13)
	VMASKMOVPS	(SI)(BX*4), X13, X4
	VCVTPS2PD	X4, Y4
	VFMADD231PD	Y4, Y4, Y1

qyreduce:
	VADDPD	Y1, Y0, Y0
	VADDPD	Y3, Y2, Y2
	VADDPD	Y2, Y0, Y0
	VEXTRACTF128	$1, Y0, X1
	VADDPD	X1, X0, X0
	VPERMILPD	$1, X0, X1
	VADDSD	X1, X0, X0
	VMOVSD	X0, ret+16(FP)
	VZEROUPPER
	RET

// func scaleMulZ(dst, x, w *float32, n int, r float32)
//
// dst[i] = (x[i]·r)·w[i] (two float32 roundings, the scalar order).
// DI = dst, SI = x, R9 = w, DX = n, BX = i, Z16 = r; 32 per iteration.
TEXT ·scaleMulZ(SB), NOSPLIT, $0-36
	MOVQ	dst+0(FP), DI
	MOVQ	x+8(FP), SI
	MOVQ	w+16(FP), R9
	MOVQ	n+24(FP), DX
	VBROADCASTSS	r+32(FP), Z16
	XORQ	BX, BX

wz32:
	LEAQ	32(BX), R8
	CMPQ	R8, DX
	JA	wz16
	VMULPS	(SI)(BX*4), Z16, Z0
	VMULPS	64(SI)(BX*4), Z16, Z1
	VMULPS	(R9)(BX*4), Z0, Z0
	VMULPS	64(R9)(BX*4), Z1, Z1
	VMOVUPS	Z0, (DI)(BX*4)
	VMOVUPS	Z1, 64(DI)(BX*4)
	MOVQ	R8, BX
	JMP	wz32

wz16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	wztail
	VMULPS	(SI)(BX*4), Z16, Z0
	VMULPS	(R9)(BX*4), Z0, Z0
	VMOVUPS	Z0, (DI)(BX*4)
	MOVQ	R8, BX

wztail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	wzdone
	TAILK1
	VMOVUPS.Z	(SI)(BX*4), K1, Z0
	VMOVUPS.Z	(R9)(BX*4), K1, Z1
	VMULPS	Z16, Z0, Z0
	VMULPS	Z1, Z0, Z0
	VMOVUPS	Z0, K1, (DI)(BX*4)

wzdone:
	VZEROUPPER
	RET

// func scaleMulY(dst, x, w *float32, n int, r float32)
//
// As scaleMulZ with 8 lanes: DI = dst, SI = x, R9 = w, DX = n, BX = i,
// Y15 = r, Y13 = tail mask; 16 per iteration.
TEXT ·scaleMulY(SB), NOSPLIT, $0-36
	MOVQ	dst+0(FP), DI
	MOVQ	x+8(FP), SI
	MOVQ	w+16(FP), R9
	MOVQ	n+24(FP), DX
	VBROADCASTSS	r+32(FP), Y15
	XORQ	BX, BX

wy16:
	LEAQ	16(BX), R8
	CMPQ	R8, DX
	JA	wy8
	VMULPS	(SI)(BX*4), Y15, Y0
	VMULPS	32(SI)(BX*4), Y15, Y1
	VMULPS	(R9)(BX*4), Y0, Y0
	VMULPS	32(R9)(BX*4), Y1, Y1
	VMOVUPS	Y0, (DI)(BX*4)
	VMOVUPS	Y1, 32(DI)(BX*4)
	MOVQ	R8, BX
	JMP	wy16

wy8:
	LEAQ	8(BX), R8
	CMPQ	R8, DX
	JA	wytail
	VMULPS	(SI)(BX*4), Y15, Y0
	VMULPS	(R9)(BX*4), Y0, Y0
	VMOVUPS	Y0, (DI)(BX*4)
	MOVQ	R8, BX

wytail:
	MOVQ	DX, CX
	SUBQ	BX, CX
	JZ	wydone
	TAILMASKY(Y13)
	VMASKMOVPS	(SI)(BX*4), Y13, Y0
	VMASKMOVPS	(R9)(BX*4), Y13, Y1
	VMULPS	Y15, Y0, Y0
	VMULPS	Y1, Y0, Y0
	VMASKMOVPS	Y0, Y13, (DI)(BX*4)

wydone:
	VZEROUPPER
	RET
