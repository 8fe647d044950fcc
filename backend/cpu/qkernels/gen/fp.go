package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/marlin-llm/marlin/dtype"
)

// The row-major ("dot form") kernels: FP4 (fp16 scale per 32 or per
// G = 64·j), MXFP4 (e8m0 per 32), NVFP4 (e4m3 per 16) and FP8 (one scale per
// row). Each call walks nrows weight rows; per row it streams the row's
// bytes in chunks of 64 elements, decodes each chunk into 8 vectors of 8
// float32, multiplies each by its block scale and FMAs it with mc rows of
// x. x is prepared by the Go driver in the order the decoder produces
// weights ([chunk][vector][row][8]), so no shuffles are needed on the
// weight side. At the end of the row the accumulators are reduced and
// multiplied by post·rowscale[n].

type fpKind struct {
	name    string
	e2m1    bool
	nscales int    // distinct scales per chunk (0: none, FP8)
	scale   string // "e4m3", "e8m0", "f16"
	big     bool   // one fp16 scale per cpg chunks
}

var fpKinds = []fpKind{
	{name: "nv", e2m1: true, nscales: 4, scale: "e4m3"},
	{name: "mx", e2m1: true, nscales: 2, scale: "e8m0"},
	{name: "f4s", e2m1: true, nscales: 2, scale: "f16"},
	{name: "f4b", e2m1: true, nscales: 1, scale: "f16", big: true},
	{name: "f8", nscales: 0},
}

var fpRows = []int{1, 2, 3, 4, 6, 8}

// fpVector describes vector v of a chunk: its element indices and its
// sub-block (group of 16 elements) within the chunk.
func fpVector(k fpKind, v int) (elems [8]int, sb int) {
	for i := 0; i < 8; i++ {
		if k.e2m1 {
			// v = 4h + 2·lohi + p: half h of the chunk (16 bytes broadcast to
			// both lanes; lane 0 low nibbles = even elements, lane 1 high
			// nibbles = odd ones), unpack lo/hi (bytes 0–7 or 8–15 of each
			// lane), even (p = 0) or odd (p = 1) words. Dword i < 4 comes from
			// lane 0 word 2i+p, dword 4+i from lane 1 word 2i+p.
			h, lohi, p := v/4, v/2%2, v%2
			base := 32*h + 16*lohi
			if i < 4 {
				elems[i] = base + 2*(2*i+p)
			} else {
				elems[i] = base + 2*(2*(i-4)+p) + 1
			}
		} else {
			h, lohi, lane := v/4, v/2%2, v%2
			elems[i] = h*32 + lane*16 + lohi*8 + i
		}
	}
	return elems, elems[0] / 16
}

func fpAccs(k fpKind, mc int) int {
	budget := 8 // e2m1: Y15 Y14 luts, Y13..Y10 decode, Y9 block sum or scale, Y8 scale
	if mc > 1 {
		budget = 9
	}
	if !k.e2m1 {
		budget = 11
	}
	a := (4 + mc - 1) / mc
	for mc*a > budget {
		a--
	}
	return a
}

