//go:build amd64 && !purego

// Hand-written AVX-512 helpers of the Go drivers (see kernels512_amd64.go).
// Conventions as in qkernels512_amd64.s: ABI0, NOSPLIT, no frame, EVEX
// encodings, VZEROUPPER before RET.

#include "textflag.h"

// UNITSUM stores the sums of a unit (its 32 inputs in Z0, Z1) at (DX):
// s = float32(Σ_i float64(x_i)) at 4(DX) and negOff·s (negOff in X23) at
// 0(DX). The float64 sum is taken as 4 vectors of 8 (inputs i ≡ j mod 8 of
// each quarter), added pairwise and then reduced by halving: the same order
// for every row (sum64 is the Go equivalent). Clobbers Z4..Z7.
#define UNITSUM \
	VCVTPS2PD	Y0, Z4; \
	VEXTRACTF32X8	$1, Z0, Y5; \
	VCVTPS2PD	Y5, Z5; \
	VCVTPS2PD	Y1, Z6; \
	VEXTRACTF32X8	$1, Z1, Y7; \
	VCVTPS2PD	Y7, Z7; \
	VADDPD	Z5, Z4, Z4; \
	VADDPD	Z7, Z6, Z6; \
	VADDPD	Z6, Z4, Z4; \
	VEXTRACTF64X4	$1, Z4, Y5; \
	VADDPD	Y5, Y4, Y4; \
	VEXTRACTF128	$1, Y4, X5; \
	VADDPD	X5, X4, X4; \
	VPERMILPD	$1, X4, X5; \
	VADDSD	X5, X4, X4; \
	VCVTSD2SS	X4, X4, X4; \
	VMOVSS	X4, 4(DX); \
	VMULSS	X23, X4, X4; \
	VMOVSS	X4, (DX)

// func gptqPrepZ(xf *float32, xfStride int, x *float32, sx *float32, sxStride int, tab *gptqPrepTab, units int, negOff float32)
//
// The x coefficients and sums of one x row for the AVX-512 GPTQ kernels:
// for u < units,
//
//	xf[u·xfStride/4 + f] = x[32u + tab.k[f]] · tab.coef[f]   (f < tab.f; exact: coef is a power of two)
//	s                    = float32(Σ_i float64(x[32u + i]))  (i < 32)
//	sx[u·sxStride/4]     = negOff · s,  sx[u·sxStride/4 + 1] = s
//
// The fields are gathered with VPERMT2PS from the unit's 32 inputs, 16 at a
// time; the third vector (3-bit weights have 34 fields) is stored under the
// mask tab.mask3. The float64 sum is taken as 4 vectors of 8 (inputs i ≡ j
// mod 8 of each quarter), added pairwise and then reduced by halving: the
// same order for every row (sum64 is the Go equivalent). Strides in bytes.
//
// Registers: DI xf, SI x, DX sx, R8 xf stride, R9 sx stride, CX units,
// Z24..Z26 field indices, Z27..Z29 coefficients, X23 negOff, K1 mask of
// the third vector, AX 0 (two vectors) or 1 (three), Z0..Z7 temporaries.
TEXT ·gptqPrepZ(SB), NOSPLIT, $0-60
	MOVQ	xf+0(FP), DI
	MOVQ	xfStride+8(FP), R8
	MOVQ	x+16(FP), SI
	MOVQ	sx+24(FP), DX
	MOVQ	sxStride+32(FP), R9
	MOVQ	tab+40(FP), AX
	VMOVDQU32	0(AX), Z24
	VMOVDQU32	64(AX), Z25
	VMOVDQU32	128(AX), Z26
	VMOVUPS	192(AX), Z27
	VMOVUPS	256(AX), Z28
	VMOVUPS	320(AX), Z29
	MOVWLZX	384(AX), R10
	KMOVW	R10, K1
	MOVQ	units+48(FP), CX
	VMOVSS	negOff+56(FP), X23
	TESTQ	CX, CX
	JLE	prepdone

preploop:
	VMOVUPS	(SI), Z0
	VMOVUPS	64(SI), Z1
	VMOVAPS	Z0, Z2
	VPERMT2PS	Z1, Z24, Z2
	VMULPS	Z27, Z2, Z2
	VMOVUPS	Z2, (DI)
	VMOVAPS	Z0, Z3
	VPERMT2PS	Z1, Z25, Z3
	VMULPS	Z28, Z3, Z3
	VMOVUPS	Z3, 64(DI)
	KORTESTW	K1, K1
	JZ	prepsum
	VMOVAPS	Z0, Z2
	VPERMT2PS	Z1, Z26, Z2
	VMULPS	Z29, Z2, Z2
	VMOVUPS	Z2, K1, 128(DI)

