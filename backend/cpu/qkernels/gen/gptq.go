package main

import (
	"fmt"
	"strings"
)

// field is one bit field of a GPTQ "unit" (32 consecutive input rows =
// `bits` qweight rows): the part of value k that lives in qweight row `row`
// of the unit, extracted either with an AND mask (bits stay in place, so the
// integer is part·2^pos) or, when the field reaches bit 31, with a logical
// right shift by pos (so that the sign bit never meets VCVTDQ2PS). The
// matching coefficient that multiplies the extracted integer is
// x[k]·2^(off−pos) for AND fields and x[k]·2^off for shifted ones, where
// off is the position of the field inside value k (non-zero only for 3-bit
// values straddling two words).
type field struct {
	row   int
	mask  uint32 // AND mask, 0 for a shift field
	shift int    // shift count of a shift field
	k     int    // value index within the unit, 0..31
	exp   int    // the coefficient is x[k]·2^exp
}

func gptqFields(bits int) []field {
	var fs []field
	for r := 0; r < bits; r++ {
		for k := 0; k < 32; k++ {
			a, b := k*bits, k*bits+bits // value k's bits in the unit's stream
			lo, hi := max(a, 32*r), min(b, 32*r+32)
			if lo >= hi {
				continue
			}
			pos := lo - 32*r // field position in the word
			off := lo - a    // field position in the value
			width := hi - lo
			if pos+width == 32 {
				fs = append(fs, field{row: r, shift: pos, k: k, exp: off})
			} else {
				fs = append(fs, field{row: r, mask: (1<<uint(width) - 1) << uint(pos), k: k, exp: off - pos})
			}
		}
	}
	return fs
}