func fpKernel(sb *strings.Builder, k fpKind, mc int) {
	name := fmt.Sprintf("fp%sM%d", k.name, mc)
	A := fpAccs(k, mc)
	w := func(format string, args ...any) { fmt.Fprintf(sb, "\t"+format+"\n", args...) }
	acc := func(m, a int) string { return fmt.Sprintf("Y%d", m*A+a) }
	const (
		LUT, ZERO, LO, HI, T, V = "Y15", "Y14", "Y13", "Y12", "Y11", "Y10"
	)
	sreg := func(i int) string { return fmt.Sprintf("Y%d", 9-i) }
	x := func(r string) string { return strings.Replace(r, "Y", "X", 1) }
	fmt.Fprintf(sb, `
// func %s(a *fpArgs)
//
// %s, %d row(s) of x, %d accumulator(s) per row (acc[m][a] = Y(m·%d+a)).
// Registers: e2m1 kinds: Y15/Y14 the bf16 high/low byte tables, Y13 the
// nibble indices (then low bytes), Y12 the high bytes, Y11 the bf16 words,
// Y10 the decoded vector, Y9 the block's partial sum (one x row) or its
// scale, Y8 the scale (one x row). FP8: Y14 zero, Y12 raw bytes, Y11 the
// shifted words, Y10 the decoded vector. GPRs: DI args, AX weight
// pointer, BX x pointer, CX chunk counter, DX row counter, SI scale
// pointer, R8/R9 row bases of weights/scales, R10 dst, R11 dst row stride,
// R12 scale table (or chunks-per-scale counter), R13 row-scale pointer,
// R14 temp.
TEXT ·%s(SB), NOSPLIT, $0-8
	MOVQ	a+0(FP), DI
	MOVQ	0(DI), R8
	MOVQ	16(DI), R9
	MOVQ	40(DI), R10
	MOVQ	48(DI), R11
	MOVQ	56(DI), DX
	MOVQ	72(DI), R13
	VPXOR	%s, %s, %s
`, name, k.name, mc, A, A, name, ZERO, ZERO, ZERO)
	if k.e2m1 {
		w("VMOVDQU\tbf16hi<>(SB), %s", LUT)
		w("VMOVDQU\tbf16lo<>(SB), Y14")
	}
	switch k.scale {
	case "e4m3":
		w("LEAQ\te4m3tab<>(SB), R12")
	case "e8m0":
		w("LEAQ\te8m0tab<>(SB), R12")
	}
	fmt.Fprintf(sb, "%s_row:\n", name)
	for m := 0; m < mc; m++ {
		for a := 0; a < A; a++ {
			w("VXORPS\t%s, %s, %s", acc(m, a), acc(m, a), acc(m, a))
		}
	}
	w("MOVQ\tR8, AX")
	w("MOVQ\tR9, SI")
	w("MOVQ\t32(DI), BX")
	w("MOVQ\t64(DI), CX")
	if k.big {
		w("MOVQ\t96(DI), R12")
	}
	fmt.Fprintf(sb, "%s_chunk:\n", name)
	// (e2m1 kinds load their block scales where they are used)
	for i := 0; i < 0; i++ {
		switch k.scale {
		case "e4m3", "e8m0":
			w("MOVBLZX\t%d(SI), R14", i)
			w("VBROADCASTSS\t(R12)(R14*4), %s", sreg(i))
		case "f16":
			w("VPBROADCASTW\t%d(SI), %s", 2*i, x(sreg(i)))
			w("VCVTPH2PS\t%s, %s", x(sreg(i)), sreg(i))
		}
	}
	av := 0 // rotating accumulator index
	emit := func(v int) {
		_, sbk := fpVector(k, v)
		if k.nscales > 0 {
			si := 0
			switch k.nscales {
			case 4:
				si = sbk
			case 2:
				si = sbk / 2
			}
			w("VMULPS\t%s, %s, %s", sreg(si), V, V)
		}
		for m := 0; m < mc; m++ {
			w("VFMADD231PS\t%d(BX), %s, %s", 32*(v*mc+m), V, acc(m, av%A))
		}
		av++
	}
	if k.e2m1 {
		// bf16 decode: every e2m1 value is exactly a bfloat16, i.e. the high
		// half of a float32. Two VPSHUFB lookups give its low and high
		// bytes, VPUNPCK{L,H}BW joins them into words, and VPSLLD $16 (even
		// words) or VPAND 0xffff0000 (odd words) puts the words in the high
		// half of each dword: 8 exact float32 without any conversion
		// instruction (VCVT* share the FMA pipes on this core).
		const D, H, W, BK = "Y13", "Y12", "Y11", "Y9"
		blockVecs := 8 // vectors per scale block
		switch k.nscales {
		case 4:
			blockVecs = 2
		case 2:
			blockVecs = 4
		}
		loadScale := func(si int, dst string) {
			switch k.scale {
			case "e4m3", "e8m0":
				w("MOVBLZX\t%d(SI), R14", si)
				w("VBROADCASTSS\t(R12)(R14*4), %s", dst)
			case "f16":
				w("VPBROADCASTW\t%d(SI), %s", 2*si, x(dst))
				w("VCVTPH2PS\t%s, %s", x(dst), dst)
			}
		}
		S := sreg(0)
		if mc == 1 {
			S = "Y8"
		}
		w("PREFETCHT0\t1024(AX)")
		nv := 0
		for h := 0; h < 2; h++ {
			w("VBROADCASTI128\t%d(AX), %s", 16*h, D)
			w("VPSRLVD\tlaneshift4<>(SB), %s, %s", D, D)
			w("VPAND\tnib0f<>(SB), %s, %s", D, D)
			w("VPSHUFB\t%s, %s, %s", D, LUT, H)
			w("VPSHUFB\t%s, %s, %s", D, "Y14", D)
			for lohi := 0; lohi < 2; lohi++ {
				if lohi == 0 {
					w("VPUNPCKLBW\t%s, %s, %s", H, D, W)
				} else {
					w("VPUNPCKHBW\t%s, %s, %s", H, D, W)
				}
				for p := 0; p < 2; p++ {
					v := 4*h + 2*lohi + p
					if p == 0 {
						w("VPSLLD\t$16, %s, %s", W, V)
					} else {
						w("VPAND\thi16<>(SB), %s, %s", W, V)
					}
					first := nv%blockVecs == 0
					if mc == 1 {
						if first {
							w("VMULPS\t%d(BX), %s, %s", 32*v, V, BK)
						} else {
							w("VFMADD231PS\t%d(BX), %s, %s", 32*v, V, BK)
						}
						if nv%blockVecs == blockVecs-1 {
							loadScale(nv/blockVecs, S)
							w("VFMADD231PS\t%s, %s, %s", S, BK, acc(0, av%A))
							av++
						}
					} else {
						if first {
							loadScale(nv/blockVecs, S)
						}
						w("VMULPS\t%s, %s, %s", S, V, V)
						for m := 0; m < mc; m++ {
							w("VFMADD231PS\t%d(BX), %s, %s", 32*(v*mc+m), V, acc(m, av%A))
						}
						av++
					}
					nv++
				}
			}
		}
		w("ADDQ\t$32, AX")
	} else {
		// FP8: e4m3 byte b as the high byte of a word is s.eeee.mmm.0…; an
		// arithmetic shift right by 1 puts eeee.mmm where binary16 wants
		// them (value·2^-8) but copies s into bit 14; clear it.
		for h := 0; h < 2; h++ {
			w("VMOVDQU\t%d(AX), %s", 32*h, HI)
			if h == 0 {
				w("PREFETCHT0\t1024(AX)")
			} else {
				w("PREFETCHT0\t1088(AX)")
			}
			for lohi := 0; lohi < 2; lohi++ {
				if lohi == 0 {
					w("VPUNPCKLBW\t%s, %s, %s", HI, ZERO, T)
				} else {
					w("VPUNPCKHBW\t%s, %s, %s", HI, ZERO, T)
				}
				w("VPSRAW\t$1, %s, %s", T, T)
				w("VPAND\tfp8fix<>(SB), %s, %s", T, T)
				w("VCVTPH2PS\t%s, %s", x(T), V)
				emit(h*4 + lohi*2)
				w("VEXTRACTI128\t$1, %s, %s", T, x(T))
				w("VCVTPH2PS\t%s, %s", x(T), V)
				emit(h*4 + lohi*2 + 1)
			}
		}
		w("ADDQ\t$64, AX")
	}
	w("ADDQ\t$%d, BX", 64*4*mc)
	switch {
	case k.big:
		w("DECQ\tR12")
		w("JNZ\t%s_same", name)
		w("MOVQ\t96(DI), R12")
		w("ADDQ\t$2, SI")
		fmt.Fprintf(sb, "%s_same:\n", name)
	case k.nscales > 0:
		sz := 1
		if k.scale == "f16" {
			sz = 2
		}
		w("ADDQ\t$%d, SI", k.nscales*sz)
	}
	w("DECQ\tCX")
	w("JNZ\t%s_chunk", name)
	// reduce: acc[m] = Σ_a acc[m][a]; horizontal sum; × post·rowscale
	w("VMOVSS\t(R13), %s", x(V))
	w("VMULSS\t88(DI), %s, %s", x(V), x(V))
	w("MOVQ\tR10, R14")
	for m := 0; m < mc; m++ {
		for a := 1; a < A; a++ {
			w("VADDPS\t%s, %s, %s", acc(m, a), acc(m, 0), acc(m, 0))
		}
		r := acc(m, 0)
		w("VEXTRACTF128\t$1, %s, %s", r, x(T))
		w("VADDPS\t%s, %s, %s", x(T), x(r), x(r))
		w("VHADDPS\t%s, %s, %s", x(r), x(r), x(r))
		w("VHADDPS\t%s, %s, %s", x(r), x(r), x(r))
		w("VMULSS\t%s, %s, %s", x(V), x(r), x(r))
		if mc > 1 {
			// accumulate over k-tiles (accum ≠ 0)
			w("CMPQ\t104(DI), $0")
			w("JEQ\t%s_set%d", name, m)
			w("VADDSS\t(R14), %s, %s", x(r), x(r))
			fmt.Fprintf(sb, "%s_set%d:\n", name, m)
		}
		w("VMOVSS\t%s, (R14)", x(r))
		if m+1 < mc {
			w("ADDQ\tR11, R14")
		}
	}
	w("ADDQ\t8(DI), R8")
	w("ADDQ\t24(DI), R9")
	w("ADDQ\t80(DI), R13")
	w("ADDQ\t$4, R10")
	w("DECQ\tDX")
	w("JNZ\t%s_row", name)
	w("VZEROUPPER")
	w("RET")
}

