package main

import (
	"fmt"
	"strings"
)

// AVX-512 GPTQ kernels (qkernels512_amd64.s).
//
// Same algorithm and argument block as the AVX2 kernels (gptqKernel), on
// 16-column zmm vectors, with these differences:
//
//   - Every accumulator is a single chain: lane j of acc[m][c] starts at
//     the sub-group's initial sum and takes the fields' FMAs in field
//     order, whatever the number of x rows (mc) and of column vectors (C)
//     of the kernel (no second accumulator set for one x row as in AVX2),
//     so every output element is computed by exactly the same sequence of
//     roundings for any M: a request's results do not depend on the batch
//     it is in. With one x row the kernels then have C chains only (int4:
//     4, int8: 2), which bounds them when the weights are in cache (int4
//     ~80 G weights/s per core hot), but from DRAM the narrower blocks read
//     faster (gptq512Wide), and that is what decode sees.
//   - The AND masks live in registers when there are spare ones (VPANDD
//     with an embedded-broadcast memory operand otherwise), and the x
//     coefficients are broadcast from a compact [unit][row][field] array
//     built by gptqPrepZ (into registers, or as embedded-broadcast FMA
//     operands when the registers are taken by accumulators).
//   - The scales (and zero points) of the next group are prefetched with
//     the qweight rows (distances from the argument block: 152, 160).
//   - The same kernels walk the packed copy of pack512_amd64.go (one
//     forward stream per column tile: each group's codes, then its scales
//     and zero points): the argument block describes either layout, the
//     packed one with the tile's width as qweight row stride, the tile's
//     bytes as scale and zero-point stride, and qgroup (72) added to the
//     qweight pointer at each group's end to step over the scales.
//   - A "half" variant (ymm, 8 columns, otherwise the same instruction
//     sequence) does the last 8 columns when the 8-aligned range is not a
//     multiple of 16.
//   - 8-row passes (prefill) use C = 2: per field 2 VPANDD/VCVTDQ2PS and 16
//     FMAs, so the decoding hides in the pipes the FMAs leave free.

// gptq512Wide is the widest column blocking for mc x rows: the register
// limit (mc·C accumulators + C words + broadcasts), and for the passes that
// stream weights from DRAM (mc ≤ 4) about 1 KiB of qweight per block
// (bits rows × C × 64 bytes): measured on the 2-core Zen 5 with one x row,
// int4 C = 4 reads 45–64 GB/s where C = 8 reads 43–55, int8 C = 2 reads
// 52–67 GB/s where C = 8 reads 33–47 (copy bandwidth 96 GB/s).
func gptq512Wide(bits, mc int) int {
	lim := map[int]int{1: 8, 2: 6, 3: 4, 4: 4, 8: 2}[mc]
	if mc > 4 {
		return lim
	}
	return min(lim, max(1, 16/bits))
}

// gptqVRows are the x-row counts of the VNNI kernels, and gptqVCs their
// column blockings, widest first: each (x row, column vector) holds four
// accumulators (three digit sums and the float sum), so mc·C ≤ 4 with the
// nibbles and the mask beside them; prefill passes take 4 rows.
var (
	gptqVRows = []int{1, 2, 3, 4}
	gptqVCs   = map[int][]int{1: {4, 2, 1}, 2: {2, 1}, 3: {2, 1}, 4: {1}}
)

// gptq512Rows are the x-row counts of the kernels.
var gptq512Rows = []int{1, 2, 3, 4, 8}

// gptq512Cs returns the column blockings generated for bits and mc rows,
// widest first.
func gptq512Cs(bits, mc int) []int {
	cs := []int{gptq512Wide(bits, mc)}
	for _, c := range []int{4, 2, 1} {
		if c < cs[0] {
			cs = append(cs, c)
		}
	}
	return cs
}

// gptqFamily is a family of GPTQ-layout kernels: the float form, the
// VNNI integer form of 4-bit codes, or the VNNI form of e2m1 codes (FP4
// weights repacked into the GPTQ layout, pack512_amd64.go), which maps each
// code through a byte table first (gptq512VNNI).
type gptqFamily int

const (
	famFloat gptqFamily = iota
	famVNNI
	famE2M1
	// famNVFP4: famE2M1 with a scale per 16 inputs (NVFP4's blocks), two
	// a unit: each half unit's integer sum is converted and scaled into
	// the accumulators inside the unit, from the packed copy's fp16
	// scales (the first half's at the scale pointer, the second half's
	// nvScaleHalf bytes further), and the epilogue adds the accumulators
	// to y without a scale.
	famNVFP4
)

func gptq512Name(bits, mc, c int, half bool, fam gptqFamily) string {
	v := map[gptqFamily]string{famFloat: "", famVNNI: "v", famE2M1: "f", famNVFP4: "n"}[fam]
	if half {
		return fmt.Sprintf("gptqy%s%dM%d", v, bits, mc)
	}
	return fmt.Sprintf("gptqz%s%dM%dC%d", v, bits, mc, c)
}

