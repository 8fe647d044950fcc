//go:build amd64 && !purego

// Dense matrix kernels for amd64 with AVX-512 (F, BW, VL, DQ) + F16C.
//
// Conventions (as in matmul_amd64.s): ABI0, NOSPLIT, no frame; BP, R14 and
// R15 untouched; VZEROUPPER before RET. EVEX encodings: 32 vector
// registers, opmasks, 16 float32 lanes, zero-masked loads that do not
// fault on the lanes they skip. VHADDPS exists only VEX encoded, so it is
// used on X0..X15 only.
//
// One summation order for every path. Each output is a dot product over K,
// computed in K blocks [b·kc, b·kc + kc) (kc from zKC in matmul512_amd64.go,
// a multiple of 16 that depends only on K):
//
//	per block:  two 16-lane accumulators E and O start at +0; the block's
//	            16-element steps go alternately to E (steps 0, 2, 4, …) and
//	            O (1, 3, 5, …), lane j taking x[k]·w[k] for k ≡ j (mod 16)
//	            by one FMA; the partial last step of a row (k mod 16 ≠ 0) is
//	            merge-masked (the other lanes keep their sums exactly);
//	            reduce: v = E + O (lane-wise), t8 = lo8 + hi8 of v,
//	            t4 = lo4 + hi4 of t8, s = (t4[0] + t4[1]) + (t4[2] + t4[3]);
//	per output: dst = s_0, then dst = dst + s_b for b = 1, 2, … in order.
//
// The matrix-vector kernels (gemvZ1*, M < prefillMinM) do this reading the
// weights in place; the prefill kernels (gemmZ3x4, gemvZ4p) read converted
// weight panels, and 4 outputs share the VHADDPS tree, which adds the same
// pairs. So every output element is bitwise the same whatever M is. The two
// chains per output let the matrix-vector kernels read one weight row
// front to back (one stream of addresses) at the FMA rate.
//
// Routines:
//
//	gemmZ3x4        prefill micro-kernel, 3 x rows × 4 panel rows
//	gemvZ4p         1 x row × 4 panel rows (prefill leftover rows)
//	gemvZ1{F32,F16,BF16}  decode: 1 x row, weight rows streamed from DRAM
//	packZ{F32,F16,BF16}   weight panel packing (prefill)

#include "textflag.h"

// Software prefetch distance of the matrix-vector kernels, in bytes ahead
// in the weight row (see PREFETCH_DIST in matmul_amd64.s).
#define ZPF_DIST 4096

// Reduce the four accumulators Z(a..d) of 4 outputs to [s_a s_b s_c s_d]
// in X(a). All four must be among Z0..Z15 (VHADDPS); Y/X(t) is a temporary.
//   hi8 + lo8 and hi4 + lo4 of each, then
//   hadd(a, b) = [a01 a23 b01 b23], hadd(c, d) likewise,
//   hadd of the two = [a01+a23  b01+b23  c01+c23  d01+d23].
#define RED4(za, ya, xa, zb, yb, xb, zc, yc, xc, zd, yd, xd, yt, xt) \
	VEXTRACTF32X8	$1, za, yt; \
	VADDPS	yt, ya, ya; \
	VEXTRACTF32X4	$1, ya, xt; \
	VADDPS	xt, xa, xa; \
	VEXTRACTF32X8	$1, zb, yt; \
	VADDPS	yt, yb, yb; \
	VEXTRACTF32X4	$1, yb, xt; \
	VADDPS	xt, xb, xb; \
	VEXTRACTF32X8	$1, zc, yt; \
	VADDPS	yt, yc, yc; \
	VEXTRACTF32X4	$1, yc, xt; \
	VADDPS	xt, xc, xc; \
	VEXTRACTF32X8	$1, zd, yt; \
	VADDPS	yt, yd, yd; \
	VEXTRACTF32X4	$1, yd, xt; \
	VADDPS	xt, xd, xd; \
	VHADDPS	xb, xa, xa; \
	VHADDPS	xd, xc, xc; \
	VHADDPS	xc, xa, xa

