//go:build amd64 && !purego

#include "textflag.h"

// Lane → node index of the previous costs for K = 1 and K = 2 (each node
// is shared by 2^K consecutive lanes).
DATA permK1<>+0(SB)/4, $0
DATA permK1<>+4(SB)/4, $0
DATA permK1<>+8(SB)/4, $1
DATA permK1<>+12(SB)/4, $1
DATA permK1<>+16(SB)/4, $2
DATA permK1<>+20(SB)/4, $2
DATA permK1<>+24(SB)/4, $3
DATA permK1<>+28(SB)/4, $3
GLOBL permK1<>(SB), RODATA|NOPTR, $32

DATA permK2<>+0(SB)/4, $0
DATA permK2<>+4(SB)/4, $0
DATA permK2<>+8(SB)/4, $0
DATA permK2<>+12(SB)/4, $0
DATA permK2<>+16(SB)/4, $1
DATA permK2<>+20(SB)/4, $1
DATA permK2<>+24(SB)/4, $1
DATA permK2<>+28(SB)/4, $1
GLOBL permK2<>(SB), RODATA|NOPTR, $32

// One candidate h for 8 nodes: Y7 ← val, Y8 ← prev costs (already loaded),
// c = (val − x)² + prev; keep the strict minimum in Y4 and its h in Y5.
#define CANDIDATE \
	VMOVUPS (R13), Y7 \
	VSUBPS Y0, Y7, Y7 \
	VMULPS Y7, Y7, Y7 \
	VADDPS Y8, Y7, Y8 \
	VCMPPS $1, Y4, Y8, Y9 \
	VMINPS Y4, Y8, Y4 \
	VBLENDVPS Y9, Y6, Y5, Y5 \
	VPADDD Y2, Y6, Y6 \
	ADDQ DX, R13 \
	ADDQ R11, AX

// Store the 8 minima and their h as bytes; advance to the next 8 nodes.
#define STORE \
	VMOVUPS Y4, (DI) \
	VEXTRACTI128 $1, Y5, X10 \
	VPACKUSDW X10, X5, X10 \
	VPACKUSWB X10, X10, X10 \
	MOVQ X10, (SI) \
	ADDQ $32, DI \
	ADDQ $8, SI \
	ADDQ $32, R9 \
	ADDQ $8, R12

#define START \
	VMOVAPS Y1, Y4 \
	VPXOR Y5, Y5, Y5 \
	VPXOR Y6, Y6, Y6 \
	MOVQ R9, R13 \
	MOVQ R12, AX \
	SHRQ CX, AX \
	LEAQ (R8)(AX*4), AX \
	MOVQ $1, BX \
	SHLQ CX, BX

// func stepAVX2(next *float32, bp *uint8, prev *float32, val *float32, x float32, K int)
TEXT ·stepAVX2(SB), NOSPLIT, $0-48
	MOVQ next+0(FP), DI
	MOVQ bp+8(FP), SI
	MOVQ prev+16(FP), R8
	MOVQ val+24(FP), R9
	VBROADCASTSS x+32(FP), Y0
	MOVQ K+40(FP), BX
	MOVQ $16, R10
	SUBQ BX, R10          // Kr = 16 − K
	MOVQ R10, CX
	SUBQ BX, CX           // Kr − K
	MOVQ $4, R11
	SHLQ CX, R11          // prev stride per h, bytes: 4 << (Kr − K)
	MOVQ R10, CX
	MOVQ $1, R10
	SHLQ CX, R10          // ne = 1 << Kr nodes
	MOVQ R10, DX
	SHLQ $2, DX           // val stride per h, bytes: 4·ne
	MOVQ BX, CX           // K
	MOVL $0x7f800000, AX
	MOVQ AX, X1
	VPBROADCASTD X1, Y1   // +Inf
	MOVL $1, AX
	MOVQ AX, X2
	VPBROADCASTD X2, Y2   // 1 in every lane
	XORQ R12, R12         // e0
	CMPQ CX, $1
	JEQ k1
	CMPQ CX, $2
	JEQ k2