func fpAll(sb *strings.Builder) {
	sb.WriteString(`
// ---- Row-major formats ("dot form") ----
//
// e2m1 → float32: every e2m1 value is exactly representable in bfloat16,
// the high half of a float32. 16 bytes of codes are broadcast to both
// 128-bit lanes; a per-lane shift (0 or 4) and a mask leave the low nibbles
// (even elements) in lane 0 and the high nibbles (odd elements) in lane 1.
// Two VPSHUFB with 16-entry tables give each code's bf16 low and high
// bytes, VPUNPCK{L,H}BW joins them into bf16 words, and VPSLLD $16 (even
// words) or VPAND 0xffff0000 (odd words) widens them to 8 float32 that all
// lie in one 16-element block. Per 64 elements: 2 loads, 4 shifts/masks, 4
// lookups, 4 unpacks, 8 shift/and: no conversion instruction (VCVT* compete
// with the FMAs for the same two pipes on AMD Zen). With one x row the
// products of a block are summed first (VMULPS, VFMADD) and the block's
// scale is applied once; with several rows each decoded vector is scaled
// (VMULPS) and then used by every row.
//
// e4m3 → float32 (FP8): a byte b in the high byte of a word reads, as
// binary16, s.eeee.mmm shifted left by one; VPSRAW $1 aligns it (value·2^-8,
// subnormals included) but copies s into bit 14, which VPAND clears;
// VCVTPH2PS widens. The x rows are pre-permuted to the decode order
// (fpVector in the generator), so the weights are never shuffled back.
`)
	for _, k := range fpKinds {
		for _, mc := range fpRows {
			fpKernel(sb, k, mc)
		}
	}
	vals := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6}

	sb.WriteString("\n// bfloat16 high and low bytes of each e2m1 code (both lanes).\n")
	for l := 0; l < 2; l++ {
		for c := 0; c < 16; c++ {
			h := dtype.F32ToBF16(vals[c])
			if c == 8 {
				h = 0x8000
			}
			if dtype.BF16ToF32(h) != vals[c] {
				panic("e2m1 not bf16")
			}
			fmt.Fprintf(sb, "DATA bf16hi<>+%d(SB)/1, $0x%02x\n", 16*l+c, h>>8)
			fmt.Fprintf(sb, "DATA bf16lo<>+%d(SB)/1, $0x%02x\n", 16*l+c, h&0xff)
		}
	}
	sb.WriteString("GLOBL bf16hi<>(SB), RODATA|NOPTR, $32\nGLOBL bf16lo<>(SB), RODATA|NOPTR, $32\n")
	sb.WriteString("\n// Dword shift counts: 0 in lane 0, 4 in lane 1 (low/high nibbles).\n")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(sb, "DATA laneshift4<>+%d(SB)/4, $%d\n", 4*i, 4*(i/4))
	}
	sb.WriteString("GLOBL laneshift4<>(SB), RODATA|NOPTR, $32\n")
	sb.WriteString("\n// 0xffff0000 in every dword.\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(sb, "DATA hi16<>+%d(SB)/8, $0xffff0000ffff0000\n", 8*i)
	}
	sb.WriteString("GLOBL hi16<>(SB), RODATA|NOPTR, $32\n")
	sb.WriteString("\n// 0x0f in every byte.\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(sb, "DATA nib0f<>+%d(SB)/8, $0x0f0f0f0f0f0f0f0f\n", 8*i)
	}
	sb.WriteString("GLOBL nib0f<>(SB), RODATA|NOPTR, $32\n")
	sb.WriteString("\n// FP8 fix-up mask: clears bit 14 of every word.\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(sb, "DATA fp8fix<>+%d(SB)/8, $0xbfffbfffbfffbfff\n", 8*i)
	}
	sb.WriteString("GLOBL fp8fix<>(SB), RODATA|NOPTR, $32\n")
	sb.WriteString("\n// e4m3 and e8m0 scale codes → float32 bits.\n")
	for c := 0; c < 256; c++ {
		fmt.Fprintf(sb, "DATA e4m3tab<>+%d(SB)/4, $0x%08x\n", 4*c, e4m3bits(uint8(c)))
	}
	sb.WriteString("GLOBL e4m3tab<>(SB), RODATA|NOPTR, $1024\n")
	for c := 0; c < 256; c++ {
		b := math.Float32bits(dtype.E8M0ToF32(uint8(c)))
		fmt.Fprintf(sb, "DATA e8m0tab<>+%d(SB)/4, $0x%08x\n", 4*c, b)
	}
	sb.WriteString("GLOBL e8m0tab<>(SB), RODATA|NOPTR, $1024\n")
}