// Reduce Z0 to the scalar s in X0 (the same tree for one output; Y16/X16
// temporaries).
#define RED1 \
	VEXTRACTF32X8	$1, Z0, Y16; \
	VADDPS	Y16, Y0, Y0; \
	VEXTRACTF32X4	$1, Y0, X16; \
	VADDPS	X16, X0, X0; \
	VHADDPS	X0, X0, X0; \
	VHADDPS	X0, X0, X0

// Masked (zeroing) conversions of 16 elements: m, mask, z.
#define PKF32(m, k, z) VMOVUPS.Z m, k, z
#define PKF16(m, k, z) VCVTPH2PS.Z m, k, z
#define PKBF16(m, k, z) VPMOVZXWD.Z m, k, z; VPSLLD $16, z, z

#define PACKSETUP(shift) \
	MOVQ	panel+0(FP), DI; \
	MOVQ	r0+8(FP), SI; \
	MOVQ	r1+16(FP), R8; \
	MOVQ	r2+24(FP), R9; \
	MOVQ	r3+32(FP), R10; \
	MOVWLZX	m1+40(FP), R11; \
	KMOVW	R11, K4; \
	MOVWLZX	m2+42(FP), R11; \
	KMOVW	R11, K5; \
	MOVWLZX	m3+44(FP), R11; \
	KMOVW	R11, K6; \
	MOVL	$0xffff, R11; \
	KMOVW	R11, K7; \
	MOVQ	k+48(FP), CX; \
	SHRQ	$4, CX; \
	SHLQ	$(4+shift), CX; \
	MOVWLZX	tail+56(FP), R11; \
	KMOVW	R11, K1

#define PACKROWS(CV, es, lloop, ltail, ldone) \
	XORQ	AX, AX; \
	TESTQ	CX, CX; \
	JZ	ltail; \
lloop: \
	CV((SI)(AX*1), K7, Z0); \
	CV((R8)(AX*1), K4, Z1); \
	CV((R9)(AX*1), K5, Z2); \
	CV((R10)(AX*1), K6, Z3); \
	VMOVUPS	Z0, (DI); \
	VMOVUPS	Z1, 64(DI); \
	VMOVUPS	Z2, 128(DI); \
	VMOVUPS	Z3, 192(DI); \
	ADDQ	$256, DI; \
	ADDQ	$(16*es), AX; \
	CMPQ	AX, CX; \
	JB	lloop; \
ltail: \
	KORTESTW	K1, K1; \
	JZ	ldone; \
	CV((SI)(AX*1), K1, Z0); \
	KANDW	K1, K4, K2; \
	CV((R8)(AX*1), K2, Z1); \
	KANDW	K1, K5, K2; \
	CV((R9)(AX*1), K2, Z2); \
	KANDW	K1, K6, K2; \
	CV((R10)(AX*1), K2, Z3); \
	VMOVUPS	Z0, (DI); \
	VMOVUPS	Z1, 64(DI); \
	VMOVUPS	Z2, 128(DI); \
	VMOVUPS	Z3, 192(DI); \
ldone:

// func gemmZ3x4(x *float32, ldx int, panel *float32, k int, tail uint16, dst *float32, ldd int, ngroups int, lastMask uint8, accum bool)
//
// 3 x rows × 4·ngroups panel rows:
//
//	dst[r*ldd + 4g + c] (+)= Σ_{i<k} x[r*ldx + i] · W[4g+c][i]
//
// The panel holds groups of 4 converted weight rows interleaved by 16
// ([group][⌈k/16⌉][4][16] float32, zero-padded to whole steps and groups;
// packZ*). tail is the lane mask of the last, partial 16-step (0: none);
// lastMask selects the columns of the last group that exist (0xf for a
// whole one). With accum the sums are added to dst. x (3 rows of ≤ 1024)
// stays in L1, the panel (≤ 120 rows) in L2; 24 independent chains cover
// the FMA latency, and the FMA pipes are the bottleneck.
//
// Register plan: SI, DI, R8 x rows 0..2,
// AX byte offset along K (x), R10 panel position, CX bytes of whole steps,
// DX dst of the group, R13 ldd in bytes, R11/R12 temporaries; Z0..Z11 the
// E accumulators Z(4r+c), Z12..Z23 the O ones, Z24..Z27 the panel rows'
// values of the step, Z28 x. Per pair of steps 2·(4+3) loads and 24 FMAs.
TEXT ·gemmZ3x4(SB), NOSPLIT, $0-66
	MOVQ	x+0(FP), SI
	MOVQ	ldx+8(FP), BX
	SHLQ	$2, BX
	LEAQ	(SI)(BX*1), DI
	LEAQ	(SI)(BX*2), R8
	MOVQ	panel+16(FP), R10
	MOVQ	k+24(FP), CX
	SHLQ	$2, CX
	ANDQ	$-64, CX
	MOVWLZX	tail+32(FP), R11
	KMOVW	R11, K1
	MOVQ	dst+40(FP), DX
	MOVQ	ldd+48(FP), R13
	SHLQ	$2, R13
	CMPQ	ngroups+56(FP), $0
	JLE	gz34done