// gptqKernel emits the fast GPTQ kernel for `bits`, mc rows of x and c
// column vectors (8 output columns each) per block.
func gptqKernel(sb *strings.Builder, bits, mc, c int) {
	fs := gptqFields(bits)
	name := fmt.Sprintf("gptq%dM%dC%d", bits, mc, c)
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	// Vector registers: acc[m][ci] = Y(m*c+ci); words W[ci] = Y(mc*c+ci);
	// broadcast x coefficients XB[m] = Y(mc*c+c+m); temporary T = Y15.
	// With one x row the fields alternate between two accumulators per
	// column vector (acc2), so that 2·C FMA chains hide the FMA latency.
	dual := mc == 1
	// With more than 4 x rows the coefficients are pre-broadcast in memory
	// ([unit][field][mc][8 floats]) and the FMAs read them directly, which
	// frees the broadcast registers.
	membx := mc > 4
	na := mc * c
	if dual {
		na = 2 * c
	}
	acc := func(m, ci int) string { return fmt.Sprintf("Y%d", m*c+ci) }
	acc2 := func(ci int) string { return fmt.Sprintf("Y%d", c+ci) }
	word := func(ci int) string { return fmt.Sprintf("Y%d", na+ci) }
	xb := func(m int) string { return fmt.Sprintf("Y%d", na+c+m) }
	if membx {
		xb = func(m int) string { return "" }
		if na+c > 15 {
			panic("too many registers")
		}
	} else if na+c+mc > 15 {
		panic("too many registers")
	}
	fmt.Fprintf(sb, `
// func %s(a *gptqArgs)
//
// Fast GPTQ %d-bit kernel, %d row(s) of x, %d×8 output columns per block.
// Register plan: Y0..Y%d accumulators acc[m][c] (m-major; with one x row
// acc[c] and a second set acc2[c] for the odd fields), Y%d..Y%d the
// qweight words of the current row for the %d column vectors, Y%d..Y%d the
// broadcast x coefficients of the current field (one per x row), Y15 the
// extracted field. GPRs: DI args, SI qweight block base of this sub-group,
// AX current qweight row pointer, R8 qweight row stride, BX x-coefficient
// pointer, CX unit counter, DX column-block counter, R9 scales pointer,
// R10 zeros pointer, R11 dst pointer, R12 dst row stride, R13 sx/init
// pointer, R14 prefetch distance in the unit loop, temp elsewhere.
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
	MOVQ	8(DI), R8
	MOVQ	88(DI), R12
`, name, bits, mc, c, na-1, na, na+c-1, c, na+c, na+c+mc-1, name)
	tileStart(sb, w, name)
	// sub-group loop
	w("MOVQ\t104(DI), R14")
	w("MOVQ\tR14, 136(DI)\t// remaining sub-groups")
	w("MOVQ\t120(DI), R14")
	w("MOVQ\tR14, 144(DI)\t// sub-groups left in this real group")
	fmt.Fprintf(sb, "%s_sub:\n", name)
	w("MOVQ\t0(DI), SI\t// qweight at this sub-group's first row")
	w("MOVQ\t32(DI), R9")
	w("MOVQ\t16(DI), R10")
	w("MOVQ\t80(DI), R11")
	w("MOVQ\t96(DI), DX")
	fmt.Fprintf(sb, "%s_col:\n", name)
	// init accumulators from ini (broadcast −ZeroOffset·Σx of this sub-group)
	w("MOVQ\t64(DI), R13")
	for m := 0; m < mc; m++ {
		w("VBROADCASTSS\t%d(R13), %s", 8*m, acc(m, 0))
		for ci := 1; ci < c; ci++ {
			w("VMOVAPS\t%s, %s", acc(m, 0), acc(m, ci))
		}
	}
	if dual {
		for ci := 0; ci < c; ci++ {
			w("VXORPS\t%s, %s, %s", acc2(ci), acc2(ci), acc2(ci))
		}
	}
	w("MOVQ\tSI, AX")
	w("MOVQ\t128(DI), R14\t// prefetch distance")
	w("MOVQ\t48(DI), BX")
	w("MOVQ\t112(DI), CX")
	fmt.Fprintf(sb, "%s_unit:\n", name)
	fi := 0
	for r := 0; r < bits; r++ {
		for ci := 0; ci < c; ci++ {
			w("VMOVDQU\t%d(AX), %s", 32*ci, word(ci))
		}
		// prefetch the same columns of the next sub-group's rows (one
		// full column sweep ahead), one line per 64 bytes consumed
		for l := 0; l < (32*c+63)/64; l++ {
			w("PREFETCHT1\t%d(AX)(R14*1)", 64*l)
		}
		for ; fi < len(fs) && fs[fi].row == r; fi++ {
			f := fs[fi]
			for m := 0; m < mc && !membx; m++ {
				w("VBROADCASTSS\t%d(BX), %s", 4*(fi*mc+m), xb(m))
			}
			for ci := 0; ci < c; ci++ {
				if f.mask != 0 {
					w("VPAND\tgptqmask%d<>+%d(SB), %s, Y15", bits, 32*maskIndex(bits, f.mask), word(ci))
				} else {
					w("VPSRLD\t$%d, %s, Y15", f.shift, word(ci))
				}
				w("VCVTDQ2PS\tY15, Y15")
				if dual && fi%2 == 1 {
					w("VFMADD231PS\t%s, Y15, %s", xb(0), acc2(ci))
					continue
				}
				for m := 0; m < mc; m++ {
					if membx {
						w("VFMADD231PS\t%d(BX), Y15, %s", 32*(fi*mc+m), acc(m, ci))
					} else {
						w("VFMADD231PS\t%s, Y15, %s", xb(m), acc(m, ci))
					}
				}
			}
		}
		w("ADDQ\tR8, AX")
	}
	xsz := 4
	if membx {
		xsz = 32
	}
	w("ADDQ\t$%d, BX", xsz*len(fs)*mc)
	w("DECQ\tCX")
	w("JNZ\t%s_unit", name)
	// epilogue: zero points and scales of these 8·c columns
	w("// epilogue: acc −= z·Σx; y += scale·acc (uniform zero points: the")
	w("// zero was folded into acc's initial value, only y += scale·acc)")
	for ci := 0; ci < c; ci++ {
		if dual {
			w("VADDPS\t%s, %s, %s", acc2(ci), acc(0, ci), acc(0, ci))
		}
	}
	w("CMPQ\t56(DI), $0")
	w("JNE\t%s_uniform", name)
	for ci := 0; ci < c; ci++ {
		// zero points of 8 columns → word(0) as float32 (words are free now)
		z, t := word(0), xb(0)
		if membx {
			t = "Y14"
		}
		switch bits {
		case 8:
			w("VPMOVZXBD\t%d(R10), %s", 8*ci, z)
		case 4:
			w("VPBROADCASTD\t%d(R10), %s", 4*ci, z)
			w("VPSRLVD\tgptqzshift4<>(SB), %s, %s", z, z)
			w("VPAND\tgptqmask4<>(SB), %s, %s", z, z)
		case 2:
			w("VPBROADCASTW\t%d(R10), %s", 2*ci, z)
			w("VPSRLVD\tgptqzshift2<>(SB), %s, %s", z, z)
			w("VPAND\tgptqmask2<>(SB), %s, %s", z, z)
		case 3:
			w("MOVWLZX\t%d(R10), R14", 3*ci)
			w("VMOVD\tR14, %s", strings.Replace(z, "Y", "X", 1))
			w("VPINSRB\t$2, %d(R10), %s, %s", 3*ci+2, strings.Replace(z, "Y", "X", 1), strings.Replace(z, "Y", "X", 1))
			w("VPBROADCASTD\t%s, %s", strings.Replace(z, "Y", "X", 1), z)
			w("VPSRLVD\tgptqzshift3<>(SB), %s, %s", z, z)
			w("VPAND\tgptqmask3<>(SB), %s, %s", z, z)
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
	w("JMP\t%s_next", name)
	fmt.Fprintf(sb, "%s_uniform:\n", name)
	for ci := 0; ci < c; ci++ {
		w("VCVTPH2PS\t%d(R9), Y15", 16*ci)
		w("MOVQ\tR11, R14")
		for m := 0; m < mc; m++ {
			w("VFMADD213PS\t%d(R14), Y15, %s", 32*ci, acc(m, ci))
			w("VMOVUPS\t%s, %d(R14)", acc(m, ci), 32*ci)
			if m+1 < mc {
				w("ADDQ\tR12, R14")
			}
		}
	}
	fmt.Fprintf(sb, "%s_next:\n", name)
	w("ADDQ\t$%d, SI", 32*c)
	w("ADDQ\t$%d, R9", 16*c)
	w("ADDQ\t$%d, R10", bits*c)
	w("ADDQ\t$%d, R11", 32*c)
	w("DECQ\tDX")
	w("JNZ\t%s_col", name)
	// next sub-group: advance qweight rows, x coefficients, sx/ini; scales and
	// zeros advance when a real group ends.
	w("MOVQ\t112(DI), R14")
	w("IMULQ\t$%d, R14", bits)
	w("IMULQ\tR8, R14")
	w("ADDQ\tR14, 0(DI)")
	w("MOVQ\t112(DI), R14")
	w("IMULQ\t$%d, R14", xsz*len(fs)*mc)
	w("ADDQ\tR14, 48(DI)")
	w("ADDQ\t$%d, 64(DI)", 8*mc)
	w("DECQ\t144(DI)")
	w("JNZ\t%s_same", name)
	w("MOVQ\t120(DI), R14")
	w("MOVQ\tR14, 144(DI)")
	w("MOVQ\t72(DI), R14\t// packed layout: skip the group's scales and zero points")
	w("ADDQ\tR14, 0(DI)")
	w("MOVQ\t40(DI), R14")
	w("ADDQ\tR14, 32(DI)")
	w("MOVQ\t24(DI), R14")
	w("ADDQ\tR14, 16(DI)")
	fmt.Fprintf(sb, "%s_same:\n", name)
	w("DECQ\t136(DI)")
	w("JNZ\t%s_sub", name)
	tileNext(sb, w, name)
	fmt.Fprintf(sb, "%s_done:\n", name)
	w("VZEROUPPER")
	w("RET")
}

// maskIndex returns the index of mask in the table gptqmask<bits>.
func maskIndex(bits int, mask uint32) int {
	for i, m := range gptqMasks(bits) {
		if m == mask {
			return i
		}
	}
	panic("mask")
}

// gptqMasks lists the distinct AND masks of a bit width; the first one is
// always the value mask 2^bits−1 (used for zero points as well).
func gptqMasks(bits int) []uint32 {
	ms := []uint32{1<<uint(bits) - 1}
	for _, f := range gptqFields(bits) {
		if f.mask == 0 {
			continue
		}
		seen := false
		for _, m := range ms {
			seen = seen || m == f.mask
		}
		if !seen {
			ms = append(ms, f.mask)
		}
	}
	return ms
}

func gptqData(sb *strings.Builder, bits int) {
	ms := gptqMasks(bits)
	fmt.Fprintf(sb, "\n// AND masks of the %d-bit fields, each repeated in 8 lanes.\n", bits)
	for i, m := range ms {
		for l := 0; l < 8; l++ {
			fmt.Fprintf(sb, "DATA gptqmask%d<>+%d(SB)/4, $0x%08x\n", bits, 32*i+4*l, m)
		}
	}
	fmt.Fprintf(sb, "GLOBL gptqmask%d<>(SB), RODATA|NOPTR, $%d\n", bits, 32*len(ms))
	if bits != 8 {
		fmt.Fprintf(sb, "\n// Per-lane shifts that bring the zero point of column 8i+l to bit 0.\n")
		for l := 0; l < 8; l++ {
			fmt.Fprintf(sb, "DATA gptqzshift%d<>+%d(SB)/4, $%d\n", bits, 4*l, bits*l)
		}
		fmt.Fprintf(sb, "GLOBL gptqzshift%d<>(SB), RODATA|NOPTR, $32\n", bits)
	}
}
