package main

import (
	"fmt"
	"strings"
)

// gptqActKernel emits the act-order GPTQ kernel: the input rows of each
// group are given as a list (g_idx order), so every value is extracted with
// a variable shift instead of a fixed mask. Loop order: column block outer
// (its qweight stripe is prefetched once and then stays in L1/L2 while the
// groups visit its rows in random order), groups, list entries, column
// vectors.
//
// A list entry is 16 bytes: int32 qweight row r of the value, int32 bit
// offset within the word, int32 row r2 holding the value's spill-over bits
// (3-bit only; r itself when there are none), int32 unused.
func gptqActKernel(sb *strings.Builder, bits, mc, c int) {
	name := fmt.Sprintf("gptqact%dM%dC%d", bits, mc, c)
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	acc := func(m, ci int) string { return fmt.Sprintf("Y%d", m*c+ci) }
	xb := func(m int) string { return fmt.Sprintf("Y%d", mc*c+m) }
	const T, T2, CNT, CNT2 = "Y15", "Y14", "X13", "X12"
	if mc*c+mc > 12 {
		panic("registers")
	}
	fmt.Fprintf(sb, `
// func %s(a *gptqActArgs)
//
// Act-order GPTQ %d-bit kernel, %d x row(s), %d column vector(s) per block.
// Y0..Y%d accumulators acc[m][c], Y%d..Y%d broadcast x values, Y15/Y14 the
// extracted words, X13/X12 the shift counts (low / spill-over bits). GPRs:
// DI args, SI qweight stripe base, R8 qweight row stride, AX list entry,
// BX x values (list order, [entry][mc]), CX spill row offset, DX group
// counter, R9 scales, R10 zeros, R11 dst, R12 dst row stride, R13 sx/init
// pairs, R14 row offset / temp.
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
	MOVQ	8(DI), R8
	MOVQ	88(DI), R12
	MOVQ	0(DI), SI
	MOVQ	80(DI), R11
	MOVQ	96(DI), R14
	MOVQ	R14, 136(DI)	// column blocks left
%s_col:
`, name, bits, mc, c, mc*c-1, mc*c, mc*c+mc-1, name, name)
	// prefetch the stripe: every qweight row at these columns
	w("MOVQ\tSI, R14")
	w("MOVQ\t104(DI), CX\t// qweight rows")
	fmt.Fprintf(sb, "%s_pf:\n", name)
	for l := 0; l < (32*c+63)/64; l++ {
		w("PREFETCHT1\t%d(R14)", 64*l)
	}
	w("ADDQ\tR8, R14")
	w("DECQ\tCX")
	w("JNZ\t%s_pf", name)
	w("MOVQ\t16(DI), R10")
	w("MOVQ\t32(DI), R9")
	w("MOVQ\t48(DI), AX")
	w("MOVQ\t56(DI), BX")
	w("MOVQ\t64(DI), R13")
	w("MOVQ\t112(DI), DX\t// groups")
	fmt.Fprintf(sb, "%s_group:\n", name)
	for m := 0; m < mc; m++ {
		w("VBROADCASTSS\t%d(R13), %s", 8*m, acc(m, 0))
		for ci := 1; ci < c; ci++ {
			w("VMOVAPS\t%s, %s", acc(m, 0), acc(m, ci))
		}
	}
	// end of this group's entries
	w("MOVQ\t72(DI), R14\t// per-group entry counts")
	w("MOVL\t(R14), R14")
	w("SHLQ\t$4, R14")
	w("ADDQ\tAX, R14")
	w("MOVQ\tR14, 144(DI)")
	w("ADDQ\t$4, 72(DI)")
	w("CMPQ\tAX, R14")
	w("JAE\t%s_epi", name)
	fmt.Fprintf(sb, "%s_entry:\n", name)
	w("MOVL\t(AX), R14")
	w("IMULQ\tR8, R14")
	w("VMOVD\t4(AX), %s", CNT)
	if bits == 3 {
		w("MOVL\t8(AX), CX")
		w("IMULQ\tR8, CX")
		w("VMOVD\t12(AX), %s\t// 32 − offset", CNT2)
	}
	for m := 0; m < mc; m++ {
		w("VBROADCASTSS\t%d(BX), %s", 4*m, xb(m))
	}
	for ci := 0; ci < c; ci++ {
		w("VMOVDQU\t%d(SI)(R14*1), %s", 32*ci, T)
		w("VPSRLD\t%s, %s, %s", CNT, T, T)
		if bits == 3 {
			w("VMOVDQU\t%d(SI)(CX*1), %s", 32*ci, T2)
			w("VPSLLD\t%s, %s, %s", CNT2, T2, T2)
			w("VPOR\t%s, %s, %s", T2, T, T)
		}
		w("VPAND\tgptqmask%d<>(SB), %s, %s", bits, T, T)
		w("VCVTDQ2PS\t%s, %s", T, T)
		for m := 0; m < mc; m++ {
			w("VFMADD231PS\t%s, %s, %s", xb(m), T, acc(m, ci))
		}
	}
	w("ADDQ\t$16, AX")
	w("ADDQ\t$%d, BX", 4*mc)
	w("CMPQ\tAX, 144(DI)")
	w("JB\t%s_entry", name)
	fmt.Fprintf(sb, "%s_epi:\n", name)
	for ci := 0; ci < c; ci++ {
		z, t := xb(0), T2
		zx := strings.Replace(z, "Y", "X", 1)
		switch bits {
		case 8:
			w("VPMOVZXBD\t%d(R10), %s", 8*ci, z)
		case 4:
			w("VPBROADCASTD\t%d(R10), %s", 4*ci, z)
		case 2:
			w("VPBROADCASTW\t%d(R10), %s", 2*ci, z)
		case 3:
			w("MOVWLZX\t%d(R10), R14", 3*ci)
			w("VMOVD\tR14, %s", zx)
			w("VPINSRB\t$2, %d(R10), %s, %s", 3*ci+2, zx, zx)
			w("VPBROADCASTD\t%s, %s", zx, z)
		}
		if bits != 8 {
			w("VPSRLVD\tgptqzshift%d<>(SB), %s, %s", bits, z, z)
			w("VPAND\tgptqmask%d<>(SB), %s, %s", bits, z, z)
		}
		w("VCVTDQ2PS\t%s, %s", z, z)
		w("VCVTPH2PS\t%d(R9), Y15", 16*ci)
		w("MOVQ\tR11, R14")
		for m := 0; m < mc; m++ {
			w("VBROADCASTSS\t%d(R13), %s", 8*m+4, t)
			w("VFNMADD231PS\t%s, %s, %s", t, z, acc(m, ci))
			w("VFMADD213PS\t%d(R14), Y15, %s", 32*ci, acc(m, ci))
			w("VMOVUPS\t%s, %d(R14)", acc(m, ci), 32*ci)
			if m+1 < mc {
				w("ADDQ\tR12, R14")
			}
		}
	}
	w("ADDQ\t40(DI), R9")
	w("ADDQ\t24(DI), R10")
	w("ADDQ\t$%d, R13", 8*mc)
	w("DECQ\tDX")
	w("JNZ\t%s_group", name)
	// next column block
	w("MOVQ\t128(DI), R14\t// restore the entry-count pointer")
	w("MOVQ\tR14, 72(DI)")
	w("ADDQ\t$%d, SI", 32*c)
	w("ADDQ\t$%d, 16(DI)", bits*c)
	w("ADDQ\t$%d, 32(DI)", 16*c)
	w("ADDQ\t$%d, R11", 32*c)
	w("DECQ\t136(DI)")
	w("JNZ\t%s_col", name)
	w("VZEROUPPER")
	w("RET")
}