gz34group:
	MOVL	$0xf, R11
	CMPQ	ngroups+56(FP), $1
	JNE	gz34mask
	MOVBLZX	lastMask+64(FP), R11

gz34mask:
	KMOVW	R11, K2
	VPXORD	Z0, Z0, Z0
	VPXORD	Z1, Z1, Z1
	VPXORD	Z2, Z2, Z2
	VPXORD	Z3, Z3, Z3
	VPXORD	Z4, Z4, Z4
	VPXORD	Z5, Z5, Z5
	VPXORD	Z6, Z6, Z6
	VPXORD	Z7, Z7, Z7
	VPXORD	Z8, Z8, Z8
	VPXORD	Z9, Z9, Z9
	VPXORD	Z10, Z10, Z10
	VPXORD	Z11, Z11, Z11
	VPXORD	Z12, Z12, Z12
	VPXORD	Z13, Z13, Z13
	VPXORD	Z14, Z14, Z14
	VPXORD	Z15, Z15, Z15
	VPXORD	Z16, Z16, Z16
	VPXORD	Z17, Z17, Z17
	VPXORD	Z18, Z18, Z18
	VPXORD	Z19, Z19, Z19
	VPXORD	Z20, Z20, Z20
	VPXORD	Z21, Z21, Z21
	VPXORD	Z22, Z22, Z22
	VPXORD	Z23, Z23, Z23
	XORQ	AX, AX

gz34loop:
	CMPQ	AX, CX
	JAE	gz34tailE
	VMOVUPS	0(R10), Z24
	VMOVUPS	64(R10), Z25
	VMOVUPS	128(R10), Z26
	VMOVUPS	192(R10), Z27
	VMOVUPS	(SI)(AX*1), Z28
	VFMADD231PS	Z24, Z28, Z0
	VFMADD231PS	Z25, Z28, Z1
	VFMADD231PS	Z26, Z28, Z2
	VFMADD231PS	Z27, Z28, Z3
	VMOVUPS	(DI)(AX*1), Z28
	VFMADD231PS	Z24, Z28, Z4
	VFMADD231PS	Z25, Z28, Z5
	VFMADD231PS	Z26, Z28, Z6
	VFMADD231PS	Z27, Z28, Z7
	VMOVUPS	(R8)(AX*1), Z28
	VFMADD231PS	Z24, Z28, Z8
	VFMADD231PS	Z25, Z28, Z9
	VFMADD231PS	Z26, Z28, Z10
	VFMADD231PS	Z27, Z28, Z11
	ADDQ	$256, R10
	ADDQ	$64, AX
	CMPQ	AX, CX
	JAE	gz34tailO
	VMOVUPS	0(R10), Z24
	VMOVUPS	64(R10), Z25
	VMOVUPS	128(R10), Z26
	VMOVUPS	192(R10), Z27
	VMOVUPS	(SI)(AX*1), Z28
	VFMADD231PS	Z24, Z28, Z12
	VFMADD231PS	Z25, Z28, Z13
	VFMADD231PS	Z26, Z28, Z14
	VFMADD231PS	Z27, Z28, Z15
	VMOVUPS	(DI)(AX*1), Z28
	VFMADD231PS	Z24, Z28, Z16
	VFMADD231PS	Z25, Z28, Z17
	VFMADD231PS	Z26, Z28, Z18
	VFMADD231PS	Z27, Z28, Z19
	VMOVUPS	(R8)(AX*1), Z28
	VFMADD231PS	Z24, Z28, Z20
	VFMADD231PS	Z25, Z28, Z21
	VFMADD231PS	Z26, Z28, Z22
	VFMADD231PS	Z27, Z28, Z23
	ADDQ	$256, R10
	ADDQ	$64, AX
	JMP	gz34loop

