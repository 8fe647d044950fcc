package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/marlin-llm/marlin/dtype"
)

// AVX-512 row-major kernels: FP4 (fp16 scale per 32 or per 64·j), MXFP4,
// NVFP4 and FP8.
//
// The weights are decoded exactly to float32 (in the element order below)
// and summed in the order of the dense AVX-512 kernels of package kernels
// (matmul512_amd64.s): per K block, two accumulators E and O take the
// 16-element steps alternately (E, O, E, O for the 4 steps of a chunk of 64
// inputs), then v = E + O is reduced by the fixed tree, and the blocks are
// added to dst in order. The caller multiplies by the row's factor
// (post·rowscale) at the end. Small batches use the matrix-vector kernels
// below (fpg*: decode each chunk once for up to 4 x rows); larger ones pack
// the decoded weights into panels (fpp*) for the dense prefill kernel
// kernels.PanelGEMM, which adds in the same order: results do not depend
// on M.
//
// Decoding a chunk (64 weights) into four vectors V0..V3 of 16 float32:
//
//	e2m1: V0 lane d = element 2d (the low nibble of byte d), V1 = element
//	      2d+1 (the high nibble), V2/V3 the same for bytes 16..31. VPMOVZXBD
//	      puts 16 code bytes in 16 dword lanes, VPSRLD $4 brings the high
//	      nibbles down, and VPERMD, which uses only the low 4 bits of each
//	      lane as its index, looks the values up in a 16-entry float32
//	      table that was first multiplied by the block scale (e2m1 · scale
//	      is exact in float32); NVFP4's vectors span two 16-blocks, so they
//	      are multiplied by a per-lane scale vector instead. The x rows are
//	      permuted the same way (fpPrepZ), so the sums run over the chunk's
//	      elements in this order in every path. 6 shuffles per chunk: the
//	      cross-lane shuffles (one per cycle for zmm) bound one x row.
//	e4m3: V_v = elements 16v..16v+15 (natural order). VPMOVSXBW widens 32
//	      code bytes to words, VPSLLW $7 puts s.eeee.mmm where binary16
//	      wants it (the value times 2^-8, exact, subnormals included; the
//	      sign copy in bit 14 is cleared by VPANDD) and VCVTPH2PS widens 16
//	      of them: the 2^8 is part of the row factor.

var fpgRows = []int{1, 2, 3, 4}

// fp512Scales emits the block scales of one chunk: the scaled e2m1 tables
// tv(v) (MXFP4, FP4), or for NVFP4 the per-lane scale vectors of V0/V1 (Z13)
// and V2/V3 (Z14), whose lanes 0–7 and 8–15 lie in different 16-blocks.
func fp512Scales(w func(string, ...any), k fpKind, tv func(int) string, sa string) {
	const T0 = "Z12"
	switch k.scale {
	case "e4m3":
		for h := 0; h < 2; h++ {
			w("MOVBLZX\t%d%s, R14", 2*h, sa)
			w("VBROADCASTSS\t(R12)(R14*4), Z%d", 13+h)
			w("MOVBLZX\t%d%s, R14", 2*h+1, sa)
			w("VBROADCASTSS\t(R12)(R14*4), K1, Z%d", 13+h)
		}
	case "e8m0":
		for h := 0; h < 2; h++ {
			w("MOVBLZX\t%d%s, R14", h, sa)
			w("VMULPS.BCST\t(R12)(R14*4), %s, %s", T0, tv(2*h))
		}
	case "f16":
		n := 2
		if k.big {
			n = 1
		}
		for h := 0; h < n; h++ {
			w("VPBROADCASTW\t%d%s, Y24", 2*h, sa)
			w("VCVTPH2PS\tY24, Z24")
			w("VMULPS\tZ24, %s, %s", T0, tv(2*h))
		}
	}
}