prepsum:
	UNITSUM
	ADDQ	$128, SI
	ADDQ	R8, DI
	ADDQ	R9, DX
	DECQ	CX
	JNZ	preploop

prepdone:
	VZEROUPPER
	RET

// NEXTDIGIT takes the lowest digit off X in Z8, Z9 (d = the low byte as
// a signed value; X ← (X − d)/2^8, exact). Clobbers Z2, Z3.
#define NEXTDIGIT \
	VPSLLD	$24, Z8, Z2; \
	VPSLLD	$24, Z9, Z3; \
	VPSRAD	$24, Z2, Z2; \
	VPSRAD	$24, Z3, Z3; \
	VPSUBD	Z2, Z8, Z8; \
	VPSUBD	Z3, Z9, Z9; \
	VPSRAD	$8, Z8, Z8; \
	VPSRAD	$8, Z9, Z9

// func gptqVPrepZ(xd *byte, xdStride int, x *float32, order *[32]int32, sx *float32, sxStride int, units int, negOff float32)
//
// The x block of one x row for the VNNI GPTQ kernels (see gen/gptq512.go,
// gptq512VNNI), unit by unit (xd advanced by xdStride, sx by sxStride
// bytes): with E the biased exponent of the unit's largest |x| (0 if
// subnormal), X = round(x·2^(148−E)) to nearest even, so that |X| ≤ 2^22
// (VSCALEFPS, VCVTPS2DQ); its digits d0 = X mod± 2^8, d1 = (X − d0)/2^8
// mod± 2^8, d2 = the rest (|d2| ≤ 65), each 32 bytes, byte p holding input
// order[p] of the unit, at 0, 32, 64; the float 2^(E−148) at 96; ΣX as an
// int32 at 100, and the sums of X over bytes 0–15 and 16–31 at 104 and
// 108. A unit of zeros stores zero digits, factor and sums; a unit with an
// Inf or NaN zero digits and sums and a NaN factor, so that the products
// are NaN. The sums as UNITSUM.
//
// Registers: DI xd, SI x, DX sx, R8 xd stride, R9 sx stride, CX units,
// X23 negOff, Z24/Z25 the order, Z26 the |x| mask, X27 1.0, AX E, BX temp,
// Z0..Z7 temporaries, Z8/Z9 X and its digits.
TEXT ·gptqVPrepZ(SB), NOSPLIT, $0-60
	MOVQ	xd+0(FP), DI
	MOVQ	xdStride+8(FP), R8
	MOVQ	x+16(FP), SI
	MOVQ	order+24(FP), AX
	MOVQ	sx+32(FP), DX
	MOVQ	sxStride+40(FP), R9
	MOVQ	units+48(FP), CX
	VMOVSS	negOff+56(FP), X23
	TESTQ	CX, CX
	JLE	vprepdone
	VMOVDQU32	0(AX), Z24
	VMOVDQU32	64(AX), Z25
	MOVL	$0x7fffffff, BX
	VPBROADCASTD	BX, Z26
	MOVL	$0x3f800000, BX
	VMOVD	BX, X27