gz34tailE:
	KORTESTW	K1, K1
	JZ	gz34reduce
	VMOVUPS	0(R10), Z24
	VMOVUPS	64(R10), Z25
	VMOVUPS	128(R10), Z26
	VMOVUPS	192(R10), Z27
	VMOVUPS.Z	(SI)(AX*1), K1, Z28
	VFMADD231PS	Z24, Z28, K1, Z0
	VFMADD231PS	Z25, Z28, K1, Z1
	VFMADD231PS	Z26, Z28, K1, Z2
	VFMADD231PS	Z27, Z28, K1, Z3
	VMOVUPS.Z	(DI)(AX*1), K1, Z28
	VFMADD231PS	Z24, Z28, K1, Z4
	VFMADD231PS	Z25, Z28, K1, Z5
	VFMADD231PS	Z26, Z28, K1, Z6
	VFMADD231PS	Z27, Z28, K1, Z7
	VMOVUPS.Z	(R8)(AX*1), K1, Z28
	VFMADD231PS	Z24, Z28, K1, Z8
	VFMADD231PS	Z25, Z28, K1, Z9
	VFMADD231PS	Z26, Z28, K1, Z10
	VFMADD231PS	Z27, Z28, K1, Z11
	ADDQ	$256, R10
	JMP	gz34reduce

gz34tailO:
	KORTESTW	K1, K1
	JZ	gz34reduce
	VMOVUPS	0(R10), Z24
	VMOVUPS	64(R10), Z25
	VMOVUPS	128(R10), Z26
	VMOVUPS	192(R10), Z27
	VMOVUPS.Z	(SI)(AX*1), K1, Z28
	VFMADD231PS	Z24, Z28, K1, Z12
	VFMADD231PS	Z25, Z28, K1, Z13
	VFMADD231PS	Z26, Z28, K1, Z14
	VFMADD231PS	Z27, Z28, K1, Z15
	VMOVUPS.Z	(DI)(AX*1), K1, Z28
	VFMADD231PS	Z24, Z28, K1, Z16
	VFMADD231PS	Z25, Z28, K1, Z17
	VFMADD231PS	Z26, Z28, K1, Z18
	VFMADD231PS	Z27, Z28, K1, Z19
	VMOVUPS.Z	(R8)(AX*1), K1, Z28
	VFMADD231PS	Z24, Z28, K1, Z20
	VFMADD231PS	Z25, Z28, K1, Z21
	VFMADD231PS	Z26, Z28, K1, Z22
	VFMADD231PS	Z27, Z28, K1, Z23
	ADDQ	$256, R10

gz34reduce:
	VADDPS	Z12, Z0, Z0
	VADDPS	Z13, Z1, Z1
	VADDPS	Z14, Z2, Z2
	VADDPS	Z15, Z3, Z3
	VADDPS	Z16, Z4, Z4
	VADDPS	Z17, Z5, Z5
	VADDPS	Z18, Z6, Z6
	VADDPS	Z19, Z7, Z7
	VADDPS	Z20, Z8, Z8
	VADDPS	Z21, Z9, Z9
	VADDPS	Z22, Z10, Z10
	VADDPS	Z23, Z11, Z11
	RED4(Z0, Y0, X0, Z1, Y1, X1, Z2, Y2, X2, Z3, Y3, X3, Y29, X29)
	RED4(Z4, Y4, X4, Z5, Y5, X5, Z6, Y6, X6, Z7, Y7, X7, Y29, X29)
	RED4(Z8, Y8, X8, Z9, Y9, X9, Z10, Y10, X10, Z11, Y11, X11, Y29, X29)
	LEAQ	(DX)(R13*2), R12        // dst row 2
	CMPB	accum+65(FP), $0
	JEQ	gz34store
	VMOVUPS.Z	(DX), K2, X16
	VADDPS	X16, X0, X0
	VMOVUPS.Z	(DX)(R13*1), K2, X16
	VADDPS	X16, X4, X4
	VMOVUPS.Z	(R12), K2, X16
	VADDPS	X16, X8, X8