// fp512Decode emits the decoding of the chunk at address wa (a base and
// index without displacement) into V0..V3 (Z8..Z11).
func fp512Decode(w func(string, ...any), k fpKind, tv func(int) string, wa string) {
	V := func(v int) string { return fmt.Sprintf("Z%d", 8+v) }
	if k.e2m1 {
		for h := 0; h < 2; h++ {
			w("VPMOVZXBD\t%d%s, Z23", 16*h, wa)
			w("VPSRLD\t$4, Z23, Z24")
			w("VPERMD\t%s, Z23, %s", tv(2*h), V(2*h))
			w("VPERMD\t%s, Z24, %s", tv(2*h), V(2*h+1))
			if k.scale == "e4m3" {
				w("VMULPS\tZ%d, %s, %s", 13+h, V(2*h), V(2*h))
				w("VMULPS\tZ%d, %s, %s", 13+h, V(2*h+1), V(2*h+1))
			}
		}
		return
	}
	for h := 0; h < 2; h++ {
		w("VPMOVSXBW\t%d%s, Z23", 32*h, wa)
		w("VPSLLW\t$7, Z23, Z23")
		w("VPANDD\tZ22, Z23, Z23")
		w("VCVTPH2PS\tY23, %s", V(2*h))
		w("VEXTRACTI32X8\t$1, Z23, Y24")
		w("VCVTPH2PS\tY24, %s", V(2*h+1))
	}
}

// fp512Setup loads the constants: Z12 the e2m1 table (e2m1), Z22 the FP8
// word mask, R12 the scale table, K1 = 0xff00 (NVFP4).
func fp512Setup(w func(string, ...any), k fpKind) {
	if k.e2m1 {
		w("VMOVUPS\te2m1f32<>(SB), Z12")
	} else {
		w("VPBROADCASTW\tfp8mask<>(SB), Z22")
	}
	switch k.scale {
	case "e4m3":
		w("LEAQ\te4m3tab<>(SB), R12")
		w("MOVL\t$0xff00, R14")
		w("KMOVW\tR14, K1")
	case "e8m0":
		w("LEAQ\te8m0tab<>(SB), R12")
	}
}

// fp512Advance emits the scale pointer's advance after a chunk (FP4
// g64·j: after cpg chunks, counted in the args word at left; cpg at cpg).
func fp512Advance(w func(string, ...any), sb *strings.Builder, k fpKind, name string, left, cpg int) {
	switch {
	case k.big:
		w("DECQ\t%d(DI)", left)
		w("JNZ\t%s_same", name)
		w("MOVQ\t%d(DI), R14", cpg)
		w("MOVQ\tR14, %d(DI)", left)
		w("ADDQ\t$2, R9")
		fmt.Fprintf(sb, "%s_same:\n", name)
	case k.nscales > 0:
		sz := 1
		if k.scale == "f16" {
			sz = 2
		}
		w("ADDQ\t$%d, R9", k.nscales*sz)
	}
}

// tvOf returns the table register of vector v: NVFP4 the plain table Z12
// (its vectors are scaled afterwards), 32-blocks a scaled table per pair
// (Z13, Z15), FP4 g64·j one for the chunk (Z13).
func tvOf(k fpKind) func(int) string {
	return func(v int) string {
		switch {
		case k.scale == "e4m3":
			return "Z12"
		case k.big:
			return "Z13"
		}
		return fmt.Sprintf("Z%d", 13+v/2*2)
	}
}

