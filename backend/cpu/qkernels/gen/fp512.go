package main

import (
	"fmt"
	"math"
	"strings"
)

// AVX-512 row-major kernels: FP4 (fp16 scale per 32 or per 64·j), MXFP4,
// NVFP4 and FP8.
//
// The weights are decoded exactly to float32 (in the element order below)
// and summed in the order of the dense AVX-512 kernels of package kernels
// (matmul512_amd64.s): per K block, two accumulators E and O take the
// 16-element steps alternately, then v = E + O is reduced by the fixed
// tree, and the blocks are added to dst in order. The caller multiplies by
// the row's factor (post·rowscale) at the end. Small batches use the
// matrix-vector kernels below (fpg*: decode each unit once for up to 4 x
// rows); larger ones pack the decoded weights into panels (fpp*) for the
// dense prefill kernel kernels.PanelGEMM, which adds in the same order:
// results do not depend on M.
//
// e2m1 (FP4, MXFP4, NVFP4) in spans of 128 weights (64 code bytes): the
// span is loaded as 16 dwords, dword l holding elements 8l … 8l+7 (nibble
// j = element 8l+j). Step j (j = 0 … 7) shifts the dwords right by 4j and
// VPERMD, which reads only the low 4 bits of each index lane, looks the
// nibbles up in the 16-entry float32 e2m1 table: vector j, lane l =
// element 8l+j. One cross-lane shuffle and one shift per 16 weights (the
// byte-spreading layout before needed 1.5 shuffles, the bound at one x
// row). A lane's 8 elements share one block scale whenever the block is a
// multiple of 8, so the span's scales form one vector S (lane l: the scale
// of elements 8l …), built once per span; each decoded vector is
// multiplied by S (e2m1 · scale is exact in float32). The x rows are
// permuted the same way (fpPrepZ: xp[128s + 16j + l] = x[128s + 8l + j]).
//
// e4m3 (FP8) in chunks of 64: V_v = elements 16v..16v+15 (natural order).
// VPMOVSXBW widens 32 code bytes to words, VPSLLW $7 puts s.eeee.mmm where
// binary16 wants it (the value times 2^-8, exact, subnormals included; the
// sign copy in bit 14 is cleared by VPANDD) and VCVTPH2PS widens 16 of
// them: the 2^8 is part of the row factor.

var fpgRows = []int{1, 2, 3, 4}

// fp512Kinds are the row-major kinds of the AVX-512 kernels: those of the
// AVX2 ones with FP4's groups of 64·j split into f4b (128·j: one scale a
// span) and f4h (64·odd: one a half span).
var fp512Kinds = append(fpKinds[:len(fpKinds):len(fpKinds)], fpKind{name: "f4h", e2m1: true, nscales: 1, scale: "f16", big: true})

// spanSetup loads the constants of the e2m1 span kernels: Z12 the e2m1
// table (NVFP4: times 2^8), Z15 the lane → scale index (FP4 g32 and
// MXFP4: l/4 in dwords; NVFP4: l/2 in words), Z21 the smallest e8m0 value
// (MXFP4), Z22 the FP8 word mask (NVFP4), K1/K2 the word masks of the two
// half spans (FP4 g64·odd).
func spanSetup(w func(string, ...any), k fpKind) {
	w("VMOVUPS\te2m1f32<>(SB), Z12")
	var masks []int
	switch k.name {
	case "f4s":
		w("VMOVDQU32\tquarteridx<>(SB), Z15")
	case "f4h":
		masks = []int{0x00ff, 0xff00}
	case "mx":
		w("VMOVDQU32\tquarteridx<>(SB), Z15")
		w("VPBROADCASTD\te8m0min<>(SB), Z21")
	case "nv":
		w("VMOVDQU32\tpairwidx<>(SB), Z15")
		w("VPBROADCASTW\tfp8mask<>(SB), Z22")
		w("VMULPS.BCST\tf256<>(SB), Z12, Z12\t// e2m1 · 2^8: the scales come as e4m3 · 2^-8")
	}
	for i, m := range masks {
		w("MOVL\t$%#04x, R14", m)
		w("KMOVW\tR14, K%d", i+1)
	}
}

// unitSetup loads the constants of kind k's kernels: spanSetup's for
// e2m1, the FP8 word mask (Z22) otherwise.
func unitSetup(w func(string, ...any), k fpKind) {
	if k.e2m1 {
		spanSetup(w, k)
		return
	}
	w("VPBROADCASTW\tfp8mask<>(SB), Z22")
}