gz34store:
	VMOVUPS	X0, K2, (DX)
	VMOVUPS	X4, K2, (DX)(R13*1)
	VMOVUPS	X8, K2, (R12)
	ADDQ	$16, DX
	DECQ	ngroups+56(FP)
	JNZ	gz34group

gz34done:
	VZEROUPPER
	RET

// func gemvZ4p(x *float32, panel *float32, k int, tail uint16, dst *float32, ngroups int, lastMask uint8, accum bool)
//
// One x row against the panel groups of gemmZ3x4 (the M mod 3 leftover
// rows of the prefill path): dst[4g + c] (+)= Σ x[i]·W[4g+c][i]. Z0..Z3
// the E, Z4..Z7 the O accumulators; SI x, AX byte offset, R10 panel
// position, CX bytes of whole steps, DX dst of the group, R11 temp; Z20 x,
// the panel values are FMA memory operands. K1 tail mask, K2 store mask.
TEXT ·gemvZ4p(SB), NOSPLIT, $0-50
	MOVQ	x+0(FP), SI
	MOVQ	panel+8(FP), R10
	MOVQ	k+16(FP), CX
	SHLQ	$2, CX
	ANDQ	$-64, CX
	MOVWLZX	tail+24(FP), R11
	KMOVW	R11, K1
	MOVQ	dst+32(FP), DX
	CMPQ	ngroups+40(FP), $0
	JLE	gz4edone

gz4egroup:
	MOVL	$0xf, R11
	CMPQ	ngroups+40(FP), $1
	JNE	gz4emask
	MOVBLZX	lastMask+48(FP), R11

gz4emask:
	KMOVW	R11, K2
	VPXORD	Z0, Z0, Z0
	VPXORD	Z1, Z1, Z1
	VPXORD	Z2, Z2, Z2
	VPXORD	Z3, Z3, Z3
	VPXORD	Z4, Z4, Z4
	VPXORD	Z5, Z5, Z5
	VPXORD	Z6, Z6, Z6
	VPXORD	Z7, Z7, Z7
	XORQ	AX, AX

gz4eloop:
	CMPQ	AX, CX
	JAE	gz4etailE
	VMOVUPS	(SI)(AX*1), Z20
	VFMADD231PS	0(R10), Z20, Z0
	VFMADD231PS	64(R10), Z20, Z1
	VFMADD231PS	128(R10), Z20, Z2
	VFMADD231PS	192(R10), Z20, Z3
	ADDQ	$256, R10
	ADDQ	$64, AX
	CMPQ	AX, CX
	JAE	gz4etailO
	VMOVUPS	(SI)(AX*1), Z20
	VFMADD231PS	0(R10), Z20, Z4
	VFMADD231PS	64(R10), Z20, Z5
	VFMADD231PS	128(R10), Z20, Z6
	VFMADD231PS	192(R10), Z20, Z7
	ADDQ	$256, R10
	ADDQ	$64, AX
	JMP	gz4eloop

gz4etailE:
	KORTESTW	K1, K1
	JZ	gz4ereduce
	VMOVUPS.Z	(SI)(AX*1), K1, Z20
	VFMADD231PS	0(R10), Z20, K1, Z0
	VFMADD231PS	64(R10), Z20, K1, Z1
	VFMADD231PS	128(R10), Z20, K1, Z2
	VFMADD231PS	192(R10), Z20, K1, Z3
	ADDQ	$256, R10
	JMP	gz4ereduce

gz4etailO:
	KORTESTW	K1, K1
	JZ	gz4ereduce
	VMOVUPS.Z	(SI)(AX*1), K1, Z20
	VFMADD231PS	0(R10), Z20, K1, Z4
	VFMADD231PS	64(R10), Z20, K1, Z5
	VFMADD231PS	128(R10), Z20, K1, Z6
	VFMADD231PS	192(R10), Z20, K1, Z7
	ADDQ	$256, R10

