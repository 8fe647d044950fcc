//go:build amd64 && !purego

#include "textflag.h"

// func dotAVX2(acc *float32, tiles *byte, stride int, ntiles int, x *float32, tab *int32, rows *int32, consts *uint32, wmask *int32, mul1 bool)
//
// dotAVX512 (dot_amd64.s) for CPUs with AVX2, FMA and F16C but without
// AVX-512: the same sums, acc[16·m + l] = Σ_kt value(kt, e)·x[16·kt + row(e)]
// for trellis position e = 16·m + l, in chunks of 8 positions (half h of
// chunk m) with the same tables (tab: per chunk of 16 the window words'
// indices and shifts; rows: row(e)). Sixteen ymm registers cannot hold the
// 32 chunks' sums, so acc lives in memory (zeroed here, one load and
// store a chunk a tile). The tile's 8·K words (K ≤ 4: at most 32) are
// held in four registers; a window's word is picked from them by four
// VPERMD and three blends on the index's bits 3 and 4 (AVX2 has no
// two-register permute, and VPGATHERDD measured ten times slower). The
// decode is dotAVX512's: 3INST and MCG's two fp16 halves to float32 by
// moving bits (their exponent fields are always 011ab, see DEC3 in
// dot_amd64.s), MUL1 as fp16((1024 + bytesum)·k + b), each value rounded
// to fp16 as exllamav3's decode does, times x[row(e)]. Each position's sum
// takes the same operations in the same order as dotAVX512's: the same
// results, bit for bit. The codebook's constants come from consts (eight
// copies each, as memory operands: 3INST/MCG multiplier, addend, mask,
// xor, 0x80000000, 0x01FFE000, 0x3E000000; MUL1 multiplier, 0x00FF00FF,
// 0xFFFF, 1024.0, k, b), the tile's load masks from wmask (four of eight
// dwords, the words past 8·K masked off).
//
// Registers: SI tile, DX stride, CX tiles left, DI x, R8 tab, R9 rows,
// AX acc, BX chunks left, R11 consts, R12 wmask; Y12–Y15 the tile's words;
// Y10, Y11 the tile's 16 x values; Y0–Y9 temporaries.

// PICK(idx, dst): dst = the tile word of each lane's index in idx (0…31),
// idx kept.
#define PICK(idx, dst) \
	VPERMD Y12, idx, Y6 \
	VPERMD Y13, idx, Y7 \
	VPSLLD $28, idx, Y8 \
	VBLENDVPS Y8, Y7, Y6, Y6 \
	VPERMD Y14, idx, Y7 \
	VPERMD Y15, idx, Y9 \
	VBLENDVPS Y8, Y9, Y7, Y7 \
	VPSLLD $27, idx, Y8 \
	VBLENDVPS Y8, Y7, Y6, dst

// WINDOW2(h) leaves the states of the 8 positions of half h of chunk m
// (R8 at chunk m's table) in Y1.
#define WINDOW2(h) \
	VMOVDQU (h*32)(R8), Y0 \
	PICK(Y0, Y1) \
	VMOVDQU (h*32+64)(R8), Y0 \
	PICK(Y0, Y2) \
	VPSLLVD (h*32+128)(R8), Y1, Y1 \
	VPSRLVD (h*32+192)(R8), Y2, Y2 \
	VPOR Y2, Y1, Y1 \
	VPSRLD $16, Y1, Y1

// DEC3_2: 3INST / MCG states in Y1 → values in Y2.
#define DEC3_2 \
	VPMULLD 0(R11), Y1, Y1 \
	VPADDD 32(R11), Y1, Y1 \
	VPAND 64(R11), Y1, Y1 \
	VPXOR 96(R11), Y1, Y1 \
	VPSRLD $3, Y1, Y2 \
	VPAND 160(R11), Y2, Y2 \
	VPAND 128(R11), Y1, Y3 \
	VPOR Y3, Y2, Y2 \
	VPOR 192(R11), Y2, Y2 \
	VPSLLD $16, Y1, Y3 \
	VPAND 128(R11), Y3, Y3 \
	VPSLLD $13, Y1, Y4 \
	VPAND 160(R11), Y4, Y4 \
	VPOR Y4, Y3, Y3 \
	VPOR 192(R11), Y3, Y3 \
	VADDPS Y2, Y3, Y2 \
	VCVTPS2PH $0, Y2, X2 \
	VCVTPH2PS X2, Y2

