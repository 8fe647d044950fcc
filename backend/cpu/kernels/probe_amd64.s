//go:build amd64 && !purego

// Machine probes used by the benchmarks (bench_test.go) to put the kernel
// numbers in context: memory read bandwidth, peak FMA throughput and the
// core clock. Same conventions as matmul_amd64.s: ABI0, NOSPLIT, VEX-only,
// VZEROUPPER before RET, no BP/R14/R15.

#include "textflag.h"

// func MemRead(p *byte, n int) uint64
//
// Reads n bytes (n a multiple of 256) and returns the XOR of their 64-bit
// words (a consumer for the reads, and a result the tests can check). The bytes are read as four sequential streams, one per
// quarter of the range, each with a software prefetch 1 KiB ahead. (Four
// far-apart streams per core, plain loads and nothing else: a simple
// read-only reference. The decode kernels, one sequential stream per core
// with their own prefetching, sometimes read slightly faster than this.) Each
// iteration reads one 64-byte line of each stream into four independent
// VPXOR chains (Y0..Y3), far from any ALU limit.
// SI, DI, R8, R9 = the four stream starts, AX = byte offset, CX = n/4.
TEXT ·MemRead(SB), NOSPLIT, $0-24
	MOVQ	p+0(FP), SI
	MOVQ	n+8(FP), CX
	SHRQ	$2, CX                  // bytes per stream (multiple of 64)
	LEAQ	(SI)(CX*1), DI
	LEAQ	(SI)(CX*2), R8
	LEAQ	(DI)(CX*2), R9
	XORQ	AX, AX
	VPXOR	Y0, Y0, Y0
	VPXOR	Y1, Y1, Y1
	VPXOR	Y2, Y2, Y2
	VPXOR	Y3, Y3, Y3
	TESTQ	CX, CX
	JZ	mrdone

mrloop:
	PREFETCHT0	1024(SI)(AX*1)
	PREFETCHT0	1024(DI)(AX*1)
	PREFETCHT0	1024(R8)(AX*1)
	PREFETCHT0	1024(R9)(AX*1)
	VPXOR	(SI)(AX*1), Y0, Y0
	VPXOR	32(SI)(AX*1), Y0, Y0
	VPXOR	(DI)(AX*1), Y1, Y1
	VPXOR	32(DI)(AX*1), Y1, Y1
	VPXOR	(R8)(AX*1), Y2, Y2
	VPXOR	32(R8)(AX*1), Y2, Y2
	VPXOR	(R9)(AX*1), Y3, Y3
	VPXOR	32(R9)(AX*1), Y3, Y3
	ADDQ	$64, AX
	CMPQ	AX, CX
	JB	mrloop

mrdone:
	VPXOR	Y1, Y0, Y0
	VPXOR	Y3, Y2, Y2
	VPXOR	Y2, Y0, Y0
	VEXTRACTI128	$1, Y0, X1
	VPXOR	X1, X0, X0
	VPSHUFD	$0x4e, X0, X1           // the high word onto the low one
	VPXOR	X1, X0, X0
	VMOVQ	X0, AX
	MOVQ	AX, ret+16(FP)
	VZEROUPPER
	RET

// func fmaPeak(n int)
//
// n iterations of 12 independent ymm FMAs (Y0..Y11 += Y12·Y13): enough
// independent chains to cover latency × pipes on current cores, so the loop
// runs at the FMA throughput limit: 12·8·2 = 192 flops per iteration. The
// operands are zero, which is not a special (slow) case for FMA units.
TEXT ·fmaPeak(SB), NOSPLIT, $0-8
	MOVQ	n+0(FP), CX
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
	VXORPS	Y12, Y12, Y12
	VXORPS	Y13, Y13, Y13
	TESTQ	CX, CX
	JLE	fpdone

fploop:
	VFMADD231PS	Y12, Y13, Y0
	VFMADD231PS	Y12, Y13, Y1
	VFMADD231PS	Y12, Y13, Y2
	VFMADD231PS	Y12, Y13, Y3
	VFMADD231PS	Y12, Y13, Y4
	VFMADD231PS	Y12, Y13, Y5
	VFMADD231PS	Y12, Y13, Y6
	VFMADD231PS	Y12, Y13, Y7
	VFMADD231PS	Y12, Y13, Y8
	VFMADD231PS	Y12, Y13, Y9
	VFMADD231PS	Y12, Y13, Y10
	VFMADD231PS	Y12, Y13, Y11
	DECQ	CX
	JNZ	fploop

fpdone:
	VZEROUPPER
	RET

// func clockLoop(n int)
//
// n iterations of a chain of 8 dependent ADDQs (1 cycle latency each; the
// loop counter is a separate chain that runs in parallel), i.e. 8·n core
// cycles: timing it gives the core clock.
TEXT ·clockLoop(SB), NOSPLIT, $0-8
	MOVQ	n+0(FP), CX
	XORQ	AX, AX
	TESTQ	CX, CX
	JLE	cldone

clloop:
	ADDQ	$1, AX
	ADDQ	$1, AX
	ADDQ	$1, AX
	ADDQ	$1, AX
	ADDQ	$1, AX
	ADDQ	$1, AX
	ADDQ	$1, AX
	ADDQ	$1, AX
	DECQ	CX
	JNZ	clloop

cldone:
	RET