gz4ereduce:
	VADDPS	Z4, Z0, Z0
	VADDPS	Z5, Z1, Z1
	VADDPS	Z6, Z2, Z2
	VADDPS	Z7, Z3, Z3
	RED4(Z0, Y0, X0, Z1, Y1, X1, Z2, Y2, X2, Z3, Y3, X3, Y21, X21)
	CMPB	accum+49(FP), $0
	JEQ	gz4estore
	VMOVUPS.Z	(DX), K2, X16
	VADDPS	X16, X0, X0

gz4estore:
	VMOVUPS	X0, K2, (DX)
	ADDQ	$16, DX
	DECQ	ngroups+40(FP)
	JNZ	gz4egroup

gz4edone:
	VZEROUPPER
	RET

// func gemvZ1F32(x *float32, w *float32, ldw int, k int, kc int, tail uint16, dst *float32, n int)
// func gemvZ1F16(x *float32, w *uint16, ldw int, k int, kc int, tail uint16, dst *float32, n int)
// func gemvZ1BF16(x *float32, w *uint16, ldw int, k int, kc int, tail uint16, dst *float32, n int)
//
//	dst[j] = Σ_{i<k} x[i]·float32(w[j*ldw + i])   for j < n
//
// The matrix-vector kernels (decode). Each row is read once,
// front to back (one stream of addresses, rows being contiguous), its K
// blocks one after the other, the steps of a block alternating between Z0
// (E) and Z1 (O); software prefetch ZPF_DIST bytes ahead (non-temporal).
//
// Register plan: SI x, R10 the current row, BX ldw in bytes, AX byte
// offset into the row of w (x at AX·xs), R12 kc and R13 k in bytes of w,
// CX end of the current block, R11 end of its whole steps, R8 rows left,
// DX dst[j], R9 "dst written" flag; Z2..Z5 temporaries, Z16 reduction.

TEXT ·gemvZ1F32(SB), NOSPLIT, $0-64
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$2, BX
	MOVQ	k+24(FP), R13
	MOVQ	kc+32(FP), R12
	MOVWLZX	tail+40(FP), R11
	KMOVW	R11, K1
	MOVQ	dst+48(FP), DX
	MOVQ	n+56(FP), R8
	TESTQ	R8, R8
	JLE	gzef32done
	SHLQ	$2, R12
	SHLQ	$2, R13

gzef32row:
	XORQ	AX, AX
	MOVB	$0, R9

gzef32block:
	VPXORD	Z0, Z0, Z0
	VPXORD	Z1, Z1, Z1
	LEAQ	(AX)(R12*1), CX
	CMPQ	CX, R13
	JBE	gzef32b1
	MOVQ	R13, CX

gzef32b1:
	MOVQ	CX, R11
	SUBQ	AX, R11
	ANDQ	$-64, R11
	ADDQ	AX, R11                 // end of the whole steps

gzef32loop:
	CMPQ	AX, R11
	JAE	gzef32tailE
	PREFETCHNTA	ZPF_DIST(R10)(AX*1)
	VMOVUPS	(R10)(AX*1), Z2
	VFMADD231PS	(SI)(AX*1), Z2, Z0
	ADDQ	$64, AX
	CMPQ	AX, R11
	JAE	gzef32tailO
	PREFETCHNTA	ZPF_DIST(R10)(AX*1)
	VMOVUPS	(R10)(AX*1), Z3
	VFMADD231PS	(SI)(AX*1), Z3, Z1
	ADDQ	$64, AX
	JMP	gzef32loop

gzef32tailE:
	CMPQ	AX, CX
	JAE	gzef32red
	VMOVUPS.Z	(R10)(AX*1), K1, Z2
	VMOVUPS.Z	(SI)(AX*1), K1, Z3
	VFMADD231PS	Z3, Z2, K1, Z0
	MOVQ	CX, AX
	JMP	gzef32red

gzef32tailO:
	CMPQ	AX, CX
	JAE	gzef32red
	VMOVUPS.Z	(R10)(AX*1), K1, Z2
	VMOVUPS.Z	(SI)(AX*1), K1, Z3
	VFMADD231PS	Z3, Z2, K1, Z1
	MOVQ	CX, AX