// fpgKernel emits the matrix-vector kernel of kind k for mc x rows; with
// nw = 2 (one x row only) it takes two weight rows at a time, so that four
// chains (E/O of each row) cover the FMA latency; the rows are adjacent in
// memory, nearly one stream.
func fpgKernel(sb *strings.Builder, k fpKind, mc, nw int) {
	name := fmt.Sprintf("fpg%sM%d", k.name, mc)
	if nw == 2 {
		name += "R2"
	}
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	xr := []string{"R8", "R10", "R11", "R13"}
	tv := tvOf(k)
	r2note := ""
	if nw == 2 {
		r2note = `
// Two weight rows at a time: Z0/Z1 and Z2/Z3 the chains of rows j and j+1,
// R10/R11 the weight/scale row strides (row j+1 at (AX)(R10*1), its scales
// at (R9)(R11*1)), R13 the prefetch pointer (the next pair of rows).`
	}
	fmt.Fprintf(sb, `
// func %s(a *fpgArgs)
//
// %s matrix-vector kernel, %d x row(s): for weight rows j < nrows,
//
//	dst[m·ldd + j] = Σ_blocks (reduce(E + O) of the block)   for m < %d
//
// (x rows in the decode order, see fpPrepZ).
// Register plan: Z(2m)/Z(2m+1) the E/O accumulators of x row m, Z8..Z11
// the decoded chunk, Z12 the e2m1 table, Z13..Z15 the scaled tables (NVFP4:
// Z13/Z14 the scale vectors), Z22 the FP8 word mask, Z23/Z24 temporaries,
// K1 = 0xff00 (NVFP4). GPRs: DI
// args, AX weights, R9 scales, BX byte offset into the x rows, R8/R10/R11/
// R13 x rows, SI dst of the row, DX rows left, CX chunks left in the block,
// R12 scale table, R14 temp. Counters in the args: chunks left in the row
// (96), "dst written" (104), chunks left on this scale (112, FP4 g64·j).%s
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
	MOVQ	32(DI), R8
	MOVQ	40(DI), R14
`, name, k.name, mc, mc, r2note, name)
	for m := 1; m < mc; m++ {
		w("LEAQ\t(%s)(R14*1), %s", xr[m-1], xr[m])
	}
	w("MOVQ\t48(DI), SI")
	w("MOVQ\t64(DI), DX")
	fp512Setup(w, k)
	if nw == 2 {
		w("MOVQ\t8(DI), R10\t// the second row: (AX)(R10*1), scales (R9)(R11*1); R13 prefetch")
		w("MOVQ\t24(DI), R11")
	}
	fmt.Fprintf(sb, "%s_row:\n", name)
	w("MOVQ\t0(DI), AX")
	if nw == 2 {
		w("LEAQ\t(AX)(R10*2), R13\t// prefetch pointer: the next pair of rows")
	}
	w("MOVQ\t16(DI), R9")
	w("XORQ\tBX, BX")
	w("MOVQ\t72(DI), R14")
	w("MOVQ\tR14, 96(DI)\t// chunks left in the row")
	w("MOVQ\t$0, 104(DI)\t// dst not yet written")
	if k.big {
		w("MOVQ\t88(DI), R14")
		w("MOVQ\tR14, 112(DI)")
	}
	fmt.Fprintf(sb, "%s_block:\n", name)
	for m := 0; m < 2*mc*nw; m++ {
		w("VPXORD\tZ%d, Z%d, Z%d", m, m, m)
	}
	w("MOVQ\t80(DI), CX")
	w("CMPQ\tCX, 96(DI)")
	w("JBE\t%s_chunk", name)
	w("MOVQ\t96(DI), CX")
	fmt.Fprintf(sb, "%s_chunk:\n", name)
	if nw == 2 {
		// the next pair of rows, same offset
		w("PREFETCHNTA\t(R13)")
		w("PREFETCHNTA\t(R13)(R10*1)")
	} else {
		w("PREFETCHNTA\t1024(AX)")
	}
	for r := 0; r < nw; r++ {
		wa, sa := "(AX)", "(R9)"
		if r == 1 {
			wa, sa = "(AX)(R10*1)", "(R9)(R11*1)"
		}
		fp512Scales(w, k, tv, sa)
		fp512Decode(w, k, tv, wa)
		for m := 0; m < mc; m++ {
			for v := 0; v < 4; v++ {
				w("VFMADD231PS\t%d(%s)(BX*1), Z%d, Z%d", 64*v, xr[m], 8+v, 2*(m+r)+v%2)
			}
		}
	}
	step := 64
	if k.e2m1 {
		step = 32
	}
	w("ADDQ\t$%d, AX", step)
	if nw == 2 {
		w("ADDQ\t$%d, R13", step)
	}
	w("ADDQ\t$256, BX")
	fp512Advance(w, sb, k, name, 112, 88)
	w("DECQ\t96(DI)")
	w("DECQ\tCX")
	w("JNZ\t%s_chunk", name)
	// block end: reduce and store or add
	w("MOVQ\tSI, R14")
	for m := 0; m < mc*nw; m++ {
		e, o := 2*m, 2*m+1
		w("VADDPS\tZ%d, Z%d, Z%d", o, e, e)
		w("VEXTRACTF32X8\t$1, Z%d, Y24", e)
		w("VADDPS\tY24, Y%d, Y%d", e, e)
		w("VEXTRACTF32X4\t$1, Y%d, X24", e)
		w("VADDPS\tX24, X%d, X%d", e, e)
		w("VHADDPS\tX%d, X%d, X%d", e, e, e)
		w("VHADDPS\tX%d, X%d, X%d", e, e, e)
		w("CMPQ\t104(DI), $0")
		w("JEQ\t%s_set%d", name, m)
		if nw == 2 {
			w("VADDSS\t%d(R14), X%d, X%d", 4*m, e, e)
		} else {
			w("VADDSS\t(R14), X%d, X%d", e, e)
		}
		fmt.Fprintf(sb, "%s_set%d:\n", name, m)
		if nw == 2 {
			w("VMOVSS\tX%d, %d(R14)", e, 4*m)
			continue
		}
		w("VMOVSS\tX%d, (R14)", e)
		if m+1 < mc {
			w("ADDQ\t56(DI), R14")
		}
	}
	w("MOVQ\t$1, 104(DI)")
	w("CMPQ\t96(DI), $0")
	w("JNE\t%s_block", name)
	for r := 0; r < nw; r++ {
		w("MOVQ\t8(DI), R14")
		w("ADDQ\tR14, 0(DI)")
		w("MOVQ\t24(DI), R14")
		w("ADDQ\tR14, 16(DI)")
	}
	w("ADDQ\t$%d, SI", 4*nw)
	w("DECQ\tDX")
	w("JNZ\t%s_row", name)
	w("VZEROUPPER")
	w("RET")
}