// spanScales emits the scale vectors of one span, S_r in Z(13+r), for the
// weight rows whose scales are at sas[r] (lane l: the scale of elements
// 8l …). With one scale a span (FP4 with groups of 128·j) S_r is instead
// the e2m1 table times the scale (the steps then need no multiplication).
// FP4 with groups of 128·j (f4b) and of 64·odd (f4h, one scale a half
// span) advance the scale pointer R9 after cpg spans or halves (counted in
// the args word at left, reloaded from the word at cpg); the others leave
// R9 for spanAdvance.
func spanScales(w func(string, ...any), sb *strings.Builder, k fpKind, name string, sas []string, left, cpg int) {
	advance := func(h int) {
		w("DECQ\t%d(DI)", left)
		w("JNZ\t%s_same%d", name, h)
		w("MOVQ\t%d(DI), R14", cpg)
		w("MOVQ\tR14, %d(DI)", left)
		w("ADDQ\t$2, R9")
		fmt.Fprintf(sb, "%s_same%d:\n", name, h)
	}
	switch k.name {
	case "f4s": // four fp16 scales a span
		for r, sa := range sas {
			w("VCVTPH2PS\t%s, X23", sa)
			w("VPERMPS\tZ23, Z15, Z%d", 13+r)
		}
	case "f4b": // one fp16 scale a span: scaled tables
		for r, sa := range sas {
			w("VPBROADCASTW\t%s, Y23", sa)
			w("VCVTPH2PS\tY23, Z23")
			w("VMULPS\tZ23, Z12, Z%d", 13+r)
		}
		advance(0)
	case "f4h": // one fp16 scale a half span
		for h := 0; h < 2; h++ {
			for r, sa := range sas {
				w("VPBROADCASTW\t%s, K%d, Y%d", sa, h+1, 23+r)
			}
			advance(h)
		}
		for r := range sas {
			w("VCVTPH2PS\tY%d, Z%d", 23+r, 13+r)
		}
	case "mx": // four e8m0 codes a span: 2^(e−127) is e << 23 as float32 bits
		// (e = 0: the subnormal 2^-127, bits 0x00400000, which VPMAXUD
		// supplies; e = 255, NaN in OCP MX, gives +Inf)
		for r, sa := range sas {
			w("VPMOVZXBD\t%s, X23", sa)
			w("VPSLLD\t$23, X23, X23")
			w("VPMAXUD\tX21, X23, X23")
			w("VPERMPS\tZ23, Z15, Z%d", 13+r)
		}
	case "nv": // eight e4m3 codes a span, widened as the FP8 weights are
		// (binary16 of the value times 2^-8; the table holds e2m1 · 2^8)
		for r, sa := range sas {
			w("VPMOVSXBW\t%s, X23", sa)
			w("VPSLLW\t$7, X23, X23")
			w("VPANDD\tX22, X23, X23")
			w("VPERMW\tZ23, Z15, Z23")
			w("VCVTPH2PS\tY23, Z%d", 13+r)
		}
	}
}

// spanAdvance emits the scale pointer's advance after a span (FP4 with
// groups of 64·j advances inside spanScales).
func spanAdvance(w func(string, ...any), k fpKind) {
	switch k.name {
	case "f4s", "nv":
		w("ADDQ\t$8, R9")
	case "mx":
		w("ADDQ\t$4, R9")
	}
}

// spanStep emits the decoding of step j of the span whose codes are in
// Z(codes) into vector register v: looked up in the scaled table Z(s)
// (scaled), else in the e2m1 table and multiplied by the scales Z(s).
func spanStep(w func(string, ...any), j, codes, s int, scaled bool, v string) {
	src := fmt.Sprintf("Z%d", codes)
	if j > 0 {
		t := fmt.Sprintf("Z%d", 23+j%2)
		w("VPSRLD\t$%d, %s, %s", 4*j, src, t)
		src = t
	}
	if scaled {
		w("VPERMD\tZ%d, %s, %s", s, src, v)
		return
	}
	w("VPERMD\tZ12, %s, %s", src, v)
	w("VMULPS\tZ%d, %s, %s", s, v, v)
}

// fp8Decode emits the decoding of the FP8 chunk at address wa (a base and
// index without displacement) into V0..V3 (Z8..Z11).
func fp8Decode(w func(string, ...any), wa string) {
	for h := 0; h < 2; h++ {
		w("VPMOVSXBW\t%d%s, Z23", 32*h, wa)
		w("VPSLLW\t$7, Z23, Z23")
		w("VPANDD\tZ22, Z23, Z23")
		w("VCVTPH2PS\tY23, Z%d", 8+2*h)
		w("VEXTRACTI32X8\t$1, Z23, Y24")
		w("VCVTPH2PS\tY24, Z%d", 9+2*h)
	}
}