gzef32red:
	VADDPS	Z1, Z0, Z0
	RED1
	TESTB	R9, R9
	JEQ	gzef32s0
	VADDSS	(DX), X0, X0

gzef32s0:
	VMOVSS	X0, (DX)
	MOVB	$1, R9
	CMPQ	AX, R13
	JB	gzef32block
	ADDQ	$4, DX
	ADDQ	BX, R10
	DECQ	R8
	JNZ	gzef32row

gzef32done:
	VZEROUPPER
	RET

TEXT ·gemvZ1F16(SB), NOSPLIT, $0-64
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$1, BX
	MOVQ	k+24(FP), R13
	MOVQ	kc+32(FP), R12
	MOVWLZX	tail+40(FP), R11
	KMOVW	R11, K1
	MOVQ	dst+48(FP), DX
	MOVQ	n+56(FP), R8
	TESTQ	R8, R8
	JLE	gzef16done
	SHLQ	$1, R12
	SHLQ	$1, R13

gzef16row:
	XORQ	AX, AX
	MOVB	$0, R9

gzef16block:
	VPXORD	Z0, Z0, Z0
	VPXORD	Z1, Z1, Z1
	LEAQ	(AX)(R12*1), CX
	CMPQ	CX, R13
	JBE	gzef16b1
	MOVQ	R13, CX

gzef16b1:
	MOVQ	CX, R11
	SUBQ	AX, R11
	ANDQ	$-32, R11
	ADDQ	AX, R11                 // end of the whole steps

gzef16loop:
	CMPQ	AX, R11
	JAE	gzef16tailE
	PREFETCHNTA	ZPF_DIST(R10)(AX*1)
	VCVTPH2PS	(R10)(AX*1), Z2
	VFMADD231PS	(SI)(AX*2), Z2, Z0
	ADDQ	$32, AX
	CMPQ	AX, R11
	JAE	gzef16tailO
	PREFETCHNTA	ZPF_DIST(R10)(AX*1)
	VCVTPH2PS	(R10)(AX*1), Z3
	VFMADD231PS	(SI)(AX*2), Z3, Z1
	ADDQ	$32, AX
	JMP	gzef16loop

gzef16tailE:
	CMPQ	AX, CX
	JAE	gzef16red
	VCVTPH2PS.Z	(R10)(AX*1), K1, Z2
	VMOVUPS.Z	(SI)(AX*2), K1, Z3
	VFMADD231PS	Z3, Z2, K1, Z0
	MOVQ	CX, AX
	JMP	gzef16red

gzef16tailO:
	CMPQ	AX, CX
	JAE	gzef16red
	VCVTPH2PS.Z	(R10)(AX*1), K1, Z2
	VMOVUPS.Z	(SI)(AX*2), K1, Z3
	VFMADD231PS	Z3, Z2, K1, Z1
	MOVQ	CX, AX

gzef16red:
	VADDPS	Z1, Z0, Z0
	RED1
	TESTB	R9, R9
	JEQ	gzef16s0
	VADDSS	(DX), X0, X0

gzef16s0:
	VMOVSS	X0, (DX)
	MOVB	$1, R9
	CMPQ	AX, R13
	JB	gzef16block
	ADDQ	$4, DX
	ADDQ	BX, R10
	DECQ	R8
	JNZ	gzef16row

gzef16done:
	VZEROUPPER
	RET

TEXT ·gemvZ1BF16(SB), NOSPLIT, $0-64
	MOVQ	x+0(FP), SI
	MOVQ	w+8(FP), R10
	MOVQ	ldw+16(FP), BX
	SHLQ	$1, BX
	MOVQ	k+24(FP), R13
	MOVQ	kc+32(FP), R12
	MOVWLZX	tail+40(FP), R11
	KMOVW	R11, K1
	MOVQ	dst+48(FP), DX
	MOVQ	n+56(FP), R8
	TESTQ	R8, R8
	JLE	gzebf16done
	SHLQ	$1, R12
	SHLQ	$1, R13

gzebf16row:
	XORQ	AX, AX
	MOVB	$0, R9