// gptq512Kernel emits one AVX-512 GPTQ kernel: bits-bit weights, mc x rows,
// c column vectors of 16 (half: one vector of 8, ymm) per block, of the
// family fam (the VNNI families: gptq512VNNI; famVNNI for 2, 3, 4 and 8 bits,
// famE2M1 and famNVFP4 for 4).
func gptq512Kernel(sb *strings.Builder, bits, mc, c int, half bool, fam gptqFamily) {
	name := gptq512Name(bits, mc, c, half, fam)
	vnni := fam != famFloat
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	P, VB := "Z", 64 // register prefix, vector bytes
	if half {
		P, VB, c = "Y", 32, 1
	}
	reg := func(i int) string { return fmt.Sprintf("%s%d", P, i) }
	xreg := func(i int) string { return fmt.Sprintf("X%d", i) }
	acc := func(m, ci int) string { return reg(m*c + ci) }
	var u gptqUnit
	if vnni {
		u = gptq512VNNI(w, reg, acc, bits, mc, c, VB, half, fam, 1)
	} else {
		u = gptq512Fields(w, reg, acc, bits, mc, c, VB, half)
	}
	T := u.T

	fmt.Fprintf(sb, `
// func %s(a *gptqArgs)
//
// AVX-512 GPTQ %d-bit kernel%s, %d x row(s), %d %s column vector(s) per block.
%s
// GPRs as in the AVX2 kernels: DI args, SI qweight block base of this
// sub-group, AX current qweight row, R8 qweight row stride, BX x
// coefficients, CX unit counter, DX column-block counter, R9 scales, R10
// zeros, R11 dst, R12 dst row stride, R13 sx/init pairs, R14 prefetch
// distance in the unit loop, temp elsewhere. K1 = 0xff00 selects the upper
// 8 lanes when the zero points of 16 columns come from two dwords.
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
	MOVQ	8(DI), R8
	MOVQ	88(DI), R12
`, name, bits, map[gptqFamily]string{famVNNI: " (VNNI)", famE2M1: " (VNNI, e2m1 codes)", famNVFP4: " (VNNI, e2m1 codes, scales per 16)"}[fam], mc, c, map[bool]string{false: "16-column zmm", true: "8-column ymm"}[half], u.plan, name)
	if !half && (bits == 3 || bits == 4) {
		w("MOVL\t$0xff00, R14")
		w("KMOVW\tR14, K1")
	}
	u.setup()
	tileStart(sb, w, name)
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
	w("MOVQ\t64(DI), R13")
	for m := 0; m < mc; m++ {
		w("VBROADCASTSS\t%d(R13), %s", 8*m, acc(m, 0))
		for ci := 1; ci < c; ci++ {
			w("VMOVAPS\t%s, %s", acc(m, 0), acc(m, ci))
		}
	}
	w("MOVQ\tSI, AX")
	w("MOVQ\t128(DI), R14\t// prefetch distance")
	w("MOVQ\t48(DI), BX")
	w("MOVQ\t112(DI), CX")
	fmt.Fprintf(sb, "%s_unit:\n", name)
	u.body()
	w("ADDQ\t$%d, BX", u.xsz)
	w("DECQ\tCX")
	w("JNZ\t%s_unit", name)

	// epilogue
	w("// epilogue: acc −= z·Σx; y += scale·acc (uniform zero points: the")
	w("// zero was folded into acc's initial value, only y += scale·acc)")
	z, s := reg(T[0]), reg(T[1])
	// prefetch the scales (and zero points) of the next group for this block
	w("MOVQ\t152(DI), R14")
	for l := 0; l < (VB/2*c+63)/64; l++ {
		w("PREFETCHT1\t%d(R9)(R14*1)", 64*l)
	}
	w("CMPQ\t56(DI), $0")
	w("JNE\t%s_uniform", name)
	w("MOVQ\t160(DI), R14")
	w("PREFETCHT1\t(R10)(R14*1)")
	for ci := 0; ci < c; ci++ {
		zoff := 2 * bits * ci // zero-point bytes of this vector (16 columns)
		if half {
			zoff = bits * ci
		}
		switch {
		case bits == 8 && !half:
			w("VPMOVZXBD\t%d(R10), %s", zoff, z)
		case bits == 8:
			w("VPMOVZXBD\t%d(R10), %s", zoff, z)
		case bits == 4 && !half:
			w("VPBROADCASTD\t%d(R10), %s", zoff, z)
			w("VPBROADCASTD\t%d(R10), K1, %s", zoff+4, z)
		case bits == 4:
			w("VPBROADCASTD\t%d(R10), %s", zoff, z)
		case bits == 2 && !half:
			w("VPBROADCASTD\t%d(R10), %s", zoff, z)
		case bits == 2:
			w("VPBROADCASTW\t%d(R10), %s", zoff, z)
		case bits == 3 && !half:
			w("VPBROADCASTD\t%d(R10), %s", zoff, z)
			w("VPBROADCASTD\t%d(R10), K1, %s", zoff+2, z)
		case bits == 3:
			// 3 bytes: no read past this block's zero points
			w("MOVWLZX\t%d(R10), R14", zoff)
			w("VMOVD\tR14, %s", xreg(T[0]))
			w("VPINSRB\t$2, %d(R10), %s, %s", zoff+2, xreg(T[0]), xreg(T[0]))
			w("VPBROADCASTD\t%s, %s", xreg(T[0]), z)
		}
		if bits != 8 {
			tab := fmt.Sprintf("gptqzs%d<>", bits)
			if half {
				tab = fmt.Sprintf("gptqys%d<>", bits)
			}
			w("VPSRLVD\t%s(SB), %s, %s", tab, z, z)
			w("VPANDD.BCST\tgptqzm%d<>(SB), %s, %s", bits, z, z)
		}
		w("VCVTDQ2PS\t%s, %s", z, z)
		w("VCVTPH2PS\t%d(R9), %s", VB/2*ci, s)
		w("MOVQ\tR11, R14")
		for m := 0; m < mc; m++ {
			w("VFNMADD231PS.BCST\t%d(R13), %s, %s", 8*m+4, z, acc(m, ci))
			w("VFMADD213PS\t%d(R14), %s, %s", VB*ci, s, acc(m, ci))
			w("VMOVUPS\t%s, %d(R14)", acc(m, ci), VB*ci)
			if m+1 < mc {
				w("ADDQ\tR12, R14")
			}
		}
	}
	w("JMP\t%s_next", name)
	fmt.Fprintf(sb, "%s_uniform:\n", name)
	for ci := 0; ci < c; ci++ {
		if fam != famNVFP4 {
			w("VCVTPH2PS\t%d(R9), %s", VB/2*ci, s)
		}
		w("MOVQ\tR11, R14")
		for m := 0; m < mc; m++ {
			if fam == famNVFP4 { // scaled inside the unit
				w("VADDPS\t%d(R14), %s, %s", VB*ci, acc(m, ci), acc(m, ci))
			} else {
				w("VFMADD213PS\t%d(R14), %s, %s", VB*ci, s, acc(m, ci))
			}
			w("VMOVUPS\t%s, %d(R14)", acc(m, ci), VB*ci)
			if m+1 < mc {
				w("ADDQ\tR12, R14")
			}
		}
	}
	fmt.Fprintf(sb, "%s_next:\n", name)
	w("ADDQ\t$%d, SI", VB*c)
	w("ADDQ\t$%d, R9", VB/2*c)
	w("ADDQ\t$%d, R10", VB/32*bits*c)
	w("ADDQ\t$%d, R11", VB*c)
	w("DECQ\tDX")
	w("JNZ\t%s_col", name)
	// next sub-group
	w("MOVQ\t112(DI), R14")
	w("IMULQ\t$%d, R14", bits)
	w("IMULQ\tR8, R14")
	w("ADDQ\tR14, 0(DI)")
	w("MOVQ\t112(DI), R14")
	w("IMULQ\t$%d, R14", u.xsz)
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

// gptqDirectKernel emits the direct form of a VNNI kernel (famVNNI with
// 2-, 3-, 4- or 8-bit codes, or famE2M1) on the packed layout. The sub-group form
// (gptq512Kernel) leaves the unit loop after every unit of 32 inputs for
// an epilogue that adds scale·sum to y in memory and restarts the
// block's pointers from the argument block: one exit every KiB of int4
// codes. The direct form walks a column block down all of K with the
// block's outputs in registers: for each group (256: the number of
// groups), for each of its units (120: units a group), the unit's sum is
// formed as in the sub-group form and scaled into the outputs with one
// FMA (gptqUnit.direct), and the outputs are stored once at the end.
// Every output element takes the same operations in the same order as
// in the sub-group form (dst starts at zero, as there), so the two agree
// bit for bit and the row counts that take the other form stay
// batch-invariant. For int4 g32 the sub-group form's stream read ~25%
// slower than g128's (docs/perf.md, ninth and tenth sessions).
//
// GPRs (one stream): DI args, AX codes, R8 code row stride, BX x blocks,
// R13 initial sums, R9 scales, R10 scale stride (a tile), SI the group's
// bytes after its codes, CX group counter, R12 unit counter (the dst row
// stride after the loop), R14 row prefetch distance, DX scale prefetch
// distance, R11 zero points (zeros) and dst after the loop; 136(DI)
// counts the column blocks.
//
// streams = 2 (one x row, c = 4, tiles of 32 columns) reads two column
// tiles at once, two vectors from each: the second tile R12 (qdelta, 240)
// bytes further in the packed copy, its outputs ydelta (248) bytes
// further in dst. The scales are read at DX (stepped by the tile, 40),
// R9 holds stream 2's prefetch offset and R10 counts the units. A core
// reads two forward streams: the memory system serves one core's two
// streams faster than one (the bare-read model of docs/perf.md, ninth
// session: 1.2–1.4×).
//
// zeros (famVNNI, one stream) subtracts each group's zero points (INT4
// with zero points of its own), read at R11 (16, stepped by the tile like
// the scales).
func gptqDirectKernel(sb *strings.Builder, bits, mc, c int, fam gptqFamily, streams int, zeros bool) {
	name := gptqDirectName(bits, mc, c, fam, streams, zeros)
	two := streams == 2
	if two && (mc != 1 || c != 4 || bits < 4) || zeros && (two || fam != famVNNI || bits < 4) || bits != 4 && fam != famVNNI {
		panic("two streams: one x row, four vectors, 4 or 8 bits; zero points: one stream, GPTQ codes of 4 or 8 bits")
	}
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	reg := func(i int) string { return fmt.Sprintf("Z%d", i) }
	acc := func(m, ci int) string { return reg(m*c + ci) }
	u := gptq512VNNI(w, reg, acc, bits, mc, c, 64, false, fam, streams)
	fmt.Fprintf(sb, `
// func %s(a *gptqArgs)
//
// AVX-512 VNNI %d-bit kernel%s, direct form (packed layout): %d x row(s),
// %d zmm column vector(s) per block.
%s
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
	MOVQ	8(DI), R8
	MOVQ	72(DI), SI
`, name, bits, map[gptqFamily]string{famVNNI: "", famE2M1: " (e2m1 codes)"}[fam]+map[bool]string{true: ", two streams"}[two], mc, c, u.plan, name)
	if two {
		w("MOVQ\t240(DI), R12")
	} else {
		w("MOVQ\t40(DI), R10")
		w("MOVQ\t152(DI), DX")
	}
	u.setup()
	if zeros {
		w("MOVL\t$0xff00, R14")
		w("KMOVW\tR14, K1")
	}
	tileStart(sb, w, name)
	w("MOVQ\t96(DI), R14")
	w("MOVQ\tR14, 136(DI)\t// column blocks")
	fmt.Fprintf(sb, "%s_col:\n", name)
	for m := 0; m < mc; m++ {
		for ci := 0; ci < c; ci++ {
			w("VPXORD\t%s, %s, %s", acc(m, ci), acc(m, ci), acc(m, ci))
		}
	}
	w("MOVQ\t0(DI), AX")
	if !two {
		w("MOVQ\t32(DI), R9")
	}
	if zeros {
		w("MOVQ\t16(DI), R11")
	}
	w("MOVQ\t48(DI), BX")
	w("MOVQ\t64(DI), R13")
	w("MOVQ\t256(DI), CX\t// groups")
	w("MOVQ\t128(DI), R14\t// prefetch distance")
	if two {
		w("MOVQ\t32(DI), DX")
		w("LEAQ\t(R12)(R14*1), R9\t// stream 2's")
	}
	fmt.Fprintf(sb, "%s_group:\n", name)
	if two {
		// the scales' line of each stream
		w("PREFETCHT1\t(DX)(R14*1)")
		w("PREFETCHT1\t(DX)(R9*1)")
		w("MOVQ\t120(DI), R10\t// units in the group")
	} else {
		for l := 0; l < (32*c+63)/64; l++ {
			w("PREFETCHT1\t%d(R9)(DX*1)", 64*l)
		}
		if zeros {
			w("PREFETCHT1\t(R11)(DX*1)")
		}
		w("MOVQ\t120(DI), R12\t// units in the group")
	}
	fmt.Fprintf(sb, "%s_unit:\n", name)
	u.direct(zeros)
	w("ADDQ\t$%d, BX", u.xsz)
	w("ADDQ\t$%d, R13", 8*mc)
	w("DECQ\t%s", map[bool]string{false: "R12", true: "R10"}[two])
	w("JNZ\t%s_unit", name)
	w("ADDQ\tSI, AX\t// over the group's scales")
	if two {
		w("ADDQ\t40(DI), DX")
	} else {
		w("ADDQ\tR10, R9")
	}
	if zeros {
		w("ADDQ\tR10, R11\t// the zero points' stride is the scales' (a tile)")
	}
	w("DECQ\tCX")
	w("JNZ\t%s_group", name)
	w("MOVQ\t80(DI), R11")
	if two {
		for ci := 0; ci < c/2; ci++ {
			w("VMOVUPS\t%s, %d(R11)", acc(0, ci), 64*ci)
		}
		w("ADDQ\t248(DI), R11")
		for ci := c / 2; ci < c; ci++ {
			w("VMOVUPS\t%s, %d(R11)", acc(0, ci), 64*(ci-c/2))
		}
	}
	if !two && mc > 1 {
		w("MOVQ\t88(DI), R12")
	}
	for m := 0; m < mc && !two; m++ {
		for ci := 0; ci < c; ci++ {
			w("VMOVUPS\t%s, %d(R11)", acc(m, ci), 64*ci)
		}
		if m+1 < mc {
			w("ADDQ\tR12, R11")
		}
	}
	cs := c / streams
	w("ADDQ\t$%d, 0(DI)", 64*cs)
	w("ADDQ\t$%d, 32(DI)", 32*cs)
	if zeros {
		w("ADDQ\t$%d, 16(DI)", 2*bits*cs)
	}
	w("ADDQ\t$%d, 80(DI)", 64*cs)
	w("DECQ\t136(DI)")
	w("JNZ\t%s_col", name)
	tileNext(sb, w, name)
	fmt.Fprintf(sb, "%s_done:\n", name)
	w("VZEROUPPER")
	w("RET")
}

func gptqDirectName(bits, mc, c int, fam gptqFamily, streams int, zeros bool) string {
	f := map[gptqFamily]string{famVNNI: "v", famE2M1: "f"}[fam]
	if zeros {
		f = "z"
	}
	n := fmt.Sprintf("gptqd%s%dM%dC%d", f, bits, mc, c)
	if streams == 2 {
		n += "S2"
	}
	return n
}

// tileStart saves the pointers the sub-group loop advances (restored, one
// column tile further, for each further tile of the packed layout) and
// opens the tile loop (label name_tile).
func tileStart(sb *strings.Builder, w func(string, ...any), name string) {
	for i, off := range gptqTileSaved {
		w("MOVQ\t%d(DI), R14", off)
		w("MOVQ\tR14, %d(DI)", 184+8*i)
	}
	fmt.Fprintf(sb, "%s_tile:\n", name)
}

// tileNext closes the tile loop (packed layout): the next column tile's
// same rows, qtile bytes further along the buffer, ytile bytes further
// along dst, or on to name_done after the last (ntiles).
func tileNext(sb *strings.Builder, w func(string, ...any), name string) {
	w("DECQ\t168(DI)")
	w("JZ\t%s_done", name)
	for i, off := range gptqTileSaved {
		w("MOVQ\t%d(DI), R14", 184+8*i)
		switch off {
		case 0, 16, 32:
			w("ADDQ\t176(DI), R14")
		case 80:
			w("ADDQ\t%d(DI), R14", 184+8*len(gptqTileSaved))
		}
		w("MOVQ\tR14, %d(DI)", 184+8*i)
		w("MOVQ\tR14, %d(DI)", off)
	}
	w("JMP\t%s_tile", name)
}

// gptqUnit is what differs between the kernel families: the register plan
// and the work of one unit of 32 input rows (the loops, the epilogue and
// the argument block are shared).
type gptqUnit struct {
	T           [2]int // the epilogue's two temporaries (free after the unit loop)
	xsz         int    // x bytes per unit, all rows
	plan        string // the register plan, for the kernel's comment
	setup, body func() // constants into registers; one unit's instructions
	// direct, where the family has it (the VNNI ones but NVFP4): one
	// unit whose scaled sum is added to the output accumulators acc
	// (gptqDirectKernel, vnniDirect); zeros: less the zero points' z·Σx
	// (at R11) before the scale, as the epilogue does
	direct func(zeros bool)
}

// gptq512Fields is the float form: every field of a qweight row extracted
// (AND or shift), converted and multiplied by its x coefficient.
func gptq512Fields(w func(string, ...any), reg func(int) string, acc func(int, int) string, bits, mc, c, VB int, half bool) gptqUnit {
	fs := gptqFields(bits)
	na := mc * c
	word := func(ci int) string { return reg(na + ci) }
	next := na + c
	bregs := next+mc+2 <= 32
	xbIdx := next
	if bregs {
		next += mc
	}
	xb := func(m int) string { return reg(xbIdx + m) }
	T := [2]int{next, next + 1}
	next += 2
	if next > 32 {
		panic("registers")
	}
	// AND masks in the spare registers, most used first.
	masks := gptqMasks(bits)
	uses := make([]int, len(masks))
	for _, f := range fs {
		if f.mask != 0 {
			uses[maskIndex(bits, f.mask)]++
		}
	}
	maskReg := map[int]int{}
	for next < 32 {
		best := -1
		for i := range masks {
			if _, ok := maskReg[i]; !ok && uses[i] > 0 && (best < 0 || uses[i] > uses[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		maskReg[best] = next
		next++
	}
	var pb strings.Builder
	fmt.Fprintf(&pb, "// Register plan: %s..%s accumulators acc[m][c] (m-major, one chain\n// each), %s..%s the qweight words of the current row, ", reg(0), reg(na-1), reg(na), reg(na+c-1))
	if bregs {
		fmt.Fprintf(&pb, "%s..%s the\n// broadcast x coefficients of the current field, ", xb(0), xb(mc-1))
	} else {
		pb.WriteString("the x\n// coefficients as embedded-broadcast FMA operands, ")
	}
	fmt.Fprintf(&pb, "%s/%s the extracted fields\n", reg(T[0]), reg(T[1]))
	fmt.Fprintf(&pb, "// (alternating), %d AND mask(s) in %s.., the others as embedded broadcasts.", len(maskReg), reg(T[1]+1))
	setup := func() {
		for i := range masks {
			if r, ok := maskReg[i]; ok {
				w("VPBROADCASTD\tgptqzm%d<>+%d(SB), %s", bits, 4*i, reg(r))
			}
		}
	}
	body := func() {
		fi, tn := 0, 0
		for r := 0; r < bits; r++ {
			for ci := 0; ci < c; ci++ {
				w("VMOVDQU32\t%d(AX), %s", VB*ci, word(ci))
			}
			if !half {
				// the same columns of the next sub-group (or further along
				// these rows, see gptqZPrefetch), one line per 64 bytes read
				for l := 0; l < c; l++ {
					w("PREFETCHT1\t%d(AX)(R14*1)", 64*l)
				}
			}
			for ; fi < len(fs) && fs[fi].row == r; fi++ {
				f := fs[fi]
				for m := 0; m < mc && bregs; m++ {
					w("VBROADCASTSS\t%d(BX), %s", 4*(m*len(fs)+fi), xb(m))
				}
				for ci := 0; ci < c; ci++ {
					t := reg(T[tn%2])
					tn++
					if f.mask != 0 {
						mi := maskIndex(bits, f.mask)
						if r, ok := maskReg[mi]; ok {
							w("VPANDD\t%s, %s, %s", reg(r), word(ci), t)
						} else {
							w("VPANDD.BCST\tgptqzm%d<>+%d(SB), %s, %s", bits, 4*mi, word(ci), t)
						}
					} else {
						w("VPSRLD\t$%d, %s, %s", f.shift, word(ci), t)
					}
					w("VCVTDQ2PS\t%s, %s", t, t)
					for m := 0; m < mc; m++ {
						if bregs {
							w("VFMADD231PS\t%s, %s, %s", xb(m), t, acc(m, ci))
						} else {
							w("VFMADD231PS.BCST\t%d(BX), %s, %s", 4*(m*len(fs)+fi), t, acc(m, ci))
						}
					}
				}
			}
			w("ADDQ\tR8, AX")
		}
	}
	return gptqUnit{T: T, xsz: 4 * len(fs) * mc, plan: pb.String(), setup: setup, body: body}
}

// gptq512VNNI is the integer form of the 4-bit kernels (CPUs with
// AVX512_VNNI). Per unit of 32 input rows and x row, gptqVPrepZ has
// rounded x to integers X·2^e (|X| ≤ 2^22, e per unit) and split X into
// three signed base-256 digits, X = d0 + 2^8·d1 + 2^16·d2, stored as bytes
// in the order of the nibbles: for qweight row r, the four even inputs
// 8r, 8r+2, 8r+4, 8r+6 (the low nibble of each code byte), then the four
// odd ones. A unit's x block, 128 bytes a row: digit d of row r, half h
// at 32d + 8r + 4h, then the float 2^e at 96.
//
// For each qweight row: the low nibbles (VPANDD 0x0f0f0f0f) and the high
// ones (VPSRLD 4, VPANDD) as unsigned bytes, and VPDPBUSD with each digit's
// four bytes broadcast adds four products to every column's lane. The three
// digit sums S_d of the unit are exact int32 (|S_d| ≤ 32·15·128), and so is
// S = S0 + 2^8·S1 + 2^16·S2 = Σ q·X (|S| ≤ 32·15·2^22 < 2^31). Then
// acc += float(S)·2^e: one rounding a unit where the float form rounds
// every field's FMA, so the results differ from it in the last bits, but
// they do not depend on the blocking (the integer sums are exact), and the
// kernels are batch-invariant as the float ones are. (An 8-bit form, the
// code words as they are and the digit sums combined in float32, was
// measured and dropped: 6% slower than the float kernel at one x row.)
//
// e2m1: the codes are FP4's (sign bit 3, magnitude index bits 0–2, values
// ±{0, ½, 1, 1½, 2, 3, 4, 6}). Each nibble goes through a byte table
// (VPSHUFB) to b = 12 + 2·v, an unsigned byte 0 … 24, so that VPDPBUSD
// sums Σ b·X = 2·Σ v·X + 12·ΣX. The digit sums stay exact (|S_d| ≤
// 32·24·128), but their combination may pass 2^31 where 2·Σ v·X itself
// does not (|2·Σ v·X| ≤ 32·12·2^22 < 2^31): it is formed modulo 2^32 (the
// shifts and adds wrap) and 12·ΣX, which the driver puts in the x block at
// 100 (gptqVPrepZ stores ΣX there), subtracted, which leaves 2·Σ v·X
// exactly. The driver also halves the factor at 96, so the group's fp16
// scale applies as it is.
//
// 2 bits (bits = 2): a qweight row holds four planes of codes, plane j of
// byte b the input 16r + 4b + j ((w >> 2j) & 0x03030303), taken one at a
// time (the row's word and the plane in the nibbles' two registers) with
// its three digit dwords broadcast into registers; the x block holds the
// digits in that order (gptqVOrders[2]), dword 4r + j of each digit.
//
// NVFP4 (famNVFP4): as e2m1, but with a scale per 16 inputs. After the
// unit's qweight rows 0–1 (inputs 0–15) and again after rows 2–3, the
// half's digit sums are combined, 12·ΣX of the half (at 104 and 108 of
// the x block) taken off, converted, multiplied by the factor and, with
// the half's fp16 scales of each column (at the scale pointer, and
// nvScaleHalf bytes further for the second half), added to the
// accumulators; the digit sums restart at 0.
func gptq512VNNI(w func(string, ...any), reg func(int) string, acc func(int, int) string, bits, mc, c, VB int, half bool, fam gptqFamily, streams int) gptqUnit {
	switch bits {
	case 8:
		return gptq512VNNI8(w, reg, acc, mc, c, VB, half, streams)
	case 2:
		return gptq512VNNI2(w, reg, acc, mc, c, VB, half)
	case 3:
		return gptq512VNNI3(w, reg, acc, mc, c, VB, half)
	}
	e2m1, nv := fam == famE2M1 || fam == famNVFP4, fam == famNVFP4
	na := mc * c
	iacc := func(m, ci, d int) string { return reg(na + 3*(m*c+ci) + d) }
	lo := func(ci int) string { return reg(4*na + 2*ci) }
	hi := func(ci int) string { return reg(4*na + 2*ci + 1) }
	mask := reg(4*na + 2*c)
	next := 4*na + 2*c + 1 // the first free register
	lut := ""
	if e2m1 {
		lut = reg(next)
		next++
	}
	if next > 32 {
		panic("registers")
	}
	// With six registers to spare and more than one column vector, each x
	// row's six dwords of a qweight row (three digits, low and high
	// nibbles) are broadcast once into registers rather than as a memory
	// operand of every column vector's VPDPBUSD: 6 loads an x row instead
	// of 6·C (one x row hot: 80 → 110 G weights/s a core, docs/perf.md).
	xr := func(d, h int) string { return reg(next + 2*d + h) }
	xregs := next+6 <= 32 && !half && c > 1
	plan := fmt.Sprintf("// Register plan: %s..%s float accumulators acc[m][c], %s..%s the unit's\n"+
		"// digit sums [m][c][digit], %s.. the low and high nibbles of each column\n"+
		"// vector's qweight row, %s the nibble mask 0x0f0f0f0f.",
		reg(0), reg(na-1), reg(na), reg(4*na-1), lo(0), mask)
	if e2m1 {
		plan += fmt.Sprintf("\n// %s the e2m1 byte table (12 + 2·v of each code, in every 128-bit lane).", lut)
	}
	setup := func() {
		w("MOVL\t$0x0f0f0f0f, R14")
		w("VPBROADCASTD\tR14, %s", mask)
		if e2m1 {
			w("VBROADCASTI32X4\tgptqe2m1<>(SB), %s", lut)
		}
	}
	clearSums := func() { vnniClear(w, iacc, mc, c) }
	combine := func(m, ci, off int) string {
		if !e2m1 {
			off = -1
		}
		return vnniCombine(w, iacc, m, ci, off)
	}
	// nvHalf scales half h's sums into the accumulators (famNVFP4)
	nvHalf := func(h int) {
		sc := lo(0) // free: the rows' codes are used
		for ci := 0; ci < c; ci++ {
			w("VCVTPH2PS\t%d(R9), %s", VB/2*ci+nvScaleHalf*h, sc)
			for m := 0; m < mc; m++ {
				s0 := combine(m, ci, 104+4*h)
				w("VMULPS.BCST\t%d(BX), %s, %s", 128*m+96, s0, s0)
				w("VFMADD231PS\t%s, %s, %s", sc, s0, acc(m, ci))
			}
		}
	}
	rows := func() {
		clearSums()
		for r := 0; r < 4; r++ {
			vnniLoadRow(w, hi, c, VB, half, streams)
			for ci := 0; ci < c; ci++ {
				w("VPANDD\t%s, %s, %s", mask, hi(ci), lo(ci))
				w("VPSRLD\t$4, %s, %s", hi(ci), hi(ci))
				w("VPANDD\t%s, %s, %s", mask, hi(ci), hi(ci))
				if e2m1 {
					w("VPSHUFB\t%s, %s, %s", lo(ci), lut, lo(ci))
					w("VPSHUFB\t%s, %s, %s", hi(ci), lut, hi(ci))
				}
			}
			for m := 0; m < mc; m++ {
				// x's dword of digit d and nibble half h: each VPDPBUSD's
				// broadcast memory operand, or (xregs) a register loaded once
				src := func(d, h int) string { return fmt.Sprintf("%d(BX)", 128*m+32*d+8*r+4*h) }
				op := "VPDPBUSD.BCST"
				if xregs {
					for d := 0; d < 3; d++ {
						for h := 0; h < 2; h++ {
							w("VPBROADCASTD\t%s, %s", src(d, h), xr(d, h))
						}
					}
					src, op = xr, "VPDPBUSD"
				}
				for ci := 0; ci < c; ci++ {
					for d := 0; d < 3; d++ {
						w("%s\t%s, %s, %s", op, src(d, 0), lo(ci), iacc(m, ci, d))
						w("%s\t%s, %s, %s", op, src(d, 1), hi(ci), iacc(m, ci, d))
					}
				}
			}
			w("ADDQ\tR8, AX")
			if nv && r == 1 {
				nvHalf(0)
				clearSums()
			}
		}
	}
	body := func() {
		rows()
		if nv {
			nvHalf(1)
			return
		}
		for m := 0; m < mc; m++ {
			for ci := 0; ci < c; ci++ {
				s0 := combine(m, ci, 100)
				w("VFMADD231PS.BCST\t%d(BX), %s, %s", 128*m+96, s0, acc(m, ci))
			}
		}
	}
	// direct (gptqDirectKernel, vnniDirect): the rows' registers are free
	// by the unit's end: lo(ci) take its scales, hi(0) x's factor.
	direct := func(zeros bool) {
		rows()
		var zero func(m, ci int) string
		if zeros {
			// the column vector's 16 zero points (two dwords: the upper 8
			// lanes by K1), in a digit sum combine freed
			zero = func(m, ci int) string {
				z := iacc(m, ci, 1)
				w("VPBROADCASTD\t%d(R11), %s", 8*ci, z)
				w("VPBROADCASTD\t%d(R11), K1, %s", 8*ci+4, z)
				w("VPSRLVD\tgptqzs4<>(SB), %s, %s", z, z)
				w("VPANDD.BCST\tgptqzm4<>(SB), %s, %s", z, z)
				return z
			}
		}
		vnniDirect(w, acc, mc, c, streams, lo, hi(0), func(m, ci int) string { return combine(m, ci, 100) }, zero)
	}
	if nv {
		direct = nil
	}
	return gptqUnit{T: [2]int{4 * na, 4*na + 1}, xsz: 128 * mc, plan: plan, setup: setup, body: body, direct: direct}
}

// gptq512VNNI8 is gptq512VNNI's form for 8-bit codes: a qweight row's
// dword holds a column's codes of inputs 4r … 4r+3 in byte order, which
// VPDPBUSD multiplies as they are with the dword of x's digits of the same
// inputs (gptqVOrders[8] is the identity): 8 rows a unit, 3 VPDPBUSD a
// row and column vector, no masking. The unit sum Σ code·X reaches 2^35
// (codes up to 255, |X| ≤ 2^22), past the int32 that vnniCombine forms,
// so the digit sums (each below 2^21, exact in float32) are converted
// and combined in float32: (S2·2^8 + S1)·2^8 + S0, two FMAs. Registers as
// vnniRegs: plane(ci) takes the row, other(0) and the planes the direct
// form's factor and scales.
func gptq512VNNI8(w func(string, ...any), reg func(int) string, acc func(int, int) string, mc, c, VB int, half bool, streams int) gptqUnit {
	na, iacc, plane, other, _, extra, xr, xregs := vnniRegs(reg, mc, c, half, 1)
	k256 := extra[0]
	plan := fmt.Sprintf("// Register plan: %s..%s float accumulators acc[m][c], %s..%s the unit's\n"+
		"// digit sums [m][c][digit], %s.. each column vector's qweight row,\n"+
		"// %s the float 256.",
		reg(0), reg(na-1), reg(na), reg(4*na-1), plane(0), k256)
	setup := func() {
		w("MOVL\t$0x43800000, R14")
		w("VPBROADCASTD\tR14, %s", k256)
	}
	rows := func() {
		vnniClear(w, iacc, mc, c)
		for r := 0; r < 8; r++ {
			vnniLoadRow(w, plane, c, VB, half, streams)
			vnniPlane(w, iacc, plane, xr, xregs, mc, c, r)
			w("ADDQ\tR8, AX")
		}
	}
	// combine leaves the unit's Σ code·X as float32 in iacc(m, ci, 0)
	combine := func(m, ci int) string {
		s0, s1, s2 := iacc(m, ci, 0), iacc(m, ci, 1), iacc(m, ci, 2)
		w("VCVTDQ2PS\t%s, %s", s0, s0)
		w("VCVTDQ2PS\t%s, %s", s1, s1)
		w("VCVTDQ2PS\t%s, %s", s2, s2)
		w("VFMADD213PS\t%s, %s, %s", s1, k256, s2)
		w("VFMADD213PS\t%s, %s, %s", s0, k256, s2)
		return s2
	}
	body := func() {
		rows()
		for m := 0; m < mc; m++ {
			for ci := 0; ci < c; ci++ {
				s := combine(m, ci)
				w("VFMADD231PS.BCST\t%d(BX), %s, %s", 128*m+96, s, acc(m, ci))
			}
		}
	}
	direct := func(zeros bool) {
		rows()
		var zero func(m, ci int) string
		if zeros {
			zero = func(m, ci int) string {
				z := iacc(m, ci, 1) // free after combine
				w("VPMOVZXBD\t%d(R11), %s", VB/4*ci, z)
				return z
			}
		}
		vnniDirect(w, acc, mc, c, streams, plane, other(0), combine, zero)
	}
	return gptqUnit{T: [2]int{4 * na, 4*na + 1}, xsz: 128 * mc, plan: plan, setup: setup, body: body, direct: direct}
}

// gptq512VNNI2 is gptq512VNNI's form for 2-bit codes (see there).
func gptq512VNNI2(w func(string, ...any), reg func(int) string, acc func(int, int) string, mc, c, VB int, half bool) gptqUnit {
	na, iacc, plane, word, mask, _, xr, xregs := vnniRegs(reg, mc, c, half, 0)
	plan := fmt.Sprintf("// Register plan: %s..%s float accumulators acc[m][c], %s..%s the unit's\n"+
		"// digit sums [m][c][digit], %s.. each column vector's code plane and\n"+
		"// qweight word, %s the plane mask 0x03030303.",
		reg(0), reg(na-1), reg(na), reg(4*na-1), plane(0), mask)
	setup := func() {
		w("MOVL\t$0x03030303, R14")
		w("VPBROADCASTD\tR14, %s", mask)
	}
	rows := func() {
		vnniClear(w, iacc, mc, c)
		for r := 0; r < 2; r++ {
			vnniLoadRow(w, word, c, VB, half, 1)
			for j := 0; j < 4; j++ {
				for ci := 0; ci < c; ci++ {
					if j == 0 {
						w("VPANDD\t%s, %s, %s", mask, word(ci), plane(ci))
						continue
					}
					w("VPSRLD\t$%d, %s, %s", 2*j, word(ci), plane(ci))
					w("VPANDD\t%s, %s, %s", mask, plane(ci), plane(ci))
				}
				vnniPlane(w, iacc, plane, xr, xregs, mc, c, 4*r+j)
			}
			w("ADDQ\tR8, AX")
		}
	}
	body := func() {
		rows()
		vnniFinish(w, iacc, acc, mc, c)
	}
	direct := func(zeros bool) {
		rows()
		vnniDirect(w, acc, mc, c, 1, plane, word(0), func(m, ci int) string { return vnniCombine(w, iacc, m, ci, -1) }, nil)
	}
	return gptqUnit{T: [2]int{4 * na, 4*na + 1}, xsz: 128 * mc, plan: plan, setup: setup, body: body, direct: direct}
}

// gptq3Planes are the 3-bit VNNI kernels' eight code planes: plane q
// holds codes 4q … 4q+3 of a unit (input order: the x digits in plain
// order), taken by VPMULTISHIFTQB from source src (0, 1, 2: qweight rows
// w0, w1, w2 of the unit; 3: (w1:w0) >> 24, 4: (w2:w1) >> 24 — the 96-bit
// stream from bit 24 and bit 56, which hold codes 8–17 and 19–28 whole)
// at the bit offsets off of the four codes within that dword.
var gptq3Planes = func() (ps [8]struct{ src, off int }) {
	srcStart := []int{0, 32, 64, 24, 56}   // stream bit of each source's bit 0
	order := []int{0, 0, 3, 3, 1, 4, 4, 2} // plane → source
	for q := range ps {
		ps[q].src = order[q]
		ps[q].off = 3*4*q - srcStart[order[q]]
	}
	return
}()

// gptq512VNNI3 is gptq512VNNI's form for 3-bit codes (CPUs with
// AVX512_VBMI and VBMI2 too). A unit's 32 codes are a 96-bit stream over
// its three qweight rows (code i at bit 3i); two funnel shifts (VPSHRDD)
// make the dwords that hold the codes across the rows' boundaries, and for
// each plane (gptq3Planes) one VPMULTISHIFTQB puts its four codes in the
// four bytes of every column's dword (the control bytes: the codes' bit
// offsets, +32 for the high dword of each qword), masked by 0x07.
func gptq512VNNI3(w func(string, ...any), reg func(int) string, acc func(int, int) string, mc, c, VB int, half bool) gptqUnit {
	// fun(ci): a funnel-shifted source; ctrl: the plane's control
	na, iacc, plane, fun, mask, extra, xr, xregs := vnniRegs(reg, mc, c, half, 1)
	ctrl := extra[0]
	plan := fmt.Sprintf("// Register plan: %s..%s float accumulators acc[m][c], %s..%s the unit's\n"+
		"// digit sums [m][c][digit], %s.. each column vector's code plane and\n"+
		"// funnel-shifted source, %s the code mask 0x07070707, %s the plane's\n// VPMULTISHIFTQB control.",
		reg(0), reg(na-1), reg(na), reg(4*na-1), plane(0), mask, ctrl)
	setup := func() {
		w("MOVL\t$0x07070707, R14")
		w("VPBROADCASTD\tR14, %s", mask)
	}
	// qweight row r (0–2) of the unit, column vector ci
	row := func(ci, r int) string {
		if r == 0 {
			return fmt.Sprintf("%d(AX)", VB*ci)
		}
		return fmt.Sprintf("%d(AX)(R8*%d)", VB*ci, r)
	}
	rows := func() {
		vnniClear(w, iacc, mc, c)
		if !half {
			for r := 0; r < 3; r++ {
				if r > 0 {
					w("ADDQ\tR8, AX")
				}
				for l := 0; l < c; l++ {
					w("PREFETCHT1\t%d(AX)(R14*1)", 64*l)
				}
			}
			w("SUBQ\tR8, AX")
			w("SUBQ\tR8, AX")
		}
		for q, p := range gptq3Planes {
			w("VMOVDQU64\tgptq3ctl<>+%d(SB), %s", 64*q, ctrl)
			for ci := 0; ci < c; ci++ {
				if p.src < 3 {
					w("VPMULTISHIFTQB\t%s, %s, %s", row(ci, p.src), ctrl, plane(ci))
				} else {
					if q == 2 || q == 5 { // the funnel source, once for its two planes
						lo, hi := p.src-3, p.src-2 // rows (w0, w1) or (w1, w2)
						w("VMOVDQU32\t%s, %s", row(ci, lo), fun(ci))
						w("VPSHRDD\t$24, %s, %s, %s", row(ci, hi), fun(ci), fun(ci))
					}
					w("VPMULTISHIFTQB\t%s, %s, %s", fun(ci), ctrl, plane(ci))
				}
				w("VPANDD\t%s, %s, %s", mask, plane(ci), plane(ci))
			}
			vnniPlane(w, iacc, plane, xr, xregs, mc, c, q)
		}
		w("LEAQ\t(AX)(R8*2), AX")
		w("ADDQ\tR8, AX")
	}
	body := func() {
		rows()
		vnniFinish(w, iacc, acc, mc, c)
	}
	direct := func(zeros bool) {
		rows()
		vnniDirect(w, acc, mc, c, 1, plane, fun(0), func(m, ci int) string { return vnniCombine(w, iacc, m, ci, -1) }, nil)
	}
	return gptqUnit{T: [2]int{4 * na, 4*na + 1}, xsz: 128 * mc, plan: plan, setup: setup, body: body, direct: direct}
}

// gptq3Data emits the VPMULTISHIFTQB controls of gptq3Planes: for plane
// q, 64 bytes at 64q, byte 8k + b the bit offset of code b (b < 4) within
// the qword's low dword, or (b ≥ 4) of code b − 4 within its high dword.
func gptq3Data(sb *strings.Builder) {
	sb.WriteString("\n// VPMULTISHIFTQB controls of the 3-bit VNNI kernels' planes (gen: gptq3Planes).\n")
	for q, p := range gptq3Planes {
		for k := 0; k < 8; k++ {
			for b := 0; b < 8; b++ {
				off := p.off + 3*(b%4)
				if b >= 4 {
					off += 32
				}
				fmt.Fprintf(sb, "DATA gptq3ctl<>+%d(SB)/1, $%d\n", 64*q+8*k+b, off)
			}
		}
	}
	sb.WriteString("GLOBL gptq3ctl<>(SB), RODATA|NOPTR, $512\n")
}

// vnniLoadRow loads the qweight row at AX of the c column vectors into
// dst(ci), with the software prefetch of the stream as in the float
// kernels (without it, measured in one process on Zen 4: one x row g32
// ±7%, g128 −20%, 2 and 4 rows −20–30%).
//
// With two streams (gptqDirectKernel) the second half of the vectors comes
// from R12 bytes further, prefetched R9 (= R12 + R14) bytes ahead.
func vnniLoadRow(w func(string, ...any), dst func(ci int) string, c, VB int, half bool, streams int) {
	cs := c / streams
	for ci := 0; ci < c; ci++ {
		if ci >= cs {
			w("VMOVDQU32\t%d(AX)(R12*1), %s", VB*(ci-cs), dst(ci))
			continue
		}
		w("VMOVDQU32\t%d(AX), %s", VB*ci, dst(ci))
	}
	if !half {
		for l := 0; l < cs; l++ {
			w("PREFETCHT1\t%d(AX)(R14*1)", 64*l)
			if streams == 2 {
				w("PREFETCHT1\t%d(AX)(R9*1)", 64*l)
			}
		}
	}
}

// vnniRegs is the register plan of the 2- and 3-bit VNNI forms: the
// na = mc·c float accumulators, their digit sums iacc, two registers a
// column vector (plane, other), the code mask, nextra more, and the x
// digits' three broadcast registers xr when they fit (xregs).
func vnniRegs(reg func(int) string, mc, c int, half bool, nextra int) (na int, iacc func(m, ci, d int) string, plane, other func(int) string, mask string, extra []string, xr func(int) string, xregs bool) {
	na = mc * c
	iacc = func(m, ci, d int) string { return reg(na + 3*(m*c+ci) + d) }
	plane = func(ci int) string { return reg(4*na + 2*ci) }
	other = func(ci int) string { return reg(4*na + 2*ci + 1) }
	mask = reg(4*na + 2*c)
	next := 4*na + 2*c + 1
	for range nextra {
		extra = append(extra, reg(next))
		next++
	}
	if next > 32 {
		panic("registers")
	}
	xr = func(d int) string { return reg(next + d) }
	xregs = next+3 <= 32 && !half && c > 1
	return
}

// vnniPlane adds to the digit sums the products of the code plane in
// plane(ci) (four codes a column's dword) with dword q of each x row's
// three digit arrays: broadcast into xr(0…2) first when xregs, else as
// VPDPBUSD's broadcast memory operand (the 2- and 3-bit forms).
func vnniPlane(w func(string, ...any), iacc func(m, ci, d int) string, plane, xr func(int) string, xregs bool, mc, c, q int) {
	for m := 0; m < mc; m++ {
		src := func(d int) string { return fmt.Sprintf("%d(BX)", 128*m+32*d+4*q) }
		op := "VPDPBUSD.BCST"
		if xregs {
			for d := 0; d < 3; d++ {
				w("VPBROADCASTD\t%s, %s", src(d), xr(d))
			}
			src, op = xr, "VPDPBUSD"
		}
		for ci := 0; ci < c; ci++ {
			for d := 0; d < 3; d++ {
				w("%s\t%s, %s, %s", op, src(d), plane(ci), iacc(m, ci, d))
			}
		}
	}
}

// vnniFinish adds each (x row, column vector)'s unit sum times the unit's
// factor (at 96 of the row's x block) to its float accumulator.
func vnniFinish(w func(string, ...any), iacc func(m, ci, d int) string, acc func(int, int) string, mc, c int) {
	for m := 0; m < mc; m++ {
		for ci := 0; ci < c; ci++ {
			s0 := vnniCombine(w, iacc, m, ci, -1)
			w("VFMADD231PS.BCST\t%d(BX), %s, %s", 128*m+96, s0, acc(m, ci))
		}
	}
}

// vnniDirect is the end of a unit in the direct kernels
// (gptqDirectKernel), after its rows. The unit's scales go into sc(ci)
// (at R9; with two streams at DX, stream 2's R12 further) and x's factor
// into f, registers the rows no longer need. Each (x row, column vector)'s
// sum, combine(m, ci), is formed as the sub-group form's unit end forms
// it, init + factor·S (one FMA, the operands commuted); with zero points,
// zero(m, ci) leaves the column vector's codes of them as integers in a
// register and z·Σx is taken off, as the sub-group form's epilogue does;
// then the sum is scaled into the output accumulator as that epilogue
// scales it into y, y + scale·sum: the same roundings, with the output in
// a register in place of y in memory.
func vnniDirect(w func(string, ...any), acc func(int, int) string, mc, c, streams int, sc func(int) string, f string, combine func(m, ci int) string, zero func(m, ci int) string) {
	for ci := 0; ci < c; ci++ {
		switch {
		case streams == 1:
			w("VCVTPH2PS\t%d(R9), %s", 32*ci, sc(ci))
		case ci < c/2:
			w("VCVTPH2PS\t%d(DX), %s", 32*ci, sc(ci))
		default:
			w("VCVTPH2PS\t%d(DX)(R12*1), %s", 32*(ci-c/2), sc(ci))
		}
	}
	for m := 0; m < mc; m++ {
		w("VBROADCASTSS\t%d(BX), %s", 128*m+96, f)
		for ci := 0; ci < c; ci++ {
			s0 := combine(m, ci)
			w("VFMADD213PS.BCST\t%d(R13), %s, %s", 8*m, f, s0)
			if zero != nil {
				z := zero(m, ci)
				w("VCVTDQ2PS\t%s, %s", z, z)
				w("VFNMADD231PS.BCST\t%d(R13), %s, %s", 8*m+4, z, s0)
			}
			w("VFMADD231PS\t%s, %s, %s", s0, sc(ci), acc(m, ci))
		}
	}
}

// vnniClear zeroes the VNNI kernels' digit sums iacc(m, ci, d).
func vnniClear(w func(string, ...any), iacc func(m, ci, d int) string, mc, c int) {
	for m := 0; m < mc; m++ {
		for ci := 0; ci < c; ci++ {
			for d := 0; d < 3; d++ {
				w("VPXORD\t%s, %s, %s", iacc(m, ci, d), iacc(m, ci, d), iacc(m, ci, d))
			}
		}
	}
}

// vnniCombine leaves in the first digit sum of x row m and column vector
// ci the exact Σ code·X as float32 (S0 + 2^8·S1 + 2^16·S2, formed modulo
// 2^32), less the int32 at off of the row's x block when off ≥ 0 (the
// e2m1 forms' 12·ΣX), and returns that register.
func vnniCombine(w func(string, ...any), iacc func(m, ci, d int) string, m, ci, off int) string {
	s0, s1, s2 := iacc(m, ci, 0), iacc(m, ci, 1), iacc(m, ci, 2)
	w("VPSLLD\t$8, %s, %s", s1, s1)
	w("VPSLLD\t$16, %s, %s", s2, s2)
	w("VPADDD\t%s, %s, %s", s1, s0, s0)
	w("VPADDD\t%s, %s, %s", s2, s0, s0)
	if off >= 0 {
		w("VPSUBD.BCST\t%d(BX), %s, %s", 128*m+off, s0, s0)
	}
	w("VCVTDQ2PS\t%s, %s", s0, s0)
	return s0
}

// nvScaleHalf is the distance from an NVFP4 tile's scales of the units'
// first halves to those of their second halves in the packed copy: a full
// tile's fp16 scales, 2·T bytes (T = 16·gptq512Wide(4, 1) = 64 columns;
// pack512_amd64.go pads narrower tiles to it).
const nvScaleHalf = 2 * 64

// gptqTileSaved are the argument-block offsets of the pointers the
// sub-group loop advances (q, z, s, xf, sx, y), saved at 184.. for the
// column-tile loop.
var gptqTileSaved = []int{0, 16, 32, 48, 64, 80}

// gptq512Data emits the per-lane zero-point shift tables of the zmm
// kernels (16 columns: for 3 and 4 bits the upper 8 lanes come from a
// second dword, see the epilogue).
func gptq512Data(sb *strings.Builder, bits int) {
	fmt.Fprintf(sb, "\n// AND masks of the %d-bit fields (the value mask first), for broadcasts.\n", bits)
	ms := gptqMasks(bits)
	for i, m := range ms {
		fmt.Fprintf(sb, "DATA gptqzm%d<>+%d(SB)/4, $0x%08x\n", bits, 4*i, m)
	}
	fmt.Fprintf(sb, "GLOBL gptqzm%d<>(SB), RODATA|NOPTR, $%d\n", bits, 4*len(ms))
	if bits == 8 {
		return
	}
	fmt.Fprintf(sb, "\n// Per-lane shifts that bring the zero point of column 8i+l to bit 0 (ymm).\n")
	for l := 0; l < 8; l++ {
		fmt.Fprintf(sb, "DATA gptqys%d<>+%d(SB)/4, $%d\n", bits, 4*l, bits*l)
	}
	fmt.Fprintf(sb, "GLOBL gptqys%d<>(SB), RODATA|NOPTR, $32\n", bits)
	fmt.Fprintf(sb, "\n// Per-lane shifts that bring the zero point of column 16i+l to bit 0 (zmm).\n")
	for l := 0; l < 16; l++ {
		var sh int
		switch bits {
		case 2:
			sh = 2 * l
		case 4:
			sh = 4 * (l % 8)
		case 3:
			sh = 3 * l
			if l >= 8 {
				sh = 8 + 3*(l-8) // dword at byte offset 2: column 8 starts at bit 24 = 16 + 8
			}
		}
		fmt.Fprintf(sb, "DATA gptqzs%d<>+%d(SB)/4, $%d\n", bits, 4*l, sh)
	}
	fmt.Fprintf(sb, "GLOBL gptqzs%d<>(SB), RODATA|NOPTR, $64\n", bits)
}