k3:
	START
k3h:
	VBROADCASTSS (AX), Y8
	CANDIDATE
	DECQ BX
	JNZ k3h
	STORE
	CMPQ R12, R10
	JLT k3
	VZEROUPPER
	RET

k2:
	VMOVDQU permK2<>(SB), Y3
k2n:
	START
k2h:
	VMOVSD (AX), X8
	VPERMPS Y8, Y3, Y8
	CANDIDATE
	DECQ BX
	JNZ k2h
	STORE
	CMPQ R12, R10
	JLT k2n
	VZEROUPPER
	RET

k1:
	VMOVDQU permK1<>(SB), Y3
k1n:
	START
k1h:
	VMOVUPS (AX), X8
	VPERMPS Y8, Y3, Y8
	CANDIDATE
	DECQ BX
	JNZ k1h
	STORE
	CMPQ R12, R10
	JLT k1n
	VZEROUPPER
	RET


// AVX-512: 16 nodes per instruction.

DATA zpermK1<>+0(SB)/4, $0
DATA zpermK1<>+4(SB)/4, $0
DATA zpermK1<>+8(SB)/4, $1
DATA zpermK1<>+12(SB)/4, $1
DATA zpermK1<>+16(SB)/4, $2
DATA zpermK1<>+20(SB)/4, $2
DATA zpermK1<>+24(SB)/4, $3
DATA zpermK1<>+28(SB)/4, $3
DATA zpermK1<>+32(SB)/4, $4
DATA zpermK1<>+36(SB)/4, $4
DATA zpermK1<>+40(SB)/4, $5
DATA zpermK1<>+44(SB)/4, $5
DATA zpermK1<>+48(SB)/4, $6
DATA zpermK1<>+52(SB)/4, $6
DATA zpermK1<>+56(SB)/4, $7
DATA zpermK1<>+60(SB)/4, $7
GLOBL zpermK1<>(SB), RODATA|NOPTR, $64

DATA zpermK2<>+0(SB)/4, $0
DATA zpermK2<>+4(SB)/4, $0
DATA zpermK2<>+8(SB)/4, $0
DATA zpermK2<>+12(SB)/4, $0
DATA zpermK2<>+16(SB)/4, $1
DATA zpermK2<>+20(SB)/4, $1
DATA zpermK2<>+24(SB)/4, $1
DATA zpermK2<>+28(SB)/4, $1
DATA zpermK2<>+32(SB)/4, $2
DATA zpermK2<>+36(SB)/4, $2
DATA zpermK2<>+40(SB)/4, $2
DATA zpermK2<>+44(SB)/4, $2
DATA zpermK2<>+48(SB)/4, $3
DATA zpermK2<>+52(SB)/4, $3
DATA zpermK2<>+56(SB)/4, $3
DATA zpermK2<>+60(SB)/4, $3
GLOBL zpermK2<>(SB), RODATA|NOPTR, $64

DATA zpermK3<>+0(SB)/4, $0
DATA zpermK3<>+4(SB)/4, $0
DATA zpermK3<>+8(SB)/4, $0
DATA zpermK3<>+12(SB)/4, $0
DATA zpermK3<>+16(SB)/4, $0
DATA zpermK3<>+20(SB)/4, $0
DATA zpermK3<>+24(SB)/4, $0
DATA zpermK3<>+28(SB)/4, $0
DATA zpermK3<>+32(SB)/4, $1
DATA zpermK3<>+36(SB)/4, $1
DATA zpermK3<>+40(SB)/4, $1
DATA zpermK3<>+44(SB)/4, $1
DATA zpermK3<>+48(SB)/4, $1
DATA zpermK3<>+52(SB)/4, $1
DATA zpermK3<>+56(SB)/4, $1
DATA zpermK3<>+60(SB)/4, $1
GLOBL zpermK3<>(SB), RODATA|NOPTR, $64