gzebf16block:
	VPXORD	Z0, Z0, Z0
	VPXORD	Z1, Z1, Z1
	LEAQ	(AX)(R12*1), CX
	CMPQ	CX, R13
	JBE	gzebf16b1
	MOVQ	R13, CX

gzebf16b1:
	MOVQ	CX, R11
	SUBQ	AX, R11
	ANDQ	$-32, R11
	ADDQ	AX, R11                 // end of the whole steps

gzebf16loop:
	CMPQ	AX, R11
	JAE	gzebf16tailE
	PREFETCHNTA	ZPF_DIST(R10)(AX*1)
	VPMOVZXWD	(R10)(AX*1), Z2
	VPSLLD	$16, Z2, Z2
	VFMADD231PS	(SI)(AX*2), Z2, Z0
	ADDQ	$32, AX
	CMPQ	AX, R11
	JAE	gzebf16tailO
	PREFETCHNTA	ZPF_DIST(R10)(AX*1)
	VPMOVZXWD	(R10)(AX*1), Z3
	VPSLLD	$16, Z3, Z3
	VFMADD231PS	(SI)(AX*2), Z3, Z1
	ADDQ	$32, AX
	JMP	gzebf16loop

gzebf16tailE:
	CMPQ	AX, CX
	JAE	gzebf16red
	VPMOVZXWD.Z	(R10)(AX*1), K1, Z2
	VPSLLD	$16, Z2, Z2
	VMOVUPS.Z	(SI)(AX*2), K1, Z3
	VFMADD231PS	Z3, Z2, K1, Z0
	MOVQ	CX, AX
	JMP	gzebf16red

gzebf16tailO:
	CMPQ	AX, CX
	JAE	gzebf16red
	VPMOVZXWD.Z	(R10)(AX*1), K1, Z2
	VPSLLD	$16, Z2, Z2
	VMOVUPS.Z	(SI)(AX*2), K1, Z3
	VFMADD231PS	Z3, Z2, K1, Z1
	MOVQ	CX, AX

gzebf16red:
	VADDPS	Z1, Z0, Z0
	RED1
	TESTB	R9, R9
	JEQ	gzebf16s0
	VADDSS	(DX), X0, X0

gzebf16s0:
	VMOVSS	X0, (DX)
	MOVB	$1, R9
	CMPQ	AX, R13
	JB	gzebf16block
	ADDQ	$4, DX
	ADDQ	BX, R10
	DECQ	R8
	JNZ	gzebf16row

gzebf16done:
	VZEROUPPER
	RET

// Weight panel packing for the prefill path.
//
// func packZF32(panel *float32, r0, r1, r2, r3 *float32, m1, m2, m3 uint16, k int, tail uint16)
// func packZF16(panel *float32, r0, r1, r2, r3 *uint16, m1, m2, m3 uint16, k int, tail uint16)
// func packZBF16(panel *float32, r0, r1, r2, r3 *uint16, m1, m2, m3 uint16, k int, tail uint16)
//
// One panel group: 4 weight rows of k elements converted to float32 and
// interleaved by 16: step t of row j at panel + (4t + j)·64 bytes. Rows
// 1..3 are read under the lane masks m1..m3 (0 for a row that does not
// exist: its pointer is then any valid one and it packs as zeros); the
// partial last step (tail mask) is zero-padded.
//
// Register plan: DI panel, SI/R8/R9/R10 rows 0..3, AX byte offset into the
// rows, CX bytes of whole steps, Z0..Z3 converted rows; K1 tail mask,
// K4..K6 masks of rows 1..3, K7 all ones (row 0), K2 a row's tail mask.

TEXT ·packZF32(SB), NOSPLIT, $0-58
	PACKSETUP(2)
	PACKROWS(PKF32, 4, pkf32loop, pkf32tail, pkf32done)
	VZEROUPPER
	RET

TEXT ·packZF16(SB), NOSPLIT, $0-58
	PACKSETUP(1)
	PACKROWS(PKF16, 2, pkf16loop, pkf16tail, pkf16done)
	VZEROUPPER
	RET

TEXT ·packZBF16(SB), NOSPLIT, $0-58
	PACKSETUP(1)
	PACKROWS(PKBF16, 2, pkbf16loop, pkbf16tail, pkbf16done)
	VZEROUPPER
	RET