func e4m3bits(v uint8) uint32 { return math.Float32bits(dtype.E4M3ToF32(v)) }

func fpGo(gb *strings.Builder) {
	gb.WriteString("// fpKernels[kind][mc−1] are the row-major kernels; fpElem[kind] maps\n// position v·8+i of a decoded chunk to the element index within the chunk.\n")
	gb.WriteString("var fpKernels = map[string]map[int]func(*fpArgs){\n")
	for _, k := range fpKinds {
		fmt.Fprintf(gb, "%q: {", k.name)
		for _, mc := range fpRows {
			fmt.Fprintf(gb, "%d: fp%sM%d,", mc, k.name, mc)
		}
		gb.WriteString("},\n")
	}
	gb.WriteString("}\n\nvar fpElem = map[string][64]uint8{\n")
	for _, k := range fpKinds {
		fmt.Fprintf(gb, "%q: {", k.name)
		for v := 0; v < 8; v++ {
			e, _ := fpVector(k, v)
			for _, x := range e {
				fmt.Fprintf(gb, "%d,", x)
			}
		}
		gb.WriteString("},\n")
	}
	gb.WriteString("}\n\n")
	for _, k := range fpKinds {
		for _, mc := range fpRows {
			fmt.Fprintf(gb, "//go:noescape\nfunc fp%sM%d(a *fpArgs)\n\n", k.name, mc)
		}
	}
}