// fpgKernel emits the matrix-vector kernel of kind k for mc x rows; with
// nw = 2 (one x row only) it takes two weight rows at a time, so that four
// chains (E/O of each row) cover the FMA latency; the rows are adjacent in
// memory, nearly one stream. Its unit ("chunk" in the args) is a span of
// 128 inputs for e2m1, 64 inputs for FP8.
func fpgKernel(sb *strings.Builder, k fpKind, mc, nw int) {
	name := fmt.Sprintf("fpg%sM%d", k.name, mc)
	if nw == 2 {
		name += "R2"
	}
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	xr := []string{"R8", "R10", "R11", "R13"}
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
// decoded vectors, Z12 the e2m1 table, Z13/Z14 the span's scale vectors
// (or scaled tables) of the (two) rows, Z15 the scale index, Z16/Z17 the
// span's codes, Z21/Z22 constants, Z23/Z24 temporaries, K1/K2 masks (see
// spanSetup). GPRs: DI args, AX weights, R9 scales, BX byte offset into
// the x rows, R8/R10/R11/R13 x rows, SI dst of the row, DX rows left, CX
// units left in the block, R14 temp. Counters in the args: units left in
// the row (96), "dst written" (104), spans or half spans left on this
// scale (112, FP4 g64·j).%s
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
	unitSetup(w, k)
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
	w("MOVQ\tR14, 96(DI)\t// units left in the row")
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
	was := []string{"(AX)", "(AX)(R10*1)"}[:nw]
	sas := []string{"(R9)", "(R9)(R11*1)"}[:nw]
	step := 64 // code bytes a unit (span or chunk)
	xstep := 256
	if k.e2m1 {
		xstep = 512
		for r, wa := range was {
			w("VMOVDQU32\t%s, Z%d", wa, 16+r)
		}
		spanScales(w, sb, k, name, sas, 112, 88)
		for r := range was {
			for j := 0; j < 8; j++ {
				v := fmt.Sprintf("Z%d", 8+j%4)
				spanStep(w, j, 16+r, 13+r, k.name == "f4b", v)
				for m := 0; m < mc; m++ {
					w("VFMADD231PS\t%d(%s)(BX*1), %s, Z%d", 64*j, xr[m], v, 2*(m+r)+j%2)
				}
			}
		}
	} else {
		for r, wa := range was {
			fp8Decode(w, wa)
			for m := 0; m < mc; m++ {
				for v := 0; v < 4; v++ {
					w("VFMADD231PS\t%d(%s)(BX*1), Z%d, Z%d", 64*v, xr[m], 8+v, 2*(m+r)+v%2)
				}
			}
		}
	}
	w("ADDQ\t$%d, AX", step)
	if nw == 2 {
		w("ADDQ\t$%d, R13", step)
	}
	w("ADDQ\t$%d, BX", xstep)
	spanAdvance(w, k)
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
// rows, nchunks units (spans of 128 for e2m1, chunks of 64 for FP8),
// decoded into [step][row][16] float32.
func fppKernel(sb *strings.Builder, k fpKind) {
	name := fmt.Sprintf("fpp%s", k.name)
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	fmt.Fprintf(sb, `
// func %s(a *fppArgs)
//
// %s panel packing: 4 weight rows (w[j], scales s[j]), nchunks units,
// decoded exactly (as in the matrix-vector kernel) and stored for
// kernels.PanelGEMM: step t of row j at panel + (4t + j)·64 bytes.
// Registers as in the matrix-vector kernels; DX units left, SI the panel
// position of row j, R8 8·j (index into w[] and s[]); halves left on this
// scale in the args (88, FP4 g64·j).
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
`, name, k.name, name)
	unitSetup(w, k)
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
	steps := 4
	if k.e2m1 {
		steps = 8
		w("VMOVDQU32\t(AX), Z16")
		spanScales(w, sb, k, name, []string{"(R9)"}, 88, 80)
		for j := 0; j < 8; j++ {
			v := fmt.Sprintf("Z%d", 8+j%4)
			spanStep(w, j, 16, 13, k.name == "f4b", v)
			w("VMOVUPS\t%s, %d(SI)", v, 256*j)
		}
	} else {
		fp8Decode(w, "(AX)")
		for v := 0; v < 4; v++ {
			w("VMOVUPS\tZ%d, %d(SI)", 8+v, 256*v)
		}
	}
	w("ADDQ\t$%d, SI", 256*steps)
	w("ADDQ\t$64, AX")
	spanAdvance(w, k)
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
	sb.WriteString("\n// Lane → scale index of the e2m1 spans: l/4 (four scales a span, dwords), l/2 (eight, words).\n")
	for l := 0; l < 16; l++ {
		fmt.Fprintf(sb, "DATA quarteridx<>+%d(SB)/4, $%d\n", 4*l, l/4)
	}
	sb.WriteString("GLOBL quarteridx<>(SB), RODATA|NOPTR, $64\n")
	for l := 0; l < 32; l++ {
		fmt.Fprintf(sb, "DATA pairwidx<>+%d(SB)/2, $%d\n", 2*l, l%16/2)
	}
	sb.WriteString("GLOBL pairwidx<>(SB), RODATA|NOPTR, $64\n")
	sb.WriteString("DATA e8m0min<>+0(SB)/4, $0x00400000\nGLOBL e8m0min<>(SB), RODATA|NOPTR, $4\n")
	sb.WriteString("DATA f256<>+0(SB)/4, $0x43800000\nGLOBL f256<>(SB), RODATA|NOPTR, $4\n")
	sb.WriteString("\n// FP8 fix-up mask (binary16 sign and exponent/mantissa bits, bit 14 clear).\n")
	sb.WriteString("DATA fp8mask<>+0(SB)/2, $0xbf80\nGLOBL fp8mask<>(SB), RODATA|NOPTR, $2\n")
}