vpreploop:
	VMOVUPS	(SI), Z0
	VMOVUPS	64(SI), Z1
	VPANDD	Z26, Z0, Z2
	VPANDD	Z26, Z1, Z3
	VPMAXUD	Z3, Z2, Z2
	VEXTRACTI64X4	$1, Z2, Y3
	VPMAXUD	Y3, Y2, Y2
	VEXTRACTI128	$1, Y2, X3
	VPMAXUD	X3, X2, X2
	VPSHUFD	$0x4e, X2, X3
	VPMAXUD	X3, X2, X2
	VPSHUFD	$0xb1, X2, X3
	VPMAXUD	X3, X2, X2
	VMOVD	X2, AX
	CMPL	AX, $0x7f800000
	JAE	vprepnan
	TESTL	AX, AX
	JZ	vprepzero
	SHRL	$23, AX
	MOVL	$148, BX
	SUBL	AX, BX
	VCVTSI2SSL	BX, X2, X2
	VBROADCASTSS	X2, Z2
	VMOVAPS	Z0, Z8
	VPERMT2PS	Z1, Z24, Z8
	VMOVAPS	Z0, Z9
	VPERMT2PS	Z1, Z25, Z9
	VSCALEFPS	Z2, Z8, Z8
	VSCALEFPS	Z2, Z9, Z9
	VCVTPS2DQ	Z8, Z8
	VCVTPS2DQ	Z9, Z9
	// ΣX at 100 (|ΣX| ≤ 2^27; the e2m1 kernels' offset), the sums of
	// bytes 0–15 (Z8) and 16–31 (Z9) at 104 and 108 (NVFP4's halves)
	VEXTRACTI64X4	$1, Z8, Y4
	VPADDD	Y4, Y8, Y4
	VEXTRACTI128	$1, Y4, X5
	VPADDD	X5, X4, X4
	VPSHUFD	$0x4e, X4, X5
	VPADDD	X5, X4, X4
	VPSHUFD	$0xb1, X4, X5
	VPADDD	X5, X4, X4
	VEXTRACTI64X4	$1, Z9, Y5
	VPADDD	Y5, Y9, Y5
	VEXTRACTI128	$1, Y5, X6
	VPADDD	X6, X5, X5
	VPSHUFD	$0x4e, X5, X6
	VPADDD	X6, X5, X5
	VPSHUFD	$0xb1, X5, X6
	VPADDD	X6, X5, X5
	VMOVD	X4, 104(DI)
	VMOVD	X5, 108(DI)
	VPADDD	X5, X4, X4
	VMOVD	X4, 100(DI)
	// the factor 2^(E−148) = 1·2^−(148−E), a subnormal below E = 22
	VXORPS	X3, X3, X3
	VSUBSS	X2, X3, X2
	VSCALEFSS	X2, X27, X3
	VMOVSS	X3, 96(DI)
	VPMOVDB	Z8, 0(DI)
	VPMOVDB	Z9, 16(DI)
	NEXTDIGIT
	VPMOVDB	Z8, 32(DI)
	VPMOVDB	Z9, 48(DI)
	NEXTDIGIT
	VPMOVDB	Z8, 64(DI)
	VPMOVDB	Z9, 80(DI)
	JMP	vprepsum

vprepnan:
	MOVL	$0x7fc00000, BX
	JMP	vprepclear
vprepzero:
	XORL	BX, BX
vprepclear:
	MOVL	BX, 96(DI)
	MOVL	$0, 100(DI)
	MOVL	$0, 104(DI)
	MOVL	$0, 108(DI)
	VPXORD	Z2, Z2, Z2
	VMOVDQU32	Z2, 0(DI)
	VMOVDQU32	Y2, 64(DI)

vprepsum:
	UNITSUM
	ADDQ	$128, SI
	ADDQ	R8, DI
	ADDQ	R9, DX
	DECQ	CX
	JNZ	vpreploop

vprepdone:
	VZEROUPPER
	RET

// func fpPrepZ(xp *float32, x *float32, nspans int)
//
// One x row in the element order of the AVX-512 e2m1 kernels: for each
// span s of 128 inputs, xp[128s + 16j + l] = x[128s + 8l + j] (vector j
// holds the inputs ≡ j mod 8). Three rounds of splitting every run of 32
// into its even and its odd elements (VPERMT2PS) take the 128 inputs to
// the residues mod 8 in bit-reversed order (0, 4, 2, 6, 1, 5, 3, 7).
//
// Registers: DI xp, SI x, CX spans left, Z30/Z31 the even/odd indices,
// Z0..Z23 the rounds.
TEXT ·fpPrepZ(SB), NOSPLIT, $0-24
	MOVQ	xp+0(FP), DI
	MOVQ	x+8(FP), SI
	MOVQ	nspans+16(FP), CX
	TESTQ	CX, CX
	JLE	fpprepdone
	VMOVDQU32	evenidx<>(SB), Z30
	VMOVDQU32	oddidx<>(SB), Z31

