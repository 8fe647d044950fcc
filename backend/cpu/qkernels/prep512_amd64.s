//go:build amd64 && !purego

// Hand-written AVX-512 helpers of the Go drivers (see kernels512_amd64.go).
// Conventions as in qkernels512_amd64.s: ABI0, NOSPLIT, no frame, EVEX
// encodings, VZEROUPPER before RET.

#include "textflag.h"

// func gptqPrepZ(xf *float32, xfStride int, x *float32, sx *float32, sxStride int, coef *float32, units int, negOff float32)
//
// The x coefficients and sums of one x row for the AVX-512 GPTQ kernels
// of 2, 4 and 8 bits (whose 32 fields of a unit are the unit's 32 inputs in
// order): for u < units,
//
//	xf[u·xfStride/4 + f] = x[32u + f] · coef[f]        (f < 32; exact: coef is a power of two)
//	s                    = float32(Σ_f float64(x[32u + f]))
//	sx[u·sxStride/4]     = negOff · s,  sx[u·sxStride/4 + 1] = s
//
// The float64 sum is taken as 4 vectors of 8 (inputs f ≡ i mod 8 of each
// quarter), added pairwise and then reduced by halving, the same order for
// every row (strides are in bytes).
//
// Registers: DI xf, SI x, DX sx, R8 xf stride, R9 sx stride, CX units,
// Z30/Z31 coef[0:16]/coef[16:32], X29 negOff, Z0..Z7 temporaries.
TEXT ·gptqPrepZ(SB), NOSPLIT, $0-60
	MOVQ	xf+0(FP), DI
	MOVQ	xfStride+8(FP), R8
	MOVQ	x+16(FP), SI
	MOVQ	sx+24(FP), DX
	MOVQ	sxStride+32(FP), R9
	MOVQ	coef+40(FP), AX
	VMOVUPS	(AX), Z30
	VMOVUPS	64(AX), Z31
	MOVQ	units+48(FP), CX
	VMOVSS	negOff+56(FP), X29
	TESTQ	CX, CX
	JLE	prepdone

preploop:
	VMOVUPS	(SI), Z0
	VMOVUPS	64(SI), Z1
	VMULPS	Z30, Z0, Z2
	VMULPS	Z31, Z1, Z3
	VMOVUPS	Z2, (DI)
	VMOVUPS	Z3, 64(DI)
	VCVTPS2PD	Y0, Z4
	VEXTRACTF32X8	$1, Z0, Y5
	VCVTPS2PD	Y5, Z5
	VCVTPS2PD	Y1, Z6
	VEXTRACTF32X8	$1, Z1, Y7
	VCVTPS2PD	Y7, Z7
	VADDPD	Z5, Z4, Z4
	VADDPD	Z7, Z6, Z6
	VADDPD	Z6, Z4, Z4
	VEXTRACTF64X4	$1, Z4, Y5
	VADDPD	Y5, Y4, Y4
	VEXTRACTF128	$1, Y4, X5
	VADDPD	X5, X4, X4
	VPERMILPD	$1, X4, X5
	VADDSD	X5, X4, X4
	VCVTSD2SS	X4, X4, X4
	VMOVSS	X4, 4(DX)
	VMULSS	X29, X4, X4
	VMOVSS	X4, (DX)
	ADDQ	$128, SI
	ADDQ	R8, DI
	ADDQ	R9, DX
	DECQ	CX
	JNZ	preploop

prepdone:
	VZEROUPPER
	RET