#define ZCANDIDATE \
	VMOVUPS (R13), Z7 \
	VSUBPS Z0, Z7, Z7 \
	VMULPS Z7, Z7, Z7 \
	VADDPS Z8, Z7, Z8 \
	VCMPPS $1, Z4, Z8, K1 \
	VMINPS Z4, Z8, Z4 \
	VPBLENDMD Z6, Z5, K1, Z5 \
	VPADDD Z2, Z6, Z6 \
	ADDQ DX, R13 \
	ADDQ R11, AX

#define ZSTORE \
	VMOVUPS Z4, (DI) \
	VPMOVDB Z5, X10 \
	VMOVDQU X10, (SI) \
	ADDQ $64, DI \
	ADDQ $16, SI \
	ADDQ $64, R9 \
	ADDQ $16, R12

#define ZSTART \
	VMOVAPS Z1, Z4 \
	VPXORD Z5, Z5, Z5 \
	VPXORD Z6, Z6, Z6 \
	MOVQ R9, R13 \
	MOVQ R12, AX \
	SHRQ CX, AX \
	LEAQ (R8)(AX*4), AX \
	MOVQ $1, BX \
	SHLQ CX, BX


// K ≥ 4: four independent chains of 16 nodes (64 nodes per pass over h)
// hide the latency of the compare/min chain of the long h loops; o1…o3
// are the byte offsets of the chains' previous-cost nodes (K = 4: 4, 8,
// 12; K = 5: 0, 4, 4; K ≥ 6: 0).
#define ZC4(o1, o2, o3) \
	VMOVUPS (R13), Z7 \
	VMOVUPS 64(R13), Z9 \
	VMOVUPS 128(R13), Z10 \
	VMOVUPS 192(R13), Z11 \
	VBROADCASTSS (AX), Z8 \
	VBROADCASTSS o1(AX), Z18 \
	VBROADCASTSS o2(AX), Z19 \
	VBROADCASTSS o3(AX), Z20 \
	VSUBPS Z0, Z7, Z7 \
	VSUBPS Z0, Z9, Z9 \
	VSUBPS Z0, Z10, Z10 \
	VSUBPS Z0, Z11, Z11 \
	VMULPS Z7, Z7, Z7 \
	VMULPS Z9, Z9, Z9 \
	VMULPS Z10, Z10, Z10 \
	VMULPS Z11, Z11, Z11 \
	VADDPS Z8, Z7, Z8 \
	VADDPS Z18, Z9, Z18 \
	VADDPS Z19, Z10, Z19 \
	VADDPS Z20, Z11, Z20 \
	VCMPPS $1, Z4, Z8, K1 \
	VCMPPS $1, Z12, Z18, K2 \
	VCMPPS $1, Z14, Z19, K3 \
	VCMPPS $1, Z16, Z20, K4 \
	VMINPS Z4, Z8, Z4 \
	VMINPS Z12, Z18, Z12 \
	VMINPS Z14, Z19, Z14 \
	VMINPS Z16, Z20, Z16 \
	VPBLENDMD Z6, Z5, K1, Z5 \
	VPBLENDMD Z6, Z13, K2, Z13 \
	VPBLENDMD Z6, Z15, K3, Z15 \
	VPBLENDMD Z6, Z17, K4, Z17 \
	VPADDD Z2, Z6, Z6 \
	ADDQ DX, R13 \
	ADDQ R11, AX

#define ZSTART4 \
	VMOVAPS Z1, Z4 \
	VMOVAPS Z1, Z12 \
	VMOVAPS Z1, Z14 \
	VMOVAPS Z1, Z16 \
	VPXORD Z5, Z5, Z5 \
	VPXORD Z13, Z13, Z13 \
	VPXORD Z15, Z15, Z15 \
	VPXORD Z17, Z17, Z17 \
	VPXORD Z6, Z6, Z6 \
	MOVQ R9, R13 \
	MOVQ R12, AX \
	SHRQ CX, AX \
	LEAQ (R8)(AX*4), AX \
	MOVQ $1, BX \
	SHLQ CX, BX