fpprepload:
	VMOVUPS	0(SI), Z0
	VMOVUPS	64(SI), Z1
	VMOVUPS	128(SI), Z2
	VMOVUPS	192(SI), Z3
	VMOVUPS	256(SI), Z4
	VMOVUPS	320(SI), Z5
	VMOVUPS	384(SI), Z6
	VMOVUPS	448(SI), Z7
	VMOVAPS	Z0, Z8
	VPERMT2PS	Z1, Z30, Z8
	VMOVAPS	Z0, Z12
	VPERMT2PS	Z1, Z31, Z12
	VMOVAPS	Z2, Z9
	VPERMT2PS	Z3, Z30, Z9
	VMOVAPS	Z2, Z13
	VPERMT2PS	Z3, Z31, Z13
	VMOVAPS	Z4, Z10
	VPERMT2PS	Z5, Z30, Z10
	VMOVAPS	Z4, Z14
	VPERMT2PS	Z5, Z31, Z14
	VMOVAPS	Z6, Z11
	VPERMT2PS	Z7, Z30, Z11
	VMOVAPS	Z6, Z15
	VPERMT2PS	Z7, Z31, Z15
	VMOVAPS	Z8, Z16
	VPERMT2PS	Z9, Z30, Z16
	VMOVAPS	Z8, Z18
	VPERMT2PS	Z9, Z31, Z18
	VMOVAPS	Z10, Z17
	VPERMT2PS	Z11, Z30, Z17
	VMOVAPS	Z10, Z19
	VPERMT2PS	Z11, Z31, Z19
	VMOVAPS	Z12, Z20
	VPERMT2PS	Z13, Z30, Z20
	VMOVAPS	Z12, Z22
	VPERMT2PS	Z13, Z31, Z22
	VMOVAPS	Z14, Z21
	VPERMT2PS	Z15, Z30, Z21
	VMOVAPS	Z14, Z23
	VPERMT2PS	Z15, Z31, Z23
	VMOVAPS	Z16, Z0
	VPERMT2PS	Z17, Z30, Z0
	VMOVAPS	Z16, Z1
	VPERMT2PS	Z17, Z31, Z1
	VMOVAPS	Z18, Z2
	VPERMT2PS	Z19, Z30, Z2
	VMOVAPS	Z18, Z3
	VPERMT2PS	Z19, Z31, Z3
	VMOVAPS	Z20, Z4
	VPERMT2PS	Z21, Z30, Z4
	VMOVAPS	Z20, Z5
	VPERMT2PS	Z21, Z31, Z5
	VMOVAPS	Z22, Z6
	VPERMT2PS	Z23, Z30, Z6
	VMOVAPS	Z22, Z7
	VPERMT2PS	Z23, Z31, Z7
	VMOVUPS	Z0, 0(DI)
	VMOVUPS	Z1, 256(DI)
	VMOVUPS	Z2, 128(DI)
	VMOVUPS	Z3, 384(DI)
	VMOVUPS	Z4, 64(DI)
	VMOVUPS	Z5, 320(DI)
	VMOVUPS	Z6, 192(DI)
	VMOVUPS	Z7, 448(DI)
	ADDQ	$512, SI
	ADDQ	$512, DI
	DECQ	CX
	JNZ	fpprepload

fpprepdone:
	VZEROUPPER
	RET

DATA evenidx<>+0(SB)/4, $0
DATA evenidx<>+4(SB)/4, $2
DATA evenidx<>+8(SB)/4, $4
DATA evenidx<>+12(SB)/4, $6
DATA evenidx<>+16(SB)/4, $8
DATA evenidx<>+20(SB)/4, $10
DATA evenidx<>+24(SB)/4, $12
DATA evenidx<>+28(SB)/4, $14
DATA evenidx<>+32(SB)/4, $16
DATA evenidx<>+36(SB)/4, $18
DATA evenidx<>+40(SB)/4, $20
DATA evenidx<>+44(SB)/4, $22
DATA evenidx<>+48(SB)/4, $24
DATA evenidx<>+52(SB)/4, $26
DATA evenidx<>+56(SB)/4, $28
DATA evenidx<>+60(SB)/4, $30
GLOBL evenidx<>(SB), RODATA|NOPTR, $64

DATA oddidx<>+0(SB)/4, $1
DATA oddidx<>+4(SB)/4, $3
DATA oddidx<>+8(SB)/4, $5
DATA oddidx<>+12(SB)/4, $7
DATA oddidx<>+16(SB)/4, $9
DATA oddidx<>+20(SB)/4, $11
DATA oddidx<>+24(SB)/4, $13
DATA oddidx<>+28(SB)/4, $15
DATA oddidx<>+32(SB)/4, $17
DATA oddidx<>+36(SB)/4, $19
DATA oddidx<>+40(SB)/4, $21
DATA oddidx<>+44(SB)/4, $23
DATA oddidx<>+48(SB)/4, $25
DATA oddidx<>+52(SB)/4, $27
DATA oddidx<>+56(SB)/4, $29
DATA oddidx<>+60(SB)/4, $31
GLOBL oddidx<>(SB), RODATA|NOPTR, $64