// DECM2: MUL1 states in Y1 → values in Y2.
#define DECM2 \
	VPMULLD 0(R11), Y1, Y1 \
	VPSRLD $8, Y1, Y2 \
	VPAND 32(R11), Y1, Y1 \
	VPAND 32(R11), Y2, Y2 \
	VPADDD Y2, Y1, Y1 \
	VPSRLD $16, Y1, Y2 \
	VPAND 64(R11), Y1, Y1 \
	VPADDD Y2, Y1, Y1 \
	VCVTDQ2PS Y1, Y1 \
	VADDPS 96(R11), Y1, Y1 \
	VMOVUPS 128(R11), Y3 \
	VFMADD213PS 160(R11), Y3, Y1 \
	VCVTPS2PH $0, Y1, X2 \
	VCVTPH2PS X2, Y2

// MAC2(h): acc[chunk] += values (Y2) · x[row(e)] for half h of chunk m
// (R9 at chunk m's rows, AX at its sums).
#define MAC2(h) \
	VMOVDQU (h*32)(R9), Y0 \
	VPERMPS Y10, Y0, Y3 \
	VPERMPS Y11, Y0, Y4 \
	VPSLLD $28, Y0, Y0 \
	VBLENDVPS Y0, Y4, Y3, Y3 \
	VMOVUPS (h*32)(AX), Y4 \
	VFMADD231PS Y3, Y2, Y4 \
	VMOVUPS Y4, (h*32)(AX)

// LOADTILE: the tile's words and x values.
#define LOADTILE \
	VMOVDQU 0(R12), Y0 \
	VPMASKMOVD 0(SI), Y0, Y12 \
	VMOVDQU 32(R12), Y0 \
	VPMASKMOVD 32(SI), Y0, Y13 \
	VMOVDQU 64(R12), Y0 \
	VPMASKMOVD 64(SI), Y0, Y14 \
	VMOVDQU 96(R12), Y0 \
	VPMASKMOVD 96(SI), Y0, Y15 \
	VMOVUPS (DI), Y10 \
	VMOVUPS 32(DI), Y11 \
	MOVQ tab+40(FP), R8 \
	MOVQ rows+48(FP), R9 \
	MOVQ acc+0(FP), AX \
	MOVQ $16, BX

#define NEXTTILE \
	ADDQ $256, R8 \
	ADDQ $64, R9 \
	ADDQ $64, AX \
	DECQ BX

TEXT ·dotAVX2(SB), NOSPLIT, $0-73
	MOVQ acc+0(FP), AX
	MOVQ tiles+8(FP), SI
	MOVQ stride+16(FP), DX
	MOVQ ntiles+24(FP), CX
	MOVQ x+32(FP), DI
	MOVQ consts+56(FP), R11
	MOVQ wmask+64(FP), R12
	// zero the 256 sums
	VPXOR Y0, Y0, Y0
	MOVQ $0, R10
zero:
	VMOVUPS Y0, (AX)(R10*1)
	ADDQ $32, R10
	CMPQ R10, $1024
	JB zero
	TESTQ CX, CX
	JEQ done
	CMPB mul1+72(FP), $0
	JNE tilem
tile3:
	LOADTILE
chunk3:
	WINDOW2(0)
	DEC3_2
	MAC2(0)
	WINDOW2(1)
	DEC3_2
	MAC2(1)
	NEXTTILE
	JNZ chunk3
	ADDQ DX, SI
	ADDQ $64, DI
	DECQ CX
	JNZ tile3
	JMP done
tilem:
	LOADTILE
chunkm:
	WINDOW2(0)
	DECM2
	MAC2(0)
	WINDOW2(1)
	DECM2
	MAC2(1)
	NEXTTILE
	JNZ chunkm
	ADDQ DX, SI
	ADDQ $64, DI
	DECQ CX
	JNZ tilem
done:
	VZEROUPPER
	RET