#define ZSTORE4 \
	VMOVUPS Z4, (DI) \
	VMOVUPS Z12, 64(DI) \
	VMOVUPS Z14, 128(DI) \
	VMOVUPS Z16, 192(DI) \
	VPMOVDB Z5, X10 \
	VMOVDQU X10, (SI) \
	VPMOVDB Z13, X10 \
	VMOVDQU X10, 16(SI) \
	VPMOVDB Z15, X10 \
	VMOVDQU X10, 32(SI) \
	VPMOVDB Z17, X10 \
	VMOVDQU X10, 48(SI) \
	ADDQ $256, DI \
	ADDQ $64, SI \
	ADDQ $256, R9 \
	ADDQ $64, R12

// func stepAVX512(next *float32, bp *uint8, prev *float32, val *float32, x float32, K int)
TEXT ·stepAVX512(SB), NOSPLIT, $0-48
	MOVQ next+0(FP), DI
	MOVQ bp+8(FP), SI
	MOVQ prev+16(FP), R8
	MOVQ val+24(FP), R9
	VBROADCASTSS x+32(FP), Z0
	MOVQ K+40(FP), BX
	MOVQ $16, R10
	SUBQ BX, R10
	MOVQ R10, CX
	SUBQ BX, CX
	MOVQ $4, R11
	SHLQ CX, R11
	MOVQ R10, CX
	MOVQ $1, R10
	SHLQ CX, R10
	MOVQ R10, DX
	SHLQ $2, DX
	MOVQ BX, CX
	MOVL $0x7f800000, AX
	MOVQ AX, X1
	VPBROADCASTD X1, Z1
	MOVL $1, AX
	MOVQ AX, X2
	VPBROADCASTD X2, Z2
	XORQ R12, R12
	CMPQ CX, $1
	JEQ z1
	CMPQ CX, $2
	JEQ z2
	CMPQ CX, $3
	JEQ z3

z4:
	CMPQ CX, $4
	JEQ z4n
	CMPQ CX, $5
	JEQ z5n
z6n:
	ZSTART4
z6h:
	ZC4(0, 0, 0)
	DECQ BX
	JNZ z6h
	ZSTORE4
	CMPQ R12, R10
	JLT z6n
	VZEROUPPER
	RET

z5n:
	ZSTART4
z5h:
	ZC4(0, 4, 4)
	DECQ BX
	JNZ z5h
	ZSTORE4
	CMPQ R12, R10
	JLT z5n
	VZEROUPPER
	RET

z4n:
	ZSTART4
z4h:
	ZC4(4, 8, 12)
	DECQ BX
	JNZ z4h
	ZSTORE4
	CMPQ R12, R10
	JLT z4n
	VZEROUPPER
	RET

z3:
	VMOVDQU32 zpermK3<>(SB), Z3
z3n:
	ZSTART
z3h:
	VMOVSD (AX), X8
	VPERMPS Z8, Z3, Z8
	ZCANDIDATE
	DECQ BX
	JNZ z3h
	ZSTORE
	CMPQ R12, R10
	JLT z3n
	VZEROUPPER
	RET

z2:
	VMOVDQU32 zpermK2<>(SB), Z3
z2n:
	ZSTART
z2h:
	VMOVUPS (AX), X8
	VPERMPS Z8, Z3, Z8
	ZCANDIDATE
	DECQ BX
	JNZ z2h
	ZSTORE
	CMPQ R12, R10
	JLT z2n
	VZEROUPPER
	RET

z1:
	VMOVDQU32 zpermK1<>(SB), Z3
z1n:
	ZSTART
z1h:
	VMOVUPS (AX), Y8
	VPERMPS Z8, Z3, Z8
	ZCANDIDATE
	DECQ BX
	JNZ z1h
	ZSTORE
	CMPQ R12, R10
	JLT z1n
	VZEROUPPER
	RET