// fppKernel emits the panel packing kernel of kind k: one group of 4 weight
// rows, nchunks chunks, decoded into [step][row][16] float32.
func fppKernel(sb *strings.Builder, k fpKind) {
	name := fmt.Sprintf("fpp%s", k.name)
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	tv := tvOf(k)
	fmt.Fprintf(sb, `
// func %s(a *fppArgs)
//
// %s panel packing: 4 weight rows (w[j], scales s[j]), nchunks chunks of 64,
// decoded exactly (as in the matrix-vector kernel) and stored for
// kernels.PanelGEMM: step t of row j at panel + (4t + j)·64 bytes.
// Registers as in the matrix-vector kernels; DX chunks left, SI the panel
// position of row j, R8 8·j (index into w[] and s[]); chunks left on this
// scale in the args (88, FP4 g64·j).
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
`, name, k.name, name)
	fp512Setup(w, k)
	w("XORQ\tR8, R8")
	fmt.Fprintf(sb, "%s_rowj:\n", name)
	w("MOVQ\t8(DI)(R8*1), AX")
	w("MOVQ\t40(DI)(R8*1), R9")
	w("MOVQ\t0(DI), SI")
	w("LEAQ\t(SI)(R8*8), SI\t// + 64·j bytes")
	w("MOVQ\t72(DI), DX")
	if k.big {
		w("MOVQ\t80(DI), R14")
		w("MOVQ\tR14, 88(DI)")
	}
	fmt.Fprintf(sb, "%s_chunk:\n", name)
	fp512Scales(w, k, tv, "(R9)")
	fp512Decode(w, k, tv, "(AX)")
	for v := 0; v < 4; v++ {
		w("VMOVUPS\tZ%d, %d(SI)", 8+v, 256*v)
	}
	w("ADDQ\t$1024, SI")
	if k.e2m1 {
		w("ADDQ\t$32, AX")
	} else {
		w("ADDQ\t$64, AX")
	}
	fp512Advance(w, sb, k, name, 88, 80)
	w("DECQ\tDX")
	w("JNZ\t%s_chunk", name)
	w("ADDQ\t$8, R8")
	w("CMPQ\tR8, $32")
	w("JB\t%s_rowj", name)
	w("VZEROUPPER")
	w("RET")
}

func fp512Data(sb *strings.Builder) {
	vals := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, float32(math.Copysign(0, -1)), -0.5, -1, -1.5, -2, -3, -4, -6}
	sb.WriteString("\n// e2m1 code → float32 bits.\n")
	for c, v := range vals {
		fmt.Fprintf(sb, "DATA e2m1f32<>+%d(SB)/4, $0x%08x\n", 4*c, math.Float32bits(v))
	}
	sb.WriteString("GLOBL e2m1f32<>(SB), RODATA|NOPTR, $64\n")
	sb.WriteString("\n// FP8 fix-up mask (binary16 sign and exponent/mantissa bits, bit 14 clear).\n")
	sb.WriteString("DATA fp8mask<>+0(SB)/2, $0xbf80\nGLOBL fp8mask<>(SB), RODATA|NOPTR, $2\n")
	sb.WriteString("\n// e4m3 and e8m0 scale codes → float32 bits.\n")
	for c := 0; c < 256; c++ {
		fmt.Fprintf(sb, "DATA e4m3tab<>+%d(SB)/4, $0x%08x\n", 4*c, e4m3bits(uint8(c)))
	}
	sb.WriteString("GLOBL e4m3tab<>(SB), RODATA|NOPTR, $1024\n")
	for c := 0; c < 256; c++ {
		fmt.Fprintf(sb, "DATA e8m0tab<>+%d(SB)/4, $0x%08x\n", 4*c, math.Float32bits(dtype.E8M0ToF32(uint8(c))))
	}
	sb.WriteString("GLOBL e8m0tab<>(SB), RODATA|NOPTR, $1024\n")
}
